"""The run: for each partition, read the open days, print what is new, commit day by day."""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import date, datetime, timezone
from typing import TYPE_CHECKING

from heroku_audit_trail.config import Settings
from heroku_audit_trail.cursor import DayState, Partition, State, StateStore
from heroku_audit_trail.ecs import event_key, format_time
from heroku_audit_trail.errors import EX_IOERR, EX_SIGINT, EX_SIGTERM, AuditTrailError
from heroku_audit_trail.logs import Log
from heroku_audit_trail.output import EventWriter, StopGuard, render
from heroku_audit_trail.window import (
    advance_closed_through,
    days_to_read,
    first_closed_through,
    new_events,
)

if TYPE_CHECKING:  # requests costs a fifth of a second to import: not on the skip path
    from heroku_audit_trail.api import HerokuClient

MIN_INTERVAL_SLACK = 5.0  # seconds of scheduler jitter forgiven by --min-interval


def utc_now() -> datetime:
    return datetime.now(timezone.utc)


def skip_reason(state: State | None, now: datetime, min_interval: float) -> str | None:
    """Why this run should not call the API yet, or None. Pure."""
    if state is None or not state.last_run or min_interval <= 0:
        return None
    started = state.last_run.get("started_at")
    try:
        last_start = datetime.fromisoformat(str(started).replace("Z", "+00:00"))
    except ValueError:
        return None
    elapsed = (now - last_start).total_seconds()
    if 0 <= elapsed < min_interval - MIN_INTERVAL_SLACK:
        return (
            f"skipped: the last successful run started {elapsed:.0f} s ago, "
            f"less than --min-interval {min_interval:.0f} s"
        )
    return None


def due_enterprises(settings: Settings, now: datetime, log: Log) -> list[str]:
    """The partitions --min-interval lets run now; the others are logged and skipped."""
    due = []
    for enterprise in settings.enterprises:
        store = StateStore(settings.state_dir, Partition(enterprise, settings.filters))
        try:
            reason = skip_reason(store.load(), now, settings.min_interval)
        except AuditTrailError:
            reason = None  # a corrupt or unreadable state is reported by its own partition's run
        if reason is None:
            due.append(enterprise)
        elif log.log_format == "text":
            # Only for a person: under Fluent Bit's 1 s interval this would be a line a second.
            log.info(reason, enterprise=enterprise)
    return due


def each_partition(enterprises: Sequence[str], work: Callable[[str], None], log: Log) -> int:
    """Run `work` per enterprise; a failure of one does not stop the others. First failure wins."""
    first_failure = 0
    for enterprise in enterprises:
        try:
            work(enterprise)
        except AuditTrailError as error:
            log.error(
                str(error),
                enterprise=enterprise,
                exit_code=error.exit_code,
                request_id=error.request_id,
            )
            first_failure = first_failure or error.exit_code
            if error.exit_code in (EX_IOERR, EX_SIGINT, EX_SIGTERM):
                break  # no reader left, or told to stop: nothing more can be delivered
    return first_failure


@dataclass
class RunStats:
    days_read: int = 0
    events_emitted: int = 0


class Poller:
    def __init__(
        self,
        settings: Settings,
        client: HerokuClient,
        writer: EventWriter,
        log: Log,
        guard: StopGuard,
        now: Callable[[], datetime] = utc_now,
    ) -> None:
        self.settings = settings
        self.client = client
        self.writer = writer
        self.log = log
        self.guard = guard
        self.now = now

    def run(self, enterprises: Sequence[str]) -> int:
        return each_partition(enterprises, self.poll_partition_named, self.log)

    def poll_partition_named(self, enterprise: str) -> None:
        self.poll_partition(Partition(enterprise, self.settings.filters))

    def poll_partition(self, partition: Partition) -> None:
        store = StateStore(self.settings.state_dir, partition)
        started_at = self.now()
        store.ensure_dir()
        with store.lock():
            state = store.load() or State(partition=partition.as_dict())
            stats = RunStats()
            clock_start = time.monotonic()
            requests_before = self.client.requests_made
            try:
                self._read_days(store, state, stats, started_at)
            finally:
                self.log.info(
                    "poll summary",
                    enterprise=partition.enterprise,
                    days_read=stats.days_read,
                    events_emitted=stats.events_emitted,
                    requests=self.client.requests_made - requests_before,
                    duration_s=round(time.monotonic() - clock_start, 3),
                    rate_limit_remaining=self.client.rate_limit_remaining,
                    closed_through=state.closed_through.isoformat()
                    if state.closed_through
                    else None,
                )
            state.last_run = {
                "started_at": format_time(started_at),
                "finished_at": format_time(self.now()),
                "days_read": stats.days_read,
                "events_emitted": stats.events_emitted,
                "requests": self.client.requests_made - requests_before,
                "rate_limit_remaining": self.client.rate_limit_remaining,
            }
            store.save(state)

    def _read_days(
        self, store: StateStore, state: State, stats: RunStats, started_at: datetime
    ) -> None:
        settings = self.settings
        today = started_at.date()
        if state.account is None:
            account = self.client.enterprise_account(partition_name(state))
            state.account = {"id": account["id"], "name": str(account.get("name", ""))}
        if state.closed_through is None:
            state.closed_through = first_closed_through(today, settings.lookback_days)
        # Prove the state is writable before printing anything (a full or read-only disk).
        store.save(state)
        read_at = format_time(self.now())
        for day in days_to_read(state.closed_through, today):
            self.guard.check()
            day_state = state.open_days.get(day, DayState())
            fetch = self.client.fetch_day(
                state.account["id"], day, settings.filters, day_state.etag
            )
            fresh = [] if fetch.not_modified else new_events(fetch.events, day_state.seen)
            lines = (
                render(event, settings.output_format, read_at, settings.include_original)
                for event in fresh
            )
            with self.guard.critical():
                printed = self.writer.write(lines)
                state.open_days[day] = DayState(
                    day_state.seen | {event_key(event) for event in fetch.events},
                    fetch.etag,
                )
                close_old_days(state, today, settings.lookback_days)
                store.save(state)
            stats.days_read += 1
            stats.events_emitted += printed


def partition_name(state: State) -> str:
    return state.partition["enterprise"]


def close_old_days(state: State, today: date, lookback_days: int) -> None:
    """Move closed_through over fully read days that left the window; drop their seen sets."""
    assert state.closed_through is not None
    state.closed_through = advance_closed_through(
        state.closed_through, today, lookback_days, state.open_days
    )
    for day in [day for day in state.open_days if day <= state.closed_through]:
        del state.open_days[day]
