"""`backfill`: the events of past days, from the events API or the monthly archives, resumable.

A progress record beside the poll cursor, keyed by the enterprise, the filters, the range and
the source, holds the last day printed in full. Run again with the same arguments after any
stop, the backfill continues after that day; a finished range removes its record. Memory is
bounded by one day (events API) or one month (archives). The poll cursor is never touched.
"""

from __future__ import annotations

import hashlib
import re
import shlex
import sys
import time
from dataclasses import dataclass
from datetime import date, datetime, timedelta, timezone
from pathlib import Path
from typing import Any, TextIO

import orjson

from heroku_audit_trail.api import HerokuClient
from heroku_audit_trail.archives import read_month
from heroku_audit_trail.config import Settings
from heroku_audit_trail.cursor import (
    ensure_state_dir,
    exclusive_lock,
    read_private,
    remove_file,
    write_atomic,
)
from heroku_audit_trail.ecs import format_time, render
from heroku_audit_trail.errors import AuditTrailError, MalformedDataError, UsageError
from heroku_audit_trail.logs import Log
from heroku_audit_trail.output import EventWriter, StopGuard
from heroku_audit_trail.poll import each_partition
from heroku_audit_trail.window import date_range, new_events

RECORD_VERSION = 1


def resolve_range(since: date, until: date | None, today: date) -> tuple[date, date]:
    """The inclusive range; --until defaults to yesterday and may not pass today."""
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
    """One backfill: what its progress record is keyed by."""

    enterprise: str
    filters: tuple[tuple[str, str], ...]
    since: date
    until: date
    source: str  # "days" (the events API) or "archives"

    def key(self) -> dict[str, Any]:
        return {
            "enterprise": self.enterprise,
            "filters": dict(self.filters),
            "since": self.since.isoformat(),
            "until": self.until.isoformat(),
            "source": self.source,
        }

    def file_stem(self) -> str:
        digest = hashlib.sha256(orjson.dumps(self.key(), option=orjson.OPT_SORT_KEYS))
        slug = re.sub(r"[^A-Za-z0-9_-]+", "_", self.enterprise)[:40] or "account"
        return f"backfill-{slug}-{digest.hexdigest()[:12]}"

    def resume_command(self) -> str:
        """The exact command that continues this backfill (absolute dates: `7d` moves)."""
        words = ["heroku-audit-trail", "backfill", "--enterprise", self.enterprise]
        words += ["--since", self.since.isoformat(), "--until", self.until.isoformat()]
        if self.source == "archives":
            words.append("--archives")
        flags = {"type": "--type", "action": "--action", "actor": "--actor"}
        for name, value in self.filters:
            words += [flags[name], value]
        return shlex.join(words)


class ProgressRecord:
    """The record of one Plan: the last day printed in full, written atomically."""

    def __init__(self, state_dir: Path, plan: Plan) -> None:
        self.plan = plan
        self.state_dir = state_dir
        self.path = state_dir / f"{plan.file_stem()}.json"
        self.lock_path = state_dir / f"{plan.file_stem()}.lock"

    def load(self) -> date | None:
        raw = read_private(self.path, self.state_dir)
        if raw is None:
            return None
        try:
            doc = orjson.loads(raw)
            assert doc["version"] == RECORD_VERSION and doc["plan"] == self.plan.key()
            done = doc["completed_through"]
            return None if done is None else date.fromisoformat(done)
        except (orjson.JSONDecodeError, AssertionError, KeyError, TypeError, ValueError):
            raise MalformedDataError(
                f"backfill record {self.path} is corrupt; it was left untouched: remove it "
                "to start this backfill over"
            ) from None

    def save(self, completed_through: date) -> None:
        doc = {
            "version": RECORD_VERSION,
            "kind": "backfill",
            "plan": self.plan.key(),
            "completed_through": completed_through.isoformat(),
            "updated_at": format_time(datetime.now(timezone.utc)),
        }
        write_atomic(self.path, orjson.dumps(doc, option=orjson.OPT_INDENT_2) + b"\n")

    def remove(self) -> None:
        remove_file(self.path)


