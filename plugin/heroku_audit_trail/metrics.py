"""`--metrics-file`: Prometheus text format for node_exporter's textfile collector (DESIGN §10).

After every poll, skipped ones included, the file is replaced atomically with one sample per
partition of the state dir (not only the ones this run touched), built from the state files
and this run's exit codes. The rendering is pure; only `write_metrics` does I/O.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Mapping
from contextlib import suppress
from dataclasses import dataclass
from datetime import date, datetime, time, timedelta, timezone
from pathlib import Path

from heroku_audit_trail.cursor import State, parse_state, read_private
from heroku_audit_trail.errors import AuditTrailError, StateWriteError
from heroku_audit_trail.schedule import parse_stamp

PREFIX = "heroku_audit_trail_"
METRICS: tuple[tuple[str, str], ...] = (
    ("last_run_timestamp_seconds", "Start of the last run, skipped ones included."),
    ("last_success_timestamp_seconds", "Start of the last successful run that called the API."),
    ("last_exit_code", "Exit code of the last run for this partition."),
    ("events_emitted", "Events printed by the last run that called the API."),
    ("requests", "API requests made by the last run that called the API."),
    ("rate_limit_remaining", "The last RateLimit-Remaining seen."),
    ("closed_through_timestamp_seconds", "Midnight UTC after the last closed day."),
    ("consecutive_failures", "Failed runs in a row (0 after a success)."),
)


@dataclass(frozen=True)
class RunMark:
    """What this run did for one partition: when it started, how it ended, which it was."""

    started: datetime
    exit_code: int
    partition: dict[str, str]


@dataclass
class Sample:
    """One partition's values; None leaves that metric out for it."""

    enterprise: str
    filters: str  # "" for an unfiltered partition
    values: dict[str, float | None]


def _seconds(value: object) -> float | None:
    moment = parse_stamp(value)
    return moment.timestamp() if moment is not None else None


def _day_end(day: date | None) -> float | None:
    if day is None:
        return None
    midnight = datetime.combine(day + timedelta(days=1), time(), tzinfo=timezone.utc)
    return midnight.timestamp()


def _names(partition: dict[str, str]) -> tuple[str, str]:
    rest = dict(partition)
    enterprise = rest.pop("enterprise", "")
    return enterprise, ",".join(f"{key}={value}" for key, value in sorted(rest.items()))


def run_marks(
    state: State | None, this_run: RunMark | None, previous: Mapping[str, float]
) -> dict[str, float | None]:
    """When the partition last ran, how that ended, and the failures in a row. A run that
    saved no state (skipped, refused before it could: no token, the lock held) is recorded in
    the metrics file alone, so `previous` (its samples in the file this one replaces) wins
    when it is later than the last run the state recorded."""
    attempt = (state.last_attempt if state else None) or {}
    saved_at = _seconds(attempt.get("started_at"))
    success_at = _seconds(((state.last_run if state else None) or {}).get("started_at"))
    previous_run = previous.get("last_run_timestamp_seconds")
    # Failures since the last success: the state counts those that saved, the file also those
    # that could not (when it is newer than that success); each is a lower bound.
    saved_failures = float(state.failures_in_a_row()) if state else 0.0
    filed_failures = previous.get("consecutive_failures")
    since_success = previous_run is not None and previous_run > (success_at or 0.0)
    failures = max(saved_failures, filed_failures or 0.0) if since_success else saved_failures
    marks: dict[str, float | None] = {
        "last_run_timestamp_seconds": saved_at,
        "last_exit_code": _number(attempt.get("exit_code")),
        "consecutive_failures": failures if state or filed_failures is not None else None,
    }
    if previous_run is not None and (saved_at is None or previous_run > saved_at):
        marks["last_run_timestamp_seconds"] = previous_run
        marks["last_exit_code"] = previous.get("last_exit_code", marks["last_exit_code"])
    if this_run is None:
        return marks
    started = this_run.started.timestamp()
    saved_now = saved_at is not None and saved_at >= started
    if not this_run.exit_code:
        # A success saved itself; a skipped run changes no count.
        failures = 0.0 if saved_now else failures
    elif saved_now:
        # The state counted this run; the file, the failures before it that saved nothing.
        counted_by_file = (filed_failures or 0.0) + 1 if since_success else 0.0
        failures = max(saved_failures, counted_by_file)
    else:
        failures += 1  # failed without saving: counted here alone
    return {
        "last_run_timestamp_seconds": started,
        "last_exit_code": float(this_run.exit_code),
        "consecutive_failures": failures,
    }


