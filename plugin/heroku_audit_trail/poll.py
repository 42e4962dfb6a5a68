"""The run: for each partition, read the open days, print what is new, commit day by day."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import ExitStack, contextmanager, suppress
from datetime import date, datetime
from typing import TYPE_CHECKING

from heroku_audit_trail.config import Settings
from heroku_audit_trail.days.ahead import ReadAhead
from heroku_audit_trail.days.clock import Clocks, confirmed_days
from heroku_audit_trail.days.engine import DayPass, RenderOptions, pass_over_day
from heroku_audit_trail.days.fetch import DayFetcher, DayRequest, day_request
from heroku_audit_trail.days.window import (
    days_to_read,
    first_closed_through,
    horizon,
    reading_order,
)
from heroku_audit_trail.ecs import format_time
from heroku_audit_trail.errors import (
    EX_SOFTWARE,
    AuditTrailError,
    StateWriteError,
)
from heroku_audit_trail.logs import Log
from heroku_audit_trail.output import EventWriter, StopGuard
from heroku_audit_trail.partitions import (
    PartitionRun,
    last_success,
    look_up_accounts,
    open_partition,
)
from heroku_audit_trail.runs import Attempt
from heroku_audit_trail.schedule import after_failure, backs_off_after, utc_now
from heroku_audit_trail.state import (
    DayState,
    LastRun,
    Partition,
    State,
    close_old_days,
    next_day_state,
)

if TYPE_CHECKING:  # requests costs a fifth of a second to import: not on the skip path
    from heroku_audit_trail.heroku.api import HerokuClient, Page


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
        self.clocks = Clocks(now, lambda: client.server_time)
        self.fetcher = DayFetcher(client, settings.filters, settings.concurrency)
        self.runs: list[PartitionRun] = []
        self.today = now().date()

    @contextmanager
    def opened(self, enterprises: Sequence[str]) -> Iterator[list[str]]:
        """Every partition locked and loaded, first accounts looked up and first days fetched
        ahead; yields the order to poll them in (the one that succeeded longest ago first: a
        run that cannot read every account before its deadline moves each on in turn)."""
        today = self.today = self.now().date()  # one date for the whole run
        with ExitStack() as held:
            self.runs = [
                open_partition(
                    Partition(enterprise, self.settings.filters),
                    self.settings.state_dir,
                    held,
                    self.now(),
                )
                for enterprise in enterprises
            ]
            self.runs.sort(key=last_success)
            try:
                look_up_accounts(self.runs, self.client, self.fetcher.slots)
                self._first_windows(today)
                self._fetch_ahead(today)
                yield [run.partition.enterprise for run in self.runs]
            finally:
                self.fetcher.close()

    def poll_partition(self, enterprise: str) -> None:
        """One partition's turn (opened); what it did is kept in `attempts`, for its run
        record (written by the command, whatever happened here)."""
        run = next(run for run in self.runs if run.partition.enterprise == enterprise)
        exit_code = EX_SOFTWARE  # until it ends otherwise
        try:
            if run.state is None:
                assert run.failure is not None
                raise run.failure
            self._poll_state(run, run.state, self.today)
            exit_code = 0
        except AuditTrailError as error:
            exit_code = error.exit_code
            raise
        finally:
            requests = run.tally.requests
            self.attempts[run.partition.enterprise] = Attempt(
                started=run.started_at,
                exit_code=exit_code,
                events_emitted=run.report.events_emitted,
                requests=requests,
                rate_limit_remaining=run.tally.rate_limit_remaining,
            )
            self.fetcher.close(run.key)

    def _first_windows(self, today: date) -> None:
        """Each first window, set after the account lookups: Heroku's Date is known then, so
        a clock that runs ahead does not put it in the future."""
        for run in self.runs:
            state = run.state
            if state is not None and state.account is not None and state.closed_through is None:
                trusted = self.clocks.trusted_today(today)
                state.closed_on = self.clocks.confirmed(trusted)
                state.closed_through = first_closed_through(trusted, self.settings.lookback_days)

    def _poll_state(self, run: PartitionRun, state: State, today: date) -> None:
        clock_start = time.monotonic()
        store, report = run.store, run.report
        state.last_attempt = None  # an older version's: the run record holds it now
        try:
            if run.failure is not None:
                raise run.failure  # the account lookup's
            self._read_days(run, state, today)
        except AuditTrailError as error:
            if backs_off_after(error, reached_api=run.tally.requests > 0):
                # Remembered, so the next runs leave the API alone for a while (a run a
                # second under Fluent Bit would otherwise retry an outage every second).
                state.backoff = after_failure(state.backoff, self.now(), run.tally.retry_after)
                # Not saved when saving is what failed. The state in memory is what was last
                # saved otherwise (a day's changes are made and saved together).
                if not isinstance(error, StateWriteError):
                    # Critical: a deadline or signal now must not cut the record of this
                    # failure (its backoff) short; a stop it brings is not the error told.
                    with suppress(AuditTrailError), self.guard.critical():
                        store.save(state)
            if report.days_read or report.events_emitted:  # no summary of nothing
                run.summary(self.log, state, clock_start)
            raise
        run.summary(self.log, state, clock_start)
        state.last_run = LastRun(
            started_at=run.started_at,
            finished_at=self.now(),
            days_read=report.days_read,
            events_emitted=report.events_emitted,
            requests=run.tally.requests,
            rate_limit_remaining=run.tally.rate_limit_remaining,
        )
        state.backoff = None
        with self.guard.critical():
            store.save(state)

    def pending_days(self, run: PartitionRun, state: State, today: date) -> list[date]:
        """The days `run` has still to read, in reading order: made again after each day, as
        closing may have passed days in the list, and Heroku's Date, known after an answer,
        may show this host's clock to be ahead (no day after Heroku's today is read)."""
        if state.closed_through is None or state.account is None:
            return []
        trusted = self.clocks.trusted_today(today)
        days = reading_order(
            days_to_read(state.closed_through, trusted),
            state.open_days,
            trusted,
            self.settings.lookback_days,
        )
        return [day for day in days if day not in run.done]

    def _read_days(self, run: PartitionRun, state: State, today: date) -> None:
        lookback = self.settings.lookback_days
        assert state.account is not None and state.closed_through is not None
        if state.closed_through > horizon(today, lookback) and not self.clocks.known:
            # The cursor is ahead of this host's window: before moving it back, ask Heroku
            # what day it is (the account, one request), as this host's clock may be behind.
            with self.fetcher.slots:
                self.client.enterprise_account(state.account.id, run.tally)
        self._rewind_if_ahead(state, today)
        # Proven writable when the partition was opened; proven again now because this also
        # saves what changed since (a first run's account and window, a rewind), so a run cut
        # by its deadline before its first day does not look the account up again next run.
        run.store.prove_writable(state)
        account_id = state.account.id
        if account_id in self.accounts_read:
            self.log.warning(
                f"--enterprise {state.partition.enterprise} is an account this run has read under "
                "another name or id: skipped, so its events are not printed twice",
                enterprise=state.partition.enterprise,
            )
            return
        self.accounts_read.add(account_id)
        options = RenderOptions(
            self.settings.output_format, self.settings.include_original, format_time(self.now())
        )
        while True:
            # Heroku's Date may have come with any answer, days fetched ahead included.
            self._warn_if_clocks_disagree(run)
            self._rewind_if_ahead(state, today)
            pending = self.pending_days(run, state, today)
            if not pending:
                return
            self.guard.check()
            day = pending[0]
            run.done.add(day)
            request = self._request(state, day, today)
            pages = self.fetcher.pages(run.key, account_id, day, request, run.tally)
            self._fetch_ahead(today)  # the next days (and accounts) while this one is read
            self._read_day(run, state, day, today, options, pages)

    def _request(self, state: State, day: date, today: date) -> DayRequest:
        trusted = self.clocks.trusted_today(today)
        return day_request(state.open_days.get(day), day, trusted, self.settings.lookback_days)

    def _fetch_ahead(self, today: date) -> None:
        """Start fetching the days to be read next, in the order they will be read, this
        partition's and the next ones', up to the fetcher's limit of days not yet read."""
        accounts = set(self.accounts_read)
        unconfirmed = False  # a partition whose days no Date confirmed has its one day
        for run in self.runs:
            state = run.state
            if state is None or state.account is None or run.failure is not None:
                continue
            pending = self.pending_days(run, state, today)
            if run.done and not pending:
                continue  # its turn is over
            if state.account.id in accounts and not run.done:
                continue  # read under another name: it will be skipped
            accounts.add(state.account.id)
            if not self.clocks.known:
                # Until Heroku's Date is known, no day after the one it last confirmed (a
                # clock that runs ahead would ask for days after Heroku's today), and else
                # one day of one partition.
                confirmed = confirmed_days(pending, state.closed_on)
                if not confirmed and not unconfirmed:
                    unconfirmed = True
                    confirmed = pending[:1]
                pending = confirmed
            for day in pending:
                if self.fetcher.full:
                    return
                if not self.fetcher.waiting(run.key, day):
                    request = self._request(state, day, today)
                    self.fetcher.start(run.key, state.account.id, day, request, run.tally)

    def _warn_if_clocks_disagree(self, run: PartitionRun) -> None:
        told = self.clocks.skew_warning()
        if told is not None:
            run.warn(self.log, told[0], clock_skew_s=told[1])

    def _rewind_if_ahead(self, state: State, today: date) -> None:
        assert state.closed_through is not None
        lookback = self.settings.lookback_days
        back = self.clocks.rewind(state.closed_through, state.closed_on, today, lookback)
        if back is not None:
            self.log.warning(back.warning, enterprise=state.partition.enterprise)
            state.closed_through = back.closed_through

    def _read_day(
        self,
        run: PartitionRun,
        state: State,
        day: date,
        today: date,
        options: RenderOptions,
        pages: ReadAhead[Page],
    ) -> None:
        """One day's pass, or what this run can read of it, through the day engine; its
        commit saves the day's state (DESIGN §5)."""
        store, report = run.store, run.report
        lookback = self.settings.lookback_days
        day_state = state.open_days.get(day, DayState())
        other_days = [kept.seen for other, kept in state.open_days.items() if other != day]

        def room_for(result: DayPass) -> None:
            new_ids = len(result.met) - len(day_state.seen & result.met)
            # A seen id takes its length and about a dozen bytes of JSON; 512 for the rest.
            store.prove_room(new_ids * (12 + max((len(k) for k in result.met), default=0)) + 512)

        def commit(result: DayPass) -> None:
            report.events_emitted += result.printed
            report.degraded += result.degraded
            report.days_read += result.reached_end and result.all_printed
            if day > self.clocks.trusted_today(today):
                return  # read before Heroku's Date showed it to be in the future: keep nothing
            state.open_days[day] = next_day_state(day_state, result)
            closed_before = state.closed_through
            trusted = self.clocks.trusted_today(today)
            close_old_days(state, trusted, lookback, self.clocks.confirmed(trusted))
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
            warn=lambda message, **fields: run.warn(self.log, message, **fields),
            pass_date=lambda: self.clocks.trusted_today(today),
            before_printing=room_for,
        )
