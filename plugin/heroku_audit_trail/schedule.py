"""When `poll` may call the API: --min-interval and the failure backoff (DESIGN §3). Pure.

Fluent Bit runs the program every second by default. Both guards make such a run exit at once,
before the lock and the API: one after a recent success (--min-interval), one after failed runs
(the failure backoff: min-interval * 2^(n-1), at most 900 s, or a Retry-After, the later).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from typing import Any

from heroku_audit_trail.errors import (
    ApiUnavailableError,
    AuditTrailError,
    ConfigError,
    MalformedDataError,
    PermissionDeniedError,
    RateLimitedError,
)

MIN_INTERVAL_SLACK = 5.0  # seconds of scheduler jitter forgiven by --min-interval
BACKOFF_CAP = 900.0  # seconds: the longest wait after failed runs, Retry-After aside
RETRY_AFTER_CAP = 3600.0  # a Retry-After longer than an hour is taken as an hour
CLOCK_SLACK = timedelta(minutes=5)  # a failure "in the future": the clock was ahead then


def utc_now() -> datetime:
    return datetime.now(timezone.utc)


def parse_stamp(value: object) -> datetime | None:
    """A time this program wrote (`...Z`), or None."""
    if not isinstance(value, str):
        return None
    try:
        moment = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return None
    return moment if moment.tzinfo is not None else None


@dataclass(frozen=True)
class Backoff:
    """Failed runs in a row (exit 69 or 75 from the API), when the last one ended, and the
    end of a Retry-After it was given, if any."""

    failures: int
    failed_at: datetime
    retry_after_until: datetime | None = None

    def wait_until(self, min_interval: float) -> datetime:
        # The exponent is capped: after weeks of outage 2**(n-1) would overflow a float.
        seconds = min(min_interval * 2.0 ** min(self.failures - 1, 30), BACKOFF_CAP)
        until = self.failed_at + timedelta(seconds=seconds)
        if self.retry_after_until is not None:
            until = max(until, self.retry_after_until)
        return until

    def to_json(self) -> dict[str, Any]:
        return {
            "failures": self.failures,
            "failed_at": _stamp(self.failed_at),
            "retry_after_until": _stamp(self.retry_after_until) if self.retry_after_until else None,
        }

    @classmethod
    def from_json(cls, doc: object) -> Backoff | None:
        """The state's `backoff` object; None when absent. ValueError when malformed."""
        if doc is None:
            return None
        if not isinstance(doc, dict):
            raise ValueError("backoff is not an object")
        failures, failed_at = doc.get("failures"), parse_stamp(doc.get("failed_at"))
        if not isinstance(failures, int) or failures < 1 or failed_at is None:
            raise ValueError("backoff needs failures >= 1 and failed_at")
        retry = doc.get("retry_after_until")
        retry_after_until = parse_stamp(retry)
        if retry is not None and retry_after_until is None:
            raise ValueError("backoff retry_after_until is not a time")
        return cls(failures, failed_at, retry_after_until)


def _stamp(moment: datetime) -> str:
    return moment.isoformat(timespec="microseconds").replace("+00:00", "Z")


def after_failure(previous: Backoff | None, ended: datetime, retry_after: float | None) -> Backoff:
    """The backoff once one more run has failed."""
    until = ended + timedelta(seconds=min(retry_after, RETRY_AFTER_CAP)) if retry_after else None
    return Backoff((previous.failures if previous else 0) + 1, ended, until)


def skip_reason(
    last_start: datetime | None, backoff: Backoff | None, now: datetime, min_interval: float
) -> str | None:
    """Why this run should leave the API alone, or None. `min_interval` 0 turns both off."""
    if min_interval <= 0:
        return None
    if backoff is not None and backoff.failed_at <= now + CLOCK_SLACK:
        until = backoff.wait_until(min_interval)
        if now < until:
            return (
                f"skipped: backing off after {backoff.failures} failed run(s) in a row, "
                f"until {_stamp(until)} ({(until - now).total_seconds():.0f} s from now)"
            )
        return None  # a failure after the last success: its start no longer counts
    if backoff is not None:
        return None  # recorded by a clock that was ahead: do not wait for it
    if last_start is None:
        return None
    elapsed = (now - last_start).total_seconds()
    if 0 <= elapsed < min_interval - MIN_INTERVAL_SLACK:
        return (
            f"skipped: the last successful run started {elapsed:.0f} s ago, "
            f"less than --min-interval {min_interval:.0f} s"
        )
    return None


def backs_off_after(error: AuditTrailError, reached_api: bool) -> bool:
    """Whether a failed run starts or continues the failure backoff (DESIGN §3): every
    failure found in the API's answers (65, 69, 75 from a rate limit, 77, 78), so a revoked
    token or a proxy answering HTML costs one request a backoff, not one a run. Not a failure
    found before any request, a deadline, a signal, a lock or this host's own disk."""
    answered = (MalformedDataError, ApiUnavailableError, PermissionDeniedError, ConfigError)
    return isinstance(error, RateLimitedError) or (reached_api and isinstance(error, answered))
