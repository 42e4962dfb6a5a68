"""A partition's state: the typed, versioned document (cursor, open days, last success,
backoff), validated in one place; how a day's pass and closing change it; the file (atomic
save, no symlinks, not shared) and the run lock (DESIGN §5)."""

from __future__ import annotations

import hashlib
import re
from contextlib import AbstractContextManager
from dataclasses import dataclass, field, replace
from datetime import date, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

import orjson

from heroku_audit_trail.days.window import advance_closed_through, may_close
from heroku_audit_trail.errors import MalformedDataError, StateWriteError
from heroku_audit_trail.schedule import Backoff, parse_stamp
from heroku_audit_trail.statedir import (
    ensure_state_dir,
    exclusive_lock,
    read_private,
    remove_file,
    room_and_replaceable,
    room_for,
    write_atomic,
)

if TYPE_CHECKING:
    from heroku_audit_trail.days.engine import DayPass

STATE_VERSION = 1
FILTERS = ("action", "actor", "type")  # a partition's API filters, in this order


@dataclass(frozen=True)
class Partition:
    """One cursor: the --enterprise value as given plus the API filters."""

    enterprise: str
    filters: tuple[tuple[str, str], ...] = ()

    def as_dict(self) -> dict[str, str]:
        return {"enterprise": self.enterprise, **dict(self.filters)}

    @classmethod
    def from_dict(cls, doc: dict[str, str]) -> Partition:
        """The inverse of as_dict; filters in the order Settings gives them."""
        return cls(doc["enterprise"], tuple((name, doc[name]) for name in FILTERS if name in doc))

    def file_stem(self) -> str:
        digest = hashlib.sha256(orjson.dumps(self.as_dict(), option=orjson.OPT_SORT_KEYS))
        slug = re.sub(r"[^A-Za-z0-9_-]+", "_", self.enterprise)[:40] or "account"
        return f"{slug}-{digest.hexdigest()[:12]}"


@dataclass
class DayState:
    """One open day. A *pass* reads the day from its first page to its last, possibly over
    several runs (a day too big for one run continues at `next_range`)."""

    seen: set[str] = field(default_factory=set)  # ids already printed for this day
    etag: str | None = None  # only for a whole day that came in one short page
    next_range: str | None = None  # where the pass under way continues
    pass_started: date | None = None  # the day (UTC) the pass under way began
    full_pass_started: date | None = None  # the day the last completed pass began
    pass_pages: int = 0  # pages the pass under way has read so far, over all runs
    # `seen` sorted, for the file: a day's ids are replaced, never changed in place, and a
    # run saves a state several times, so a big day is sorted once (the length guards).
    _sorted_seen: list[str] | None = field(default=None, init=False, compare=False, repr=False)

    def to_json(self) -> dict[str, Any]:
        if self._sorted_seen is None or len(self._sorted_seen) != len(self.seen):
            self._sorted_seen = sorted(self.seen)
        doc: dict[str, Any] = {"seen": self._sorted_seen, "etag": self.etag}
        if self.next_range is not None:
            doc["next_range"] = self.next_range
            doc["pass_pages"] = self.pass_pages
        for name in ("pass_started", "full_pass_started"):
            value = getattr(self, name)
            if value is not None:
                doc[name] = value.isoformat()
        return doc


@dataclass(frozen=True)
class Account:
    """The enterprise account the partition's --enterprise named, as the API answered."""

    id: str
    name: str


@dataclass(frozen=True)
class LastRun:
    """The last successful run: when, and what it did."""

    started_at: datetime
    finished_at: datetime
    days_read: int
    events_emitted: int
    requests: int
    rate_limit_remaining: int | None

    def to_json(self) -> dict[str, Any]:
        from heroku_audit_trail.ecs import format_time  # the one time format of the output

        return {
            "started_at": format_time(self.started_at),
            "finished_at": format_time(self.finished_at),
            "days_read": self.days_read,
            "events_emitted": self.events_emitted,
            "requests": self.requests,
            "rate_limit_remaining": self.rate_limit_remaining,
        }


@dataclass
class State:
    partition: Partition
    account: Account | None = None
    closed_through: date | None = None
    closed_on: date | None = None  # our (trusted) date when closed_through last moved on
    open_days: dict[date, DayState] = field(default_factory=dict)
    last_run: LastRun | None = None  # the last successful run
    # What an older version kept of its last attempt (the run record holds it now): read for
    # `state show` and the metrics until the first run record, never written again.
    last_attempt: dict[str, Any] | None = None
    backoff: Backoff | None = None  # failed runs since it (DESIGN §3, failure backoff)

    @property
    def last_success(self) -> datetime | None:
        return self.last_run.started_at if self.last_run else None

    def to_json(self) -> dict[str, Any]:
        return {
            "version": STATE_VERSION,
            "partition": self.partition.as_dict(),
            "account": {"id": self.account.id, "name": self.account.name} if self.account else None,
            "closed_through": self.closed_through.isoformat() if self.closed_through else None,
            "closed_on": self.closed_on.isoformat() if self.closed_on else None,
            "open_days": {
                day.isoformat(): day_state.to_json()
                for day, day_state in sorted(self.open_days.items())
            },
            "last_run": self.last_run.to_json() if self.last_run else None,
            "last_attempt": self.last_attempt,
            "backoff": self.backoff.to_json() if self.backoff else None,
        }


