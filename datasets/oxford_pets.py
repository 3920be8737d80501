"""OxfordPets for Dassl: importing this module registers it (reader: prometar.data; see prometar.dassl)."""
from prometar.dassl.datasets import register_dataset

OxfordPets = register_dataset("OxfordPets")
