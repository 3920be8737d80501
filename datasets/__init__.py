"""CoOp-style dataset modules: importing ``datasets.<name>`` registers that dataset with Dassl (needs Dassl).

The readers live in ``prometar.data``; these modules only register ``prometar.dassl.datasets`` classes.
"""
