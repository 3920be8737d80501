"""SUN397 for Dassl: importing this module registers it (reader: prometar.data; see prometar.dassl)."""
from prometar.dassl.datasets import register_dataset

SUN397 = register_dataset("SUN397")
