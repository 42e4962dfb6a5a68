"""One month's archive: fetch it, check its SHA-256, inflate it under a cap, read its events,
and say which days it covers (DESIGN §3 backfill --archives, §9)."""

from __future__ import annotations

import hashlib
import zlib
from calendar import monthrange
from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import date
from typing import TYPE_CHECKING, Any

from heroku_audit_trail.ecs import parse_time
from heroku_audit_trail.errors import MalformedDataError
from heroku_audit_trail.heroku.jsonbody import parse_events

if TYPE_CHECKING:
    from heroku_audit_trail.heroku.api import HerokuClient

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


def covered_days(year: int, month: int, created_at: object, today: date) -> list[date]:
    """The days an archive holds whole: those before the day it was built (UTC), and before
    today. An archive built on the 10th covers the 1st to the 9th; the rest of the month is
    the events API's."""
    built = parse_time(created_at)
    first_uncovered = min(built.date(), today) if built is not None else date(year, month, 1)
    last = monthrange(year, month)[1]
    return [
        date(year, month, number)
        for number in range(1, last + 1)
        if date(year, month, number) < first_uncovered
    ]


def matches_filters(event: dict[str, Any], filters: dict[str, str]) -> bool:
    """--type/--action/--actor, applied locally as the API would have."""
    actor = event.get("actor")
    actor_email = actor.get("email") if isinstance(actor, dict) else None
    return (
        filters.get("type", event.get("type")) == event.get("type")
        and filters.get("action", event.get("action")) == event.get("action")
        and filters.get("actor", actor_email) == actor_email
    )


def group_by_day(
    events: Iterable[dict[str, Any]], days: list[date]
) -> dict[date, list[dict[str, Any]]]:
    """The events of each of `days`. One whose time cannot be read goes with the first day,
    so it is printed (degraded) rather than dropped."""
    wanted = set(days)
    grouped: dict[date, list[dict[str, Any]]] = defaultdict(list)
    for event in events:
        moment = parse_time(event.get("created_at"))
        if moment is None:
            if days:
                grouped[days[0]].append(event)
        elif moment.date() in wanted:
            grouped[moment.date()].append(event)
    return grouped


@dataclass
class MonthArchive:
    label: str  # YYYY-MM
    covers: list[date]  # the days this archive holds whole
    by_day: dict[date, list[dict[str, Any]]]


def read_month(
    client: HerokuClient,
    account_id: str,
    year: int,
    month: int,
    filters: dict[str, str],
    today: date,
    wanted: list[date],
) -> MonthArchive | None:
    """One month's archive, verified and read, or None when Heroku has none for it. Only the
    `wanted` days it covers are kept (an event with no readable time goes with the first)."""
    label = f"{year:04d}-{month:02d}"
    archive = client.archive(account_id, year, month)
    if archive is None:
        return None
    content = client.download(archive["url"])
    events = parse_archive(content, archive.get("checksum"), label)
    del content
    covers = covered_days(year, month, archive.get("created_at"), today)
    chosen = (event for event in events if not filters or matches_filters(event, filters))
    kept = [day for day in covers if day in set(wanted)]
    return MonthArchive(label, covers, group_by_day(chosen, kept))
