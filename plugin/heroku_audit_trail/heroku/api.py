"""The Heroku Platform API's endpoints this program reads (DESIGN §9): the enterprise account,
a day's events as pages (following Next-Range), the archives; each page carries the metadata
of the response it came in. How a request is sent is the transport's (`transport`)."""

from __future__ import annotations

import re
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import date, datetime
from typing import Any, BinaryIO
from urllib.parse import quote

import orjson

from heroku_audit_trail.config import Secret
from heroku_audit_trail.deadline import Deadline
from heroku_audit_trail.errors import MalformedDataError
from heroku_audit_trail.heroku.jsonbody import parse_events
from heroku_audit_trail.heroku.responses import Answer
from heroku_audit_trail.heroku.transport import AbandonedError, Transport
from heroku_audit_trail.runs import Tally

__all__ = ["AbandonedError", "Answer", "DayFetch", "HerokuClient", "Page", "with_max"]

PAGE_MAX = 1000
# A day's pass may span runs: each run reads at most RUN_PAGES of it (200: a day of 200k
# events at 1000 a page, under a twentieth of the account's 4500 requests an hour), and the
# rest next run. A pass longer than PAGE_CAP pages in all (1M events, far past any real
# account) is pagination that never ends: exit 65, and the failure backoff spaces out the runs.
RUN_PAGES = 200
PAGE_CAP = 1000
HEROKU_PAGE_SIZE = 200  # what Heroku sends when asked for no Range


@dataclass
class Page:
    """One page of a day's events, and what it says about the rest of the day.

    The body is parsed where `events` is first read: a page fetched ahead by a worker thread
    is parsed by the thread that renders it, while its objects are in that core's cache
    (parsed in the worker, the same poll took a fifth more CPU).
    """

    body: list[dict[str, Any]] | bytes  # the events, or the JSON text they are read from
    next_range: str | None  # where the day continues; None: this was the day's last page
    whole_day_etag: str | None = None  # the ETag of a page that is the whole day
    not_modified: bool = False  # 304: the whole day is as it was when `etag` was kept
    complete: bool = True  # False: the server ended the day early (see `warning`)
    warning: str | None = None
    answer: Answer = field(default_factory=Answer)  # what the response said besides its body

    @property
    def events(self) -> list[dict[str, Any]]:
        """The page's events; MalformedDataError (exit 65) when its body is not JSON."""
        if isinstance(self.body, bytes):
            try:
                self.body = parse_events(self.body)
            except MalformedDataError as error:
                error.request_id = self.answer.request_id
                raise
        return self.body

    @property
    def etag(self) -> str | None:
        """Heroku's ETag covers the body: it says nothing of a page after this one, so it is
        kept only for a whole day in one page that is not full."""
        if self.whole_day_etag is None or len(self.events) >= HEROKU_PAGE_SIZE:
            return None
        return self.whole_day_etag


@dataclass
class DayFetch:
    """A whole day, for the commands that read a day at once (backfill, check)."""

    events: list[dict[str, Any]]
    pages: int


def with_max(range_value: str, page_max: int = PAGE_MAX) -> str:
    """Ask for the largest page when following a Next-Range (fewer pages, fewer tokens)."""
    if re.search(r"max=\d+", range_value):
        return re.sub(r"max=\d+", f"max={page_max}", range_value)
    return range_value.rstrip("; ") + f"; max={page_max}"


