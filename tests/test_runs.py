"""The run record (pure) and the metrics as a projection of the state dir."""

from __future__ import annotations

from datetime import date, datetime, timedelta, timezone
from pathlib import Path

import pytest

from heroku_audit_trail.errors import MalformedDataError
from heroku_audit_trail.metrics import collect, render, sample_of
from heroku_audit_trail.runs import Attempt, RunRecord, after, parse_record, record_path, save
from heroku_audit_trail.state import LastRun, Partition, State, StateStore

T0 = datetime(2026, 12, 1, 12, 0, tzinfo=timezone.utc)
ACME = {"enterprise": "acme"}


def at(minutes: int) -> datetime:
    return T0 + timedelta(minutes=minutes)


def test_failures_count_any_exit_code_and_a_success_clears_them() -> None:
    record = None
    for minute, code in enumerate([77, 69, 75, 65]):
        record = after(record, ACME, Attempt(at(minute), code, requests=1))
    assert record is not None and record.failures_in_a_row == 4 and record.last_success is None
    record = after(record, ACME, Attempt(at(9), 0, requests=2, rate_limit_remaining=4400))
    assert record.failures_in_a_row == 0 and record.last_success == at(9)
    assert record.rate_limit_remaining == 4400


def test_a_skipped_run_moves_the_last_run_only() -> None:
    record = after(None, ACME, Attempt(at(0), 69, requests=1, rate_limit_remaining=4000))
    skipped = after(record, ACME, Attempt(at(1), 0, skipped=True))
    assert skipped.last.started == at(1) and skipped.failures_in_a_row == 1
    assert skipped.last_success is None and skipped.rate_limit_remaining == 4000
    refused = after(skipped, ACME, Attempt(at(2), 78))  # no token: no request, no answer
    assert refused.failures_in_a_row == 2 and refused.last_api_run == record.last
    assert refused.rate_limit_remaining == 4000  # the last one seen


def test_a_record_is_validated_in_one_place(tmp_path: Path) -> None:
    path = tmp_path / "runs-x.json"
    with pytest.raises(MalformedDataError):
        parse_record(path, b'{"version": 1, "partition": {}, "last": {"started_at": 3}}')
    with pytest.raises(MalformedDataError):
        parse_record(path, b"[]")


def test_the_metrics_are_a_projection_of_states_and_records(tmp_path: Path) -> None:
    """No previous metrics file is read: the same state dir gives the same file."""
    store = StateStore(tmp_path, Partition("acme"))
    store.ensure_dir()
    store.save(State(partition=Partition.from_dict(ACME), closed_through=date(2026, 11, 29)))
    record = after(None, ACME, Attempt(at(0), 0, events_emitted=5, requests=2))
    record = after(record, ACME, Attempt(at(5), 77, requests=1))
    save(record_path(tmp_path, Partition("acme")), record)
    # A partition that never had a state (a mistyped account, 78) still has its sample.
    typo = Partition("acmee")
    save(record_path(tmp_path, typo), after(None, typo.as_dict(), Attempt(at(6), 78)))
    first = render(collect(tmp_path))
    assert render(collect(tmp_path)) == first
    assert 'heroku_audit_trail_consecutive_failures{enterprise="acme"} 1\n' in first
    assert 'heroku_audit_trail_last_exit_code{enterprise="acmee"} 78\n' in first
    assert f'last_success_timestamp_seconds{{enterprise="acme"}} {at(0).timestamp():.17g}' in first
    assert 'last_success_timestamp_seconds{enterprise="acmee"}' not in first
    midnight = datetime(2026, 11, 30, tzinfo=timezone.utc).timestamp()
    assert f'closed_through_timestamp_seconds{{enterprise="acme"}} {midnight:.17g}' in first


def test_an_older_state_without_a_record_still_has_its_sample() -> None:
    state = State(partition=Partition("acme"), last_run=LastRun(T0, T0, 1, 3, 2, None))
    sample = sample_of(state, None)
    assert sample is not None and sample.values["last_success_timestamp_seconds"] == T0.timestamp()
    assert sample_of(None, None) is None
    only_record = sample_of(None, RunRecord(ACME, Attempt(at(1), 75)))
    assert only_record is not None and only_record.values["last_exit_code"] == 75


FIXTURES = Path(__file__).parent / "fixtures"


def test_a_state_written_by_an_older_version_loads_and_keeps_its_alerts(tmp_path: Path) -> None:
    """A state file as aa11732 wrote it (after a success, then a 69): it loads, and its
    sample says what that version's metrics said, until this version records a run."""
    raw = (FIXTURES / "state-written-by-aa11732.json").read_bytes()
    store = StateStore(tmp_path, Partition("acme"))
    store.ensure_dir()
    store.path.write_bytes(raw)
    store.path.chmod(0o600)
    state = store.load()
    assert state is not None and state.closed_through == date(2026, 12, 2)
    assert state.backoff is not None and state.backoff.failures == 1
    [sample] = collect(tmp_path)
    assert sample.values["last_exit_code"] == 69
    assert sample.values["consecutive_failures"] == 1
    assert sample.values["last_success_timestamp_seconds"] is not None
