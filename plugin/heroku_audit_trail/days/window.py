"""Day arithmetic and boundary dedupe for the per-day cursor (DESIGN §5). Pure, no I/O.

A day is closed (never read again, its seen ids dropped) only after a *full pass* over it, from
its first page to its last, that began once the day had left the lookback window: a pass that
began earlier may have run before the day's late events arrived.
"""

from __future__ import annotations

import re
from calendar import month_name
from collections.abc import Collection, Mapping
from datetime import date, timedelta
from typing import Any


def horizon(today: date, lookback_days: int) -> date:
    """The last day outside the lookback window: the latest day that may be closed."""
    return today - timedelta(days=lookback_days + 1)


def first_closed_through(today: date, lookback_days: int) -> date:
    """On a first run, every day before `today - lookback` counts as already closed."""
    return horizon(today, lookback_days)


REWIND_LIMIT_DAYS = 366  # how far a run may move back a cursor whose closing no Date confirmed


def rewound(
    closed_through: date, today: date, lookback_days: int, closed_on: date | None = None
) -> date:
    """A cursor ahead of the window (a clock that ran ahead, a hand-edited or planted state,
    a --lookback-days grown since) must not silence the feed: bring it back to the horizon,
    so the window is read again. Its closed days' ids are gone, so what they printed before
    may print again: duplicates, never a loss.

    Bounded, so a clock that is wrong now cannot send the feed back years: never before the
    window of `closed_on` (the date Heroku's Date confirmed when the cursor last moved on:
    time does not run backwards), and without one never more than REWIND_LIMIT_DAYS."""
    target = horizon(today, lookback_days)
    if closed_through <= target:
        return closed_through
    if closed_on is not None:
        floor = horizon(closed_on, lookback_days)
    else:
        floor = closed_through - timedelta(days=REWIND_LIMIT_DAYS)
    return max(target, min(floor, closed_through))


def lookback_grew(closed_through: date, closed_on: date | None, today: date) -> bool:
    """Whether a cursor ahead of the window is explained by a larger --lookback-days than
    the one it was closed under, rather than by a clock that was ahead (`closed_on`, the date
    it last moved on, is later than today) or an edited state (it could not have been
    closed on `closed_on`): for the warning only."""
    return closed_on is not None and closed_through < closed_on <= today


def days_to_read(closed_through: date, today: date) -> list[date]:
    """Every day after the closed ones up to today, oldest first (empty if the clock went back)."""
    count = (today - closed_through).days
    return [closed_through + timedelta(days=offset) for offset in range(1, count + 1)]


def reading_order(
    days: list[date], open_days: Mapping[date, Any], today: date, lookback_days: int
) -> list[date]:
    """The window's days (today and the lookback days) first, so a catch-up after a gap or a
    rewind never starves them; then the older days. In each group, the days never read in
    full (new, or with a pass under way) before the re-reads, each oldest first, so a day too
    big for one run cannot starve the days after it."""
    outside = horizon(today, lookback_days)

    def read_in_full(day: date) -> bool:
        kept = open_days.get(day)
        return kept is not None and kept.full_pass_started is not None and not kept.next_range

    return sorted(days, key=lambda day: (day <= outside, read_in_full(day), day))


def may_close(day: date, full_pass_started: date | None, lookback_days: int) -> bool:
    """True when a completed pass over `day` began after the day left the lookback window."""
    return full_pass_started is not None and day <= horizon(full_pass_started, lookback_days)


def advance_closed_through(
    closed_through: date, today: date, lookback_days: int, closable_days: Collection[date]
) -> date:
    """Close, in order, the closable days that fell out of the lookback window; stop at the
    first day that is not closable, so no day is skipped over."""
    last = horizon(today, lookback_days)
    while closed_through < last and closed_through + timedelta(days=1) in closable_days:
        closed_through += timedelta(days=1)
    return closed_through


def date_range(since: date, until: date) -> list[date]:
    """Inclusive list of days from `since` to `until`."""
    return [since + timedelta(days=offset) for offset in range((until - since).days + 1)]


def parse_day(text: str, today: date) -> date:
    """`YYYY-MM-DD`, `today`, `yesterday` or `Nd` (N days before today, UTC); ValueError with
    what is wrong ("month 13 is not between 1 and 12") otherwise."""
    value = text.strip().lower()
    if value == "today":
        return today
    if value == "yesterday":
        return today - timedelta(days=1)
    relative = re.fullmatch(r"(\d{1,5})d", value)
    if relative:
        return today - timedelta(days=int(relative.group(1)))
    parts = re.fullmatch(r"(\d{4})-(\d{2})-(\d{2})", value)
    if parts is None:
        raise ValueError(f"{text!r} is not a day: use YYYY-MM-DD, today, yesterday or Nd")
    year, month, day = (int(part) for part in parts.groups())
    if not 1 <= month <= 12:
        raise ValueError(f"{text!r}: month {month} is not between 1 and 12")
    try:
        return date(year, month, day)
    except ValueError:
        if year == 0:
            raise ValueError(f"{text!r}: there is no year 0") from None
        raise ValueError(f"{text!r}: {month_name[month]} {year} has no day {day}") from None
