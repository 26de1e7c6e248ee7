"""Error types and the exit codes they map to.

Every error a user can cause is a `DRError`: it carries one line that names the cause
and the next step, and an exit code from the documented table (docs/exit-codes.md).
The CLI's single top-level handler prints `error: <message>` and exits with the code;
tracebacks appear only at debug level. Keep the numbers stable: scripts depend on them
("an unknown exit code must be treated as a failure").
"""

from __future__ import annotations

from enum import IntEnum


class ExitCode(IntEnum):
    OK = 0
    INTERNAL = 1  # a bug: please report it with the --debug output
    USAGE = 2  # bad command line or configuration
    VAULT = 3  # Vault/OpenBao unreachable, sealed, standby, or refused the request
    STORAGE = 4  # backup store unreachable, misconfigured or refused the request
    KEYS = 5  # no recipient could wrap/unwrap the data key (KMS, key files)
    INTEGRITY = 6  # stored data failed authentication or its checksums
    SNAPSHOT = 7  # the snapshot Vault sent is empty, truncated or malformed
    NOT_FOUND = 8  # no such backup
    LOCKED = 9  # another run holds the lock
    DRILL_FAILED = 10  # a drill found missing, mismatched or unreadable items
    RTO_EXCEEDED = 11  # a drill's measured RTO is above drill.rto_objective
    BACKUP_TOO_OLD = 12  # the newest backup is older than drill.max_backup_age
    SEAL = 13  # seal preflight: the seal key or the unseal/recovery key quorum is unusable
    PARTIAL = 14  # backup stored, but its catalog is partial (mounts the token cannot list)
    STALE = 15  # dr status: the newest backup or the newest passing drill is too old (or none)
    INTERRUPTED = 130  # SIGINT/SIGTERM


class DRError(Exception):
    """Base class: a failure with a one-line message and an exit code."""

    exit_code: ExitCode = ExitCode.INTERNAL

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message

    def __str__(self) -> str:
        return self.message


class UsageError(DRError):
    exit_code = ExitCode.USAGE


class ConfigError(UsageError):
    """A configuration problem; the message names file, key path and what is accepted."""

    def __init__(self, source: str, where: str, problem: str) -> None:
        location = f"{source}: at '{where}'" if where else source
        super().__init__(f"{location}: {problem}")
        self.source = source
        self.where = where
        self.problem = problem


class VaultError(DRError):
    exit_code = ExitCode.VAULT
    status: int | None = None  # the HTTP status of the answer it describes, if any


class StorageError(DRError):
    exit_code = ExitCode.STORAGE


class KeyAccessError(DRError):
    """No recipient could wrap or unwrap the data key (KMS unreachable, key unknown)."""

    exit_code = ExitCode.KEYS


class IntegrityError(DRError):
    """Ciphertext, manifest or checksums did not authenticate. Never retry blindly."""

    exit_code = ExitCode.INTEGRITY


class SnapshotError(DRError):
    """The snapshot stream from Vault is not a whole, well-formed raft snapshot."""

    exit_code = ExitCode.SNAPSHOT


class NotFoundError(DRError):
    exit_code = ExitCode.NOT_FOUND


class LockedError(DRError):
    exit_code = ExitCode.LOCKED


class DrillFailed(DRError):
    exit_code = ExitCode.DRILL_FAILED


class RTOExceeded(DRError):
    exit_code = ExitCode.RTO_EXCEEDED


class BackupTooOld(DRError):
    exit_code = ExitCode.BACKUP_TOO_OLD


class Interrupted(DRError):
    exit_code = ExitCode.INTERRUPTED


class SealError(DRError):
    """The seal preflight failed: the auto-unseal key cannot be used (unreachable, denied,
    disabled), or the unseal/recovery keys cannot reach the threshold. Found before any
    byte of the snapshot is sent."""

    exit_code = ExitCode.SEAL


class StatusStale(DRError):
    """`dr status`: no backup or no passing drill within status.max_backup_age /
    status.max_drill_age. The report is printed first; this is its one-line verdict."""

    exit_code = ExitCode.STALE


class PartialCatalog(DRError):
    """The backup (snapshot, catalog, manifest) is stored, but the catalog could not
    list some mounts: a warning code, so monitoring sees it and the policy gets fixed."""

    exit_code = ExitCode.PARTIAL
