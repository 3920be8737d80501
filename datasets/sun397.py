"""SUN397 for Dassl: importing this module registers it (reader: prometar.data; see prometar.dassl).

Generated from the dataset table by `python -m prometar.data.coop_files`; do not edit.
"""
from prometar.dassl.datasets import register_dataset

SUN397 = register_dataset("SUN397")
