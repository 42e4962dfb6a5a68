"""`events`: the read-only look-up for a person at a shell (DESIGN §3).

"Who destroyed an app yesterday?", "what did alice@ do this week?": the events of a range of
days, filtered, as a table on a terminal and ECS JSON lines otherwise. It keeps no state and
takes no lock, so it can run beside a shipper's poll of the same account at any time.

With `--limit N` the days are read newest first and reading stops once N events are in
hand (like `aws cloudtrail lookup-events --max-results`); what is printed is always in
`created_at` order, oldest first.
"""

from __future__ import annotations

import sys
import unicodedata
from collections.abc import Generator, Sequence
from dataclasses import dataclass
from datetime import date, datetime, time, timezone
from operator import itemgetter
from typing import Any, BinaryIO, TextIO

from heroku_audit_trail.api import HerokuClient
from heroku_audit_trail.config import Settings
from heroku_audit_trail.ecs import (
    as_object,
    as_text,
    event_key,
    format_time,
    parse_time,
    render,
    target_name,
)
from heroku_audit_trail.errors import UsageError
from heroku_audit_trail.logs import Log, printable
from heroku_audit_trail.output import EventWriter, Progress, StopGuard
from heroku_audit_trail.poll import each_partition
from heroku_audit_trail.window import date_range, parse_day

HEADERS = ("TIME (UTC)", "ACTOR", "ACTION", "TARGET", "IP")


@dataclass(frozen=True)
class Query:
    since: date
    until: date
    app: str | None = None  # a local filter: the app's name or id
    limit: int | None = None  # the most recent N events of the range
    output: str = "jsonl"


def resolve_days(since: str | None, until: str | None, today: date) -> tuple[date, date]:
    """The inclusive range (both default to today); UsageError for one that cannot hold
    events. A range that runs past today stops at today."""
    first = parse_day(since or "today", today)
    last = min(parse_day(until or "today", today), today)
    if first > today:
        raise UsageError(f"--since {first} is after today ({today}, UTC): no events yet")
    if first > last:
        raise UsageError(f"--since {first} is after --until {last}")
    return first, last


def of_app(event: dict[str, Any], app: str) -> bool:
    """The event is about the app named (case-insensitively) or with that id."""
    subject = event.get("app")
    if not isinstance(subject, dict):
        return False
    name, app_id = subject.get("name"), subject.get("id")
    return (isinstance(name, str) and name.lower() == app.lower()) or app_id == app


def row_of(event: dict[str, Any]) -> tuple[str, str, str, str, str]:
    """One table row: time, actor, action, target (app, team, owner or account), IP."""
    created = parse_time(event.get("created_at"))
    actor = as_object(event.get("actor"))
    object_type, verb = as_text(event.get("type")), as_text(event.get("action"))
    return (
        created.strftime("%Y-%m-%d %H:%M:%S") if created is not None else "-",
        as_text(actor.get("email")) or as_text(actor.get("id")) or "-",
        f"{object_type or '?'}.{verb or '?'}" if object_type or verb else "-",
        target_name(event) or "-",
        as_text(as_object(event.get("request")).get("ip_address")) or "-",
    )


def width(text: str) -> int:
    """Columns `text` takes on a terminal: East Asian wide characters take two."""
    if text.isascii():
        return len(text)
    return sum(2 if unicodedata.east_asian_width(c) in "WF" else 1 for c in text)


WIDEST_PADDED = 80  # a longer cell is printed whole, but other rows are not padded to it


def table(rows: Sequence[Sequence[str]], headers: Sequence[str] = HEADERS) -> list[str]:
    """Columns as wide as their widest cell, two spaces apart; nothing is cut."""
    cells = [[printable(cell) for cell in row] for row in [headers, *rows]]
    widths = [
        max(min(width(row[column]), WIDEST_PADDED) for row in cells)
        for column in range(len(headers))
    ]
    lines = []
    for row in cells:
        padded = [cell + " " * max(widths[n] - width(cell), 0) for n, cell in enumerate(row[:-1])]
        lines.append("  ".join([*padded, row[-1]]).rstrip())
    return lines


Ranked = tuple[tuple[datetime, str], dict[str, Any]]  # ((time, id), event)
DaysOfEvents = Generator[tuple[date, list[Ranked]], None, None]


def ranked(event: dict[str, Any], day: date) -> tuple[datetime, str]:
    """An event's place in the look-up: its created_at, else the start of the day it was
    listed under (not "last": --limit must not take undated events for the newest), then id."""
    moment = parse_time(event.get("created_at"))
    return moment or datetime.combine(day, time.min, timezone.utc), event_key(event)


