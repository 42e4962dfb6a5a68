"""A local Heroku Platform API for the audit trail (DESIGN §7): a real HTTP server on loopback.

It serves what `reference/heroku-api.md` records — account lookup by name or id, `/events`
by day with filters, `Range`/`206`/`Next-Range` pages, `ETag`/`304`, a 4500-token rate limit,
`{id, message, url}` errors, the monthly archives with SHA-256 checksums — plus fault switches.
Tests, benchmarks, `demo` and users trying a shipper config all use it.
"""

from __future__ import annotations

import argparse
import gzip
import hashlib
import random
import re
import signal
import sys
import threading
import time
import uuid
from bisect import bisect_left, bisect_right
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta, timezone
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import FrameType
from typing import Any
from urllib.parse import parse_qs, unquote, urlsplit

import orjson

from heroku_audit_trail.eventgen import generate_day

DEMO_TOKEN = "HRKU-simulator-demo-token-0000000000000000"
NO_ACCESS_TOKEN = "HRKU-simulator-no-access-token-000000000000"
DOCS = "https://devcenter.heroku.com/articles/platform-api-reference"
_RANGE_RE = re.compile(r"\s*(?:id\s*)?(\]?)([^.;\s]*)\.\.\s*(?:;\s*(.*))?")


@dataclass
class Faults:
    """Switches a test (or `simulate` flags) can flip at any time."""

    error_rate: float = 0.0
    error_status: int = 503
    rate_limit_burst: int = 0
    retry_after: float | None = None
    latency: float = 0.0
    cut_rate: float = 0.0
    invalid_json_rate: float = 0.0
    envelope: bool = False
    late_after_requests: int | None = None
    late_count: int = 3
    late_day: date | None = None
    rate_limit_remaining: int | None = None


def _seeded_id(seed: int) -> str:
    return str(uuid.UUID(int=random.Random(f"account:{seed}").getrandbits(128), version=4))


@dataclass
class SimulatorConfig:
    seed: int = 1
    events_per_day: int = 40
    history_days: int = 3
    enterprise_name: str = "acme"
    enterprise_id: str = ""  # derived from the seed when empty
    token: str = DEMO_TOKEN
    permissions: tuple[str, ...] = ("view", "create", "manage", "billing")
    page_size: int = 200
    max_page_size: int = 1000
    rate_limit_capacity: int = 4500
    refill_per_minute: float = 75.0
    archive_layout: str = "array"
    missing_archive_months: tuple[str, ...] = ()
    bad_checksum_months: tuple[str, ...] = ()
    host: str = "127.0.0.1"
    port: int = 0

    def __post_init__(self) -> None:
        if not self.enterprise_id:
            self.enterprise_id = _seeded_id(self.seed)


class _Reply(Exception):
    """Raised inside a handler to send an error response."""

    def __init__(self, status: int, error_id: str, message: str) -> None:
        super().__init__(message)
        self.status, self.error_id, self.message = status, error_id, message


@dataclass
class _Bucket:
    capacity: int
    per_second: float
    tokens: float = field(init=False)
    stamp: float = field(default_factory=time.monotonic)

    def __post_init__(self) -> None:
        self.tokens = float(self.capacity)

    def take(self) -> bool:
        now = time.monotonic()
        self.tokens = min(self.capacity, self.tokens + (now - self.stamp) * self.per_second)
        self.stamp = now
        if self.tokens < 1:
            return False
        self.tokens -= 1
        return True


