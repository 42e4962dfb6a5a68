"""A local Heroku Platform API for the audit trail (DESIGN §7): a real HTTP server on loopback.

It serves what `reference/heroku-api.md` records: account lookup by name or id, `/events` by
day with filters, `Range`/`206`/`Next-Range` pages, `ETag`/`304`, a 4500-token rate limit,
`{id, message, url}` errors, the monthly archives with SHA-256 checksums, plus fault switches.
Tests, benchmarks, `demo` and users trying a shipper config all use it.
"""

from __future__ import annotations

import argparse
import base64
import errno
import hashlib
import random
import re
import signal
import socket
import ssl
import sys
import threading
import time
import uuid
from bisect import bisect_left, bisect_right
from dataclasses import dataclass, field, fields
from datetime import date, datetime, timedelta, timezone
from http.client import responses
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, unquote, urlsplit

import orjson

from heroku_audit_trail.eventgen import (
    archive_created_at,
    archive_file,
    generate_day,
    generate_late,
    matches,
)

DEMO_TOKEN = "HRKU-simulator-demo-token-0000000000000000"
NO_ACCESS_TOKEN = "HRKU-simulator-no-access-token-000000000000"
DOCS = "https://devcenter.heroku.com/articles/platform-api-reference"
JSON = "application/json; charset=utf-8"
NOT_ACCEPTABLE_MESSAGE = (
    "Please set Accept: application/vnd.heroku+json; version=3 header and try again."
)
FORBIDDEN_MESSAGE = "You do not have access to the enterprise account requested."
RATE_LIMIT_MESSAGE = (
    "Your account reached the API rate limit\nPlease wait a few minutes before making new requests"
)
# `version=3` and its variants (`3.sdk`), but not `version=30`.
_ACCEPT_RE = re.compile(r"application/vnd\.heroku\+json\s*;\s*version=3(?:\.[\w-]+)?(?![\w.])")
_DAY_RE = re.compile(r"[0-9]{4}-[0-9]{2}-[0-9]{2}")
# `[id ][]]<first>..[<last>][; max=N][,order=asc]` (reference §2); the attribute is optional
# because Next-Range values, sent back as they are, carry none.
_RANGE_RE = re.compile(
    r"(?:(?P<attr>[A-Za-z_]+)\s+)?(?P<exclusive>\]?)(?P<first>[^\s.;,\[\]]*)"
    r"\.\.(?P<last>[^\s.;,\[\]]*)\s*(?P<options>[;,].*)?"
)
# What a misbehaving proxy sends: a 200 that claims JSON and is a web page.
_NOT_JSON = b"<!DOCTYPE html><html><body><h1>Application error</h1></body></html>"


@dataclass
class Faults:
    """Switches a test (or `simulate` flags) can flip at any time, from any thread."""

    error_rate: float = 0.0  # share of API requests answered with error_status
    error_status: int = 503
    rate_limit_burst: int = 0  # the next N API requests get 429 (counts down)
    retry_after: float | None = None  # Retry-After seconds on 429s; None: no header
    latency: float = 0.0  # seconds slept before every response but /account/rate-limits
    cut_rate: float = 0.0  # share of /events bodies cut in half, then the connection closed
    invalid_json_rate: float = 0.0  # share of /events answered 200 with a body that is not JSON
    envelope: bool = False  # /events answers {"data": [...]}
    # After this many /events requests, add late_count events to late_day (default yesterday)
    # once; the switch then goes back to None, so setting it again arms it again.
    late_after_requests: int | None = None
    late_count: int = 3
    late_day: date | None = None
    rate_limit_remaining: int | None = None  # reported instead of the bucket's level (no 429s)
    # Non-conforming servers (DESIGN §9 asks the client to cope with them):
    failing_days: tuple[date, ...] = ()  # /events for these days answers error_status
    failing_ranged: bool = False  # every /events page after a day's first answers error_status
    not_modified_ranged: bool = False  # 304 to every ranged request (a later page)
    drop_next_range: bool = False  # a 206 with no Next-Range header
    send_date: bool = True  # False: no Date header (a proxy that strips it)
    # error_rate answers echo the Authorization header after this many characters
    echo_authorization: int | None = None
    gzip_body: bytes | None = None  # /events answers these bytes, Content-Encoding: gzip
    date_offset: float = 0.0  # seconds added to the Date header (a server clock that is off)
    # Every /events page gets a fresh Next-Range, for ever (pagination that never ends).
    endless_next_range: bool = False
    # What an /events ETag covers: "page" (the body, as Heroku's do) or "day" (every event of
    # the day, whatever the page).
    etag_scope: str = "page"
    # (count, "YYYY-MM-DD"): that many small events of that day added to its month's archive
    # file only (a big archive; set before the archive is first asked for).
    archive_filler: tuple[int, str] = (0, "")