def next_day_state(old: DayState, result: DayPass) -> DayState:
    """A day's state after a pass over it (pure). A pass cut short while printing keeps the
    ids printed and goes on next run from where it began; a pass that reached the day's end
    becomes the day's last full pass; one that stopped early goes on from its Next-Range."""
    if not result.all_printed:
        return replace(old, seen=old.seen | result.printed_keys, etag=None)
    seen = old.seen | result.met
    started = old.pass_started if old.next_range else result.started
    if result.reached_end:
        return DayState(seen, result.etag, None, None, started)
    pages = (old.pass_pages if old.next_range else 0) + result.pages
    return DayState(
        seen,
        None,
        result.next_range,
        started if result.next_range else None,
        old.full_pass_started,
        pages if result.next_range else 0,
    )


def close_old_days(state: State, today: date, lookback_days: int, confirmed: date | None) -> None:
    """Move closed_through over the days that a full pass, begun after they left the lookback
    window, has read; drop their seen sets. `confirmed`: today, when Heroku's Date agrees."""
    assert state.closed_through is not None
    closable = {
        day
        for day, day_state in state.open_days.items()
        if may_close(day, day_state.full_pass_started, lookback_days)
    }
    closed_through = advance_closed_through(state.closed_through, today, lookback_days, closable)
    if closed_through != state.closed_through:
        state.closed_through = closed_through
        state.closed_on = confirmed or state.closed_on
    for day in [day for day in state.open_days if day <= state.closed_through]:
        del state.open_days[day]


def _corrupt(path: Path, why: str) -> MalformedDataError:
    return MalformedDataError(
        f"state file {path} is corrupt ({why}); it was left untouched for inspection: "
        "fix it, or remove it with 'heroku-audit-trail state reset --yes' "
        "(the next poll then re-reads the lookback window)"
    )


def _parse_day(path: Path, value: object) -> date:
    if not isinstance(value, str):
        raise _corrupt(path, f"day {value!r} is not a string")
    try:
        return date.fromisoformat(value)
    except ValueError:
        raise _corrupt(path, f"day {value!r} is not YYYY-MM-DD") from None


def parse_state(path: Path, raw: bytes) -> State:
    """Validate a state file's bytes; anything unexpected is a MalformedDataError, never a reset."""
    try:
        doc = orjson.loads(raw)
    except orjson.JSONDecodeError:
        raise _corrupt(path, "not JSON") from None
    if not isinstance(doc, dict):
        raise _corrupt(path, "not a JSON object")
    if doc.get("version") != STATE_VERSION:
        raise _corrupt(path, f"unsupported version {doc.get('version')!r}")
    partition, account = doc.get("partition"), doc.get("account")
    if (
        not isinstance(partition, dict)
        or not isinstance(partition.get("enterprise"), str)
        or not set(partition) <= {"enterprise", *FILTERS}
        or not all(isinstance(value, str) for value in partition.values())
    ):
        raise _corrupt(path, "bad partition")
    if account is not None and not (
        isinstance(account, dict)
        and isinstance(account.get("id"), str)
        and isinstance(account.get("name", ""), str)
    ):
        raise _corrupt(path, "bad account")
    closed, closed_on = doc.get("closed_through"), doc.get("closed_on")
    open_days_doc = doc.get("open_days", {})
    if not isinstance(open_days_doc, dict):
        raise _corrupt(path, "open_days is not an object")
    open_days: dict[date, DayState] = {}
    for day_text, day_doc in open_days_doc.items():
        if not isinstance(day_doc, dict):
            raise _corrupt(path, f"open day {day_text} is not an object")
        seen = day_doc.get("seen", [])
        if not isinstance(seen, list) or not all(isinstance(key, str) for key in seen):
            raise _corrupt(path, f"seen ids of {day_text} are not a list of strings")
        etag, next_range = day_doc.get("etag"), day_doc.get("next_range")
        for name, text in (("etag", etag), ("next_range", next_range)):
            if text is not None and not isinstance(text, str):
                raise _corrupt(path, f"{name} of {day_text} is not a string")
        started, full = day_doc.get("pass_started"), day_doc.get("full_pass_started")
        pass_pages = day_doc.get("pass_pages", 0)
        if not isinstance(pass_pages, int) or isinstance(pass_pages, bool) or pass_pages < 0:
            raise _corrupt(path, f"pass_pages of {day_text} is not a count")
        open_days[_parse_day(path, day_text)] = DayState(
            set(seen),
            etag,
            next_range,
            None if started is None else _parse_day(path, started),
            None if full is None else _parse_day(path, full),
            pass_pages,
        )
    last_attempt = doc.get("last_attempt")
    if last_attempt is not None and not isinstance(last_attempt, dict):
        raise _corrupt(path, "last_attempt is not an object")
    try:
        backoff = Backoff.from_json(doc.get("backoff"))
    except ValueError as error:
        raise _corrupt(path, str(error)) from None
    return State(
        backoff=backoff,
        partition=Partition.from_dict(partition),
        account=Account(account["id"], account.get("name", "")) if account else None,
        closed_through=None if closed is None else _parse_day(path, closed),
        closed_on=None if closed_on is None else _parse_day(path, closed_on),
        open_days=open_days,
        last_run=_parse_last_run(path, doc.get("last_run")),
        last_attempt=last_attempt,
    )


