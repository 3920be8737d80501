"""ProMetaR for Dassl: importing this module registers the ``ProMetaR`` trainer (see prometar.dassl)."""
from prometar.dassl.trainer import register_trainer

ProMetaR = register_trainer()
