"""One pass over one day, for every command: pages in; dedupe, render, hold (spooled past a
memory bound), sort, print; what happened out. The caller commits, inside the same critical
section as the write: `poll` its cursor, `backfill` its progress record, `events` nothing.

A failure while fetching prints and commits the pages read before it, then is raised, so every
run makes progress; a signal while fetching prints nothing more. A stop while printing (SIGTERM,
or the deadline's grace) ends at a line: the ids of the whole lines printed are committed, so
the next run goes on from there whatever the reader's speed. A closed stdout commits nothing:
what was written to a reader that left may not have been read.
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Iterable, Sequence
from contextlib import suppress
from dataclasses import dataclass, field
from datetime import date, datetime
from typing import TYPE_CHECKING, Any, Protocol

from heroku_audit_trail.days.spool import Spool
from heroku_audit_trail.ecs import Rendered, event_key, render
from heroku_audit_trail.errors import (
    AuditTrailError,
    DeadlineError,
    StoppedError,
)
from heroku_audit_trail.output import StopGuard

if TYPE_CHECKING:  # requests is not imported on poll's skip path
    from heroku_audit_trail.heroku.api import Page


Warn = Callable[..., None]  # a log's warning(message, **fields)


class LineWriter(Protocol):
    """Where a day's lines go: stdout (`output.EventWriter`), or a command's own keeper."""

    lines_done: int  # whole lines of the last write, also when it was cut short

    def write(self, lines: Iterable[bytes]) -> int: ...


@dataclass(frozen=True)
class RenderOptions:
    output_format: str = "ecs"  # "ecs" or "heroku"
    include_original: bool = False
    read_at: str = ""  # event.created: when this run read the events


@dataclass
class DayPass:
    """What one pass over a day did: what it read, and what of it reached stdout."""

    day: date
    pages: int = 0
    met: set[str] = field(default_factory=set)  # every id on the pages read, new or not
    new: int = 0  # lines read that were not printed before
    printed: int = 0  # whole lines printed
    printed_keys: set[str] = field(default_factory=set)  # their ids
    degraded: int = 0
    next_range: str | None = None  # where the day goes on after the last page read
    etag: str | None = None  # the whole day's ETag, when it came in one short page
    reached_end: bool = False  # the last page read was the day's last
    started: date | None = None  # the date the pass began on, asked at its first page

    @property
    def all_printed(self) -> bool:
        """Every new line read was printed: the pass can be committed as read."""
        return self.printed == self.new


def pass_over_day(
    day: date,
    pages: Iterable[Page],
    printed_before: Sequence[Collection[str]],
    options: RenderOptions,
    writer: LineWriter,
    guard: StopGuard,
    commit: Callable[[DayPass], None],
    *,
    warn: Warn,
    pass_date: Callable[[], date] | None = None,
    render_event: Callable[[dict[str, Any], str, RenderOptions], Rendered] | None = None,
    before_printing: Callable[[DayPass], None] | None = None,
) -> DayPass:
    """Read `pages`, print the day's events not in any of `printed_before` (each id once), in
    created_at order (an event without a usable time last, then by id), and call `commit`
    with the result before anything can stop the run between the two. Raises what ended the
    pass early, once what can be committed is."""
    result = DayPass(day)
    held = Spool()
    to_line = render_event or _render
    failure: AuditTrailError | None = None
    try:
        try:
            for page in pages:
                events = page.events  # parsed here, beside the rendering
                if result.started is None and pass_date is not None:
                    result.started = pass_date()
                if page.warning:
                    warn(page.warning, day=day.isoformat())
                orders, lines, keys = _new_lines(
                    events, result, printed_before, options, to_line, warn
                )
                with guard.critical():
                    held.extend(orders, lines)
                    result.met |= keys
                    result.new += len(lines)
                    result.pages += 1
                    result.next_range = page.next_range
                    result.etag = page.etag
                    result.reached_end = page.next_range is None and page.complete
        except StoppedError:
            raise  # told to stop while fetching: nothing more is printed
        except AuditTrailError as error:
            failure = error  # the pages before it are printed and committed
        finally:
            with suppress(AttributeError):
                pages.close()  # type: ignore[attr-defined]  # a read-ahead stops its worker
        if result.pages or failure is None:
            _print_and_commit(result, held, writer, guard, commit, before_printing)
    finally:
        held.close()
    if failure is not None:
        raise failure
    return result


def _print_and_commit(
    result: DayPass,
    held: Spool,
    writer: LineWriter,
    guard: StopGuard,
    commit: Callable[[DayPass], None],
    before_printing: Callable[[DayPass], None] | None,
) -> None:
    if before_printing is not None:
        before_printing(result)  # e.g. proof that the commit will have room: else print nothing
    with guard.critical():
        try:
            result.printed = writer.write(held.in_order())
        except (StoppedError, DeadlineError):
            # Cut at a line: the whole lines printed are committed, the rest waits.
            result.printed = writer.lines_done
            result.printed_keys = held.keys(writer.lines_done)
            commit(result)
            raise
        result.printed_keys = held.keys()
        commit(result)


def _render(event: dict[str, Any], key: str, options: RenderOptions) -> Rendered:
    return render(event, options.output_format, options.read_at, options.include_original, key)


def _new_lines(
    events: list[dict[str, Any]],
    result: DayPass,
    printed_before: Sequence[Collection[str]],
    options: RenderOptions,
    to_line: Callable[[dict[str, Any], str, RenderOptions], Rendered],
    warn: Warn,
) -> tuple[list[tuple[datetime, str]], list[bytes], set[str]]:
    """The page's events not printed before nor met earlier in this pass, rendered: their sort
    keys and lines; and every id on the page."""
    orders = []
    lines = []
    keys: set[str] = set()
    met = result.met
    for event in events:
        key = event_key(event)
        if key in keys or key in met or any(key in seen for seen in printed_before):
            keys.add(key)
            continue
        keys.add(key)
        rendered = to_line(event, key, options)
        if rendered.warning:
            result.degraded += rendered.line.find(b'"pipeline_error"') >= 0
            warn(rendered.warning, event_id=key)
        orders.append(rendered.order)
        lines.append(rendered.line)
    return orders, lines, keys
