"""UCF101 for Dassl: importing this module registers it (reader: prometar.data; see prometar.dassl)."""
from prometar.dassl.datasets import register_dataset

UCF101 = register_dataset("UCF101")