class Progress:
    """A live line on a terminal: done of total, events, requests, rate limit, ETA. Cleared
    before any log line, so the two never collide."""

    def __init__(self, stream: TextIO | None, total: int) -> None:
        self.stream = stream if stream is not None and stream.isatty() else None
        self.total = total
        self.started = time.monotonic()
        self._shown = False

    def show(self, what: str, done: int, events: int, client: HerokuClient) -> None:
        if self.stream is None:
            return
        elapsed = time.monotonic() - self.started
        eta = elapsed / done * (self.total - done) if done else 0.0
        remaining = client.rate_limit_remaining
        line = (
            f"backfill {what}: {done}/{self.total} days, {events} events, "
            f"{client.requests_made} requests, RateLimit-Remaining "
            f"{'?' if remaining is None else remaining}, ETA {eta:.0f} s"
        )
        self.stream.write("\r\x1b[K" + line)
        self.stream.flush()
        self._shown = True

    def clear(self) -> None:
        if self.stream is not None and self._shown:
            self.stream.write("\r\x1b[K")
            self.stream.flush()
            self._shown = False


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
        self.read_at = format_time(datetime.now(timezone.utc))

    def run(self, plan: Plan, today: date) -> None:
        record = ProgressRecord(self.settings.state_dir, plan)
        ensure_state_dir(self.settings.state_dir)
        busy = "the same backfill is running; let it finish, or stop it and run this again"
        with exclusive_lock(record.lock_path, busy):
            completed = record.load()
            if completed is not None:
                self.log.info(
                    f"resuming the backfill after {completed}", enterprise=plan.enterprise
                )
            days = [
                day
                for day in date_range(plan.since, plan.until)
                if not completed or day > completed
            ]
            progress = Progress(sys.stderr, len(days))
            self.log.before_write = progress.clear
            started, requests_before = time.monotonic(), self.client.requests_made
            run = _Run(self, plan, record, progress, completed)
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
                    since=plan.since.isoformat(),
                    until=plan.until.isoformat(),
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
        completed: date | None,
    ) -> None:
        self.backfill = backfill
        self.plan = plan
        self.record = record
        self.progress = progress
        self.completed = completed
        self.days_done = 0
        self.events = 0

    def by_days(self, account_id: str, days: list[date]) -> None:
        client, filters = self.backfill.client, self.backfill.settings.filters
        for day in days:
            self.backfill.guard.check()
            self.print_day(day, client.fetch_day(account_id, day, filters).events)

    def by_archives(self, account_id: str, days: list[date], today: date) -> None:
        """Month by month: the archive's days from the archive, the others from the API."""
        client, log = self.backfill.client, self.backfill.log
        api_filters = self.backfill.settings.filters
        filters = dict(api_filters)
        months = sorted({(day.year, day.month) for day in days})
        for year, month in months:
            self.backfill.guard.check()
            in_month = [day for day in days if (day.year, day.month) == (year, month)]
            archive = read_month(client, account_id, year, month, filters, today)
            if archive is None:
                label = f"{year:04d}-{month:02d}"
                log.warning(f"no archive for {label}: its days come from the events API")
                covered: set[date] = set()
            else:
                covered = set(archive.covers)
            for day in in_month:
                self.backfill.guard.check()
                if archive is not None and day in covered:
                    events = archive.by_day.pop(day, [])
                else:
                    events = client.fetch_day(
                        account_id, day, self.backfill.settings.filters
                    ).events
                self.print_day(day, events)
            del archive  # one month in memory at a time

    def print_day(self, day: date, events: list[dict[str, Any]]) -> None:
        settings = self.backfill.settings
        lines = (
            render(
                event, settings.output_format, self.backfill.read_at, settings.include_original
            ).line
            for event in new_events(events, set())
        )
        with self.backfill.guard.critical():
            printed = self.backfill.writer.write(lines)
            self.record.save(day)
        self.completed = day
        self.days_done += 1
        self.events += printed
        self.progress.show(self.plan.enterprise, self.days_done, self.events, self.backfill.client)

    def where_it_stopped(self) -> str:
        done = (
            f"the last day printed in full is {self.completed}"
            if self.completed is not None
            else "no day was printed in full"
        )
        return f"{done}; to continue, run: {self.plan.resume_command()}"


def run_backfill(
    settings: Settings,
    client: HerokuClient,
    writer: EventWriter,
    guard: StopGuard,
    log: Log,
    since: date,
    until: date | None,
    use_archives: bool,
) -> int:
    today = datetime.now(timezone.utc).date()
    first, last = resolve_range(since, until, today)
    backfill = Backfill(settings, client, writer, guard, log)
    source = "archives" if use_archives else "days"

    def one(enterprise: str) -> None:
        backfill.run(Plan(enterprise, settings.filters, first, last, source), today)

    return each_partition(settings.enterprises, one, log)
