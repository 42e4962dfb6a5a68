"""A partition's part of a run: opened (locked, loaded, proven writable) before any is read,
its account looked up side by side with the others' on a first run, then polled in its turn
(poll.Poller)."""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import ExitStack
from dataclasses import dataclass, field
from datetime import date, datetime, timezone
from pathlib import Path
from threading import Semaphore
from typing import TYPE_CHECKING, Any

from heroku_audit_trail.days.ahead import ReadAhead
from heroku_audit_trail.errors import AuditTrailError, DeadlineError, StoppedError
from heroku_audit_trail.logs import Log
from heroku_audit_trail.runs import Tally
from heroku_audit_trail.state import Account, Partition, State, StateStore

if TYPE_CHECKING:  # requests costs a fifth of a second to import: not on the skip path
    from heroku_audit_trail.heroku.api import HerokuClient


@dataclass
class RunReport:
    """What one partition's run did: the summary line and `last_run` are built from it."""

    days_read: int = 0
    events_emitted: int = 0
    degraded: int = 0
    warnings: int = 0


MAX_WARNINGS_PER_RUN = 5  # a hostile page of a thousand bad events is not a thousand log lines


@dataclass
class PartitionRun:
    """One partition's part of a run: opened (locked, loaded) before any partition is read,
    so the pages of several can be fetched side by side, then read in its turn."""

    partition: Partition
    store: StateStore
    started_at: datetime
    report: RunReport = field(default_factory=RunReport)
    tally: Tally = field(default_factory=Tally)  # its requests, whichever thread sent them
    state: State | None = None
    failure: AuditTrailError | None = None  # met before its turn: told in its turn
    done: set[date] = field(default_factory=set)

    def warn(self, log: Log, message: str, **fields: Any) -> None:
        """A warning of this partition's run: the first few told, the rest counted."""
        self.report.warnings += 1
        if self.report.warnings <= MAX_WARNINGS_PER_RUN:
            log.warning(message, **fields)
        elif self.report.warnings == MAX_WARNINGS_PER_RUN + 1:
            log.warning("more warnings in this run are not shown; see the poll summary")

    def summary(self, log: Log, state: State, clock_start: float) -> None:
        report = self.report
        log.info(
            "poll summary",
            enterprise=self.partition.enterprise,
            days_read=report.days_read,
            events_emitted=report.events_emitted,
            degraded_events=report.degraded or None,
            requests=self.tally.requests,
            duration_s=round(time.monotonic() - clock_start, 3),
            rate_limit_remaining=self.tally.rate_limit_remaining,
            closed_through=state.closed_through.isoformat() if state.closed_through else None,
        )

    @property
    def key(self) -> str:
        """Its days' key in the fetcher: one partition per enterprise in a run."""
        return self.partition.enterprise


def open_partition(
    partition: Partition, state_dir: Path, held: ExitStack, now: datetime
) -> PartitionRun:
    """The partition locked, its state loaded and proven writable; a failure is kept for its
    turn. Before any request: a state that cannot be saved (a full or read-only disk) costs
    no request, run after run (exit 73 starts no backoff)."""
    run = PartitionRun(partition, StateStore(state_dir, partition), now)
    try:
        run.store.ensure_dir()
        held.enter_context(run.store.lock())
        run.state = run.store.load() or State(partition=partition)
        run.store.prove_writable(run.state)
    except AuditTrailError as error:
        run.failure = error
    return run


def look_up_accounts(runs: list[PartitionRun], client: HerokuClient, slots: Semaphore) -> None:
    """First runs: every account not known yet looked up side by side (Heroku's Date comes
    with the answers). Daemon threads: a deadline or a signal in the main thread is never
    held up by a lookup that hangs; told to stop, no more waiting on lookups, and each
    partition not yet looked up ends with it, in its turn."""

    def account_of(run: PartitionRun) -> Iterator[dict[str, Any]]:
        yield client.enterprise_account(run.partition.enterprise, run.tally)

    first = [
        run
        for run in runs
        if run.state is not None and run.state.account is None and run.failure is None
    ]
    lookups = [(run, ReadAhead(account_of(run), slots=slots).start()) for run in first]
    for at, (run, lookup) in enumerate(lookups):
        try:
            account = next(lookup)
        except (StoppedError, DeadlineError) as stop:
            for waiting, unanswered in lookups[at:]:
                waiting.failure = stop
                unanswered.close()
            break
        except AuditTrailError as error:
            run.failure = error
            continue
        assert run.state is not None
        run.state.account = Account(account["id"], str(account.get("name", "")))


def last_success(run: PartitionRun) -> datetime:
    """When a partition's last successful run started (the epoch for never, or unknown)."""
    success = run.state.last_success if run.state else None
    return success or datetime.fromtimestamp(0, timezone.utc)
