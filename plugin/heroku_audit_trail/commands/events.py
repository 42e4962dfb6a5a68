"""`events`: the read-only look-up for a person at a shell (DESIGN §3).

"Who destroyed an app yesterday?", "what did alice@ do this week?": the events of a range of
days, filtered, as a table on a terminal and ECS JSON lines otherwise. It keeps no state and
takes no lock, so it can run beside a shipper's poll of the same account at any time.

With `--limit N` the days are read newest first and reading stops once N events are in
hand (like `aws cloudtrail lookup-events --max-results`); what is printed is always in
`created_at` order, oldest first.
"""

from __future__ import annotations

import argparse
import heapq
import sys
import tempfile
import threading
import unicodedata
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, replace
from datetime import date, datetime, timezone
from itertools import chain
from typing import IO, Any, BinaryIO

import orjson

from heroku_audit_trail.commands import each_partition, options
from heroku_audit_trail.commands.settings import arm_deadline, command_settings, make_client
from heroku_audit_trail.config import Settings
from heroku_audit_trail.days.ahead import days_ahead
from heroku_audit_trail.days.engine import DayPass, RenderOptions, pass_over_day
from heroku_audit_trail.days.window import date_range, parse_day
from heroku_audit_trail.ecs import (
    Rendered,
    as_object,
    as_text,
    format_time,
    parse_time,
    render,
    target_name,
)
from heroku_audit_trail.errors import UsageError
from heroku_audit_trail.heroku.api import HerokuClient, Page
from heroku_audit_trail.logs import Log, printable
from heroku_audit_trail.output import EventWriter, Progress, StopGuard, stdout_binary

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
    widths = column_widths([headers, *rows])
    return [table_line(row, widths) for row in [headers, *rows]]


def column_widths(rows: Iterable[Sequence[str]], widths: list[int] | None = None) -> list[int]:
    """Each column's width over `rows` (and `widths` so far): its widest cell, up to
    WIDEST_PADDED."""
    widths = list(widths or [])
    for row in rows:
        widths += [0] * (len(row) - len(widths))
        for column, cell in enumerate(row):
            cell_width = min(width(printable(cell)), WIDEST_PADDED)
            widths[column] = max(widths[column], cell_width)
    return widths


def table_line(row: Sequence[str], widths: Sequence[int]) -> str:
    cells = [printable(cell) for cell in row]
    padded = [cell + " " * max(widths[n] - width(cell), 0) for n, cell in enumerate(cells[:-1])]
    return "  ".join([*padded, cells[-1]]).rstrip()


class TableSpool:
    """A whole table's rows, for a look-up with no --limit: each account's rows, which come
    in print order, go to a temporary file of their own while the columns' widths are
    measured; once all are in, the files are merged in order and the table printed. Memory
    does not grow with the range (held whole, 96,000 rows took 181 MB)."""

    def __init__(self) -> None:
        self.files: list[IO[bytes]] = []
        self.widths: list[int] = []
        self.lines_done = 0

    def start_account(self) -> None:
        self.files.append(tempfile.TemporaryFile())  # noqa: SIM115 (closed by close)

    def write(self, lines: Iterable[bytes]) -> int:
        done = 0
        for line in lines:  # rank<TAB>row as JSON: no newline in either
            self.widths = column_widths([orjson.loads(line.partition(b"\t")[2])], self.widths)
            self.files[-1].write(line + b"\n")
            done += 1
        self.lines_done = done
        return done

    def rows(self) -> Iterator[list[str]]:
        """Every row, in print order across the accounts."""

        def read(file: IO[bytes]) -> Iterator[tuple[tuple[str, str, str], bytes]]:
            file.seek(0)
            for line in file:
                rank, _, row = line.rstrip(b"\n").partition(b"\t")
                yield tuple(orjson.loads(rank)), row

        merged = heapq.merge(*(read(file) for file in self.files), key=lambda item: item[0])
        for _, row in merged:
            yield orjson.loads(row)

    def close(self) -> None:
        for file in self.files:
            file.close()