class Simulator:
    def __init__(self, config: SimulatorConfig | None = None, faults: Faults | None = None) -> None:
        self.config = config or SimulatorConfig()
        self.faults = faults or Faults()
        self.url = ""
        self.request_log: list[dict[str, Any]] = []
        self.started_at = datetime.now(timezone.utc)
        self.today = self.started_at.date()
        self._lock = threading.Lock()
        self._rng = random.Random(self.config.seed)
        self._days: dict[date, list[dict[str, Any]]] = {}
        self._late_done = False
        self._bucket = _Bucket(self.config.rate_limit_capacity, self.config.refill_per_minute / 60)
        self._archive_files: dict[str, bytes] = {}
        self._sorted: dict[tuple[object, ...], tuple[int, list[dict[str, Any]]]] = {}
        self._server: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None

    # -- ground truth ---------------------------------------------------------------------

    @property
    def account(self) -> dict[str, str]:
        return {"id": self.config.enterprise_id, "name": self.config.enterprise_name}

    def _day(self, day: date) -> list[dict[str, Any]]:
        with self._lock:
            if day not in self._days:
                in_history = self.today - timedelta(days=self.config.history_days) <= day
                if in_history and day <= self.today:
                    cutoff = self.started_at if day == self.today else None
                    self._days[day] = generate_day(
                        self.config.seed, day, self.config.events_per_day, self.account, cutoff
                    )
                else:
                    self._days[day] = []
            return self._days[day]

    def events_for_day(self, day: date) -> list[dict[str, Any]]:
        return [dict(event) for event in self._day(day)]

    def all_events(self) -> list[dict[str, Any]]:
        first = self.today - timedelta(days=self.config.history_days)
        days = {first + timedelta(days=n) for n in range(self.config.history_days + 1)}
        days |= set(self._days)
        return [event for day in sorted(days) for event in self.events_for_day(day)]

    def add_events(self, day: date, count: int) -> list[dict[str, Any]]:
        """Late events: new ids inside `day`, visible from the next request on."""
        existing = self._day(day)
        seed = self._rng.getrandbits(32)
        fresh = generate_day(seed, day, count, self.account)
        with self._lock:
            existing.extend(fresh)
        return [dict(event) for event in fresh]

    def events_requests(self) -> int:
        return sum(1 for entry in self.request_log if entry["path"].endswith("/events"))

    # -- lifecycle ------------------------------------------------------------------------

    def start(self) -> str:
        handler = type("Handler", (_Handler,), {"simulator": self})
        self._server = ThreadingHTTPServer((self.config.host, self.config.port), handler)
        self._server.daemon_threads = True
        port = self._server.server_address[1]
        self.url = f"http://{self.config.host}:{port}"
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)
        self._thread.start()
        return self.url

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None

    def __enter__(self) -> Simulator:
        self.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    # -- request handling (called from server threads) ------------------------------------

    def _chance(self, rate: float) -> bool:
        with self._lock:
            return rate > 0 and self._rng.random() < rate

    def handle(self, handler: _Handler) -> tuple[int, dict[str, str], bytes]:
        parts = urlsplit(handler.path)
        path = parts.path
        query = {key: values[-1] for key, values in parse_qs(parts.query).items()}
        if path.startswith("/archive-files/"):
            body = self._archive_files.get(path)
            if body is None:
                raise _Reply(404, "not_found", "No such archive file.")
            return 200, {"Content-Type": "application/gzip"}, body
        self._authenticate(handler.headers.get("Authorization", ""))
        accept = handler.headers.get("Accept", "")
        if not re.search(r"application/vnd\.heroku\+json;\s*version=3", accept):
            raise _Reply(
                406,
                "not_acceptable",
                "Please set Accept: application/vnd.heroku+json; version=3 and try again.",
            )
        if path == "/account/rate-limits":
            return 200, {}, orjson.dumps({"remaining": self._remaining()})
        if self.faults.latency:
            time.sleep(self.faults.latency)
        with self._lock:
            if self.faults.rate_limit_burst > 0:
                self.faults.rate_limit_burst -= 1
                limited = True
            else:
                limited = not self._bucket.take()
        if limited:
            raise _Reply(
                429,
                "rate_limit",
                "Your account reached the API rate limit\n"
                "Please wait a few minutes before making new requests",
            )
        if self._chance(self.faults.error_rate):
            raise _Reply(self.faults.error_status, "internal_server_error", "Internal error.")
        segments = [unquote(segment) for segment in path.strip("/").split("/")]
        if len(segments) < 2 or segments[0] != "enterprise-accounts":
            raise _Reply(404, "not_found", "The requested API endpoint was not found.")
        if handler.headers.get("Authorization", "").endswith(NO_ACCESS_TOKEN):
            raise _Reply(
                403, "forbidden", "You do not have access to the enterprise account requested."
            )
        if segments[1] not in (self.config.enterprise_id, self.config.enterprise_name):
            raise _Reply(404, "not_found", "Couldn't find that enterprise account.")
        rest = segments[2:]
        if not rest:
            return 200, {}, orjson.dumps(self._account_body())
        if rest == ["events"]:
            return self._events(query, handler.headers.get("Range"), handler)
        if rest[0] == "archives":
            return self._archives(rest[1:])
        raise _Reply(404, "not_found", "The requested API endpoint was not found.")

    def _authenticate(self, header: str) -> None:
        scheme, _, value = header.partition(" ")
        token = value.strip()
        if scheme.lower() == "basic":
            import base64

            try:
                token = base64.b64decode(token).decode().partition(":")[2]
            except ValueError:
                token = ""
        if token not in (self.config.token, NO_ACCESS_TOKEN):
            raise _Reply(401, "unauthorized", "Invalid credentials provided.")

    def _remaining(self) -> int:
        if self.faults.rate_limit_remaining is not None:
            return self.faults.rate_limit_remaining
        return int(self._bucket.tokens)

    def _account_body(self) -> dict[str, Any]:
        created = (self.today - timedelta(days=900)).isoformat() + "T00:00:00Z"
        return {
            **self.account,
            "created_at": created,
            "updated_at": created,
            "permissions": list(self.config.permissions),
            "trial": False,
            "identity_provider": None,
        }

    def _events(
        self, query: dict[str, str], range_header: str | None, handler: _Handler
    ) -> tuple[int, dict[str, str], bytes]:
        with self._lock:
            late = self.faults.late_after_requests
            if late is not None and not self._late_done and self.events_requests() >= late:
                self._late_done = True
                run_late = True
            else:
                run_late = False
        if run_late:
            self.add_events(
                self.faults.late_day or self.today - timedelta(days=1), self.faults.late_count
            )
        try:
            day = date.fromisoformat(query.get("day", self.today.isoformat()))
        except ValueError:
            raise _Reply(422, "invalid_params", "day must be formatted as YYYY-MM-DD.") from None
        events = self._sorted_day(day, query)
        start, exclusive, page_max = self._parse_range(range_header)
        ids = [event["id"] for event in events] if start else []
        first = (bisect_right if exclusive else bisect_left)(ids, start) if start else 0
        page, more = events[first : first + page_max], len(events) > first + page_max
        body_value: Any = {"data": page} if self.faults.envelope else page
        body = orjson.dumps(body_value)
        headers = {"Accept-Ranges": "id", "ETag": f'"{hashlib.sha256(body).hexdigest()[:32]}"'}
        if handler.headers.get("If-None-Match") == headers["ETag"] and range_header is None:
            return 304, {"ETag": headers["ETag"]}, b""
        if self._chance(self.faults.invalid_json_rate):
            return 200, headers, body[: max(1, len(body) // 2)] + b"<html>"
        if more:
            headers["Next-Range"] = f"]{page[-1]['id']}..; max={page_max}"
        if page:
            headers["Content-Range"] = f"id {page[0]['id']}..{page[-1]['id']}"
        return (206 if more else 200), headers, body

    def _sorted_day(self, day: date, query: dict[str, str]) -> list[dict[str, Any]]:
        """The day's matching events by id (ranges are by id, not time), cached until it grows."""
        events = self._day(day)
        key = (day, query.get("type"), query.get("action"), query.get("actor"))
        with self._lock:
            cached = self._sorted.get(key)
            if cached is None or cached[0] != len(events):
                matching = sorted(
                    (event for event in events if _matches(event, query)),
                    key=lambda event: event["id"],
                )
                cached = self._sorted[key] = (len(events), matching)
        return cached[1]

    def _parse_range(self, header: str | None) -> tuple[str, bool, int]:
        """`id ]<start>..; max=N`: (start id, whether the start is excluded, page size)."""
        if header is None:
            return "", False, self.config.page_size
        match = _RANGE_RE.fullmatch(header)
        if match is None:
            raise _Reply(416, "requested_range_not_satisfiable", "Invalid Range header.")
        exclusive, start, options = match.groups()
        page_max = self.config.page_size
        for option in re.split(r"[;,]", options or ""):
            key, _, value = option.strip().partition("=")
            if key == "max":
                if not value.isdigit() or not 0 < int(value) <= self.config.max_page_size:
                    raise _Reply(416, "requested_range_not_satisfiable", "Invalid max in Range.")
                page_max = int(value)
        return start, bool(exclusive), page_max

    def _archives(self, rest: list[str]) -> tuple[int, dict[str, str], bytes]:
        months = self._archive_months()
        if not rest:
            return 200, {}, orjson.dumps([self._archive(m) for m in months])
        if len(rest) == 2 and f"{rest[0]}-{rest[1]}" in months:
            return 200, {}, orjson.dumps(self._archive(f"{rest[0]}-{rest[1]}"))
        raise _Reply(404, "not_found", "Couldn't find that archive.")

    def _archive_months(self) -> list[str]:
        first = self.today - timedelta(days=self.config.history_days)
        months = {
            (first + timedelta(days=n)).strftime("%Y-%m")
            for n in range(self.config.history_days)  # up to yesterday: cut at midnight UTC
        }
        return sorted(months - set(self.config.missing_archive_months))

    def _archive(self, month: str) -> dict[str, Any]:
        year, month_number = month.split("-")
        events = [
            event
            for event in self.all_events()
            if event["created_at"][:7] == month and event["created_at"][:10] < str(self.today)
        ]
        random.Random(month).shuffle(events)  # "doesn't always list entries in order"
        value: Any = {"entries": events} if self.config.archive_layout == "entries" else events
        content = gzip.compress(orjson.dumps(value), mtime=0)
        path = f"/archive-files/{hashlib.sha256(month.encode()).hexdigest()[:16]}/{month}.json.gz"
        self._archive_files[path] = content
        checksum = hashlib.sha256(content).hexdigest()
        if month in self.config.bad_checksum_months:
            checksum = hashlib.sha256(content + b"tampered").hexdigest()
        return {
            "year": int(year),
            "month": month_number,
            "created_at": datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ"),
            "url": self.url + path,
            "checksum": checksum,
            "size": len(content),
        }


def _matches(event: dict[str, Any], query: dict[str, str]) -> bool:
    actor = event.get("actor") or {}
    return (
        query.get("type", event.get("type")) == event.get("type")
        and query.get("action", event.get("action")) == event.get("action")
        and query.get("actor", actor.get("email")) == actor.get("email")
    )


class _Handler(BaseHTTPRequestHandler):
    simulator: Simulator
    protocol_version = "HTTP/1.1"

    def log_message(self, format: str, *args: Any) -> None:
        pass  # quiet: the request log is kept in memory

    def do_GET(self) -> None:
        sim = self.simulator
        headers: dict[str, str] = {}
        try:
            status, headers, body = sim.handle(self)
        except _Reply as reply:
            status = reply.status
            body = orjson.dumps({"id": reply.error_id, "message": reply.message, "url": DOCS})
            if status == 429 and sim.faults.retry_after is not None:
                headers["Retry-After"] = f"{sim.faults.retry_after:g}"
        parts = urlsplit(self.path)
        with sim._lock:
            sim.request_log.append(
                {
                    "method": "GET",
                    "path": parts.path,
                    "query": {k: v[-1] for k, v in parse_qs(parts.query).items()},
                    "status": status,
                    "range": self.headers.get("Range"),
                    "if_none_match": self.headers.get("If-None-Match"),
                }
            )
        cut = status in (200, 206) and parts.path.endswith("/events")
        cut = cut and sim._chance(sim.faults.cut_rate)
        self.send_response(status)
        self.send_header("Content-Type", headers.pop("Content-Type", "application/json"))
        self.send_header("Content-Length", str(len(body)))
        self.send_header("Request-Id", str(uuid.uuid4()))
        if not parts.path.startswith("/archive-files/"):
            self.send_header("RateLimit-Remaining", str(sim._remaining()))
        for name, value in headers.items():
            self.send_header(name, value)
        if cut:
            self.send_header("Connection", "close")
        self.end_headers()
        if cut:
            self.wfile.write(body[: len(body) // 2])
            self.wfile.flush()
            self.close_connection = True
            return
        self.wfile.write(body)

    def _refuse(self) -> None:
        body = orjson.dumps({"id": "method_not_allowed", "message": "Only GET.", "url": DOCS})
        self.send_response(405)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    do_POST = do_PUT = do_PATCH = do_DELETE = _refuse


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8765)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--events-per-day", type=int, default=40)
    parser.add_argument("--history-days", type=int, default=3)
    parser.add_argument("--enterprise-name", default="acme")
    parser.add_argument("--archive-layout", choices=["array", "entries"], default="array")
    faults = parser.add_argument_group("faults")
    faults.add_argument("--error-rate", type=float, default=0.0, help="share of 5xx answers")
    faults.add_argument("--error-status", type=int, default=503)
    faults.add_argument("--rate-limit-burst", type=int, default=0, help="next N requests get 429")
    faults.add_argument("--retry-after", type=float, help="Retry-After seconds on 429s")
    faults.add_argument("--latency", type=float, default=0.0, help="seconds before each answer")
    faults.add_argument("--cut-rate", type=float, default=0.0, help="share of cut bodies")
    faults.add_argument("--invalid-json-rate", type=float, default=0.0)
    faults.add_argument("--envelope", action="store_true", help='answer {"data": [...]}')
    faults.add_argument("--late-after-requests", type=int, help="then add late events")
    faults.add_argument("--late-count", type=int, default=3)


def run(args: argparse.Namespace) -> int:
    """`heroku-audit-trail simulate`: serve in the foreground until SIGINT or SIGTERM."""
    # Flags are named after the dataclass fields: take each one the parser defined.
    options = vars(args)

    def given(fields: Iterable[str]) -> dict[str, Any]:
        return {name: options[name] for name in fields if name in options}

    config = SimulatorConfig(**given(SimulatorConfig.__dataclass_fields__))
    faults = Faults(**given(Faults.__dataclass_fields__))
    stop = threading.Event()

    def on_signal(signum: int, frame: FrameType | None) -> None:
        stop.set()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    with Simulator(config, faults) as simulator:
        sys.stdout.write(
            f"Heroku API simulator listening on {simulator.url}\n"
            f"  export HEROKU_API_URL={simulator.url}\n"
            f"  export HEROKU_API_KEY={config.token}\n"
            f"  export HEROKU_ENTERPRISE={config.enterprise_name}\n"
        )
        sys.stdout.flush()
        while not stop.wait(0.5):
            pass
    return 0
