"""Exception hierarchy: each failure carries its sysexits code and a one-line message for people."""

from __future__ import annotations

# sysexits.h values (os.EX_* exists only on Unix; the numbers are the contract).
EX_OK = 0
EX_USAGE = 64
EX_DATAERR = 65
EX_UNAVAILABLE = 69
EX_SOFTWARE = 70
EX_CANTCREAT = 73
EX_IOERR = 74
EX_TEMPFAIL = 75
EX_NOPERM = 77
EX_CONFIG = 78
EX_SIGINT = 130
EX_SIGTERM = 143


class AuditTrailError(Exception):
    """Base of every expected failure; `str(error)` is the one-line message shown to the user."""

    exit_code = EX_SOFTWARE

    def __init__(self, message: str, *, request_id: str | None = None) -> None:
        super().__init__(message)
        self.request_id = request_id


class UsageError(AuditTrailError):
    exit_code = EX_USAGE


class ConfigError(AuditTrailError):
    exit_code = EX_CONFIG


class MalformedDataError(AuditTrailError):
    """The API's body is not the documented JSON, or the state file is corrupt."""

    exit_code = EX_DATAERR


class ApiUnavailableError(AuditTrailError):
    """5xx, connection errors and timeouts after the bounded retries; unexpected 4xx."""

    exit_code = EX_UNAVAILABLE


class StateWriteError(AuditTrailError):
    exit_code = EX_CANTCREAT


class OutputClosedError(AuditTrailError):
    exit_code = EX_IOERR


class TryLaterError(AuditTrailError):
    """Rate limited, lock held, or out of time: the next scheduled run will carry on."""

    exit_code = EX_TEMPFAIL


class RateLimitedError(TryLaterError):
    pass


class LockHeldError(TryLaterError):
    pass


class DeadlineError(TryLaterError):
    pass


class PermissionDeniedError(AuditTrailError):
    exit_code = EX_NOPERM


class StoppedError(AuditTrailError):
    """SIGINT or SIGTERM arrived: stop fetching, keep what was flushed."""

    def __init__(self, signal_name: str, exit_code: int) -> None:
        super().__init__(f"stopped by {signal_name}; progress up to the last flushed day is saved")
        self.exit_code = exit_code
