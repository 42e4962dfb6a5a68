"""What a partition's runs did, for `--metrics-file` and `state list` (DESIGN §10): a small
record beside the state, `runs-<stem>.json`, replaced after every poll of the partition
(skipped, failed before a state could be saved, or not). The metrics are a projection of the
state dir: these records and the cursors, never the metrics file read back.

The record is separate from the cursor because some runs must not touch the cursor (a run
refused before it could read it: no token, the lock held, a corrupt state) and yet are what an
on-call engineer must see.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass, replace
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

import orjson

from heroku_audit_trail.errors import MalformedDataError
from heroku_audit_trail.schedule import parse_stamp

if TYPE_CHECKING:  # requests costs a fifth of a second to import: not on the skip path
    from heroku_audit_trail.heroku.responses import Answer
from heroku_audit_trail.state import Partition
from heroku_audit_trail.statedir import read_private, write_atomic

RECORD_VERSION = 1
PREFIX = "runs-"


class Tally:
    """What one caller's requests met (a partition's, when several are read side by side):
    counted by the thread that sends, read by the one that commits."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.requests = 0
        self.retry_after: float | None = None  # seconds, from the last 429 that had one
        self.rate_limit_remaining: int | None = None  # the lowest its answers said

    def count(self) -> None:
        with self._lock:
            self.requests += 1

    def note(self, answer: Answer) -> None:
        """What an answer to one of these requests said."""
        with self._lock:
            self.retry_after = answer.retry_after or self.retry_after
            self.rate_limit_remaining = lowest(
                self.rate_limit_remaining, answer.rate_limit_remaining
            )


def lowest(kept: int | None, new: int | None) -> int | None:
    """The lower of two RateLimit-Remaining values, either unknown: answers to requests side by
    side come in any order, and within a run the quota only refills by a little."""
    if kept is None or new is None:
        return new if kept is None else kept
    return min(kept, new)


@dataclass(frozen=True)
class Attempt:
    """One run of a partition. The counts are None for a run that did not reach the API."""

    started: datetime
    exit_code: int
    skipped: bool = False  # by --min-interval or the failure backoff
    events_emitted: int | None = None
    requests: int | None = None
    rate_limit_remaining: int | None = None


@dataclass(frozen=True)
class RunRecord:
    partition: dict[str, str]
    last: Attempt  # the last run, skipped ones included
    last_api_run: Attempt | None = None  # the last run that reached the API
    last_success: datetime | None = None  # start of the last successful run
    failures_in_a_row: int = 0  # failed runs since the last success, of any exit code
    rate_limit_remaining: int | None = None  # the last one seen, by any run
    events_total: int = 0  # events printed by every run recorded here (a counter)


def after(previous: RunRecord | None, partition: dict[str, str], run: Attempt) -> RunRecord:
    """The record once `run` has ended (pure): a success clears the failures, a skipped run
    changes no count, any failure adds one."""
    record = previous or RunRecord(partition, run)
    failures = record.failures_in_a_row
    if run.exit_code:
        failures += 1
    elif not run.skipped:
        failures = 0
    reached_api = run.requests is not None and run.requests > 0
    return replace(
        record,
        partition=partition,
        last=run,
        last_api_run=run if reached_api else record.last_api_run,
        last_success=run.started if not run.exit_code and not run.skipped else record.last_success,
        failures_in_a_row=failures,
        events_total=record.events_total + (run.events_emitted or 0),
        rate_limit_remaining=(
            run.rate_limit_remaining
            if run.rate_limit_remaining is not None
            else record.rate_limit_remaining
        ),
    )


def record_path(state_dir: Path, partition: Partition) -> Path:
    return state_dir / f"{PREFIX}{partition.file_stem()}.json"


def _stamp(moment: datetime | None) -> str | None:
    return moment.isoformat(timespec="microseconds").replace("+00:00", "Z") if moment else None


def _attempt_doc(attempt: Attempt | None) -> dict[str, Any] | None:
    if attempt is None:
        return None
    return {
        "started_at": _stamp(attempt.started),
        "exit_code": attempt.exit_code,
        "skipped": attempt.skipped,
        "events_emitted": attempt.events_emitted,
        "requests": attempt.requests,
        "rate_limit_remaining": attempt.rate_limit_remaining,
    }


def to_json(record: RunRecord) -> bytes:
    doc = {
        "version": RECORD_VERSION,
        "kind": "runs",
        "partition": record.partition,
        "last": _attempt_doc(record.last),
        "last_api_run": _attempt_doc(record.last_api_run),
        "last_success": _stamp(record.last_success),
        "failures_in_a_row": record.failures_in_a_row,
        "rate_limit_remaining": record.rate_limit_remaining,
        "events_total": record.events_total,
    }
    return orjson.dumps(doc, option=orjson.OPT_INDENT_2 | orjson.OPT_APPEND_NEWLINE)


def _count(doc: dict[str, Any], name: str) -> int | None:
    value = doc.get(name)
    if value is None:
        return None
    if not isinstance(value, int) or isinstance(value, bool):
        raise ValueError(f"{name} is not a whole number")
    return value


def _time(value: object, name: str) -> datetime:
    moment = parse_stamp(value)
    if moment is None:
        raise ValueError(f"{name} is not a time")
    return moment


def _attempt(doc: object) -> Attempt | None:
    if doc is None:
        return None
    if not isinstance(doc, dict):
        raise ValueError("a run is not an object")
    return Attempt(
        started=_time(doc.get("started_at"), "started_at"),
        exit_code=_count(doc, "exit_code") or 0,
        skipped=doc.get("skipped") is True,
        events_emitted=_count(doc, "events_emitted"),
        requests=_count(doc, "requests"),
        rate_limit_remaining=_count(doc, "rate_limit_remaining"),
    )


def parse_record(path: Path, raw: bytes) -> RunRecord:
    """Validated in one place; anything unexpected is MalformedDataError."""
    try:
        doc = orjson.loads(raw)
        if not isinstance(doc, dict) or doc.get("version") != RECORD_VERSION:
            raise ValueError("not a version 1 run record")
        partition = doc.get("partition")
        if not isinstance(partition, dict) or not all(
            isinstance(key, str) and isinstance(value, str) for key, value in partition.items()
        ):
            raise ValueError("bad partition")
        last = _attempt(doc.get("last"))
        if last is None:
            raise ValueError("no last run")
        success = doc.get("last_success")
        return RunRecord(
            partition=partition,
            last=last,
            last_api_run=_attempt(doc.get("last_api_run")),
            last_success=None if success is None else _time(success, "last_success"),
            failures_in_a_row=_count(doc, "failures_in_a_row") or 0,
            rate_limit_remaining=_count(doc, "rate_limit_remaining"),
            events_total=_count(doc, "events_total") or 0,
        )
    except (orjson.JSONDecodeError, ValueError) as error:
        raise MalformedDataError(f"run record {path} is unreadable ({error})") from None


def load(path: Path, state_dir: Path) -> RunRecord | None:
    raw = read_private(path, state_dir)
    return None if raw is None else parse_record(path, raw)


def save(path: Path, record: RunRecord) -> None:
    write_atomic(path, to_json(record))