class HerokuClient:
    """The endpoints, over one transport (its retries, deadline, floor and counters)."""

    def __init__(self, api_url: str, token: Secret, **transport: Any) -> None:
        """`transport`: Transport's options (deadline, rate_limit_floor, sleep, retry_budget,
        connections)."""
        self.transport = Transport(api_url, token, **transport)
        self.token_source = token.source

    # What the run's answers said, in all (a partition's own are in its Tally).
    @property
    def requests_made(self) -> int:
        return self.transport.requests_made

    @property
    def rate_limit_remaining(self) -> int | None:
        return self.transport.rate_limit_remaining

    @property
    def server_time(self) -> datetime | None:
        return self.transport.server_time

    @property
    def deadline(self) -> Deadline:
        return self.transport.deadline

    @deadline.setter
    def deadline(self, deadline: Deadline) -> None:
        self.transport.deadline = deadline

    # -- the endpoints -------------------------------------------------------------------

    def enterprise_account(self, id_or_name: str, tally: Tally | None = None) -> dict[str, Any]:
        path = f"/enterprise-accounts/{quote(id_or_name, safe='')}"
        response, answer = self.transport.api_get(path, tally=tally)
        try:
            account = orjson.loads(response.content)
        except orjson.JSONDecodeError:
            account = None
        if not isinstance(account, dict) or not isinstance(account.get("id"), str):
            raise MalformedDataError(
                "Heroku API returned an enterprise account without an id",
                request_id=answer.request_id,
            )
        return account

    def day_pages(
        self,
        account_id: str,
        day: date,
        filters: tuple[tuple[str, str], ...] = (),
        etag: str | None = None,
        start_range: str | None = None,
        abandoned: threading.Event | None = None,
        pages_before: int = 0,
        run_pages: int | None = RUN_PAGES,
        tally: Tally | None = None,
    ) -> Iterator[Page]:
        """The pages of one day, following Next-Range; from `start_range` to continue a pass
        (`pages_before` pages long so far), else from the first page, with If-None-Match when
        an ETag was kept for the day. At most `run_pages` pages (None: all): the last one read
        then carries the Next-Range to go on from. `abandoned`: set by a caller that reads
        ahead and has stopped: no request after it."""
        path = f"/enterprise-accounts/{quote(account_id, safe='')}/events"
        params = {"day": day.isoformat(), **dict(filters)}
        headers = {"Range": with_max(start_range)} if start_range else {}
        if etag and not start_range:
            headers = {"If-None-Match": etag}
        asked = start_range  # the Next-Range as the server sent it, before with_max
        ranges_seen: set[str] = set()
        pages = 0
        while True:
            response, answer = self.transport.api_get(
                path, params=params, headers=headers, allow=(416,), abandoned=abandoned, tally=tally
            )
            if response.status_code == 416:
                # max=1000 is not documented for /events: ask as the server said. A range kept
                # from an earlier run that the server no longer knows: read the day afresh.
                if asked is not None and headers.get("Range") != asked:
                    headers = {"Range": asked}
                    continue
                if start_range is not None and pages == 0:
                    headers, asked, start_range = {}, None, None
                    continue
                raise self.transport.failure(response)
            if response.status_code == 304:
                if "If-None-Match" in headers:
                    yield Page([], None, etag, not_modified=True, answer=answer)
                else:  # not an answer to anything we asked: end the pass here, keep what came
                    yield Page(
                        [],
                        None,
                        complete=False,
                        warning=f"Heroku API answered 304 to a page of {day} that was not "
                        "a conditional request; the day stays open and is read again",
                        answer=answer,
                    )
                return
            pages += 1
            next_range = response.headers.get("Next-Range") or None
            warning = None
            if next_range is None and response.status_code == 206:
                warning = f"Heroku API answered 206 without Next-Range for {day}: taken as its end"
            if next_range is not None and (
                next_range in ranges_seen or pages_before + pages >= PAGE_CAP
            ):
                raise MalformedDataError(
                    f"Heroku API pagination for {day} does not end (Next-Range {next_range!r} "
                    f"repeated or over {PAGE_CAP} pages)",
                    request_id=answer.request_id,
                )
            whole_day = pages == 1 and not start_range and next_range is None
            yield Page(
                response.content,
                next_range,
                response.headers.get("ETag") if whole_day else None,
                warning=warning,
                answer=answer,
            )
            if next_range is None or (run_pages is not None and pages >= run_pages):
                return
            ranges_seen.add(next_range)
            headers, asked = {"Range": with_max(next_range)}, next_range

    def fetch_day(
        self, account_id: str, day: date, filters: tuple[tuple[str, str], ...] = ()
    ) -> DayFetch:
        """Every event of one day."""
        events: list[dict[str, Any]] = []
        pages = 0
        for page in self.day_pages(account_id, day, filters, run_pages=None):
            events += page.events
            pages += 1
        return DayFetch(events, pages)

    def archives(self, account_id: str) -> list[dict[str, Any]]:
        path = f"/enterprise-accounts/{quote(account_id, safe='')}/archives"
        response, _ = self.transport.api_get(path)
        return parse_events(response.content, what="archives")

    def archive(self, account_id: str, year: int, month: int) -> dict[str, Any] | None:
        """One month's archive object, or None when Heroku has none for that month."""
        path = f"/enterprise-accounts/{quote(account_id, safe='')}/archives/{year:04d}/{month:02d}"
        response, answer = self.transport.api_get(path, allow=(404,))
        if response.status_code == 404:
            return None
        try:
            archive = orjson.loads(response.content)
        except orjson.JSONDecodeError:
            archive = None
        if not isinstance(archive, dict) or not isinstance(archive.get("url"), str):
            raise MalformedDataError(
                f"Heroku API returned an archive for {year:04d}-{month:02d} without a url",
                request_id=answer.request_id,
            )
        return archive

    def download(self, url: str, sink: BinaryIO) -> None:
        """An archive file into `sink`: its URL is pre-signed storage, so no token goes."""
        self.transport.download(url, sink)
