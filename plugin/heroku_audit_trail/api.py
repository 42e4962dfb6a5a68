"""HTTP client for the Heroku Platform API: retries, rate limits, pages, errors (DESIGN §9)."""

from __future__ import annotations

import os
import random
import re
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import date, datetime, timezone
from email.utils import parsedate_to_datetime
from typing import Any
from urllib.parse import quote, urlsplit

import orjson
import requests

from heroku_audit_trail import __version__
from heroku_audit_trail.config import Secret, is_loopback
from heroku_audit_trail.errors import (
    ApiUnavailableError,
    AuditTrailError,
    ConfigError,
    DeadlineError,
    MalformedDataError,
    PermissionDeniedError,
    RateLimitedError,
)
from heroku_audit_trail.jsonbody import parse_events
from heroku_audit_trail.logs import REDACTED
from heroku_audit_trail.runs import Tally

ACCEPT = "application/vnd.heroku+json; version=3"
USER_AGENT = f"heroku-audit-trail/{__version__} (+python-requests)"
CONNECT_TIMEOUT = 5.0
READ_TIMEOUT = 30.0
MAX_RETRIES = 4
RETRY_BUDGET = 15.0  # seconds of waiting in all, per run (--retry-budget)
# The n-th wait is up to budget / 30 * 2**n seconds (0.5, 1, 2, 4, 8 with the default): the
# four retries fit the budget, and a smaller budget makes the same schedule shorter.
BACKOFF_SHARE = 1 / 30
PAGE_MAX = 1000
# A day's pass may span runs: each run reads at most RUN_PAGES of it (200: a day of 200k
# events at 1000 a page, under a twentieth of the account's 4500 requests an hour), and the
# rest next run. A pass longer than PAGE_CAP pages in all (1M events, far past any real
# account) is pagination that never ends: exit 65, and the failure backoff spaces out the runs.
RUN_PAGES = 200
PAGE_CAP = 1000
HEROKU_PAGE_SIZE = 200  # what Heroku sends when asked for no Range
# What one response may inflate to (gzip included), read as a stream and refused past it (exit
# 65): a page of 1000 events of 12 KB is 12 MiB; an archive is a month of an account's events.
PAGE_BYTES_CAP = 64 << 20
ARCHIVE_BYTES_CAP = 1 << 30
_CHUNK = 1 << 16

# One table from status to (exception, what to tell the user). The guide's troubleshooting
# headings lead where it has them.
STATUS_ERRORS: dict[int, tuple[type[AuditTrailError], str]] = {
    400: (ApiUnavailableError, "Heroku rejected the request as invalid"),
    401: (
        PermissionDeniedError,
        "Authentication Failed: the token is missing, invalid or expired; "
        "create one with 'heroku authorizations:create' and set HEROKU_API_KEY",
    ),
    402: (ApiUnavailableError, "Heroku refused the request: the account is delinquent"),
    403: (
        PermissionDeniedError,
        "Authentication Failed: the token has no access to this enterprise account; "
        "it must belong to an Enterprise Admin with the manage permission",
    ),
    404: (
        ConfigError,
        "Invalid Enterprise Account Name: Heroku has no enterprise account by that name or id "
        "visible to this token; check it with 'heroku enterprises'",
    ),
    406: (ApiUnavailableError, "Heroku refused the Accept header"),
    416: (ApiUnavailableError, "Heroku refused the Range header"),
    422: (ApiUnavailableError, "Heroku refused the request parameters"),
    429: (
        RateLimitedError,
        "Rate Limiting: the account's API quota (4500 requests an hour) is used up; "
        "try again later (it refills 75 requests a minute)",
    ),
}


class Deadline:
    """The run's wall-clock budget (--max-runtime); None means no deadline."""

    def __init__(self, seconds: float | None, clock: Callable[[], float] = time.monotonic) -> None:
        self._clock = clock
        self._end = None if seconds is None else clock() + seconds

    def remaining(self) -> float:
        return float("inf") if self._end is None else self._end - self._clock()

    def check(self) -> None:
        if self.remaining() <= 0:
            raise DeadlineError(
                "the run reached --max-runtime; days already printed are saved "
                "and the next run carries on"
            )


class AbandonedError(Exception):
    """A page read ahead that its caller no longer wants (not a failure: nobody sees it)."""


def _stop_if(abandoned: threading.Event | None) -> None:
    if abandoned is not None and abandoned.is_set():
        raise AbandonedError("the caller no longer wants this response")


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
    request_id: str | None = None

    @property
    def events(self) -> list[dict[str, Any]]:
        """The page's events; MalformedDataError (exit 65) when its body is not JSON."""
        if isinstance(self.body, bytes):
            try:
                self.body = parse_events(self.body)
            except MalformedDataError as error:
                error.request_id = self.request_id
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