class Kept:
    """A writer for the day engine that keeps lines for the end rather than printing them: a
    table's rows (small), or only the `limit` most recent lines (a heap), so memory does not
    grow with the range. Each line comes as `rank<TAB>payload` (see `ranked_line`)."""

    def __init__(self, limit: int | None) -> None:
        self.limit = limit
        self.lines_done = 0
        self._heap: list[tuple[tuple[str, str, str], int, bytes]] = []
        self._count = 0  # ties in rank (an id listed under two accounts) keep arrival order

    def write(self, lines: Iterable[bytes]) -> int:
        done = 0
        for line in lines:
            rank_text, _, payload = line.partition(b"\t")
            day, moment, key = orjson.loads(rank_text)
            item = ((day, moment, key), self._count, payload)
            self._count += 1
            if self.limit is None or len(self._heap) < self.limit:
                heapq.heappush(self._heap, item)
            else:
                heapq.heappushpop(self._heap, item)
            done += 1
        self.lines_done = done
        return done

    def in_order(self) -> list[bytes]:
        return [payload for _, _, payload in sorted(self._heap)]


def ranked_line(
    day: date, payload_of: Callable[[dict[str, Any], Rendered], bytes]
) -> Callable[[dict[str, Any], str, RenderOptions], Rendered]:
    """The engine's render for kept lines: the place of the event among all the days read
    (its day, then the day's print order: created_at, an event without one last, then id),
    a tab, and what will be printed."""

    def render_event(event: dict[str, Any], key: str, options: RenderOptions) -> Rendered:
        rendered = render(
            event, options.output_format, options.read_at, options.include_original, key
        )
        moment, _ = rendered.order
        rank = orjson.dumps([day.isoformat(), moment.isoformat(), key])
        return rendered._replace(line=rank + b"\t" + payload_of(event, rendered))

    return render_event


def of_app_only(pages: Iterable[Page], app: str | None) -> Iterator[Page]:
    """The pages with only the events of `app` (all of them: None)."""
    for page in pages:
        if app is not None:
            page = replace(page, body=[event for event in page.events if of_app(event, app)])
        yield page


