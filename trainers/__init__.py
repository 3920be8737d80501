"""CoOp-style trainer modules: importing ``trainers.prometar`` registers ProMetaR with Dassl (needs Dassl)."""
