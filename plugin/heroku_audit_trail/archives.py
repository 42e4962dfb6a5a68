"""`backfill`: historical days through the events API, or from the monthly archives."""

from __future__ import annotations

import hashlib
import sys
import zlib
from collections import defaultdict
from datetime import date, datetime, timedelta, timezone
from typing import Any

from heroku_audit_trail.api import HerokuClient
from heroku_audit_trail.config import Settings
from heroku_audit_trail.ecs import format_time, parse_time, render
from heroku_audit_trail.errors import MalformedDataError, UsageError
from heroku_audit_trail.jsonbody import parse_events
from heroku_audit_trail.logs import log
from heroku_audit_trail.output import EventWriter, StopGuard
from heroku_audit_trail.poll import each_partition
from heroku_audit_trail.window import date_range, new_events


def parse_day(text: str, flag: str) -> date:
    try:
        return date.fromisoformat(text)
    except ValueError:
        raise UsageError(f"{flag} {text!r} is not a date in YYYY-MM-DD form") from None


def backfill_range(since: str, until: str | None, today: date) -> list[date]:
    """The inclusive days to read; --until defaults to yesterday and may not pass today."""
    first = parse_day(since, "--since")
    last = parse_day(until, "--until") if until else today - timedelta(days=1)
    if last > today:
        raise UsageError(f"--until {last} is in the future (today is {today} UTC)")
    if first > last:
        raise UsageError(f"--since {first} is after --until {last}")
    return date_range(first, last)


ARCHIVE_INFLATED_CAP = 2 << 30  # a month of a busy account is far less; a gzip bomb is more


def inflate(content: bytes, month: str, cap: int = ARCHIVE_INFLATED_CAP) -> bytes:
    """gunzip, a megabyte at a time, refusing (exit 65) past `cap` bytes."""
    out = bytearray()
    data = content
    try:
        while data:
            decompressor = zlib.decompressobj(wbits=31)  # one gzip member
            while data and not decompressor.eof:
                out += decompressor.decompress(data, 1 << 20)
                data = decompressor.unconsumed_tail
                if len(out) > cap:
                    raise MalformedDataError(
                        f"archive {month} inflates past {cap >> 20} MiB, the most this "
                        "program reads; nothing from it was printed"
                    )
            if not decompressor.eof:
                raise zlib.error("truncated")
            data = decompressor.unused_data
    except zlib.error:
        raise MalformedDataError(f"archive {month} is not gzip-compressed JSON") from None
    return bytes(out)


def parse_archive(
    content: bytes, checksum: object, month: str, cap: int = ARCHIVE_INFLATED_CAP
) -> list[dict[str, Any]]:
    """Check the SHA-256 of the gzip bytes, then read a bare array or {"entries": [...]}."""
    digest = hashlib.sha256(content).hexdigest()
    if not isinstance(checksum, str) or digest != checksum.strip().lower():
        raise MalformedDataError(
            f"archive {month} failed its SHA-256 check (expected {checksum!r}, got {digest}); "
            "nothing from it was printed"
        )
    text = inflate(content, month, cap)
    try:
        return parse_events(text, f"archive {month}", key="entries")
    except MalformedDataError:
        raise MalformedDataError(f"archive {month} is not a JSON array of events") from None


def group_by_day(events: list[dict[str, Any]]) -> dict[date, list[dict[str, Any]]]:
    days: dict[date, list[dict[str, Any]]] = defaultdict(list)
    for event in events:
        moment = parse_time(event.get("created_at"))
        if moment is not None:
            days[moment.date()].append(event)
    return days


class Backfill:
    def __init__(
        self, settings: Settings, client: HerokuClient, writer: EventWriter, guard: StopGuard
    ) -> None:
        self.settings = settings
        self.client = client
        self.writer = writer
        self.guard = guard
        self.progress = sys.stderr.isatty()

    def run(self, enterprise: str, days: list[date], use_archives: bool) -> None:
        account_id = self.client.enterprise_account(enterprise)["id"]
        from_archives: dict[date, list[dict[str, Any]]] = {}
        if use_archives:
            from_archives = self._archive_days(account_id, days)
        read_at = format_time(datetime.now(timezone.utc))
        for number, day in enumerate(days, start=1):
            self.guard.check()
            if day in from_archives:
                events = from_archives.pop(day)
            else:
                events = self.client.fetch_day(account_id, day, self.settings.filters).events
            lines = (
                render(
                    event, self.settings.output_format, read_at, self.settings.include_original
                ).line
                for event in new_events(events, set())
            )
            with self.guard.critical():
                self.writer.write(lines)
            if self.progress:
                sys.stderr.write(
                    f"\rbackfill {enterprise}: {day} ({number}/{len(days)} days, "
                    f"{self.writer.lines_written} events)"
                )
                sys.stderr.flush()
        if self.progress:
            sys.stderr.write("\n")

    def _archive_days(self, account_id: str, days: list[date]) -> dict[date, list[dict[str, Any]]]:
        """Events per day from each month's archive; months without one are left to the API."""
        wanted = set(days)
        today = datetime.now(timezone.utc).date()
        covered: dict[date, list[dict[str, Any]]] = {}
        for year, month in sorted({(day.year, day.month) for day in days}):
            label = f"{year:04d}-{month:02d}"
            archive = self.client.archive(account_id, year, month)
            if archive is None:
                log.warning(f"no archive for {label}: reading its days through the events API")
                continue
            events = parse_archive(
                self.client.download(archive["url"]), archive.get("checksum"), label
            )
            by_day = group_by_day(self._filtered(events))
            # An archive covers its month up to midnight UTC today: today goes to the API.
            for day in wanted:
                if (day.year, day.month) == (year, month) and day < today:
                    covered[day] = by_day.get(day, [])
        return covered

    def _filtered(self, events: list[dict[str, Any]]) -> list[dict[str, Any]]:
        """Apply --type/--action/--actor locally, as the API would have."""
        filters = dict(self.settings.filters)

        def keep(event: dict[str, Any]) -> bool:
            actor = event.get("actor")
            actor_email = actor.get("email") if isinstance(actor, dict) else None
            return (
                filters.get("type", event.get("type")) == event.get("type")
                and filters.get("action", event.get("action")) == event.get("action")
                and filters.get("actor", actor_email) == actor_email
            )

        return [event for event in events if keep(event)] if filters else events


def run_backfill(
    settings: Settings,
    client: HerokuClient,
    writer: EventWriter,
    guard: StopGuard,
    since: str,
    until: str | None,
    use_archives: bool,
) -> int:
    days = backfill_range(since, until, datetime.now(timezone.utc).date())
    backfill = Backfill(settings, client, writer, guard)
    return each_partition(
        settings.enterprises, lambda name: backfill.run(name, days, use_archives), log
    )
