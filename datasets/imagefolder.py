"""ImageFolder (your own class folders) for Dassl: importing this module registers it (reader: prometar.data; see prometar.dassl)."""
from prometar.dassl.datasets import register_dataset

ImageFolder = register_dataset("ImageFolder")