def _http_date(value: str) -> datetime | None:
    try:
        moment = parsedate_to_datetime(value)
    except (TypeError, ValueError, IndexError, OverflowError):
        return None
    return moment if moment.tzinfo is not None else moment.replace(tzinfo=timezone.utc)


def _retry_after(response: requests.Response) -> float | None:
    """Retry-After as seconds: a number, or an HTTP date less the server's own Date."""
    value = response.headers.get("Retry-After", "").strip()
    if not value:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    until = _http_date(value)
    now = _http_date(response.headers.get("Date", "")) or datetime.now(timezone.utc)
    return None if until is None else max(0.0, (until - now).total_seconds())


def _error_detail(response: requests.Response, secret: str) -> str:
    """The API's own message, when the body is the documented {id, message} object. The token
    is masked before the message is cut short: a cut first could leave most of it in view."""
    try:
        body = orjson.loads(response.content)
    except orjson.JSONDecodeError:
        return ""
    if isinstance(body, dict) and isinstance(body.get("message"), str):
        error_id = body.get("id") if isinstance(body.get("id"), str) else "error"
        error_id, message = (
            text.replace(secret, REDACTED) if secret else text
            for text in (str(error_id), body["message"].strip())
        )
        return f" (Heroku said {error_id[:60]}: {message[:200]})"
    return ""


def _read_capped(response: requests.Response, cap: int, what: str) -> bytes:
    """The body, decoded (gzip), a chunk at a time; MalformedDataError past `cap` bytes."""
    chunks: list[bytes] = []
    total = 0
    for chunk in response.iter_content(_CHUNK):
        total += len(chunk)
        if total > cap:
            response.close()
            raise MalformedDataError(
                f"a Heroku API response{' (' + what + ')' if what else ''} inflates past "
                f"{cap >> 20} MiB, the most this program reads; nothing of it was printed",
                request_id=response.headers.get("Request-Id"),
            )
        chunks.append(chunk)
    return b"".join(chunks)


def _origin(url: str) -> str:
    parts = urlsplit(url)
    return f"{parts.scheme}://{parts.netloc}"


def _tls_reason(error: Exception) -> str:
    text = str(error)
    for needle, reason in (
        ("CERTIFICATE_VERIFY_FAILED", "the server's certificate is not trusted"),
        ("WRONG_VERSION_NUMBER", "the server does not speak TLS (plain HTTP on an https URL?)"),
        ("hostname", "the certificate does not name this host"),
    ):
        if needle in text:
            return reason
    return "TLS handshake failed"


class _NoNetrc(requests.auth.AuthBase):
    """Set as the session's auth so that requests never reads ~/.netrc on its own (it does when
    a session has no auth): the token goes on API requests explicitly, and nowhere else."""

    def __call__(self, request: requests.PreparedRequest) -> requests.PreparedRequest:
        return request


class _Session(requests.Session):
    """Proxies (HTTPS_PROXY, NO_PROXY) and CA bundles (REQUESTS_CA_BUNDLE) from the environment,
    like any requests-based tool, but no credentials from ~/.netrc: not on a request, nor on
    the redirect an archive's storage may answer (requests adds the new host's entry there)."""

    def __init__(self) -> None:
        super().__init__()
        self.trust_env = True
        self.auth = _NoNetrc()

    def rebuild_auth(
        self, prepared_request: requests.PreparedRequest, response: requests.Response
    ) -> None:
        headers = prepared_request.headers
        old_url, new_url = response.request.url or "", prepared_request.url or ""
        if "Authorization" in headers and self.should_strip_auth(old_url, new_url):  # type: ignore[no-untyped-call]
            del headers["Authorization"]


