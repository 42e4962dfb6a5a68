"""`--metrics-file`: Prometheus text format for node_exporter's textfile collector (DESIGN §10).

After every poll, skipped ones included, the file is replaced atomically with one sample per
partition of the state dir (not only the ones this run touched), built from the state files
and this run's exit codes. The rendering is pure; only `write_metrics` does I/O.
"""

from __future__ import annotations

import os
import tempfile
from dataclasses import dataclass
from datetime import date, datetime, time, timedelta, timezone
from pathlib import Path

from heroku_audit_trail.errors import AuditTrailError, StateWriteError
from heroku_audit_trail.runs import PREFIX as RUNS_PREFIX
from heroku_audit_trail.runs import RunRecord, parse_record
from heroku_audit_trail.schedule import parse_stamp
from heroku_audit_trail.state import State, parse_state
from heroku_audit_trail.statedir import read_private, regular_files

PREFIX = "heroku_audit_trail_"
METRICS: tuple[tuple[str, str], ...] = (
    ("last_run_timestamp_seconds", "Start of the last run, skipped ones included."),
    ("last_success_timestamp_seconds", "Start of the last successful run that called the API."),
    ("last_exit_code", "Exit code of the last run for this partition."),
    (
        "events_emitted",
        "Events printed by the last run that called the API (a gauge: for a rate, "
        "rate(heroku_audit_trail_events_emitted_total[1h])).",
    ),
    ("events_emitted_total", "Events printed by all runs recorded for this partition."),
    ("requests", "API requests made by the last run that called the API."),
    ("rate_limit_remaining", "The last RateLimit-Remaining seen: of a run's answers, the lowest."),
    ("closed_through_timestamp_seconds", "Midnight UTC after the last closed day."),
    ("consecutive_failures", "Failed runs in a row (0 after a success)."),
)


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


def _count(value: int | None) -> float | None:
    return None if value is None else float(value)


def sample_of(state: State | None, record: RunRecord | None) -> Sample | None:
    """A partition's sample (pure): the runs from its run record, the cursor from its state;
    a state an older version wrote, with no record yet, from the state alone. None when
    neither is there."""
    if record is not None:
        api_run = record.last_api_run
        success = record.last_success
        if success is None and state is not None:  # a record begun after an older version's
            success = state.last_success
        values: dict[str, float | None] = {
            "last_run_timestamp_seconds": record.last.started.timestamp(),
            "last_success_timestamp_seconds": success.timestamp() if success else None,
            "last_exit_code": float(record.last.exit_code),
            "events_emitted": _count(api_run.events_emitted) if api_run else None,
            "requests": _count(api_run.requests) if api_run else None,
            "rate_limit_remaining": _count(record.rate_limit_remaining),
            "consecutive_failures": float(record.failures_in_a_row),
            "events_emitted_total": float(record.events_total),
        }
        partition = record.partition
    elif state is not None:
        # An older version's state, no run record yet: its last attempt, else its last success.
        attempt = state.last_attempt or (state.last_run.to_json() if state.last_run else {})
        success = state.last_success
        values = {
            "last_run_timestamp_seconds": _seconds(attempt.get("started_at")),
            "last_success_timestamp_seconds": success.timestamp() if success else None,
            "last_exit_code": _number(attempt.get("exit_code", 0)),
            "events_emitted": _number(attempt.get("events_emitted")),
            "requests": _number(attempt.get("requests")),
            "rate_limit_remaining": _number(attempt.get("rate_limit_remaining")),
            "consecutive_failures": _number(attempt.get("failures_in_a_row", 0)),
        }
        partition = state.partition.as_dict()
    else:
        return None
    values["closed_through_timestamp_seconds"] = (
        _day_end(state.closed_through) if state is not None else None
    )
    return Sample(*_names(partition), values)


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
        kind = "counter" if name.endswith("_total") else "gauge"
        lines += [f"# HELP {PREFIX}{name} {help_text}", f"# TYPE {PREFIX}{name} {kind}"]
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


def collect(state_dir: Path) -> list[Sample]:
    """Every poll partition of the state dir: its state file and its run record, joined by
    the state file's name. A file that cannot be read is left out of what it would give (a
    corrupt state keeps its runs, and so the alert on its last success)."""
    states: dict[str, State] = {}
    records: dict[str, RunRecord] = {}
    for path in regular_files(state_dir, "*.json"):
        name = path.name
        if name.startswith(("backfill-", ".")):  # a record, or a temp file mid-rename
            continue
        try:
            raw = read_private(path, state_dir)
            if raw is None:
                continue
            if name.startswith(RUNS_PREFIX):
                records[name.removeprefix(RUNS_PREFIX)] = parse_record(path, raw)
            else:
                states[name] = parse_state(path, raw)
        except (AuditTrailError, OSError):
            continue  # reported by its own partition's run, not by the metrics
    samples = []
    for name in sorted(states.keys() | records.keys()):
        sample = sample_of(states.get(name), records.get(name))
        if sample is not None:
            samples.append(sample)
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
