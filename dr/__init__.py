"""vault-dr: backup and disaster recovery for Vault and OpenBao on raft storage."""

__version__ = "0.1.0"