def _parse_last_run(path: Path, doc: object) -> LastRun | None:
    if doc is None:
        return None
    if not isinstance(doc, dict):
        raise _corrupt(path, "last_run is not an object")
    started, finished = parse_stamp(doc.get("started_at")), parse_stamp(doc.get("finished_at"))
    if started is None:
        raise _corrupt(path, "last_run has no started_at time")
    days, events, requests = (
        doc.get(name, 0) for name in ("days_read", "events_emitted", "requests")
    )
    remaining = doc.get("rate_limit_remaining")
    if not all(_is_count(count) for count in (days, events, requests)) or not (
        remaining is None or _is_count(remaining)
    ):
        raise _corrupt(path, "last_run has a count that is not one")
    return LastRun(started, finished or started, days, events, requests, remaining)


def _is_count(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value >= 0


def _serialized(state: State) -> bytes:
    # OPT_APPEND_NEWLINE, not `+ b"\n"`: a state file of megabytes is not copied once more.
    return orjson.dumps(state.to_json(), option=orjson.OPT_INDENT_2 | orjson.OPT_APPEND_NEWLINE)


def _digest(payload: bytes) -> bytes:
    return hashlib.blake2b(payload, digest_size=16).digest()


class StateStore:
    """Where one partition's state lives; every write is a temp file + fsync + rename."""

    def __init__(self, state_dir: Path, partition: Partition) -> None:
        self.state_dir = state_dir
        self.partition = partition
        stem = partition.file_stem()
        self.path = state_dir / f"{stem}.json"
        self.lock_path = state_dir / f"{stem}.lock"
        # A digest of the file's bytes as last read or written here (a big state file is
        # megabytes: not kept twice in memory), and their length.
        self.on_disk: bytes | None = None
        self.size_on_disk = 0

    def ensure_dir(self) -> None:
        ensure_state_dir(self.state_dir)

    def load(self) -> State | None:
        raw = read_private(self.path, self.state_dir)
        if raw is None:
            return None
        state = parse_state(self.path, raw)
        if state.partition != self.partition:
            raise _corrupt(self.path, "it belongs to another partition")
        self.on_disk, self.size_on_disk = _digest(raw), len(raw)
        return state

    def save(self, state: State) -> None:
        """Write `state`, unless the file already holds exactly it (a large open day makes a
        state file of megabytes: no rewrite for nothing)."""
        payload = _serialized(state)
        digest = _digest(payload)
        if digest != self.on_disk:
            write_atomic(self.path, payload)
            self.on_disk, self.size_on_disk = digest, len(payload)

    def prove_writable(self, state: State) -> None:
        """StateWriteError unless a save can succeed now (read-only or full disk, lost
        permissions, an immutable file), before anything is printed. An unchanged state is
        not rewritten when a lighter proof holds: room for a file its size in the directory,
        and a state file that can be linked (an immutable or append-only one cannot)."""
        payload = _serialized(state)
        if _digest(payload) == self.on_disk and room_and_replaceable(self.path, len(payload)):
            return
        write_atomic(self.path, payload)  # the proof that decides
        self.on_disk, self.size_on_disk = _digest(payload), len(payload)

    def prove_room(self, growth: int) -> None:
        """StateWriteError unless the state file, `growth` bytes larger than now, can be
        written beside the one there: asked before a day is printed, so a nearly full disk
        prints nothing rather than the same events on every run."""
        if room_for(self.path, self.size_on_disk + growth) is False:
            raise StateWriteError(
                f"cannot write state file {self.path}: no room for the "
                f"{(self.size_on_disk + growth) >> 10} KiB it will need (the disk is full, "
                "or a quota or file size limit is reached); nothing of this day was printed: "
                "free some space, and the next run prints it"
            )

    def remove(self) -> bool:
        return remove_file(self.path)

    def lock(self) -> AbstractContextManager[None]:
        """An exclusive, non-blocking flock: a second run of the same partition exits 75."""
        return exclusive_lock(self.lock_path)