class HerokuClient:
    def __init__(
        self,
        api_url: str,
        token: Secret,
        *,
        deadline: Deadline | None = None,
        rate_limit_floor: int = 0,
        sleep: Callable[[float], None] = time.sleep,
        retry_budget: float = RETRY_BUDGET,
        connections: int = 10,
    ) -> None:
        self.api_url = api_url.rstrip("/")
        # A loopback API (a simulator, a local relay) is reached directly, never through a
        # proxy from the environment: the token would travel to it, in clear for http://
        # (as Go's ProxyFromEnvironment does). Requests drops the keys set to None.
        loopback = is_loopback(urlsplit(self.api_url).hostname or "")
        self._api_proxies: dict[str, None] | None = (
            {"http": None, "https": None} if loopback else None
        )
        self.deadline = deadline or Deadline(None)
        self.rate_limit_floor = rate_limit_floor
        self.retry_budget = retry_budget
        self.sleep = sleep
        self.session = _Session()
        if connections > 10:  # requests keeps 10 a host; more requests at once need more
            adapter = requests.adapters.HTTPAdapter(pool_maxsize=connections)
            self.session.mount("https://", adapter)
            self.session.mount("http://", adapter)
        # SSL_CERT_FILE as well as REQUESTS_CA_BUNDLE: requests reads only the latter.
        ca_file = os.environ.get("SSL_CERT_FILE")
        if ca_file and not os.environ.get("REQUESTS_CA_BUNDLE"):
            self.session.verify = ca_file
        self._token = token.reveal()
        self._auth = {"Authorization": f"Bearer {self._token}"}
        self.token_source = token.source
        self.requests_made = 0
        self._counting = threading.Lock()  # requests are sent from several threads
        self.rate_limit_remaining: int | None = None
        self.last_request_id: str | None = None
        self.server_time: datetime | None = None  # the last response's Date: a second clock
        self._waited = 0.0

    # -- the endpoints -------------------------------------------------------------------

    def enterprise_account(self, id_or_name: str, tally: Tally | None = None) -> dict[str, Any]:
        response = self.get(f"/enterprise-accounts/{quote(id_or_name, safe='')}", tally=tally)
        try:
            account = orjson.loads(response.content)
        except orjson.JSONDecodeError:
            account = None
        if not isinstance(account, dict) or not isinstance(account.get("id"), str):
            raise MalformedDataError(
                "Heroku API returned an enterprise account without an id",
                request_id=self.last_request_id,
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
            response = self.get(
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
                raise self._failure(response, authenticated=True)
            if response.status_code == 304:
                if "If-None-Match" in headers:
                    yield Page([], None, etag, not_modified=True)
                else:  # not an answer to anything we asked: end the pass here, keep what came
                    yield Page(
                        [],
                        None,
                        complete=False,
                        warning=f"Heroku API answered 304 to a page of {day} that was not "
                        "a conditional request; the day stays open and is read again",
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
                    request_id=self.last_request_id,
                )
            whole_day = pages == 1 and not start_range and next_range is None
            yield Page(
                response.content,
                next_range,
                response.headers.get("ETag") if whole_day else None,
                warning=warning,
                request_id=self.last_request_id,
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

    def rate_limits(self) -> int | None:
        response = self.get("/account/rate-limits")
        try:
            remaining = orjson.loads(response.content).get("remaining")
        except (orjson.JSONDecodeError, AttributeError):
            return None
        return remaining if isinstance(remaining, int) else None

    def archives(self, account_id: str) -> list[dict[str, Any]]:
        response = self.get(f"/enterprise-accounts/{quote(account_id, safe='')}/archives")
        return parse_events(response.content, what="archives")

    def archive(self, account_id: str, year: int, month: int) -> dict[str, Any] | None:
        """One month's archive object, or None when Heroku has none for that month."""
        path = f"/enterprise-accounts/{quote(account_id, safe='')}/archives/{year:04d}/{month:02d}"
        response = self.get(path, allow=(404,))
        if response.status_code == 404:
            return None
        try:
            archive = orjson.loads(response.content)
        except orjson.JSONDecodeError:
            archive = None
        if not isinstance(archive, dict) or not isinstance(archive.get("url"), str):
            raise MalformedDataError(
                f"Heroku API returned an archive for {year:04d}-{month:02d} without a url",
                request_id=self.last_request_id,
            )
        return archive

    def download(self, url: str) -> bytes:
        """An archive file: its URL is pre-signed storage, so no Heroku token goes with it."""
        return self._send(url, headers={}, authenticated=False, cap=ARCHIVE_BYTES_CAP).content

    # -- the request loop ----------------------------------------------------------------

    def get(
        self,
        path: str,
        params: dict[str, str] | None = None,
        headers: dict[str, str] | None = None,
        allow: tuple[int, ...] = (),
        abandoned: threading.Event | None = None,
        tally: Tally | None = None,
    ) -> requests.Response:
        """GET an API path; a status in `allow` is returned to the caller, not raised.
        `abandoned`: once set, no further attempt is made (AbandonedError). `tally`: counts
        this caller's requests too."""
        return self._send(
            self.api_url + path,
            params=params,
            headers=headers or {},
            allow=allow,
            abandoned=abandoned,
            tally=tally,
        )

    def _send(
        self,
        url: str,
        *,
        headers: dict[str, str],
        params: dict[str, str] | None = None,
        authenticated: bool = True,
        allow: tuple[int, ...] = (),
        cap: int = PAGE_BYTES_CAP,
        abandoned: threading.Event | None = None,
        tally: Tally | None = None,
    ) -> requests.Response:
        tally = tally or Tally()
        attempt = 0
        while True:
            _stop_if(abandoned)
            self._check_floor()
            self.deadline.check()
            request_headers = {"User-Agent": USER_AGENT, "Request-Id": str(uuid.uuid4())}
            if authenticated:
                request_headers |= {"Accept": ACCEPT, **self._auth}
            request_headers |= headers
            remaining = self.deadline.remaining()
            timeout = (min(CONNECT_TIMEOUT, remaining), min(READ_TIMEOUT, remaining))
            retry_after: float | None = None
            try:
                response = self.session.get(
                    url,
                    params=params,
                    headers=request_headers,
                    timeout=timeout,
                    allow_redirects=not authenticated,
                    stream=True,
                    proxies=self._api_proxies if authenticated else None,  # type: ignore[arg-type]
                )
                response._content = _read_capped(response, cap, "" if authenticated else "archive")
            except requests.exceptions.SSLError as error:
                # Not retried: a wrong CA or plain HTTP on an https URL does not heal by itself.
                self._count(tally)
                raise ApiUnavailableError(
                    f"TLS to {_origin(url)} failed: {_tls_reason(error)}; if a proxy inspects "
                    "TLS, point REQUESTS_CA_BUNDLE (or SSL_CERT_FILE) at its CA bundle"
                ) from None
            except requests.RequestException as error:
                _stop_if(abandoned)
                self._count(tally)
                self.deadline.check()
                failure: AuditTrailError = ApiUnavailableError(
                    f"cannot reach the Heroku API at {self.api_url}: "
                    f"{type(error).__name__} after {attempt + 1} attempt(s); "
                    "check the network, or HEROKU_API_URL"
                )
            else:
                _stop_if(abandoned)  # counted nowhere: the run may be on another account now
                self._count(tally)
                self._note(response)
                status = response.status_code
                if status in (200, 206, 304) or (not authenticated and status < 300):
                    return response
                if status in allow:
                    return response
                failure = self._failure(response, authenticated)
                if status == 429:
                    retry_after = _retry_after(response)
                    tally.retry_after = retry_after
                elif status < 500:
                    raise failure
            attempt += 1
            delay = (
                retry_after
                if retry_after is not None
                else random.uniform(0, self.retry_budget * BACKOFF_SHARE * 2**attempt)
            )
            out_of_budget = self._waited + delay > self.retry_budget
            if attempt > MAX_RETRIES or out_of_budget or delay >= self.deadline.remaining():
                raise failure
            _stop_if(abandoned)
            self._waited += delay
            self.sleep(delay)

    def _count(self, tally: Tally) -> None:
        with self._counting:
            self.requests_made += 1
        tally.count()

    def _note(self, response: requests.Response) -> None:
        self.last_request_id = response.headers.get("Request-Id") or self.last_request_id
        self.server_time = _http_date(response.headers.get("Date", "")) or self.server_time
        remaining = response.headers.get("RateLimit-Remaining", "").strip()
        if remaining.isdigit():
            # The lowest of the run: answers to requests side by side come in any order, and
            # within a run the quota only refills by a little.
            with self._counting:
                seen = self.rate_limit_remaining
                self.rate_limit_remaining = min(
                    int(remaining), seen if seen is not None else 1 << 62
                )

    def _check_floor(self) -> None:
        remaining = self.rate_limit_remaining
        if remaining is not None and remaining < self.rate_limit_floor:
            raise RateLimitedError(
                f"Rate Limiting: RateLimit-Remaining is {remaining}, under the floor of "
                f"{self.rate_limit_floor}; stopping early so the account's other automation "
                "keeps its quota (--rate-limit-floor); try again later"
            )

    def _failure(self, response: requests.Response, authenticated: bool) -> AuditTrailError:
        status = response.status_code
        if not authenticated:
            return ApiUnavailableError(f"archive download failed with HTTP {status}")
        exception, message = STATUS_ERRORS.get(
            status,
            (ApiUnavailableError, f"Heroku API answered HTTP {status}")
            if status >= 500 or status < 400
            else (ApiUnavailableError, f"Heroku API refused the request with HTTP {status}"),
        )
        if status >= 500:
            message = f"Heroku API unavailable: HTTP {status} after the bounded retries"
        return exception(
            f"{message}{_error_detail(response, self._token)}",
            request_id=response.headers.get("Request-Id"),
        )
