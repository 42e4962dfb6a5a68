"""HTTP client for the Heroku Platform API: retries, rate limits, pages, errors (DESIGN §9)."""

from __future__ import annotations

import random
import re
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import date
from typing import Any
from urllib.parse import quote

import orjson
import requests

from heroku_audit_trail import __version__
from heroku_audit_trail.config import Secret
from heroku_audit_trail.errors import (
    ApiUnavailableError,
    AuditTrailError,
    ConfigError,
    DeadlineError,
    MalformedDataError,
    PermissionDeniedError,
    RateLimitedError,
)

ACCEPT = "application/vnd.heroku+json; version=3"
USER_AGENT = f"heroku-audit-trail/{__version__} (+python-requests)"
CONNECT_TIMEOUT = 5.0
READ_TIMEOUT = 30.0
MAX_RETRIES = 4
RETRY_BUDGET = 15.0  # seconds of waiting in all, per run
BACKOFF_BASE = 0.5
PAGE_MAX = 1000
PAGE_CAP = 1000  # pages per day: 1M events, far past any real account, short of forever

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
        "the next run carries on",
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


@dataclass
class DayFetch:
    events: list[dict[str, Any]]
    etag: str | None  # kept only for a day that came back in one page
    not_modified: bool
    pages: int


def parse_events_body(content: bytes, what: str = "events") -> list[dict[str, Any]]:
    """A bare JSON array (what Heroku sends) or {"data": [...]}; anything else is exit 65."""
    try:
        body = orjson.loads(content)
    except orjson.JSONDecodeError:
        raise MalformedDataError(f"Heroku API returned {what} that are not JSON") from None
    if isinstance(body, dict) and isinstance(body.get("data"), list):
        body = body["data"]
    if not isinstance(body, list) or not all(isinstance(item, dict) for item in body):
        raise MalformedDataError(
            f"Heroku API returned {what} in an unexpected shape (not a JSON array of objects)"
        )
    return body


def with_max(range_value: str, page_max: int = PAGE_MAX) -> str:
    """Ask for the largest page when following a Next-Range (fewer pages, fewer tokens)."""
    if re.search(r"max=\d+", range_value):
        return re.sub(r"max=\d+", f"max={page_max}", range_value)
    return range_value.rstrip("; ") + f"; max={page_max}"


def _retry_after(response: requests.Response) -> float | None:
    value = response.headers.get("Retry-After", "").strip()
    try:
        return max(0.0, float(value)) if value else None
    except ValueError:
        return None  # an HTTP date: fall back to our own backoff


def _error_detail(response: requests.Response) -> str:
    """The API's own message, when the body is the documented {id, message} object."""
    try:
        body = orjson.loads(response.content)
    except orjson.JSONDecodeError:
        return ""
    if isinstance(body, dict) and isinstance(body.get("message"), str):
        error_id = body.get("id") if isinstance(body.get("id"), str) else "error"
        return f" (Heroku said {error_id}: {body['message'].strip()[:200]})"
    return ""


