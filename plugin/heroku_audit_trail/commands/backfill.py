"""`backfill`: the events of past days, from the events API or the monthly archives, resumable.

A progress record beside the poll cursor, keyed by the enterprise, the filters, the range and
the source, holds the last day printed in full. Run again with the same arguments after any
stop, the backfill continues after that day; a finished range removes its record. Memory is
bounded by one day (events API) or one month (archives). The poll cursor is never touched.
"""

from __future__ import annotations

import argparse
import hashlib
import re
import shlex
import sys
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass
from datetime import date, datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import orjson

from heroku_audit_trail.commands import each_partition, options
from heroku_audit_trail.commands.settings import arm_deadline, command_settings, make_client
from heroku_audit_trail.config import Settings
from heroku_audit_trail.days.ahead import days_ahead
from heroku_audit_trail.days.engine import DayPass, RenderOptions, pass_over_day
from heroku_audit_trail.days.window import date_range, parse_day
from heroku_audit_trail.ecs import format_time
from heroku_audit_trail.errors import (
    AuditTrailError,
    MalformedDataError,
    UsageError,
)
from heroku_audit_trail.heroku.api import HerokuClient, Page
from heroku_audit_trail.heroku.archives import read_month
from heroku_audit_trail.logs import Log
from heroku_audit_trail.output import EventWriter, Progress, StopGuard, stdout_binary
from heroku_audit_trail.statedir import (
    ensure_state_dir,
    exclusive_lock,
    read_private,
    remove_file,
    write_atomic,
)

RECORD_VERSION = 1


def resolve_range(since_text: str, until_text: str | None, today: date) -> tuple[date, date]:
    """The inclusive range of days as typed; --until defaults to yesterday, may not pass
    today."""
    try:
        since = parse_day(since_text, today)
        until = None if until_text is None else parse_day(until_text, today)
    except ValueError as error:
        raise UsageError(str(error)) from None
    last = until if until is not None else today - timedelta(days=1)
    if last > today:
        raise UsageError(f"--until {last} is in the future (today is {today} UTC)")
    if since > last:
        if until is None:
            raise UsageError(
                f"--since {since} is after --until, which defaults to yesterday ({last}); "
                "add --until today to include today"
            )
        raise UsageError(f"--since {since} is after --until {last}")
    return since, last


@dataclass(frozen=True)
class Plan:
    """One backfill, keyed by its arguments as typed (`--since 90d` tomorrow is the same
    backfill, carried on over the range it was given the first time)."""

    enterprise: str
    filters: tuple[tuple[str, str], ...]
    since: str  # as typed
    until: str | None  # as typed; None: yesterday
    source: str  # "days" (the events API) or "archives"
    command_line: tuple[str, ...] = ()  # the arguments, to say how to carry on

    def key(self) -> dict[str, Any]:
        return {
            "enterprise": self.enterprise,
            "filters": dict(self.filters),
            "since": self.since,
            "until": self.until,
            "source": self.source,
        }

    def file_stem(self) -> str:
        digest = hashlib.sha256(orjson.dumps(self.key(), option=orjson.OPT_SORT_KEYS))
        slug = re.sub(r"[^A-Za-z0-9_-]+", "_", self.enterprise)[:40] or "account"
        return f"backfill-{slug}-{digest.hexdigest()[:12]}"

    def resume_command(self) -> str:
        """The command to run again: the same one, every flag as it was given."""
        return shlex.join(["heroku-audit-trail", *self.command_line])


@dataclass
class RecordState:
    """What a progress record holds."""

    since: date
    until: date
    completed_through: date | None = None
    partial_day: date | None = None  # a day cut short by a stop: the ids already printed
    partial_ids: frozenset[str] = frozenset()
    output: str = "ecs"  # --format (and "+original" for --include-original): one per output


