"""Day arithmetic and boundary dedupe for the per-day cursor (DESIGN §5). Pure, no I/O."""

from __future__ import annotations

from collections.abc import Iterable
from datetime import date, timedelta
from typing import Any

from heroku_audit_trail.ecs import event_key, sort_key


def first_closed_through(today: date, lookback_days: int) -> date:
    """On a first run, every day before `today - lookback` counts as already closed."""
    return today - timedelta(days=lookback_days + 1)


def days_to_read(closed_through: date, today: date) -> list[date]:
    """Every day after the closed ones up to today, oldest first (empty if the clock went back)."""
    count = (today - closed_through).days
    return [closed_through + timedelta(days=offset) for offset in range(1, count + 1)]


def advance_closed_through(
    closed_through: date, today: date, lookback_days: int, read_days: Iterable[date]
) -> date:
    """Close, in order, the fully read days that fell out of the lookback window."""
    horizon = today - timedelta(days=lookback_days + 1)
    done = set(read_days)
    while closed_through < horizon and closed_through + timedelta(days=1) in done:
        closed_through += timedelta(days=1)
    return closed_through


def date_range(since: date, until: date) -> list[date]:
    """Inclusive list of days from `since` to `until`."""
    return [since + timedelta(days=offset) for offset in range((until - since).days + 1)]


def new_events(events: Iterable[dict[str, Any]], seen_ids: set[str]) -> list[dict[str, Any]]:
    """Events not seen before (each id once, even if a page repeated it), in created_at order."""
    fresh: dict[str, dict[str, Any]] = {}
    for event in events:
        key = event_key(event)
        if key not in seen_ids and key not in fresh:
            fresh[key] = event
    return sorted(fresh.values(), key=sort_key)