def _seeded_id(seed: int) -> str:
    return str(uuid.UUID(int=random.Random(f"account:{seed}").getrandbits(128), version=4))


@dataclass
class SimulatorConfig:
    """What the simulated account looks like; fixed once the simulator is built."""

    seed: int = 1
    events_per_day: int = 40
    history_days: int = 3  # days before today (UTC) with events; today has events too
    today_events: bool = True  # False: today starts empty (a benchmark wants whole days)
    enterprise_name: str = "acme"
    enterprise_id: str = ""  # derived from the seed when empty
    token: str = DEMO_TOKEN
    permissions: tuple[str, ...] = ("view", "create", "manage", "billing")
    page_size: int = 200
    max_page_size: int = 1000
    rate_limit_capacity: int = 4500
    refill_per_minute: float = 75.0
    archive_layout: str = "array"  # decompressed archive: "array" [...] or "entries" {"entries"}
    missing_archive_months: tuple[str, ...] = ()  # "YYYY-MM" months with no archive
    bad_checksum_months: tuple[str, ...] = ()  # "YYYY-MM" months whose checksum is wrong
    # ("YYYY-MM", day): that month's archive was built on that day, so it holds only the
    # days before it (its created_at says so)
    archive_built_on: tuple[tuple[str, date], ...] = ()
    # An archive's url answers 302 to where the file is (storage behind a redirect).
    archive_redirect: bool = False
    host: str = "127.0.0.1"
    port: int = 0  # 0: a free ephemeral port
    tls: ssl.SSLContext | None = None  # serve HTTPS with this server context (tests: trustme)

    def __post_init__(self) -> None:
        if not self.enterprise_id:
            self.enterprise_id = _seeded_id(self.seed)
        if self.archive_layout not in ("array", "entries"):
            raise ValueError(
                f"archive_layout must be 'array' or 'entries', not {self.archive_layout!r}"
            )


@dataclass
class _Response:
    status: int
    body: bytes = b""
    headers: dict[str, str] = field(default_factory=dict)
    cut: bool = False  # send the full Content-Length, write half the body, close


def _json(value: Any, status: int = 200) -> _Response:
    return _Response(status, orjson.dumps(value), {"Content-Type": JSON})


class _Reply(Exception):
    """Raised while handling a request to answer with Heroku's `{id, message, url}` error."""

    def __init__(self, status: int, error_id: str, message: str, anchor: str = "") -> None:
        super().__init__(message)
        self.response = _json({"id": error_id, "message": message, "url": DOCS + anchor}, status)


def _not_found(what: str = "The requested API endpoint was not found.") -> _Reply:
    return _Reply(404, "not_found", what)


def _bad_range(message: str) -> _Reply:
    return _Reply(416, "requested_range_not_satisfiable", message, "#ranges")


class _Bucket:
    """Heroku's token pool: `capacity` tokens, refilled continuously, one taken per call."""

    def __init__(self, capacity: int, per_minute: float) -> None:
        self.capacity = capacity
        self.per_second = per_minute / 60
        self.tokens = float(capacity)
        self.stamp = time.monotonic()

    def level(self) -> int:
        now = time.monotonic()
        self.tokens = min(self.capacity, self.tokens + (now - self.stamp) * self.per_second)
        self.stamp = now
        return int(self.tokens)

    def take(self) -> bool:
        if self.level() < 1:
            return False
        self.tokens -= 1
        return True


