"""Day arithmetic and boundary dedupe (pure functions)."""

from __future__ import annotations

from datetime import date, timedelta

import pytest

from heroku_audit_trail.days.window import (
    REWIND_LIMIT_DAYS,
    advance_closed_through,
    date_range,
    days_to_read,
    first_closed_through,
    lookback_grew,
    may_close,
    parse_day,
    reading_order,
    rewound,
)
from heroku_audit_trail.state import DayState

TODAY = date(2026, 11, 24)


def test_first_run_reads_today_and_the_lookback() -> None:
    closed = first_closed_through(TODAY, 1)
    assert days_to_read(closed, TODAY) == [date(2026, 11, 23), TODAY]
    assert days_to_read(first_closed_through(TODAY, 0), TODAY) == [TODAY]


def test_days_after_an_outage_and_a_clock_gone_back() -> None:
    assert days_to_read(date(2026, 11, 20), TODAY) == date_range(date(2026, 11, 21), TODAY)
    assert days_to_read(date(2026, 11, 25), TODAY) == []


def test_closing_needs_contiguous_read_days_outside_the_window() -> None:
    read = [date(2026, 11, 21), date(2026, 11, 23), TODAY]
    # 11-22 was never read: nothing past 11-21 may close.
    assert advance_closed_through(date(2026, 11, 20), TODAY, 1, read) == date(2026, 11, 21)
    read.append(date(2026, 11, 22))
    # 11-23 stays open: it is inside the lookback window.
    assert advance_closed_through(date(2026, 11, 20), TODAY, 1, read) == date(2026, 11, 22)


def test_the_window_comes_first_then_days_never_read_in_full() -> None:
    days = [TODAY - timedelta(days=back) for back in (4, 3, 2, 1, 0)]
    open_days = {
        days[0]: DayState(full_pass_started=TODAY),  # its last re-read, to close it
        days[1]: DayState(full_pass_started=TODAY, next_range="]x..; max=1000"),
        days[3]: DayState(full_pass_started=TODAY),
    }
    # Today and yesterday (lookback 1) first, today (never read) before yesterday's re-read;
    # then the older days never read in full; then the re-reads that close days.
    assert reading_order(days, open_days, TODAY, 1) == [days[4], days[3], days[1], days[2], days[0]]


def test_a_day_closes_only_after_a_full_pass_begun_outside_the_window() -> None:
    day = date(2026, 11, 22)
    assert not may_close(day, None, 1)
    assert not may_close(day, date(2026, 11, 23), 1)  # begun while the day was in the window
    assert may_close(day, date(2026, 11, 24), 1)


def test_a_cursor_ahead_of_the_window_is_brought_back() -> None:
    confirmed = date(2026, 11, 20)  # when Heroku's Date last confirmed the cursor's move
    assert rewound(date(2099, 12, 31), TODAY, 1, confirmed) == date(2026, 11, 22)
    assert rewound(date(2026, 11, 20), TODAY, 1) == date(2026, 11, 20)
    assert rewound(date(2026, 11, 22), TODAY, 3) == date(2026, 11, 20)  # the lookback grew


def test_a_cursor_is_never_rewound_past_its_bound() -> None:
    cursor = date(2026, 11, 22)
    # A clock back at 1970 cannot take it before the window of the day Heroku confirmed.
    assert rewound(cursor, date(1970, 1, 1), 1, TODAY) == cursor
    assert rewound(cursor, date(1970, 1, 1), 3, TODAY) == date(2026, 11, 20)
    # With no confirmed day, it moves back REWIND_LIMIT_DAYS at most.
    limit = cursor - timedelta(days=REWIND_LIMIT_DAYS)
    assert rewound(cursor, date(1970, 1, 1), 1) == limit


def test_why_a_cursor_is_ahead_is_told_apart() -> None:
    assert lookback_grew(date(2026, 11, 22), TODAY, TODAY)  # closed today under lookback 1
    assert not lookback_grew(date(2026, 11, 23), date(2026, 11, 26), TODAY)  # a clock ahead
    assert not lookback_grew(date(2099, 12, 31), TODAY, TODAY)  # planted
    assert not lookback_grew(date(2026, 11, 22), None, TODAY)  # an older state: unknown


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("2026-11-01", date(2026, 11, 1)),
        ("today", TODAY),
        ("Yesterday", date(2026, 11, 23)),
        ("0d", TODAY),
        ("30d", date(2026, 10, 25)),
    ],
)
def test_days_on_the_command_line(text: str, expected: date) -> None:
    assert parse_day(text, TODAY) == expected


@pytest.mark.parametrize(
    ("text", "words"),
    [
        ("2026-13-01", "month 13 is not between 1 and 12"),
        ("2026-02-30", "February 2026 has no day 30"),
        ("2026-00-10", "month 0"),
        ("last week", "not a day"),
        ("20261101", "not a day"),
        ("-3d", "not a day"),
    ],
)
def test_impossible_days_say_what_is_wrong(text: str, words: str) -> None:
    with pytest.raises(ValueError, match=words):
        parse_day(text, TODAY)
