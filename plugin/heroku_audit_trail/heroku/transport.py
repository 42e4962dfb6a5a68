"""The transport: how a request is sent, apart from what it asks (the API layer, `api`).

Retries with a bounded backoff, the run's deadline, the rate-limit floor, size caps, proxies
and CA bundles from the environment, TLS errors, and the one table from HTTP status to error.
Two kinds of request: to Heroku's API (the token, no redirects, its statuses and errors) and
to an archive's pre-signed storage URL (no token, redirects followed). Each answer's metadata
(request id, Date, RateLimit-Remaining, Retry-After) is an `Answer`, kept with what it answered
and added to the caller's tally, so nothing is read off the transport afterwards.
"""

from __future__ import annotations

import os
import random
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import BinaryIO
from urllib.parse import urlsplit

import requests

from heroku_audit_trail import __version__
from heroku_audit_trail.config import RETRY_BUDGET, Secret, is_loopback
from heroku_audit_trail.deadline import Deadline
from heroku_audit_trail.errors import (
    ApiUnavailableError,
    AuditTrailError,
    ConfigError,
    PermissionDeniedError,
    RateLimitedError,
)
from heroku_audit_trail.heroku.responses import (
    Answer,
    error_detail,
    origin,
    read_capped,
    tls_reason,
)
from heroku_audit_trail.runs import Tally, lowest

ACCEPT = "application/vnd.heroku+json; version=3"
USER_AGENT = f"heroku-audit-trail/{__version__} (+python-requests)"
CONNECT_TIMEOUT = 5.0
READ_TIMEOUT = 30.0
MAX_RETRIES = 4
# The n-th wait is up to budget / 30 * 2**n seconds (0.5, 1, 2, 4, 8 with the default): the
# four retries fit the budget, and a smaller budget makes the same schedule shorter.
BACKOFF_SHARE = 1 / 30
# What one response may inflate to (gzip included), read as a stream and refused past it (exit
# 65): a page of 1000 events of 12 KB is 12 MiB; an archive is a month of an account's events.
PAGE_BYTES_CAP = 64 << 20
ARCHIVE_BYTES_CAP = 1 << 30

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


class AbandonedError(Exception):
    """A page read ahead that its caller no longer wants (not a failure: nobody sees it)."""


def _stop_if(abandoned: threading.Event | None) -> None:
    if abandoned is not None and abandoned.is_set():
        raise AbandonedError("the caller no longer wants this response")


@dataclass(frozen=True)
class _Kind:
    """What differs between a request to the API and an archive download: one place."""

    headers: dict[str, str]
    follow_redirects: bool
    cap: int
    what: str  # named in the size-cap error
    api: bool  # statuses and errors as the API's (else any 2xx is fine, anything else fails)


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


class Transport:
    """Sends GETs: one per call, retried within the run's budget and deadline."""

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
        self.token_source = token.source
        self._api = _Kind(
            {"Accept": ACCEPT, "Authorization": f"Bearer {self._token}"},
            follow_redirects=False,
            cap=PAGE_BYTES_CAP,
            what="",
            api=True,
        )
        self._download = _Kind(
            {}, follow_redirects=True, cap=ARCHIVE_BYTES_CAP, what="archive", api=False
        )
        # A loopback API (a simulator, a local relay) is reached directly, never through a
        # proxy from the environment: the token would travel to it, in clear for http://
        # (as Go's ProxyFromEnvironment does). Requests drops the keys set to None.
        loopback = is_loopback(urlsplit(self.api_url).hostname or "")
        self._api_proxies = {"http": None, "https": None} if loopback else None
        self._counting = threading.Lock()  # requests are sent from several threads
        self.requests_made = 0
        self.rate_limit_remaining: int | None = None  # the lowest of the run (the floor's)
        self.server_time: datetime | None = None  # the last Date: a second clock
        self._waited = 0.0

    def api_get(
        self,
        path: str,
        params: dict[str, str] | None = None,
        headers: dict[str, str] | None = None,
        allow: tuple[int, ...] = (),
        abandoned: threading.Event | None = None,
        tally: Tally | None = None,
    ) -> tuple[requests.Response, Answer]:
        """GET an API path; a status in `allow` is returned to the caller, not raised.
        `abandoned`: once set, no further attempt is made (AbandonedError). `tally`: counts
        this caller's requests and keeps what their answers said."""
        return self._send(
            self.api_url + path, self._api, params, headers or {}, allow, abandoned, tally
        )

    def download(self, url: str, sink: BinaryIO) -> None:
        """A pre-signed storage URL into `sink`: no Heroku token goes with it, redirects are
        followed, and the body never sits in memory whole."""
        self._send(url, self._download, None, {}, (), None, None, sink)

    def _send(
        self,
        url: str,
        kind: _Kind,
        params: dict[str, str] | None,
        headers: dict[str, str],
        allow: tuple[int, ...],
        abandoned: threading.Event | None,
        tally: Tally | None,
        sink: BinaryIO | None = None,
    ) -> tuple[requests.Response, Answer]:
        tally = tally or Tally()
        attempt = 0
        while True:
            _stop_if(abandoned)
            self._check_floor()
            self.deadline.check()
            sent = {"User-Agent": USER_AGENT, "Request-Id": str(uuid.uuid4())}
            sent |= kind.headers | headers
            remaining = self.deadline.remaining()
            timeout = (min(CONNECT_TIMEOUT, remaining), min(READ_TIMEOUT, remaining))
            retry_after: float | None = None
            try:
                response = self.session.get(
                    url,
                    params=params,
                    headers=sent,
                    timeout=timeout,
                    allow_redirects=kind.follow_redirects,
                    stream=True,
                    proxies=self._api_proxies if kind.api else None,  # type: ignore[arg-type]
                )
                response._content = read_capped(response, kind.cap, kind.what, sink)
            except requests.exceptions.SSLError as error:
                # Not retried: a wrong CA or plain HTTP on an https URL does not heal by itself.
                self._count(tally)
                raise ApiUnavailableError(
                    f"TLS to {origin(url)} failed: {tls_reason(error)}; if a proxy inspects "
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
                answer = Answer.of(response)
                self._note(answer)
                tally.note(answer)
                status = response.status_code
                if status in (200, 206, 304) or (not kind.api and status < 300):
                    return response, answer
                if status in allow:
                    return response, answer
                failure = self.failure(response, kind.api)
                if status == 429:
                    retry_after = answer.retry_after
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

    def _note(self, answer: Answer) -> None:
        with self._counting:
            self.server_time = answer.date or self.server_time
            self.rate_limit_remaining = lowest(
                self.rate_limit_remaining, answer.rate_limit_remaining
            )

    def _check_floor(self) -> None:
        remaining = self.rate_limit_remaining
        if remaining is not None and remaining < self.rate_limit_floor:
            raise RateLimitedError(
                f"Rate Limiting: RateLimit-Remaining is {remaining}, under the floor of "
                f"{self.rate_limit_floor}; stopping early so the account's other automation "
                "keeps its quota (--rate-limit-floor); try again later"
            )

    def failure(self, response: requests.Response, api: bool = True) -> AuditTrailError:
        """The error a response is, by the status table; the API's own message added."""
        status = response.status_code
        if not api:
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
            f"{message}{error_detail(response, self._token)}",
            request_id=response.headers.get("Request-Id"),
        )