class Simulator:
    """The fake API on a background thread: `with Simulator(config, faults) as sim: sim.url`.

    `events_for_day` and `all_events` are the ground truth tests compare against; `faults`
    may be changed while it serves; `request_log` records every request without credentials
    once answered, `arrivals` counts them as they come.
    """

    def __init__(self, config: SimulatorConfig | None = None, faults: Faults | None = None) -> None:
        self.config = config or SimulatorConfig()
        self.faults = faults or Faults()
        self.url = ""
        self.request_log: list[dict[str, Any]] = []  # never holds credentials
        self.arrivals = 0  # requests received, answered or not (the log has the answered)
        self.verbose = False  # log each request on stderr (the `simulate` command)
        self.started_at = datetime.now(timezone.utc)
        self.today = self.started_at.date()
        # One re-entrant lock for all shared state: requests are served on many threads.
        self._lock = threading.RLock()
        self._rng = random.Random(f"faults:{self.config.seed}")  # reproducible fault decisions
        self._days: dict[date, list[dict[str, Any]]] = {}
        self._pages: dict[tuple[Any, ...], tuple[int, list[str], list[dict[str, Any]]]] = {}
        self._archives: dict[str, tuple[int, dict[str, Any], bytes]] = {}
        self._generation = 0  # bumped by add_events: cached archives are then stale
        self._late_batches = 0
        self._events_requests = 0
        self._endless = 0  # the endless_next_range fault's counter
        self._bucket = _Bucket(self.config.rate_limit_capacity, self.config.refill_per_minute)
        self._server: _Server | None = None
        self._thread: threading.Thread | None = None

    # -- ground truth -----------------------------------------------------------------------

    @property
    def account(self) -> dict[str, str]:
        return {"id": self.config.enterprise_id, "name": self.config.enterprise_name}

    def _day(self, day: date) -> list[dict[str, Any]]:
        """The stored events of `day`, generated on first use (call with the lock held)."""
        events = self._days.get(day)
        if events is None:
            events = []
            last = self.today if self.config.today_events else self.today - timedelta(days=1)
            if self.today - timedelta(days=self.config.history_days) <= day <= last:
                cutoff = self.started_at if day == self.today else None
                events = generate_day(
                    self.config.seed, day, self.config.events_per_day, self.account, cutoff
                )
            self._days[day] = events
        return events

    def _days_with_events(self) -> list[date]:
        first = self.today - timedelta(days=self.config.history_days)
        days = {first + timedelta(days=n) for n in range(self.config.history_days + 1)}
        with self._lock:
            days |= {day for day, events in self._days.items() if events}
        return sorted(days)

    def events_for_day(self, day: date) -> list[dict[str, Any]]:
        """Every event the API would return for `day`, unfiltered, as deep copies (a planted
        raw element as its sort id alone: its bytes may be beyond any parser)."""
        with self._lock:
            encoded = orjson.dumps([{"id": e["id"]} if _RAW in e else e for e in self._day(day)])
        result: list[dict[str, Any]] = orjson.loads(encoded)
        return result

    def all_events(self) -> list[dict[str, Any]]:
        return [event for day in self._days_with_events() for event in self.events_for_day(day)]

    def add_events(self, day: date, count: int) -> list[dict[str, Any]]:
        """Late events: `count` new ids inside `day` (none in the future), visible at once."""
        with self._lock:
            self._late_batches += 1
            seed = f"{self.config.seed}:{self._late_batches}"
            fresh = generate_late(seed, day, count, self.account, datetime.now(timezone.utc))
            self._day(day).extend(fresh)
            self._generation += 1
            encoded = orjson.dumps(fresh)
        result: list[dict[str, Any]] = orjson.loads(encoded)
        return result

    def plant(self, day: date, events: list[dict[str, Any]]) -> None:
        """Add these exact events to `day` (any shape: no id, odd times, the same id as an
        event of another day), visible at once."""
        with self._lock:
            self._day(day).extend(orjson.loads(orjson.dumps(events)))
            self._generation += 1

    def plant_raw(self, day: date, sort_id: str, raw: bytes) -> None:
        """Add one element to `day` as these exact bytes, which need not be valid for orjson
        (`1e400`, a lone surrogate escape, deep nesting, bytes that are not UTF-8). `sort_id`
        places it among the day's ids."""
        with self._lock:
            self._day(day).append({"id": sort_id, _RAW: orjson.Fragment(raw)})
            self._generation += 1

    def events_requests(self) -> int:
        """How many /events requests were answered, whatever the status."""
        return self._events_requests

    # -- lifecycle --------------------------------------------------------------------------

    def start(self) -> str:
        self._server = _Server(self)
        host = self.config.host
        scheme = "https" if self.config.tls else "http"
        address = f"[{host}]" if ":" in host else host
        self.url = f"{scheme}://{address}:{self._server.server_port}"
        # A short poll interval so that stop() returns quickly.
        self._thread = threading.Thread(
            target=self._server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
        )
        self._thread.start()
        return self.url

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None
        if self._thread is not None:
            self._thread.join(timeout=5)
            self._thread = None

    def __enter__(self) -> Simulator:
        self.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    # -- requests (called on the server's threads) -----------------------------------------

    def respond(self, method: str, target: str, headers: dict[str, str | None]) -> _Response:
        """Answer one request, then log it: method, path, query, status, Range, If-None-Match."""
        parts = urlsplit(target)
        query = {name: values[-1] for name, values in parse_qs(parts.query).items()}
        is_file = parts.path.startswith(("/archive-files/", "/archive-redirect/"))
        with self._lock:
            self.arrivals += 1
        if parts.path != "/account/rate-limits" and self.faults.latency > 0:
            time.sleep(self.faults.latency)
        try:
            if is_file:
                response = self._archive_file(method, parts.path)
            else:
                response = self._api(method, parts.path, query, headers)
        except _Reply as reply:
            response = reply.response
        if not is_file:  # archive files come from elsewhere (S3), without the API's headers
            response.headers.setdefault("Content-Type", JSON)
            response.headers["Request-Id"] = str(uuid.uuid4())
            response.headers["RateLimit-Remaining"] = str(self._remaining())
            if response.status == 429 and self.faults.retry_after is not None:
                response.headers["Retry-After"] = f"{self.faults.retry_after:g}"
        entry = {
            "method": method,
            "path": parts.path,
            "query": query,
            "status": response.status,
            "range": headers.get("range"),
            "if_none_match": headers.get("if-none-match"),
            "credentials": headers.get("authorization") is not None,
        }
        with self._lock:
            if parts.path.endswith("/events"):
                self._events_requests += 1
            self.request_log.append(entry)
        if self.verbose:  # `simulate` in the foreground: one line per request, no credentials
            query_text = "&".join(f"{k}={v}" for k, v in sorted(query.items()))
            line = f"simulate: {method} {parts.path}{'?' + query_text if query_text else ''}"
            print(f"{line} {response.status}", file=sys.stderr, flush=True)
        return response

    def _api(
        self, method: str, path: str, query: dict[str, str], headers: dict[str, str | None]
    ) -> _Response:
        if method != "GET":
            raise _Reply(405, "method_not_allowed", f"{method} is not supported: read-only API.")
        has_access = self._authenticate(headers.get("authorization"))
        if not _ACCEPT_RE.search(headers.get("accept") or ""):
            raise _Reply(406, "not_acceptable", NOT_ACCEPTABLE_MESSAGE)
        if path == "/account/rate-limits":  # free: it costs no token and has no faults
            return _json({"remaining": self._remaining()})
        self._charge()
        if self._chance(self.faults.error_rate):
            status = self.faults.error_status
            message = "Simulated failure (the error_rate fault switch)."
            echo = self.faults.echo_authorization
            if echo is not None:  # a careless server or proxy that echoes the request
                message = f"{'.' * echo} Authorization: {headers.get('authorization')}"
            error_id = responses.get(status, "error").lower().replace(" ", "_")
            raise _Reply(status, error_id, message)  # e.g. service_unavailable
        segments = [unquote(segment) for segment in path.split("/")[1:]]
        if segments == ["enterprise-accounts"]:
            return _json([self._account_body()] if has_access else [])
        if len(segments) < 2 or segments[0] != "enterprise-accounts":
            raise _not_found()
        # Plain equality: any other name (`../x`, spaces, 300 characters) is simply not found.
        if segments[1] not in (self.config.enterprise_id, self.config.enterprise_name):
            raise _not_found("Couldn't find that enterprise account.")
        if not has_access:
            raise _Reply(403, "forbidden", FORBIDDEN_MESSAGE, "#clients")
        rest = segments[2:]
        if not rest:
            return _json(self._account_body())
        if rest == ["events"]:
            return self._events(query, headers)
        if rest == ["archives"]:
            return _json([self._archive(month)[0] for month in self._archive_months()])
        if len(rest) == 3 and rest[0] == "archives":
            month = f"{rest[1]}-{rest[2]}"  # year and zero-padded month, as the CLI sends them
            if month not in self._archive_months():
                raise _not_found("Couldn't find that archive.")
            return _json(self._archive(month)[0])
        raise _not_found()

    def _authenticate(self, header: str | None) -> bool:
        """True for the configured token, False for NO_ACCESS_TOKEN, a 401 for anything else."""
        scheme, _, credentials = (header or "").strip().partition(" ")
        token = ""
        if scheme.lower() == "bearer":
            token = credentials.strip()
        elif scheme.lower() == "basic":  # `curl -n`: netrc login (email) and token as password
            try:
                token = base64.b64decode(credentials.strip(), validate=True).decode()
            except ValueError:
                token = ""
            token = token.partition(":")[2]
        if token and token == self.config.token:
            return True
        if token == NO_ACCESS_TOKEN:
            return False
        raise _Reply(401, "unauthorized", "Invalid credentials provided.", "#clients")

    def _charge(self) -> None:
        """Take one token (or one from the 429 burst), else answer 429."""
        with self._lock:
            if self.faults.rate_limit_burst > 0:
                self.faults.rate_limit_burst -= 1
                limited = True
            else:
                limited = not self._bucket.take()
        if limited:
            raise _Reply(429, "rate_limit", RATE_LIMIT_MESSAGE, "#rate-limits")

    def _remaining(self) -> int:
        with self._lock:
            level = self._bucket.level()
        override = self.faults.rate_limit_remaining
        return level if override is None else override

    def _chance(self, rate: float) -> bool:
        with self._lock:
            return rate > 0 and self._rng.random() < rate

    def _account_body(self) -> dict[str, Any]:
        created = f"{self.today - timedelta(days=900)}T09:12:44Z"
        return {
            **self.account,
            "created_at": created,
            "updated_at": created,
            "permissions": list(self.config.permissions),
            "trial": False,
            "identity_provider": None,
        }

    # -- /events ----------------------------------------------------------------------------

    def _events(self, query: dict[str, str], headers: dict[str, str | None]) -> _Response:
        self._add_late_events_when_due()
        day = _parse_day(query.get("day"))
        if day in self.faults.failing_days or (self.faults.failing_ranged and headers.get("range")):
            status = self.faults.error_status
            raise _Reply(status, "service_unavailable", f"Simulated failure of {day}.")
        first, exclusive, last, page_max = self._parse_range(headers.get("range"))
        ids, events = self._matching(day, query)
        low = (bisect_right if exclusive else bisect_left)(ids, first)
        high = len(ids) if last is None else bisect_right(ids, last)
        end = min(high, low + page_max)
        page = events[low:end]
        items = [event.get(_RAW, event) for event in page]
        body = orjson.dumps({"data": items} if self.faults.envelope else items)
        covered = body if self.faults.etag_scope == "page" else orjson.dumps(events)
        etag = f'"{hashlib.sha256(covered).hexdigest()}"'
        if _etag_matches(headers.get("if-none-match"), etag) or (
            self.faults.not_modified_ranged and headers.get("range")
        ):
            return _Response(304, b"", {"ETag": etag})
        if self._chance(self.faults.invalid_json_rate):
            return _Response(200, _NOT_JSON)
        if self.faults.gzip_body is not None:
            return _Response(200, self.faults.gzip_body, {"Content-Encoding": "gzip"})
        response = _Response(206 if end < high else 200, body, {"Accept-Ranges": "id"})
        response.headers["ETag"] = etag
        if page:
            first_id, last_id = _sort_id(page[0]), _sort_id(page[-1])
            response.headers["Content-Range"] = f"id {first_id}..{last_id}; max={page_max}"
        if end < high and not self.faults.drop_next_range:
            response.headers["Next-Range"] = f"]{last_id}..{last or ''}; max={page_max}"
        if self.faults.endless_next_range:
            with self._lock:
                self._endless += 1
                response.headers["Next-Range"] = f"]{self._endless:08d}..; max={page_max}"
        response.cut = self._chance(self.faults.cut_rate)
        return response

    def _add_late_events_when_due(self) -> None:
        with self._lock:
            after = self.faults.late_after_requests
            if after is None or self._events_requests < after:
                return
            self.faults.late_after_requests = None  # once per arming
            day = self.faults.late_day or self.today - timedelta(days=1)
            self.add_events(day, self.faults.late_count)

    def _parse_range(self, header: str | None) -> tuple[str, bool, str | None, int]:
        """`id ]<first>..<last>; max=N`: (first id, first excluded, last id, page size)."""
        if header is None:
            return "", False, None, self.config.page_size
        match = _RANGE_RE.fullmatch(header.strip())
        if match is None or (match["attr"] or "id") != "id":
            raise _bad_range("Invalid Range header: expected `id ]<id>..; max=<n>`.")
        page_max = self.config.page_size
        for option in re.split(r"[;,]", match["options"] or ""):
            key, _, value = (part.strip() for part in option.partition("="))
            if not key:
                continue  # `id ..; max=10;`: the trailing separator heroku3.py sends
            if key == "max" and re.fullmatch(r"[0-9]{1,9}", value):
                page_max = int(value)
                if not 1 <= page_max <= self.config.max_page_size:
                    raise _bad_range(f"Range max must be 1 to {self.config.max_page_size}.")
            elif key == "order" and value in ("asc", "desc"):
                pass  # accepted; ids are random, so their order means nothing to a reader
            else:
                raise _bad_range(f"Unsupported Range option: {option.strip()!r}.")
        return match["first"], bool(match["exclusive"]), match["last"] or None, page_max

    def _matching(self, day: date, query: dict[str, str]) -> tuple[list[str], list[dict[str, Any]]]:
        """The day's events that pass the filters, sorted by id (pages are ranges of ids, not
        times), cached until the day grows."""
        wanted = (query.get("type"), query.get("action"), query.get("actor"))
        with self._lock:
            events = self._day(day)
            key = (day, *wanted)
            cached = self._pages.get(key)
            if cached is None or cached[0] != len(events):
                chosen = sorted((e for e in events if matches(e, *wanted)), key=_sort_id)
                cached = self._pages[key] = (len(events), [_sort_id(e) for e in chosen], chosen)
            return cached[1], cached[2]

    # -- archives ---------------------------------------------------------------------------

    def _archive_months(self) -> list[str]:
        """Months with days before today (the current month's archive stops at midnight UTC)."""
        days = [day for day in self._days_with_events() if day < self.today]
        months = {day.strftime("%Y-%m") for day in days}
        return sorted(months - set(self.config.missing_archive_months))

    def _archive_path(self, month: str, redirect: bool = False) -> str:
        secret = f"{self.config.seed}:{self.config.enterprise_id}:{month}".encode()
        where = "archive-redirect" if redirect else "archive-files"
        return f"/{where}/{hashlib.sha256(secret).hexdigest()[:24]}/{month}.json.gz"

    def _archive(self, month: str) -> tuple[dict[str, Any], bytes]:
        """The archive object and its gzip file for `month`, rebuilt after add_events."""
        with self._lock:
            cached = self._archives.get(month)
            if cached is not None and cached[0] == self._generation:
                return cached[1], cached[2]
            built = dict(self.config.archive_built_on).get(month)
            end = min(built, self.today) if built else self.today
            days = [d for d in self._days_with_events() if d < end]
            events = [e for d in days if d.strftime("%Y-%m") == month for e in self._day(d)]
            generation = self._generation
        count, day = self.faults.archive_filler
        filler = (count, day) if day.startswith(month) else (0, "")
        content = archive_file(
            events, self.config.archive_layout, f"{self.config.seed}:{month}", filler
        )
        checksum = hashlib.sha256(content).hexdigest()
        if month in self.config.bad_checksum_months:
            checksum = hashlib.sha256(content + b"tampered").hexdigest()
        year, number = month.split("-")
        record = {
            "year": int(year),
            "month": number,
            "created_at": f"{built}T00:02:24.870Z"
            if built
            else archive_created_at(month, self.today),
            "url": self.url + self._archive_path(month, self.config.archive_redirect),
            "checksum": checksum,
            "size": len(content),
        }
        with self._lock:
            self._archives[month] = (generation, record, content)
        return record, content

    def _archive_file(self, method: str, path: str) -> _Response:
        """The download behind an archive `url`: no auth, no rate limit, gzip bytes."""
        if method != "GET":
            raise _Reply(405, "method_not_allowed", f"{method} is not supported.")
        month = path.rsplit("/", 1)[-1].removesuffix(".json.gz")
        if month in self._archive_months() and path == self._archive_path(month, redirect=True):
            return _Response(302, b"", {"Location": self.url + self._archive_path(month)})
        if month not in self._archive_months() or path != self._archive_path(month):
            raise _not_found("No such archive file.")
        return _Response(200, self._archive(month)[1], {"Content-Type": "application/gzip"})