class ProgressRecord:
    """The record of one Plan: the last day printed in full, written atomically."""

    def __init__(self, state_dir: Path, plan: Plan) -> None:
        self.plan = plan
        self.state_dir = state_dir
        self.path = state_dir / f"{plan.file_stem()}.json"
        self.lock_path = state_dir / f"{plan.file_stem()}.lock"

    def load(self) -> RecordState | None:
        raw = read_private(self.path, self.state_dir)
        if raw is None:
            return None
        try:
            doc = orjson.loads(raw)
            assert doc["version"] == RECORD_VERSION and doc["plan"] == self.plan.key()
            done, partial = doc["completed_through"], doc.get("partial") or {}
            output = doc.get("output", "ecs")  # a record of an older version: ECS lines
            assert isinstance(output, str)
            return RecordState(
                date.fromisoformat(doc["range"]["since"]),
                date.fromisoformat(doc["range"]["until"]),
                None if done is None else date.fromisoformat(done),
                date.fromisoformat(partial["day"]) if partial else None,
                frozenset(partial.get("printed", [])),
                output,
            )
        except (orjson.JSONDecodeError, AssertionError, KeyError, TypeError, ValueError):
            raise MalformedDataError(
                f"backfill record {self.path} is corrupt; it was left untouched: remove it "
                "to start this backfill over"
            ) from None

    def save(self, progress: RecordState) -> None:
        partial = None
        if progress.partial_day is not None:
            partial = {
                "day": progress.partial_day.isoformat(),
                "printed": sorted(progress.partial_ids),
            }
        doc = {
            "version": RECORD_VERSION,
            "kind": "backfill",
            "plan": self.plan.key(),
            "range": {"since": progress.since.isoformat(), "until": progress.until.isoformat()},
            "completed_through": (
                progress.completed_through.isoformat() if progress.completed_through else None
            ),
            "partial": partial,
            "output": progress.output,
            "updated_at": format_time(datetime.now(timezone.utc)),
        }
        write_atomic(
            self.path, orjson.dumps(doc, option=orjson.OPT_INDENT_2 | orjson.OPT_APPEND_NEWLINE)
        )

    def remove(self) -> None:
        remove_file(self.path)


class Backfill:
    def __init__(
        self,
        settings: Settings,
        client: HerokuClient,
        writer: EventWriter,
        guard: StopGuard,
        log: Log,
    ) -> None:
        self.settings = settings
        self.client = client
        self.writer = writer
        self.guard = guard
        self.log = log
        self.options = RenderOptions(
            settings.output_format,
            settings.include_original,
            format_time(datetime.now(timezone.utc)),
        )

    def run(self, plan: Plan, today: date) -> None:
        record = ProgressRecord(self.settings.state_dir, plan)
        ensure_state_dir(self.settings.state_dir)
        busy = "the same backfill is running; let it finish, or stop it and run this again"
        with exclusive_lock(record.lock_path, busy):
            state = record.load()
            output = output_kind(self.settings)
            if state is None:
                since, until = resolve_range(plan.since, plan.until, today)
                state = RecordState(since, until, output=output)
            elif state.output != output:
                # Carried on with other lines, one output would mix two kinds of line.
                raise UsageError(
                    f"this backfill of {state.since}..{state.until} was begun printing "
                    f"{state.output} lines, not {output}: carry it on with the same --format "
                    f"(and --include-original), or remove {record.path} to start it over"
                )
            else:
                self.log.info(
                    f"carrying on the backfill of {state.since}..{state.until} after "
                    f"{state.completed_through or 'its start'}",
                    enterprise=plan.enterprise,
                )
            days = date_range(state.since, state.until)
            if state.completed_through is not None:
                days = [day for day in days if day > state.completed_through]
            progress = Progress(sys.stderr, len(days), "backfill")
            self.log.before_write = progress.clear
            started, requests_before = time.monotonic(), self.client.requests_made
            run = _Run(self, plan, record, progress, state)
            try:
                account_id = self.client.enterprise_account(plan.enterprise)["id"]
                if plan.source == "archives":
                    run.by_archives(account_id, days, today)
                else:
                    run.by_days(account_id, days)
            except AuditTrailError as error:
                error.args = (f"{error}; {run.where_it_stopped()}",)
                raise
            finally:
                progress.clear()
                self.log.before_write = None
                self.log.info(
                    "backfill summary",
                    enterprise=plan.enterprise,
                    source=plan.source,
                    since=state.since.isoformat(),
                    until=state.until.isoformat(),
                    days=run.days_done,
                    events_emitted=run.events,
                    requests=self.client.requests_made - requests_before,
                    duration_s=round(time.monotonic() - started, 3),
                    rate_limit_remaining=self.client.rate_limit_remaining,
                )
            record.remove()