def sample_of(state: State, this_run: RunMark | None, previous: Mapping[str, float]) -> Sample:
    """A partition's sample from its state, the file this one replaces, and this run when it
    touched the partition (skipped or not)."""
    enterprise, filters = _names(state.partition)
    attempt = state.last_attempt or {}
    success = state.last_run or {}
    values: dict[str, float | None] = {
        **run_marks(state, this_run, previous),
        "last_success_timestamp_seconds": _seconds(success.get("started_at")),
        "events_emitted": _number(attempt.get("events_emitted")),
        "requests": _number(attempt.get("requests")),
        "rate_limit_remaining": _number(attempt.get("rate_limit_remaining")),
        "closed_through_timestamp_seconds": _day_end(state.closed_through),
    }
    return Sample(enterprise, filters, values)


def _number(value: object) -> float | None:
    return float(value) if isinstance(value, int | float) and not isinstance(value, bool) else None


def _label(value: str) -> str:
    return value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")


def render(samples: list[Sample]) -> str:
    """The text format: # HELP and # TYPE per metric, then one line per partition (the first
    of any two with the same labels)."""
    unique: dict[tuple[str, str], Sample] = {}
    for sample in samples:
        unique.setdefault((sample.enterprise, sample.filters), sample)
    samples = list(unique.values())
    lines = []
    for name, help_text in METRICS:
        lines += [f"# HELP {PREFIX}{name} {help_text}", f"# TYPE {PREFIX}{name} gauge"]
        for sample in samples:
            value = sample.values.get(name)
            if value is None:
                continue
            labels = _labels(sample.enterprise, sample.filters)
            lines.append(f"{PREFIX}{name}{{{labels}}} {value:.17g}")
    return "\n".join(lines) + "\n"


def _labels(enterprise: str, filters: str) -> str:
    labels = f'enterprise="{_label(enterprise)}"'
    return labels + f',filters="{_label(filters)}"' if filters else labels


def samples_in(text: str) -> dict[str, dict[str, float]]:
    """The samples of a metrics file this module wrote: by label text, then metric name."""
    found: dict[str, dict[str, float]] = {}
    for line in text.split("\n"):  # not splitlines(): a label may hold \r or U+2028
        if line.startswith(PREFIX):
            name_and_labels, _, value = line.rpartition(" ")
            name, _, labels = name_and_labels.partition("{")
            with suppress(ValueError):
                found.setdefault(labels.removesuffix("}"), {})[name.removeprefix(PREFIX)] = float(
                    value
                )
    return found


def collect(
    state_dir: Path, this_run: Mapping[str, RunMark], previous: Mapping[str, dict[str, float]]
) -> list[Sample]:
    """Every poll partition of the state dir, and those this run failed before it had a
    state; `this_run` is keyed by state file name, `previous` as samples_in() gives them."""
    samples = []
    seen = set()
    unreadable = set()
    paths = sorted(state_dir.glob("*.json")) if state_dir.is_dir() else []
    for path in paths:
        if path.name.startswith(("backfill-", ".")):  # a record, or a temp file mid-rename
            continue
        try:
            raw = read_private(path, state_dir)
            if raw is None:
                continue
            state = parse_state(path, raw)
        except (AuditTrailError, OSError):
            unreadable.add(path.name)  # reported by its own run, not by the metrics
            continue
        labels = _labels(*_names(state.partition))
        samples.append(sample_of(state, this_run.get(path.name), previous.get(labels, {})))
        seen.add(path.name)
    # This run's partitions with no state to read: refused before they had one (77, 78), or
    # with a corrupt one, which keeps what the file knew (its last success: the alert's).
    for name, mark in sorted(this_run.items()):
        if name not in seen:
            enterprise, filters = _names(mark.partition)
            known = previous.get(_labels(enterprise, filters), {})
            values: dict[str, float | None] = {**known} if name in unreadable else {}
            samples.append(Sample(enterprise, filters, values | run_marks(None, mark, known)))
    return samples


def write_metrics(path: Path, text: str) -> None:
    """Replace `path` atomically (temp file + rename in its directory), world-readable as
    node_exporter's textfile collector needs."""
    tmp_name = None
    try:
        # Not *.prom: node_exporter reads every *.prom file, a half-written one included.
        fd, tmp_name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
        with os.fdopen(fd, "w", encoding="utf-8") as tmp:
            tmp.write(text)
        os.chmod(tmp_name, 0o644)
        os.replace(tmp_name, path)
        tmp_name = None
    except OSError as error:
        raise StateWriteError(f"cannot write metrics file {path}: {error.strerror}") from None
    finally:
        if tmp_name is not None:
            os.unlink(tmp_name)
