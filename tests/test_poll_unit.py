"""The run's logic with a fake client: windows, commits per day, closing, failures."""

from __future__ import annotations

import io
from collections.abc import Iterator
from datetime import date, datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import orjson
import pytest

from heroku_audit_trail.commands.poll import due_enterprises, poll_each
from heroku_audit_trail.config import Settings
from heroku_audit_trail.errors import ApiUnavailableError, ConfigError
from heroku_audit_trail.heroku.api import Page
from heroku_audit_trail.logs import Log
from heroku_audit_trail.output import EventWriter, StopGuard
from heroku_audit_trail.poll import Poller
from heroku_audit_trail.schedule import Backoff, after_failure, skip_reason
from heroku_audit_trail.state import Partition, StateStore

NOW = datetime(2026, 11, 24, 12, 0, tzinfo=timezone.utc)
TODAY = NOW.date()


class FakeClient:
    """Stands in for HerokuClient: events per day, optional failure on one day."""

    def __init__(self, days: dict[date, list[dict[str, Any]]]) -> None:
        self.days = days
        self.fail_on: date | None = None
        self.fetched: list[date] = []
        self.requests_made = 0
        self.rate_limit_remaining: int | None = 4000
        self.server_time: datetime | None = None

    def enterprise_account(self, id_or_name: str, tally: Any = None) -> dict[str, Any]:
        if tally is not None:
            tally.count()
        if id_or_name == "unknown":
            raise ConfigError("Invalid Enterprise Account Name")
        return {"id": f"id-{id_or_name}", "name": id_or_name}

    def day_pages(
        self,
        account_id: str,
        day: date,
        filters: Any = (),
        etag: str | None = None,
        start_range: str | None = None,
        abandoned: Any = None,
        pages_before: int = 0,
        tally: Any = None,
    ) -> Iterator[Page]:
        self.requests_made += 1
        if tally is not None:
            tally.count()
        self.fetched.append(day)
        if day == self.fail_on:
            raise ApiUnavailableError("HTTP 503")
        events = self.days.get(day, [])
        tag = f'"{day}-{len(events)}"'
        if etag == tag:
            yield Page([], None, etag, not_modified=True)
        else:
            yield Page(list(events), None, tag)


def event(day: date, number: int) -> dict[str, Any]:
    return {
        "id": f"{day}-{number}",
        "type": "app",
        "action": "create",
        "created_at": f"{day}T{number:02d}:00:00Z",
    }


def settings(tmp_path: Path, *enterprises: str, lookback: int = 1) -> Settings:
    return Settings(
        enterprises=enterprises or ("acme",),
        api_url="https://api.heroku.com",
        state_dir=tmp_path,
        lookback_days=lookback,
        min_interval=0,
        filters=(),
        output_format="ecs",
        include_original=False,
        rate_limit_floor=0,
        max_runtime=None,
        token_file=None,
    )


def poll(
    tmp_path: Path, client: FakeClient, now: datetime = NOW, *enterprises: str
) -> tuple[int, list[str]]:
    out = io.BytesIO()
    poller = Poller(
        settings(tmp_path, *enterprises),
        client,  # type: ignore[arg-type]
        EventWriter(out, Log(stream=io.StringIO())),
        Log(stream=io.StringIO()),
        StopGuard(),
        now=lambda: now,
    )
    code = poll_each(poller, list(poller.settings.enterprises), poller.log, {})
    return code, [orjson.loads(line)["event"]["id"] for line in out.getvalue().splitlines()]


def test_window_commits_and_closing(tmp_path: Path) -> None:
    yesterday = TODAY - timedelta(days=1)
    client = FakeClient({yesterday: [event(yesterday, 1)], TODAY: [event(TODAY, 2)]})
    code, ids = poll(tmp_path, client)
    assert code == 0 and ids == [f"{yesterday}-1", f"{TODAY}-2"]
    state = StateStore(tmp_path, Partition("acme")).load()
    assert state is not None and state.closed_through == TODAY - timedelta(days=2)
    assert set(state.open_days) == {yesterday, TODAY}

    tomorrow = NOW + timedelta(days=1)
    client.days[TODAY].append(event(TODAY, 3))
    code, ids = poll(tmp_path, client, tomorrow)
    assert ids == [f"{TODAY}-3"]
    state = StateStore(tmp_path, Partition("acme")).load()
    assert state is not None and state.closed_through == yesterday
    assert set(state.open_days) == {TODAY, TODAY + timedelta(days=1)}


def test_failure_keeps_the_days_already_printed(tmp_path: Path) -> None:
    yesterday = TODAY - timedelta(days=1)
    client = FakeClient({yesterday: [event(yesterday, 1)], TODAY: [event(TODAY, 2)]})
    client.fail_on = TODAY
    code, ids = poll(tmp_path, client)
    assert code == 69 and ids == [f"{yesterday}-1"]
    client.fail_on = None
    code, ids = poll(tmp_path, client)
    assert code == 0 and ids == [f"{TODAY}-2"]


