"""The run: for each partition, read the open days, print what is new, commit day by day."""

from __future__ import annotations

import sys
import threading
import time
from collections.abc import Callable, Sequence
from contextlib import suppress
from dataclasses import dataclass, replace
from datetime import date, datetime, timedelta, timezone
from typing import TYPE_CHECKING, Any

from heroku_audit_trail.config import Settings
from heroku_audit_trail.cursor import DayState, Partition, State, StateStore
from heroku_audit_trail.days.ahead import ReadAhead
from heroku_audit_trail.days.engine import DayPass, RenderOptions, pass_over_day
from heroku_audit_trail.days.window import (
    advance_closed_through,
    days_to_read,
    first_closed_through,
    horizon,
    lookback_grew,
    may_close,
    reading_order,
    rewound,
)
from heroku_audit_trail.ecs import format_time
from heroku_audit_trail.errors import (
    EX_IOERR,
    EX_SIGINT,
    EX_SIGTERM,
    EX_SOFTWARE,
    ApiUnavailableError,
    AuditTrailError,
    ConfigError,
    LockHeldError,
    MalformedDataError,
    PermissionDeniedError,
    RateLimitedError,
    StateWriteError,
    StoppedError,
)
from heroku_audit_trail.logs import Log
from heroku_audit_trail.output import EventWriter, StopGuard
from heroku_audit_trail.runs import Attempt
from heroku_audit_trail.schedule import after_failure, skip_reason

if TYPE_CHECKING:  # requests costs a fifth of a second to import: not on the skip path
    from heroku_audit_trail.api import HerokuClient


def utc_now() -> datetime:
    return datetime.now(timezone.utc)


def due_enterprises(settings: Settings, now: datetime, log: Log) -> list[str]:
    """The partitions --min-interval and the failure backoff let run now; the others are
    skipped, and logged only for a person at a terminal."""
    due = []
    for enterprise in settings.enterprises:
        store = StateStore(settings.state_dir, Partition(enterprise, settings.filters))
        try:
            state = store.load()
        except AuditTrailError:
            state = None  # a corrupt or unreadable state is reported by its own partition's run
        reason = None
        if state is not None:
            started = (state.last_run or {}).get("started_at")
            reason = skip_reason(started, state.backoff, now, settings.min_interval)
        if reason is None:
            due.append(enterprise)
        elif sys.stderr is not None and sys.stderr.isatty():
            # Only for a person: under Fluent Bit's 1 s interval this would be a line a second.
            log.info(reason, enterprise=enterprise)
    return due


