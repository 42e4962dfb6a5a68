"""`poll`: what a shipper's exec input runs. The partitions due, each polled in its turn (the
first failure is the exit code), then each one's run record and the metrics file."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Mapping
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING

from heroku_audit_trail.commands import each_partition, options
from heroku_audit_trail.commands.settings import (
    arm_deadline,
    command_settings,
    make_client,
    read_token,
)
from heroku_audit_trail.config import Settings
from heroku_audit_trail.errors import EX_SOFTWARE, AuditTrailError
from heroku_audit_trail.logs import Log
from heroku_audit_trail.output import EventWriter, StopGuard, stdout_binary
from heroku_audit_trail.runs import Attempt
from heroku_audit_trail.schedule import skip_reason, utc_now
from heroku_audit_trail.state import Partition, StateStore
from heroku_audit_trail.statedir import ensure_state_dir, read_private, write_atomic

if TYPE_CHECKING:  # the poller (the day engine, the fetcher) is imported once a run is due
    from heroku_audit_trail.poll import Poller

DESCRIPTION = (
    "Print the audit-trail events that are new since the last run, one ECS JSON object "
    "per line, then save the cursor. This is what a shipper's exec input runs."
)
EPILOG = """\
examples:
  heroku-audit-trail poll --enterprise acme
  HEROKU_AUDIT_STATE_DIR=/var/lib/heroku-audit-trail heroku-audit-trail poll
  heroku-audit-trail poll --type collaborator    # only collaborator events
"""


def add_arguments(parser: argparse.ArgumentParser) -> None:
    options.reading(parser)
    options.output(parser)
    options.scheduling(parser)


def run(args: argparse.Namespace, env: Mapping[str, str], guard: StopGuard, log: Log) -> int:
    return run_poll(command_settings(args, env, log, guard), env, guard, log)


def poll_each(poller: Poller, due: list[str], log: Log, exit_codes: dict[str, int]) -> int:
    """Every partition due, opened (locked, loaded) together so their pages are fetched side
    by side, then polled one by one; a failure of one does not stop the others."""
    with poller.opened(due) as order:
        return each_partition(order, poller.poll_partition, log, exit_codes)


def run_poll(settings: Settings, env: Mapping[str, str], guard: StopGuard, log: Log) -> int:
    started = utc_now()
    due = list(settings.enterprises)
    exit_codes: dict[str, int] = {}
    poller: Poller | None = None
    try:
        # The configuration first: a missing token is told at once, backoff or not.
        token = read_token(settings, env, log)
        due = due_enterprises(settings, started, log)
        # Only partitions this run skipped (0) or ran get a mark; one a stop never reached,
        # none.
        exit_codes = {name: 0 for name in settings.enterprises if name not in due}
        if not due:
            return 0
        deadline = arm_deadline(settings, guard)
        client = make_client(settings, env, log, token, deadline)
        stdout = stdout_binary()
        writer = EventWriter(stdout, log, guard)
        writer.warn_long_lines = not stdout.isatty()  # a person reading lines needs no Buf_Size
        writer.long_lines_news = lambda: first_time_today(settings.state_dir, "long-lines", started)
        from heroku_audit_trail.poll import Poller

        poller = Poller(settings, client, writer, log, guard)
        try:
            return poll_each(poller, due, log, exit_codes)
        finally:
            guard.disarm()
    except AuditTrailError as error:  # before any partition ran (no token, no stdout)
        exit_codes |= {name: error.exit_code for name in due}
        raise
    except Exception:  # a bug (exit 70): the partitions without an exit code ended with it
        exit_codes |= {name: EX_SOFTWARE for name in due if name not in exit_codes}
        raise
    finally:
        attempts = poller.attempts if poller is not None else {}
        # A signal now is told (130/143) once the records and the file are written.
        with guard.critical():
            record_runs(settings, started, due, exit_codes, attempts, log)
            if settings.metrics_file is not None:
                publish_metrics(settings, log)


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
            reason = skip_reason(state.last_success, state.backoff, now, settings.min_interval)
        if reason is None:
            due.append(enterprise)
        elif sys.stderr is not None and sys.stderr.isatty():
            # Only for a person: under Fluent Bit's 1 s interval this would be a line a second.
            log.info(reason, enterprise=enterprise)
    return due


def first_time_today(state_dir: Path, what: str, now: datetime) -> bool:
    """Whether `what` is told for the first time today (UTC) from this state dir, which it
    then remembers: a warning a shipper would otherwise log every run, once a day. On any
    doubt (no state dir yet, a file that cannot be read or written), True."""
    marker = state_dir / f"told-{what}"
    today = now.date().isoformat().encode()
    try:
        if read_private(marker, state_dir) == today:
            return False
        write_atomic(marker, today)
    except AuditTrailError:
        pass
    return True


def record_runs(
    settings: Settings,
    started: datetime,
    due: list[str],
    exit_codes: dict[str, int],
    attempts: Mapping[str, Attempt],
    log: Log,
) -> None:
    """Each partition's run record, after every run that reached it: what the poller saw, or
    (refused before it: no token, the lock held) the exit code alone. A skipped run is
    recorded only for the metrics file (without one, a skip costs no write). A failure to
    write is logged, never the run's."""
    from heroku_audit_trail.runs import after, load, record_path, save

    for enterprise, code in exit_codes.items():
        skipped = enterprise not in due
        if skipped and settings.metrics_file is None:
            continue
        attempt = attempts.get(enterprise)
        if attempt is None or attempt.exit_code != code:
            attempt = Attempt(started, code, skipped=skipped)
        partition = Partition(enterprise, settings.filters)
        path = record_path(settings.state_dir, partition)
        try:
            ensure_state_dir(settings.state_dir)
            try:
                previous = load(path, settings.state_dir)
            except AuditTrailError:
                previous = None  # unreadable: begun again
            save(path, after(previous, partition.as_dict(), attempt))
        except AuditTrailError as error:
            log.warning(f"cannot record the run of {enterprise}: {error}", enterprise=enterprise)


def publish_metrics(settings: Settings, log: Log) -> None:
    """--metrics-file, after every run: a projection of the state dir; a failure to write it
    is logged, never the run's."""
    from heroku_audit_trail.metrics import collect, render, write_metrics

    assert settings.metrics_file is not None
    try:
        write_metrics(settings.metrics_file, render(collect(settings.state_dir)))
    except AuditTrailError as error:  # the metrics never change a run's exit code
        log.warning(str(error))
    except Exception as error:
        log.warning(f"cannot write metrics file {settings.metrics_file}: {error}")