_RAW = "\x00raw"  # a planted element kept as bytes (plant_raw)


def _sort_id(event: dict[str, Any]) -> str:
    """Pages are ranges of ids; a planted event without a string id sorts first."""
    event_id = event.get("id")
    return event_id if isinstance(event_id, str) else ""


def _parse_day(value: str | None) -> date:
    if value is None:
        return datetime.now(timezone.utc).date()  # "defaulting to current day"
    if _DAY_RE.fullmatch(value):  # date.fromisoformat alone also takes 20260101 and weeks
        try:
            return date.fromisoformat(value)
        except ValueError:
            pass
    raise _Reply(422, "invalid_params", f"Invalid day {value!r}: expected YYYY-MM-DD.")


def _etag_matches(header: str | None, etag: str) -> bool:
    if not header:
        return False
    tags = [tag.strip().removeprefix("W/") for tag in header.split(",")]
    return "*" in tags or etag in tags


class _Server(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, simulator: Simulator) -> None:
        if ":" in simulator.config.host:
            self.address_family = socket.AF_INET6
        super().__init__((simulator.config.host, simulator.config.port), _Handler)
        self.simulator = simulator

    def get_request(self) -> tuple[socket.socket, Any]:
        connection, address = super().get_request()
        if self.simulator.config.tls is not None:
            # The handshake happens on the request's own thread, not in accept().
            connection = self.simulator.config.tls.wrap_socket(
                connection, server_side=True, do_handshake_on_connect=False
            )
        return connection, address

    def handle_error(self, request: Any, client_address: Any) -> None:
        # A client that left, or that refused our certificate, is routine.
        if not isinstance(sys.exc_info()[1], (ConnectionError, ssl.SSLError)):
            super().handle_error(request, client_address)


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive like the real API: every body has a length
    # The headers and the body go out in two writes: with Nagle's algorithm the second waits
    # for the client's delayed ACK of the first, 40 ms a response on Linux's loopback.
    disable_nagle_algorithm = True
    timeout = 120  # idle keep-alive connections do not hold a thread forever
    # http.server's own errors (a malformed request) in the API's shape, not HTML.
    error_content_type = JSON
    error_message_format = (
        '{"id":"bad_request","message":"Malformed HTTP request (%(code)d).","url":"' + DOCS + '"}'
    )

    def setup(self) -> None:
        super().setup()
        if isinstance(self.request, ssl.SSLSocket):
            self.request.do_handshake()

    def log_message(self, format: str, *args: Any) -> None:
        pass  # quiet: the request log is kept in memory

    def _serve(self) -> None:
        server = self.server
        assert isinstance(server, _Server)
        wanted = ("authorization", "accept", "range", "if-none-match")
        headers = {name: self.headers.get(name) for name in wanted}
        simulator = server.simulator
        response = simulator.respond(self.command, self.path, headers)
        self.send_response_only(response.status)
        self.send_header("Server", "heroku-audit-trail-simulator")
        if simulator.faults.send_date:
            moment = time.time() + simulator.faults.date_offset
            self.send_header("Date", self.date_time_string(moment))
        for name, value in response.headers.items():
            self.send_header(name, value)
        self.send_header("Content-Length", str(len(response.body)))
        if response.cut or self.command != "GET":
            # A cut body cannot be followed on the same connection; other methods may have
            # sent a body this server never reads.
            self.send_header("Connection", "close")
            self.close_connection = True
        self.end_headers()
        if self.command == "HEAD":
            return
        self.wfile.write(
            response.body[: len(response.body) // 2] if response.cut else response.body
        )

    do_GET = do_HEAD = do_POST = do_PUT = do_PATCH = do_DELETE = do_OPTIONS = _serve


# -- `heroku-audit-trail simulate` ---------------------------------------------------------


def _number(kind: type[float] | type[int], low: float, high: float = float("inf")) -> Any:
    """An argparse type: a number of `kind` from `low` to `high`."""

    def parse(text: str) -> float | int:
        value = kind(text)
        if not low <= value <= high:
            raise argparse.ArgumentTypeError(f"{text} is not between {low:g} and {high:g}")
        return value

    return parse


_share, _count, _seconds = _number(float, 0, 1), _number(int, 0), _number(float, 0)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The flags of `simulate`; each is named after a SimulatorConfig or Faults field."""
    add = parser.add_argument
    add("--host", default="127.0.0.1", help="address to listen on (default %(default)s)")
    add("--port", type=_count, default=8765, metavar="N", help="0: any free port (%(default)s)")
    add("--seed", type=int, default=1, metavar="N", help="same seed, same events (%(default)s)")
    add("--events-per-day", type=_count, default=40, metavar="N", help="(default %(default)s)")
    add("--history-days", type=_count, default=3, metavar="N", help="days before today (3)")
    add("--enterprise-name", default="acme", metavar="NAME", help="(default %(default)s)")
    add(
        "--archive-layout",
        choices=["array", "entries"],
        default="array",
        help='archive files hold [...] or {"entries": [...]} (default %(default)s)',
    )
    faults = parser.add_argument_group("faults", "switches to try a shipper's error handling")
    fault = faults.add_argument
    fault("--error-rate", type=_share, default=0.0, metavar="SHARE", help="requests that fail")
    fault("--error-status", type=int, default=503, metavar="CODE", help="their status (503)")
    fault("--rate-limit-burst", type=_count, default=0, metavar="N", help="next N requests: 429")
    fault("--retry-after", type=_seconds, metavar="SECONDS", help="Retry-After on 429s")
    fault("--latency", type=_seconds, default=0.0, metavar="SECONDS", help="before each answer")
    fault("--cut-rate", type=_share, default=0.0, metavar="SHARE", help="/events bodies cut")
    fault("--invalid-json-rate", type=_share, default=0.0, metavar="SHARE", help="not JSON")
    fault("--envelope", action="store_true", help='/events answers {"data": [...]}')
    fault("--late-after-requests", type=_count, metavar="N", help="then add late events, once")
    fault("--late-count", type=_count, default=3, metavar="N", help="how many (3)")
    fault("--late-day", type=date.fromisoformat, metavar="YYYY-MM-DD", help="(yesterday)")


def run(args: argparse.Namespace) -> int:
    """`heroku-audit-trail simulate`: serve in the foreground until SIGINT or SIGTERM."""
    options = vars(args)
    config = SimulatorConfig(
        **{f.name: options[f.name] for f in fields(SimulatorConfig) if f.name in options}
    )
    faults = Faults(**{f.name: options[f.name] for f in fields(Faults) if f.name in options})
    simulator = Simulator(config, faults)
    simulator.verbose = True
    try:
        url = simulator.start()
    except OSError as error:
        reason = (
            "the port is already in use; choose another with --port, or --port 0 for any free one"
            if error.errno == errno.EADDRINUSE
            else error.strerror or str(error)
        )
        print(f"simulate: cannot listen on {config.host}:{config.port}: {reason}", file=sys.stderr)
        return 78  # EX_CONFIG: the command line asked for something this host cannot give
    stop = threading.Event()
    previous = {
        number: signal.signal(number, lambda signum, frame: stop.set())
        for number in (signal.SIGINT, signal.SIGTERM)
    }
    try:
        sys.stdout.write(
            f"Heroku API simulator listening on {url}\n"
            f"  export HEROKU_API_URL={url}\n"
            f"  export HEROKU_API_KEY={config.token}\n"
            f"  export HEROKU_ENTERPRISE={config.enterprise_name}\n"
        )
        sys.stdout.flush()
        print("simulate: serving until Ctrl+C or SIGTERM", file=sys.stderr, flush=True)
        while not stop.wait(0.5):
            pass
    finally:
        for number, handler in previous.items():
            if handler is not None:
                signal.signal(number, handler)
        simulator.stop()
    return 0