def each_partition(
    enterprises: Sequence[str],
    work: Callable[[str], None],
    log: Log,
    exit_codes: dict[str, int] | None = None,
) -> int:
    """Run `work` per enterprise; a failure of one does not stop the others. First failure
    wins. `exit_codes`, when given, gets each enterprise's own code."""
    first_failure = 0
    for enterprise in enterprises:
        try:
            work(enterprise)
            if exit_codes is not None:
                exit_codes[enterprise] = 0
        except AuditTrailError as error:
            if exit_codes is not None:
                exit_codes[enterprise] = error.exit_code
            # An overlapping run or a stop asked for needs nobody's action: not an error line
            # (a shipper may route those to alerting).
            tell = log.warning if isinstance(error, (LockHeldError, StoppedError)) else log.error
            tell(
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
class RunReport:
    """What one partition's run did: the summary line and `last_run` are built from it."""

    days_read: int = 0
    events_emitted: int = 0
    degraded: int = 0
    warnings: int = 0


MAX_WARNINGS_PER_RUN = 5  # a hostile page of a thousand bad events is not a thousand log lines
CLOCK_SKEW_WARNING = timedelta(minutes=5)  # the Date header has whole seconds; networks lag


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
        self.accounts_read: set[str | None] = set()  # by id: a name and an id may be one account
        self.attempts: dict[str, Attempt] = {}  # by enterprise: what each partition's run did
        self.clocks_compared = False

    def run(self, enterprises: Sequence[str], exit_codes: dict[str, int] | None = None) -> int:
        return each_partition(enterprises, self.poll_partition_named, self.log, exit_codes)

    def poll_partition_named(self, enterprise: str) -> None:
        self.poll_partition(Partition(enterprise, self.settings.filters))

    def poll_partition(self, partition: Partition) -> None:
        """One partition's run, under its lock; what it did is kept in `attempts`, for its
        run record (written by the command, whatever happened here)."""
        store = StateStore(self.settings.state_dir, partition)
        started_at = self.now()
        report = RunReport()
        requests_before = self.client.requests_made
        exit_code = EX_SOFTWARE  # until it ends otherwise
        try:
            store.ensure_dir()
            with store.lock():
                state = store.load() or State(partition=partition.as_dict())
                self._poll(store, state, report, started_at)
            exit_code = 0
        except AuditTrailError as error:
            exit_code = error.exit_code
            raise
        finally:
            requests = self.client.requests_made - requests_before
            self.attempts[partition.enterprise] = Attempt(
                started=started_at,
                exit_code=exit_code,
                events_emitted=report.events_emitted,
                requests=requests,
                rate_limit_remaining=self.client.rate_limit_remaining if requests else None,
            )

    def _poll(
        self, store: StateStore, state: State, report: RunReport, started_at: datetime
    ) -> None:
        clock_start = time.monotonic()
        requests_before = self.client.requests_made
        state.last_attempt = None  # an older version's: the run record holds it now
        try:
            self._read_days(store, state, report, started_at.date())
        except AuditTrailError as error:
            reached_api = self.client.requests_made > requests_before
            backs_off = backs_off_after(error, reached_api)
            if backs_off:
                # Remembered, so the next runs leave the API alone for a while (a run a
                # second under Fluent Bit would otherwise retry an outage every second).
                retry_after = self.client.last_retry_after
                state.backoff = after_failure(state.backoff, self.now(), retry_after)
                # Not saved for a failure before any answer, nor when saving is what failed.
                # The state in memory is what was last saved otherwise (a day's changes are
                # made and saved together).
                if not isinstance(error, StateWriteError):
                    # Critical: a deadline or signal now must not cut the record of this
                    # failure (its backoff) short; a stop it brings is not the error told.
                    with suppress(AuditTrailError), self.guard.critical():
                        store.save(state)
            if report.days_read or report.events_emitted:  # no summary of nothing
                self._summary(state, report, requests_before, clock_start)
            raise
        self._summary(state, report, requests_before, clock_start)
        remaining = self.client.rate_limit_remaining
        state.last_run = {
            "started_at": format_time(started_at),
            "finished_at": format_time(self.now()),
            "days_read": report.days_read,
            "events_emitted": report.events_emitted,
            "requests": self.client.requests_made - requests_before,
            "rate_limit_remaining": remaining,
        }
        state.backoff = None
        with self.guard.critical():
            store.save(state)

    def _summary(
        self, state: State, report: RunReport, requests_before: int, clock_start: float
    ) -> None:
        self.log.info(
            "poll summary",
            enterprise=partition_name(state),
            days_read=report.days_read,
            events_emitted=report.events_emitted,
            degraded_events=report.degraded or None,
            requests=self.client.requests_made - requests_before,
            duration_s=round(time.monotonic() - clock_start, 3),
            rate_limit_remaining=self.client.rate_limit_remaining,
            closed_through=state.closed_through.isoformat() if state.closed_through else None,
        )

    def trusted_today(self, today: date) -> date:
        """The earlier of our date and the server's (its Date header): days are closed by it,
        so a clock that runs ahead cannot close a day before it has ended everywhere."""
        server = self.client.server_time
        return min(today, server.date()) if server is not None else today

    def _read_days(self, store: StateStore, state: State, report: RunReport, today: date) -> None:
        lookback = self.settings.lookback_days
        if state.account is None:
            account = self.client.enterprise_account(partition_name(state))
            state.account = {"id": account["id"], "name": str(account.get("name", ""))}
        if state.closed_through is None:
            # After the account lookup the server's Date is known: a clock that runs ahead
            # must not put the first window in the future.
            state.closed_on = self.confirmed(self.trusted_today(today))
            state.closed_through = first_closed_through(self.trusted_today(today), lookback)
        if state.closed_through > horizon(today, lookback) and self.client.server_time is None:
            # The cursor is ahead of this host's window: before moving it back, ask Heroku
            # what day it is (the account, one request), as this host's clock may be behind.
            self.client.enterprise_account(state.account["id"])
        self._rewind_if_ahead(state, today)
        # Prove the state is writable before printing anything (a full or read-only disk).
        store.prove_writable(state)
        account_id = state.account["id"] if state.account else None
        if account_id in self.accounts_read:
            self.log.warning(
                f"--enterprise {partition_name(state)} is an account this run has read under "
                "another name or id: skipped, so its events are not printed twice",
                enterprise=partition_name(state),
            )
            return
        self.accounts_read.add(account_id)
        options = RenderOptions(
            self.settings.output_format, self.settings.include_original, format_time(self.now())
        )
        done: set[date] = set()
        while True:
            # Made again after each day: closing may have passed days in the list, and the
            # server's clock, known after the first answer, may show ours to be ahead: no
            # day after Heroku's today is read.
            trusted = self.trusted_today(today)
            days = reading_order(
                days_to_read(state.closed_through, trusted), state.open_days, trusted, lookback
            )
            pending = [day for day in days if day not in done]
            if not pending:
                return
            self.guard.check()
            done.add(pending[0])
            self._read_day(store, state, pending[0], today, options, report)
            self._warn_if_clocks_disagree(report)
            self._rewind_if_ahead(state, today)

    def _warn_if_clocks_disagree(self, report: RunReport) -> None:
        """Once a run, after an answer: a host clock far from Heroku's decides when days
        close (by the earlier date of the two), which an operator should hear of."""
        server = self.client.server_time
        if self.clocks_compared or server is None:
            return
        self.clocks_compared = True
        skew = self.now() - server
        if abs(skew) < CLOCK_SKEW_WARNING:
            return
        minutes = abs(skew).total_seconds() / 60
        side = "ahead of" if skew > timedelta() else "behind"
        self._warn(
            report,
            f"this host's clock is {minutes:.0f} min {side} "
            f"Heroku's (its Date header said {format_time(server)}): days are closed by the "
            "earlier of the two dates; set this host's clock right (NTP)",
            clock_skew_s=round(skew.total_seconds()),
        )

    def confirmed(self, day: date) -> date | None:
        """`day`, if Heroku's Date has confirmed this run's clock; else None."""
        return day if self.client.server_time is not None else None

    def _rewind_if_ahead(self, state: State, today: date) -> None:
        """A cursor ahead of today less the lookback (a clock that ran ahead with no Date to
        correct it, an edited state, a larger --lookback-days) is brought back with a warning,
        within the bound of `rewound`: a few duplicates, never a silent feed. Today is
        Heroku's, once its Date is known."""
        assert state.closed_through is not None
        server = self.client.server_time
        latest = server.date() if server is not None else today
        lookback = self.settings.lookback_days
        back = rewound(state.closed_through, latest, lookback, state.closed_on)
        if back == state.closed_through:
            return
        why = (
            "--lookback-days is larger than when those days were closed"
            if lookback_grew(state.closed_through, state.closed_on, latest)
            else "this host's clock was ahead before (or is behind now), the state was edited, "
            "or --lookback-days grew"
        )
        bounded = back > horizon(latest, lookback)
        self.log.warning(
            f"the state's closed_through {state.closed_through} is ahead of today "
            f"({latest} UTC) less the lookback: {why}; reading again from "
            f"{back + timedelta(days=1)}"
            + (" (a cursor is moved back no further than that in a run)" if bounded else "")
            + " (events printed before may be printed twice; event.id tells them apart)",
            enterprise=partition_name(state),
        )
        state.closed_through = back

    def _read_day(
        self,
        store: StateStore,
        state: State,
        day: date,
        today: date,
        options: RenderOptions,
        report: RunReport,
    ) -> None:
        """One day's pass, or what this run can read of it, through the day engine; its
        commit saves the day's state (DESIGN §5)."""
        assert state.account is not None
        lookback = self.settings.lookback_days
        day_state = state.open_days.get(day, DayState())
        other_days = [kept.seen for other, kept in state.open_days.items() if other != day]
        # No 304 closes a day: once outside the window it is read without If-None-Match.
        in_window = day > horizon(self.trusted_today(today), lookback)
        abandoned = threading.Event()
        pages = ReadAhead(
            self.client.day_pages(
                state.account["id"],
                day,
                self.settings.filters,
                etag=day_state.etag if in_window else None,
                start_range=day_state.next_range,
                pages_before=day_state.pass_pages if day_state.next_range else 0,
                abandoned=abandoned,
            ),
            abandoned,
        )

        def room_for(result: DayPass) -> None:
            new_ids = len(result.met) - len(day_state.seen & result.met)
            # A seen id takes its length and about a dozen bytes of JSON; 512 for the rest.
            store.prove_room(new_ids * (12 + max((len(k) for k in result.met), default=0)) + 512)

        def commit(result: DayPass) -> None:
            report.events_emitted += result.printed
            report.degraded += result.degraded
            report.days_read += result.reached_end and result.all_printed
            if day > self.trusted_today(today):
                return  # read before Heroku's Date showed it to be in the future: keep nothing
            state.open_days[day] = next_day_state(day_state, result)
            closed_before = state.closed_through
            trusted = self.trusted_today(today)
            close_old_days(state, trusted, lookback, self.confirmed(trusted))
            changed = state.open_days.get(day) != day_state
            if changed or state.closed_through != closed_before:
                store.save(state)  # a 304 day changes nothing: no rewrite of the file

        pass_over_day(
            day,
            pages,
            [day_state.seen, *other_days],
            options,
            self.writer,
            self.guard,
            commit,
            warn=lambda message, **fields: self._warn(report, message, **fields),
            pass_date=lambda: self.trusted_today(today),
            before_printing=room_for,
        )

    def _warn(self, report: RunReport, message: str, **fields: Any) -> None:
        report.warnings += 1
        if report.warnings <= MAX_WARNINGS_PER_RUN:
            self.log.warning(message, **fields)
        elif report.warnings == MAX_WARNINGS_PER_RUN + 1:
            self.log.warning("more warnings in this run are not shown; see the poll summary")


def partition_name(state: State) -> str:
    return state.partition["enterprise"]


def backs_off_after(error: AuditTrailError, reached_api: bool) -> bool:
    """Whether a failed run starts or continues the failure backoff (DESIGN §3): every
    failure found in the API's answers (65, 69, 75 from a rate limit, 77, 78), so a revoked
    token or a proxy answering HTML costs one request a backoff, not one a run. Not a failure
    found before any request, a deadline, a signal, a lock or this host's own disk."""
    answered = (MalformedDataError, ApiUnavailableError, PermissionDeniedError, ConfigError)
    return isinstance(error, RateLimitedError) or (reached_api and isinstance(error, answered))


def next_day_state(old: DayState, result: DayPass) -> DayState:
    """A day's state after a pass over it (pure). A pass cut short while printing keeps the
    ids printed and goes on next run from where it began; a pass that reached the day's end
    becomes the day's last full pass; one that stopped early goes on from its Next-Range."""
    if not result.all_printed:
        return replace(old, seen=old.seen | result.printed_keys, etag=None)
    seen = old.seen | result.met
    started = old.pass_started if old.next_range else result.started
    if result.reached_end:
        return DayState(seen, result.etag, None, None, started)
    pages = (old.pass_pages if old.next_range else 0) + result.pages
    return DayState(
        seen,
        None,
        result.next_range,
        started if result.next_range else None,
        old.full_pass_started,
        pages if result.next_range else 0,
    )


def close_old_days(state: State, today: date, lookback_days: int, confirmed: date | None) -> None:
    """Move closed_through over the days that a full pass, begun after they left the lookback
    window, has read; drop their seen sets. `confirmed`: today, when Heroku's Date agrees."""
    assert state.closed_through is not None
    closable = {
        day
        for day, day_state in state.open_days.items()
        if may_close(day, day_state.full_pass_started, lookback_days)
    }
    closed_through = advance_closed_through(state.closed_through, today, lookback_days, closable)
    if closed_through != state.closed_through:
        state.closed_through = closed_through
        state.closed_on = confirmed or state.closed_on
    for day in [day for day in state.open_days if day <= state.closed_through]:
        del state.open_days[day]