class Lookup:
    def __init__(
        self, settings: Settings, client: HerokuClient, log: Log, stderr: TextIO | None
    ) -> None:
        self.settings = settings
        self.client = client
        self.log = log
        self.stderr = stderr

    def days_of_events(self, enterprise: str, days: list[date], query: Query) -> DaysOfEvents:
        """(day, its matching events in order), for each day in `days` order; an id listed
        under several days (or pages) comes once."""
        account_id = self.client.enterprise_account(enterprise)["id"]
        progress = Progress(self.stderr, len(days), f"events {enterprise}")
        self.log.before_write = progress.clear
        seen: set[str] = set()
        found = 0
        try:
            for done, day in enumerate(days):
                if len(days) > 1:
                    progress.show(day.isoformat(), done, found, self.client)
                fetched = self.client.fetch_day(account_id, day, self.settings.filters)
                events = []
                for event in fetched.events:
                    place = ranked(event, day)
                    if place[1] not in seen and (query.app is None or of_app(event, query.app)):
                        seen.add(place[1])
                        events.append((place, event))
                events.sort(key=itemgetter(0))
                found += len(events)
                progress.clear()  # before the caller prints: the two share a terminal
                yield day, events
        finally:
            progress.clear()
            self.log.before_write = None


def newest(
    days: Generator[tuple[date, list[Ranked]], None, None], limit: int | None
) -> list[Ranked]:
    """The events of days given newest first, up to the `limit` most recent, oldest first.
    Reading stops at the first day that completes the limit: no request for older days."""
    kept: list[Ranked] = []
    for _, events in days:
        kept += events
        if limit is not None and len(kept) >= limit:
            days.close()  # now, so its progress line is cleared before anything is printed
            break
    kept.sort(key=itemgetter(0))
    return kept[-limit:] if limit is not None else kept


def run_events(
    settings: Settings,
    client: HerokuClient,
    query: Query,
    out: BinaryIO,
    log: Log,
    guard: StopGuard | None = None,
) -> int:
    """Print the query's events; one account's failure does not stop the others (the first
    failure is the exit code)."""
    lookup = Lookup(settings, client, log, sys.stderr)
    writer = EventWriter(out, log, guard)
    writer.warn_long_lines = False  # a person's look-up, not Fluent Bit's input
    writer.when_closed = "events keeps no state: nothing is lost, run it again"
    read_at = format_time(datetime.now(timezone.utc))
    output_format = "heroku" if query.output == "heroku" else "ecs"
    days = date_range(query.since, query.until)
    several = len(settings.enterprises) > 1
    streamed = query.limit is None and query.output != "table"
    chosen: list[tuple[tuple[datetime, str], str, dict[str, Any]]] = []
    printed = 0

    def print_events(events: list[dict[str, Any]]) -> int:
        lines = [render(e, output_format, read_at, settings.include_original) for e in events]
        for rendered in lines:
            if rendered.warning:
                log.warning(rendered.warning)
        return writer.write(rendered.line for rendered in lines)

    def look_up(enterprise: str) -> None:
        nonlocal printed
        if streamed:  # a day at a time, oldest first: a pipe sees lines as days arrive
            for _, events in lookup.days_of_events(enterprise, days, query):
                printed += print_events([event for _, event in events])
        else:
            found = newest(lookup.days_of_events(enterprise, days[::-1], query), query.limit)
            chosen.extend((place, enterprise, event) for place, event in found)

    code = each_partition(settings.enterprises, look_up, log)
    if not streamed:
        chosen.sort(key=itemgetter(0))  # the accounts merged in time
        if query.limit is not None:
            chosen = chosen[-query.limit :]
        if query.output == "table":
            rows = [(*row_of(e), *([name] if several else [])) for _, name, e in chosen]
            lines = table(rows, (*HEADERS, "ACCOUNT") if several else HEADERS) if rows else []
            writer.write(line.encode() + b"\n" for line in lines)
        else:
            print_events([event for _, _, event in chosen])
        printed = len(chosen)
    if code and not printed:
        return code  # the error said it all: no summary of nothing
    span = f"{query.since}" if query.since == query.until else f"{query.since}..{query.until}"
    limited = query.limit is not None and printed >= query.limit
    log.info(
        f"{'the ' if limited else ''}{printed}{' most recent' if limited else ''} "
        f"event{'' if printed == 1 else 's'} on {span}",
        enterprise=",".join(settings.enterprises),
        requests=client.requests_made,
        rate_limit_remaining=client.rate_limit_remaining,
    )
    return code
