"""One month's archive: fetch it, check its SHA-256, inflate it under a cap, read its events,
and say which days it covers (DESIGN §3 backfill --archives, §9).

Memory is bounded by one day, whatever the archive's size: the download goes to a temporary
file, is hashed and inflated from there a megabyte at a time, its array is split into events
as it inflates, and each wanted day's events are kept in a temporary file of their own until
that day is printed. The whole archive is read (and checked) before any of it is printed.
"""

from __future__ import annotations

import codecs
import hashlib
import json
import re
import struct
import tempfile
import zlib
from calendar import monthrange
from collections.abc import Iterable, Iterator
from datetime import date
from typing import IO, TYPE_CHECKING, Any

from heroku_audit_trail.ecs import parse_time
from heroku_audit_trail.errors import MalformedDataError, StateWriteError
from heroku_audit_trail.heroku.jsonbody import parse_events

if TYPE_CHECKING:
    from heroku_audit_trail.heroku.api import HerokuClient

ARCHIVE_INFLATED_CAP = 2 << 30  # a month of a busy account is far less; a gzip bomb is more
_CHUNK = 1 << 20
_BATCH = 1000  # events parsed at once (one orjson call for the batch)


def _corrupt(month: str) -> MalformedDataError:
    return MalformedDataError(f"archive {month} is not gzip-compressed JSON")


def sha256_of(file: IO[bytes]) -> str:
    file.seek(0)
    digest = hashlib.sha256()
    while chunk := file.read(_CHUNK):
        digest.update(chunk)
    return digest.hexdigest()


def inflated(file: IO[bytes], month: str, cap: int = ARCHIVE_INFLATED_CAP) -> Iterator[bytes]:
    """gunzip `file` (several members allowed), a megabyte at a time, refusing (exit 65)
    past `cap` bytes."""
    file.seek(0)
    total = 0
    decompressor = zlib.decompressobj(wbits=31)  # one gzip member
    data = file.read(_CHUNK)
    if not data:
        raise _corrupt(month)
    try:
        while data:
            out = decompressor.decompress(data, _CHUNK)
            total += len(out)
            if total > cap:
                raise MalformedDataError(
                    f"archive {month} inflates past {cap >> 20} MiB, the most this "
                    "program reads; nothing from it was printed"
                )
            if out:
                yield out
            if decompressor.unconsumed_tail:
                data = decompressor.unconsumed_tail
            elif decompressor.eof:
                data = decompressor.unused_data or file.read(_CHUNK)
                if data:
                    decompressor = zlib.decompressobj(wbits=31)  # the next member
            else:
                data = file.read(_CHUNK)
        if not decompressor.eof:
            raise _corrupt(month)  # truncated
    except zlib.error:
        raise _corrupt(month) from None