def test_one_failing_enterprise_does_not_stop_the_others(tmp_path: Path) -> None:
    client = FakeClient({TODAY: [event(TODAY, 1)]})
    code, ids = poll(tmp_path, client, NOW, "unknown", "acme")
    assert code == 78 and ids == [f"{TODAY}-1"]


def test_etag_makes_the_second_read_print_nothing(tmp_path: Path) -> None:
    client = FakeClient({TODAY: [event(TODAY, 1)]})
    poll(tmp_path, client)
    code, ids = poll(tmp_path, client)
    assert code == 0 and ids == []


@pytest.mark.parametrize(
    ("elapsed", "min_interval", "skips"),
    [(10, 60, True), (56, 60, False), (54, 60, True), (10, 0, False), (-30, 60, False)],
)
def test_skip_reason(elapsed: float, min_interval: float, skips: bool) -> None:
    started = NOW - timedelta(seconds=elapsed)
    assert (skip_reason(started, None, NOW, min_interval) is not None) is skips
    assert skip_reason(None, None, NOW, min_interval) is None


@pytest.mark.parametrize(
    ("failures", "ago", "retry_after", "skips"),
    [
        (1, 50, None, True),  # 60 s after one failure
        (1, 70, None, False),
        (3, 200, None, True),  # 240 s after three
        (3, 250, None, False),
        (10, 850, None, True),  # capped at 900 s
        (10, 950, None, False),
        (1, 70, 600, True),  # a Retry-After later than the backoff wins
        (1, 610, 600, False),
    ],
)
def test_failure_backoff(failures: int, ago: float, retry_after: float | None, skips: bool) -> None:
    failed_at = NOW - timedelta(seconds=ago)
    backoff = Backoff(failures, failed_at, None)
    if retry_after:
        backoff = after_failure(None, failed_at, retry_after)
    just_now = NOW - timedelta(seconds=1)
    assert (skip_reason(just_now, backoff, NOW, 60) is not None) is skips
    assert skip_reason(just_now, backoff, NOW, 0) is None  # 0 turns both guards off
    assert Backoff.from_json(backoff.to_json()) == backoff


def test_a_corrupt_state_fails_only_its_own_partition(tmp_path: Path) -> None:
    StateStore(tmp_path, Partition("broken")).path.write_bytes(b"{not json")
    client = FakeClient({TODAY: [event(TODAY, 1)]})
    out = io.BytesIO()
    enterprise_settings = settings(tmp_path, "broken", "acme")
    poller = Poller(
        enterprise_settings,
        client,  # type: ignore[arg-type]
        EventWriter(out, Log(stream=io.StringIO())),
        Log(stream=io.StringIO()),
        StopGuard(),
        now=lambda: NOW,
    )
    due = due_enterprises(enterprise_settings, NOW, Log(stream=io.StringIO()))
    assert due == ["broken", "acme"]
    assert poll_each(poller, due, poller.log, {}) == 65
    assert [orjson.loads(line)["event"]["id"] for line in out.getvalue().splitlines()] == [
        f"{TODAY}-1"
    ]


def test_backoff_survives_absurd_values() -> None:
    just_now = NOW - timedelta(seconds=1)
    weeks = Backoff(1025, NOW - timedelta(seconds=100), None)  # 11 days of failures
    assert skip_reason(just_now, weeks, NOW, 60) is not None  # capped at 900 s, no overflow
    assert skip_reason(just_now, weeks, NOW + timedelta(seconds=901), 60) is None
    huge = after_failure(None, NOW, 1e12)  # a Retry-After of 30,000 years: an hour at most
    assert skip_reason(just_now, huge, NOW + timedelta(hours=1, seconds=1), 60) is None
    ahead = Backoff(1, NOW + timedelta(days=2), None)  # failed while the clock was ahead
    assert skip_reason(just_now, ahead, NOW, 60) is None


def test_a_deadline_striking_while_a_failure_is_saved_keeps_the_record(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The run's deadline (SIGALRM) can land while the failed run saves its backoff: the save
    must finish (the deadline then stops the run), not be cut short with the record lost."""
    yesterday = TODAY - timedelta(days=1)
    client = FakeClient({yesterday: [event(yesterday, 1)], TODAY: [event(TODAY, 2)]})
    assert poll(tmp_path, client)[0] == 0
    client.fail_on = TODAY
    guard = StopGuard()
    real_save = StateStore.save

    def save_as_the_alarm_strikes(store: StateStore, state: Any) -> None:
        if state.backoff is not None:
            guard._alarm(14, None)  # what the SIGALRM handler does at --max-runtime
        real_save(store, state)

    monkeypatch.setattr(StateStore, "save", save_as_the_alarm_strikes)
    poller = Poller(
        settings(tmp_path),
        client,  # type: ignore[arg-type]
        EventWriter(io.BytesIO(), Log(stream=io.StringIO())),
        Log(stream=io.StringIO()),
        guard,
        now=lambda: NOW,
    )
    assert poll_each(poller, list(poller.settings.enterprises), poller.log, {}) == 69
    state = StateStore(tmp_path, Partition("acme")).load()
    assert state is not None and state.backoff is not None and state.backoff.failures == 1