def run_events(
    settings: Settings,
    client: HerokuClient,
    query: Query,
    out: BinaryIO,
    log: Log,
    guard: StopGuard | None = None,
) -> int:
    """Print the query's events; one account's failure does not stop the others (the first
    failure is the exit code). Each day goes through the day engine; an id listed under
    several days comes once."""
    guard = guard or StopGuard()
    writer = EventWriter(out, log, guard)
    writer.warn_long_lines = False  # a person's look-up, not Fluent Bit's input
    writer.when_closed = "events keeps no state: nothing is lost, run it again"
    options = RenderOptions(
        "heroku" if query.output == "heroku" else "ecs",
        settings.include_original,
        format_time(datetime.now(timezone.utc)),
    )
    days = date_range(query.since, query.until)
    several = len(settings.enterprises) > 1
    streamed = query.limit is None and query.output != "table"
    spooled = query.limit is None and query.output == "table"  # in order, kept on disk
    kept = Kept(query.limit)
    spool = TableSpool()

    def look_up(enterprise: str) -> None:
        account_id = client.enterprise_account(enterprise)["id"]
        progress = Progress(sys.stderr, len(days), f"events {enterprise}")
        log.before_write = progress.clear
        seen: set[str] = set()
        found = 0

        def commit(result: DayPass) -> None:
            nonlocal found
            seen.update(result.met)
            found += result.printed

        def payload(event: dict[str, Any], rendered: Rendered) -> bytes:
            if query.output != "table":
                return rendered.line
            return orjson.dumps([*row_of(event), *([enterprise] if several else [])])

        def pages_of(day: date, abandoned: threading.Event) -> Iterator[Page]:
            return client.day_pages(
                account_id, day, settings.filters, run_pages=None, abandoned=abandoned
            )

        # Streamed: oldest first, a day at a time, so a pipe sees lines as days arrive. Kept:
        # newest first, and no older day is asked for once the limit is reached (so, with a
        # limit, none is fetched ahead). Else the next days are fetched while one is read.
        ordered = days if streamed or spooled else days[::-1]
        if spooled:
            spool.start_account()
        ahead = 0 if query.limit is not None else settings.concurrency
        slots = threading.BoundedSemaphore(settings.concurrency)
        try:
            for done, (day, pages) in enumerate(days_ahead(ordered, pages_of, slots, ahead)):
                if len(days) > 1:
                    progress.show(day.isoformat(), done, found, client)
                progress.clear()  # before anything is printed: the two share a terminal
                pass_over_day(
                    day,
                    of_app_only(pages, query.app),
                    [seen],
                    options,
                    writer if streamed else spool if spooled else kept,
                    guard,
                    commit,
                    warn=log.warning,
                    render_event=None if streamed else ranked_line(day, payload),
                )
                if query.limit is not None and found >= query.limit:
                    break
        finally:
            progress.clear()
            log.before_write = None

    code = each_partition(settings.enterprises, look_up, log)
    printed = writer.lines_written
    headers = (*HEADERS, "ACCOUNT") if several else HEADERS
    if spooled:
        widths = column_widths([headers], spool.widths)
        rows = (table_line(row, widths) for row in spool.rows())
        if spool.widths:  # no header over no rows
            writer.write(
                line.encode() + b"\n" for line in chain([table_line(headers, widths)], rows)
            )
        printed = max(writer.lines_written - 1, 0)
    elif not streamed:
        chosen = kept.in_order()
        if query.output == "table":
            table_rows = [tuple(orjson.loads(row)) for row in chosen]
            lines = table(table_rows, headers) if table_rows else []
            writer.write(line.encode() + b"\n" for line in lines)
        else:
            writer.write(chosen)
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


DESCRIPTION = (
    "Look up the events of a range of days (default today) as a person would: filtered "
    "by the API (--type, --action, --actor) and by app, a table on a terminal, ECS JSON "
    "lines otherwise. Keeps no state and takes no lock: safe beside a running poll."
)
EPILOG = """\
examples:
  heroku-audit-trail events --since yesterday --type app --action destroy
  heroku-audit-trail events --since 7d --actor alice@example.com
  heroku-audit-trail events --since 30d --app acme-prod --limit 20
  heroku-audit-trail events --since 7d --output jsonl | jq -r .message
"""


def add_arguments(parser: argparse.ArgumentParser) -> None:
    options.reading(parser, keeps_state=False)
    options.output(parser, hidden=True)
    options.scheduling(parser, hidden=True)
    look_up = options.day_range(parser, "look-up", since="; default today", until="today")
    look_up.add_argument("--app", metavar="NAME", help="only events about this app (name or id)")
    look_up.add_argument(
        "--limit",
        type=options.number(int, 1),
        metavar="N",
        help="only the N most recent events; older days are then not read",
    )
    look_up.add_argument(
        "--output",
        choices=["table", "jsonl", "heroku"],
        help="table, ECS JSON lines or the API's objects (default: table on a terminal, "
        "jsonl otherwise)",
    )


def run(args: argparse.Namespace, env: Mapping[str, str], guard: StopGuard, log: Log) -> int:
    settings = command_settings(args, env, log, guard, max_runtime=None)  # no deadline
    since, until = resolve_days(args.since, args.until, datetime.now(timezone.utc).date())
    on_terminal = sys.stdout is not None and sys.stdout.isatty()
    output = args.output or ("heroku" if args.output_format == "heroku" else None)
    output = output or ("table" if on_terminal else "jsonl")
    query = Query(since, until, args.app, args.limit, output)
    deadline = arm_deadline(settings, guard)
    client = make_client(settings, env, log, deadline=deadline)
    return run_events(settings, client, query, stdout_binary(), log, guard)