class ArraySplitter:
    """The elements of the archive's array, each as its JSON text, from pieces of the text as
    they inflate: a bare array, or the array under `key` in a top-level object.

    Until the array opens and once it has closed, the text is read token by token; inside
    it, each element is read whole by the json module's C scanner (`raw_decode`), a token at a
    time only for one it refuses (to find where it ends: it becomes a degraded event) or one
    cut by the end of what has inflated so far."""

    def __init__(self, month: str, key: bytes = b"entries") -> None:
        self.month = month
        self.key_text = key.decode()
        self.text = ""
        self.pieces: list[str] = []  # decoded, not yet read
        self.waiting = 0  # characters in `pieces`
        self.wait = 0  # how many to wait for before trying again
        self.decoder = codecs.getincrementaldecoder("utf-8")("surrogateescape")
        self.at = 0  # where reading goes on, in `text`
        self.depth = 0  # brackets and braces open, outside the array's elements
        self.in_array = False
        self.found = False  # the array was read to its end
        self.ended = False  # and so was the whole text
        self.expect_element = True  # else a comma or the closing bracket
        self.after_comma = False  # a closing bracket now would be [1,]
        self.last_key = ""  # the last string of the top-level object
        self.at_colon = False

    def feed(self, chunk: bytes, final: bool = False) -> list[bytes]:
        piece = self.decoder.decode(chunk, final)
        self.pieces.append(piece)
        self.waiting += len(piece)
        if self.waiting < self.wait and not final:
            return []  # an element (or a string) longer than what came since the last try
        self.text = self.text[self.at :] + "".join(self.pieces)
        self.pieces, self.waiting, self.at = [], 0, 0
        elements: list[bytes] = []
        while True:
            if self.in_array:
                if not self._array(elements, final):
                    break
            elif not self._outside(final):
                break
        # What is left is cut by the end of the text so far: tried again once as much more
        # has come, so a huge element costs linear time, not a rescan per megabyte.
        self.wait = len(self.text) - self.at
        return elements

    def close(self) -> list[bytes]:
        elements = self.feed(b"", final=True)
        if not self.ended or self.text[self.at :].strip():
            raise _corrupt(self.month)
        return elements

    def _array(self, elements: list[bytes], final: bool) -> bool:
        """Read on inside the array; False when more text is needed."""
        text = self.text
        at = _skip_space(text, self.at)
        if at == len(text):
            self.at = at
            return False
        char = text[at]
        if char == "]":
            if self.after_comma:
                raise _corrupt(self.month)  # [1,]
            self.in_array, self.found, self.at = False, True, at + 1
            self.depth -= 1
            self.ended = self.depth == 0
            return True
        if not self.expect_element:
            if char != ",":
                raise _corrupt(self.month)
            self.expect_element, self.after_comma, self.at = True, True, at + 1
            return True
        end = self._element_end(text, at, final)
        if end is None:
            self.at = at
            return False
        elements.append(text[at:end].encode("utf-8", "surrogateescape"))
        self.expect_element, self.after_comma, self.at = False, False, end
        return True

    def _element_end(self, text: str, at: int, final: bool) -> int | None:
        """Where the element at `at` ends, or None if the text so far cuts it. A number or
        literal ends at the next delimiter (it may go on in the next piece); an object, array
        or string is read by the json module, or token by token when it refuses it (too deep,
        a lone surrogate, a control character: it becomes a degraded event)."""
        end: int | None = None
        if text[at] in '{["':
            try:
                end = _DECODER.raw_decode(text, at)[1]
            except (ValueError, RecursionError):
                end = None
        if end is None:
            end = _end_by_tokens(text, at, self.month)
            if end is None and final:
                raise _corrupt(self.month)
        if end is not None and end <= at:
            raise _corrupt(self.month)  # [,1]
        return end

    def _outside(self, final: bool) -> bool:
        """Read a token before the array opens or after it closed; False for more text."""
        at = _skip_space(self.text, self.at)
        if at == len(self.text):
            self.at = at
            return False
        if self.ended:
            raise _corrupt(self.month)
        match = _SCAN.match(self.text, at)
        if match is None:  # a number or literal outside the array
            end = _end_by_tokens(self.text, at, self.month)
            if end is None:
                self.at = at
                if final:
                    raise _corrupt(self.month)
                return False
            if self.depth == 0 or not _SCALAR.fullmatch(self.text, at, end):
                raise _corrupt(self.month)  # a bare value, or no JSON value at all
            self.at = end
            return True
        token = match.group()
        if token == '"':
            self.at = at
            if final:
                raise _corrupt(self.month)
            return False  # a string cut short
        self.at = match.end()
        if token[0] == '"':
            if self.depth == 0:
                raise _corrupt(self.month)
            if self.depth == 1:
                self.last_key, self.at_colon = token, False
        elif token == ":":
            self.at_colon = self.depth == 1
        elif token in ("[", "{"):
            self.depth += 1
            bare = self.depth == 1 and token == "["
            keyed = self.depth == 2 and token == "[" and self.at_colon
            if not self.found and (bare or (keyed and _string(self.last_key) == self.key_text)):
                self.in_array, self.expect_element = True, True
            self.at_colon = False
        elif token == ",":
            self.at_colon = False
        else:
            self.depth -= 1
            if self.depth < 0:
                raise _corrupt(self.month)
            self.ended = self.depth == 0 and self.found
        return True


_DECODER = json.JSONDecoder()
_SPACE = re.compile(r"[ \t\n\r]*")
# A string (unrolled: fast on long ones), the structure, and a quote whose string the text
# does not hold whole yet.
_SCAN = re.compile(r'"[^"\\]*(?:\\.[^"\\]*)*"|[\[\]{},:]|"', re.DOTALL)
_VALUE_END = re.compile(r"[ \t\n\r,\]}:]")  # JSON's own whitespace, not Python's \s
_SCALAR = re.compile(r"-?(?:0|[1-9][0-9]*)(?:\.[0-9]+)?(?:[eE][-+]?[0-9]+)?|true|false|null")


def _string(token: str) -> str | None:
    """A JSON string token's text (escapes read), or None."""
    try:
        value = json.loads(token)
    except ValueError:
        return None
    return value if isinstance(value, str) else None


def _skip_space(text: str, at: int) -> int:
    match = _SPACE.match(text, at)
    return match.end() if match else at


def _end_by_tokens(text: str, at: int, month: str) -> int | None:
    """Where the value at `at` ends, token by token (for one the json module refuses: a lone
    surrogate, a control character, 1e400), or None if `text` ends before it does."""
    if text[at] not in '[{"':
        match = _VALUE_END.search(text, at)
        return match.start() if match else None
    depth = 0
    for match in _SCAN.finditer(text, at):
        token = match.group()
        if token == '"':
            return None
        if token in ("[", "{"):
            depth += 1
        elif token in ("]", "}"):
            depth -= 1
        if depth <= 0 and token not in (",", ":"):
            if depth < 0:
                raise _corrupt(month)
            return match.end()
    return None


