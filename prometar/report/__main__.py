"""``python -m prometar.report OUTPUT_DIR``."""
import sys

from . import report_main

sys.exit(report_main())