class _Run:
    """One backfill run's progress; prints day by day and records each day done."""

    def __init__(
        self,
        backfill: Backfill,
        plan: Plan,
        record: ProgressRecord,
        progress: Progress,
        state: RecordState,
    ) -> None:
        self.backfill = backfill
        self.plan = plan
        self.record = record
        self.progress = progress
        self.state = state
        self.days_done = 0
        self.events = 0

    def by_days(self, account_id: str, days: list[date]) -> None:
        """Day by day, in order; the next days are fetched while one is printed."""
        client, settings = self.backfill.client, self.backfill.settings

        def pages_of(day: date, abandoned: threading.Event) -> Iterator[Page]:
            return client.day_pages(
                account_id, day, settings.filters, run_pages=None, abandoned=abandoned
            )

        slots = threading.BoundedSemaphore(settings.concurrency)
        for day, pages in days_ahead(days, pages_of, slots, settings.concurrency):
            self.backfill.guard.check()
            self.print_day(day, pages)

    def by_archives(self, account_id: str, days: list[date], today: date) -> None:
        """Month by month: the archive's days from the archive, the others from the API."""
        client, log = self.backfill.client, self.backfill.log
        api_filters = self.backfill.settings.filters
        filters = dict(api_filters)
        months = sorted({(day.year, day.month) for day in days})
        for year, month in months:
            self.backfill.guard.check()
            in_month = [day for day in days if (day.year, day.month) == (year, month)]
            archive = read_month(client, account_id, year, month, filters, today, in_month)
            if archive is None:
                label = f"{year:04d}-{month:02d}"
                log.warning(f"no archive for {label}: its days come from the events API")
                covered: set[date] = set()
            else:
                covered = set(archive.covers)
            try:
                for day in in_month:
                    self.backfill.guard.check()
                    if archive is not None and day in covered:
                        pages: Iterable[Page] = [Page(archive.events_of(day), None)]
                    else:
                        pages = client.day_pages(account_id, day, api_filters, run_pages=None)
                    self.print_day(day, pages)
            finally:
                if archive is not None:
                    archive.close()  # its days' files

    def print_day(self, day: date, pages: Iterable[Page]) -> None:
        """The day's new events, in order, through the day engine; the record then moves past
        the day. A pass cut short (a stop, the deadline's grace, a failure after some pages)
        records the ids already printed, so the next run prints the rest and nothing twice."""
        backfill = self.backfill
        printed_before = self.state.partial_ids if self.state.partial_day == day else frozenset()

        def commit(result: DayPass) -> None:
            if result.reached_end and result.all_printed:
                self.state.completed_through = day
                self.state.partial_day, self.state.partial_ids = None, frozenset()
                self.days_done += 1
            else:
                self.state.partial_day = day
                self.state.partial_ids = printed_before | frozenset(result.printed_keys)
            self.record.save(self.state)
            self.events += result.printed

        pass_over_day(
            day,
            pages,
            [printed_before],
            backfill.options,
            backfill.writer,
            backfill.guard,
            commit,
            warn=backfill.log.warning,
        )
        self.progress.show(self.plan.enterprise, self.days_done, self.events, backfill.client)

    def where_it_stopped(self) -> str:
        done = self.state.completed_through
        said = (
            f"the last day printed in full is {done}"
            if done is not None
            else "no day was printed in full"
        )
        if self.state.partial_day is not None:
            said += f" ({len(self.state.partial_ids)} events of {self.state.partial_day} too)"
        return f"{said}; to carry on, run the same command again: {self.plan.resume_command()}"


def output_kind(settings: Settings) -> str:
    """What the lines of a backfill are: its --format, and whether they carry the original."""
    return settings.output_format + ("+original" if settings.include_original else "")


def run_backfill(
    settings: Settings,
    make_client: Callable[[], HerokuClient],
    writer: EventWriter,
    guard: StopGuard,
    log: Log,
    since: str,
    until: str | None,
    use_archives: bool,
    command_line: tuple[str, ...] = (),
) -> int:
    today = datetime.now(timezone.utc).date()
    # A bad range is a usage error (64) before the token is read or any request made.
    resolve_range(since, until, today)
    backfill = Backfill(settings, make_client(), writer, guard, log)
    source = "archives" if use_archives else "days"

    def one(enterprise: str) -> None:
        plan = Plan(enterprise, settings.filters, since, until, source, command_line)
        backfill.run(plan, today)

    return each_partition(settings.enterprises, one, log)


DESCRIPTION = (
    "Print the events of past days, day by day, through the events API or the monthly "
    "archives. Resumable: run the same command again after any stop. Never moves the "
    "poll cursor."
)
EPILOG = """\
examples:
  heroku-audit-trail backfill --since 90d >> history.jsonl   # >>: a rerun carries on
  heroku-audit-trail backfill --since 2026-01-01 --until 2026-06-30 --archives
"""


def add_arguments(parser: argparse.ArgumentParser) -> None:
    options.reading(parser)
    options.output(parser)
    options.scheduling(parser, hidden=True)
    days = options.day_range(parser, "range", since="", until="yesterday", required=True)
    days.add_argument(
        "--archives", action="store_true", help="read the monthly archives (SHA-256 checked)"
    )


def run(args: argparse.Namespace, env: Mapping[str, str], guard: StopGuard, log: Log) -> int:
    settings = command_settings(args, env, log, guard, max_runtime=None)  # no deadline
    writer = EventWriter(stdout_binary(), log, guard)
    writer.warn_long_lines = False  # Fluent Bit's Buf_Size is poll's concern
    deadline = arm_deadline(settings, guard)
    return run_backfill(
        settings,
        lambda: make_client(settings, env, log, deadline=deadline),
        writer,
        guard,
        log,
        args.since,
        args.until,
        args.archives,
        tuple(getattr(args, "command_line", ())),
    )