def archive_events(chunks: Iterable[bytes], month: str) -> Iterator[tuple[bytes, dict[str, Any]]]:
    """Each event of the archive with its JSON text, read as the text inflates; a bad event
    is a degraded one (jsonbody), text that is not a JSON array of events is exit 65."""
    splitter = ArraySplitter(month)
    batch: list[bytes] = []
    for chunk in chunks:
        batch += splitter.feed(chunk)
        if len(batch) >= _BATCH:
            yield from _parsed(batch, month)
            batch = []
    batch += splitter.close()
    yield from _parsed(batch, month)


def _parsed(texts: list[bytes], month: str) -> Iterator[tuple[bytes, dict[str, Any]]]:
    if not texts:
        return
    what = f"archive {month}"
    events = parse_events(b"[" + b",".join(texts) + b"]", what)
    if len(events) != len(texts):  # a batch the tolerant reader split otherwise: one by one
        events = [event for text in texts for event in parse_events(b"[" + text + b"]", what)]
    yield from zip(texts, events, strict=True)


class DaySpool:
    """Each wanted day's events, as their JSON texts, in a temporary file of its own until
    the day is printed: a month's archive is never in memory whole."""

    def __init__(self) -> None:
        self._files: dict[date, IO[bytes]] = {}

    def add(self, day: date, text: bytes) -> None:
        file = self._files.get(day)
        if file is None:
            file = self._files[day] = tempfile.TemporaryFile()  # noqa: SIM115 (closed in pop)
        file.write(struct.pack("<I", len(text)) + text)

    def pop(self, day: date, month: str) -> list[dict[str, Any]]:
        """The day's events, read back once; its file is then gone."""
        file = self._files.pop(day, None)
        if file is None:
            return []
        with file:
            file.seek(0)
            raw = file.read()
        texts, at = [], 0
        while at < len(raw):
            (size,) = struct.unpack_from("<I", raw, at)
            texts.append(raw[at + 4 : at + 4 + size])
            at += 4 + size
        del raw
        return [event for _, event in _parsed(texts, month)]

    def close(self) -> None:
        for file in self._files.values():
            file.close()
        self._files.clear()


def _checked(file: IO[bytes], checksum: object, month: str) -> None:
    digest = sha256_of(file)
    if not isinstance(checksum, str) or digest != checksum.strip().lower():
        raise MalformedDataError(
            f"archive {month} failed its SHA-256 check (expected {checksum!r}, got {digest}); "
            "nothing from it was printed"
        )


def parse_archive(
    content: bytes, checksum: object, month: str, cap: int = ARCHIVE_INFLATED_CAP
) -> list[dict[str, Any]]:
    """Every event of an archive in memory (for tests and small archives): the SHA-256 of the
    gzip bytes checked, then a bare array or {"entries": [...]}."""
    with tempfile.TemporaryFile() as file:
        file.write(content)
        _checked(file, checksum, month)
        return [event for _, event in archive_events(inflated(file, month, cap), month)]


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


class MonthArchive:
    """A month's archive, read whole and checked; its wanted days' events kept on disk."""

    def __init__(self, label: str, covers: list[date], spool: DaySpool) -> None:
        self.label = label  # YYYY-MM
        self.covers = covers  # the days this archive holds whole
        self._spool = spool

    def events_of(self, day: date) -> list[dict[str, Any]]:
        """A covered day's events (those matching the filters), once."""
        return self._spool.pop(day, self.label)

    def close(self) -> None:
        self._spool.close()


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
    covers = covered_days(year, month, archive.get("created_at"), today)
    wanted_days = set(wanted)
    kept = [day for day in covers if day in wanted_days]
    spool = DaySpool()
    try:
        with tempfile.TemporaryFile() as file:
            client.download(archive["url"], file)
            _checked(file, archive.get("checksum"), label)
            for text, event in archive_events(inflated(file, label), label):
                if filters and not matches_filters(event, filters):
                    continue
                moment = parse_time(event.get("created_at"))
                day = kept[0] if moment is None and kept else moment.date() if moment else None
                if day in kept:
                    spool.add(day, text)
    except OSError as error:  # the temporary files: a full TMPDIR, a file size limit
        spool.close()
        raise StateWriteError(
            f"cannot write the temporary files of archive {label} in "
            f"{tempfile.gettempdir()}: {error.strerror or error}; nothing from it was printed: "
            "free some space there, or point TMPDIR at a larger disk"
        ) from None
    except BaseException:
        spool.close()
        raise
    return MonthArchive(label, covers, spool)
