"""Days' pages fetched side by side (--concurrency), each day asked for as it will be read.

A day fetched ahead is used only if, when its turn comes, it would be asked for the same way
(the same ETag, the same place in its pass): a day that changed in between is asked again.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass, replace
from datetime import date
from typing import TYPE_CHECKING

from heroku_audit_trail.days.ahead import ReadAhead
from heroku_audit_trail.days.window import horizon
from heroku_audit_trail.runs import Tally
from heroku_audit_trail.state import DayState

if TYPE_CHECKING:  # requests costs a fifth of a second to import: not on the skip path
    from heroku_audit_trail.heroku.api import HerokuClient, Page


Filters = tuple[tuple[str, str], ...]


@dataclass(frozen=True)
class DayRequest:
    """How a day is asked for: its ETag, where its pass goes on, its pages so far."""

    etag: str | None
    start_range: str | None
    pages_before: int


def day_request(kept: DayState | None, day: date, trusted_today: date, lookback: int) -> DayRequest:
    """No 304 closes a day: once outside the window it is read without If-None-Match."""
    kept = kept or DayState()
    in_window = day > horizon(trusted_today, lookback)
    return DayRequest(
        kept.etag if in_window else None,
        kept.next_range,
        kept.pass_pages if kept.next_range else 0,
    )


class DayFetcher:
    """The days in flight of a run, by partition and day; at most `limit` waiting to be read,
    each at most one page ahead, so memory holds a few pages more, whatever the accounts."""

    def __init__(self, client: HerokuClient, filters: Filters, concurrency: int) -> None:
        self.client = client
        self.filters = filters
        self.slots = threading.BoundedSemaphore(concurrency)  # requests in flight at once
        self.limit = 2 * concurrency
        self._waiting: dict[tuple[str, date], tuple[DayRequest, ReadAhead[Page]]] = {}

    @property
    def full(self) -> bool:
        return len(self._waiting) >= self.limit

    def waiting(self, partition: str, day: date) -> bool:
        return (partition, day) in self._waiting

    def start(
        self, partition: str, account_id: str, day: date, request: DayRequest, tally: Tally
    ) -> None:
        """Fetch the day ahead, to be taken by `pages`."""
        self._waiting[(partition, day)] = (request, self._fetch(account_id, day, request, tally))

    def pages(
        self, partition: str, account_id: str, day: date, request: DayRequest, tally: Tally
    ) -> ReadAhead[Page]:
        """The day's pages: fetched ahead already if asked for as now; else asked for now."""
        kept = self._waiting.pop((partition, day), None)
        if kept is not None:
            # Asked without If-None-Match, the day comes whole: as good as a 304 would be.
            if kept[0] in (request, replace(request, etag=None)):
                return kept[1]
            kept[1].close()  # asked for before the day changed: not what is wanted now
        return self._fetch(account_id, day, request, tally)

    def close(self, partition: str | None = None) -> None:
        """Stop fetching a partition's days (its turn is over), or every day."""
        for key in [key for key in self._waiting if partition in (None, key[0])]:
            self._waiting.pop(key)[1].close()

    def _fetch(
        self, account_id: str, day: date, request: DayRequest, tally: Tally
    ) -> ReadAhead[Page]:
        abandoned = threading.Event()
        source = self.client.day_pages(
            account_id,
            day,
            self.filters,
            etag=request.etag,
            start_range=request.start_range,
            pages_before=request.pages_before,
            abandoned=abandoned,
            tally=tally,
        )
        return ReadAhead(source, abandoned, self.slots).start()