class HerokuClient:
    def __init__(
        self,
        api_url: str,
        token: Secret,
        *,
        deadline: Deadline | None = None,
        rate_limit_floor: int = 0,
        session: requests.Session | None = None,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self.api_url = api_url.rstrip("/")
        self.deadline = deadline or Deadline(None)
        self.rate_limit_floor = rate_limit_floor
        self.sleep = sleep
        self.session = session or requests.Session()
        self.session.trust_env = False  # no proxy or netrc surprises: auth is ours alone
        self._auth = {"Authorization": f"Bearer {token.reveal()}"}
        self.token_source = token.source
        self.requests_made = 0
        self.rate_limit_remaining: int | None = None
        self.last_request_id: str | None = None
        self._waited = 0.0

    # -- the endpoints -------------------------------------------------------------------

    def enterprise_account(self, id_or_name: str) -> dict[str, Any]:
        response = self.get(f"/enterprise-accounts/{quote(id_or_name, safe='')}")
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

    def fetch_day(
        self,
        account_id: str,
        day: date,
        filters: tuple[tuple[str, str], ...] = (),
        etag: str | None = None,
    ) -> DayFetch:
        """Every event of one day, following Next-Range; If-None-Match on the first page."""
        path = f"/enterprise-accounts/{quote(account_id, safe='')}/events"
        params = {"day": day.isoformat(), **dict(filters)}
        headers = {"If-None-Match": etag} if etag else {}
        events: list[dict[str, Any]] = []
        ranges_seen: set[str] = set()
        pages = 0
        while True:
            response = self.get(path, params=params, headers=headers)
            if response.status_code == 304:
                return DayFetch([], etag, not_modified=True, pages=pages)
            try:
                events += parse_events_body(response.content)
            except MalformedDataError as error:
                error.request_id = self.last_request_id
                raise
            pages += 1
            next_range = response.headers.get("Next-Range")
            if not next_range:
                break
            if next_range in ranges_seen or pages >= PAGE_CAP:
                raise MalformedDataError(
                    f"Heroku API pagination for {day} does not end (Next-Range {next_range!r} "
                    f"repeated or over {PAGE_CAP} pages); nothing of that day was printed",
                    request_id=self.last_request_id,
                )
            ranges_seen.add(next_range)
            headers = {"Range": with_max(next_range)}
        # A page's ETag need not cover the pages after it: keep it only for a one-page day.
        single_etag = response.headers.get("ETag") if pages == 1 else None
        return DayFetch(events, single_etag, not_modified=False, pages=pages)

    def rate_limits(self) -> int | None:
        response = self.get("/account/rate-limits")
        try:
            remaining = orjson.loads(response.content).get("remaining")
        except (orjson.JSONDecodeError, AttributeError):
            return None
        return remaining if isinstance(remaining, int) else None

    def archives(self, account_id: str) -> list[dict[str, Any]]:
        response = self.get(f"/enterprise-accounts/{quote(account_id, safe='')}/archives")
        return parse_events_body(response.content, what="archives")

    def archive(self, account_id: str, year: int, month: int) -> dict[str, Any] | None:
        """One month's archive object, or None when Heroku has none for that month."""
        path = f"/enterprise-accounts/{quote(account_id, safe='')}/archives/{year:04d}/{month:02d}"
        response = self.get(path, missing_ok=True)
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
        return self._send(url, headers={}, authenticated=False).content

    # -- the request loop ----------------------------------------------------------------

    def get(
        self,
        path: str,
        params: dict[str, str] | None = None,
        headers: dict[str, str] | None = None,
        missing_ok: bool = False,
    ) -> requests.Response:
        return self._send(
            self.api_url + path, params=params, headers=headers or {}, missing_ok=missing_ok
        )

    def _send(
        self,
        url: str,
        *,
        headers: dict[str, str],
        params: dict[str, str] | None = None,
        authenticated: bool = True,
        missing_ok: bool = False,
    ) -> requests.Response:
        attempt = 0
        while True:
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
                )
            except requests.RequestException as error:
                self.requests_made += 1
                self.deadline.check()
                failure: AuditTrailError = ApiUnavailableError(
                    f"cannot reach the Heroku API at {self.api_url}: "
                    f"{type(error).__name__} after {attempt + 1} attempt(s); "
                    "check the network, or HEROKU_API_URL"
                )
            else:
                self.requests_made += 1
                self._note(response)
                status = response.status_code
                if status in (200, 206, 304) or (not authenticated and status < 300):
                    return response
                if status == 404 and missing_ok:
                    return response
                failure = self._failure(response, authenticated)
                if status == 429:
                    retry_after = _retry_after(response)
                elif status < 500:
                    raise failure
            attempt += 1
            delay = (
                retry_after
                if retry_after is not None
                else random.uniform(0, BACKOFF_BASE * 2**attempt)
            )
            out_of_budget = self._waited + delay > RETRY_BUDGET
            if attempt > MAX_RETRIES or out_of_budget or delay >= self.deadline.remaining():
                raise failure
            self._waited += delay
            self.sleep(delay)

    def _note(self, response: requests.Response) -> None:
        self.last_request_id = response.headers.get("Request-Id") or self.last_request_id
        remaining = response.headers.get("RateLimit-Remaining", "").strip()
        if remaining.isdigit():
            self.rate_limit_remaining = int(remaining)

    def _check_floor(self) -> None:
        remaining = self.rate_limit_remaining
        if remaining is not None and remaining < self.rate_limit_floor:
            raise RateLimitedError(
                f"Rate Limiting: RateLimit-Remaining is {remaining}, under the floor of "
                f"{self.rate_limit_floor}; stopping early so the account's other automation "
                "keeps its quota (--rate-limit-floor); the next run carries on"
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
            f"{message}{_error_detail(response)}",
            request_id=response.headers.get("Request-Id"),
        )
