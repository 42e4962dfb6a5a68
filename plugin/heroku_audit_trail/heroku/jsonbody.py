"""Reading a page or an archive: a list of event objects out of JSON text (DESIGN §6, §9). Pure.

orjson reads almost every body. A body that is valid JSON but that orjson refuses (a lone
surrogate escape, `1e400`, nesting past its limit, bytes that are not UTF-8 inside a string)
goes through a tolerant reader instead, one element at a time, so that one bad event becomes
one degraded line and its neighbours are untouched. Only text that is not JSON at all is
MalformedDataError (exit 65).
"""

from __future__ import annotations

import contextlib
import json
import re
from typing import Any

import orjson

from heroku_audit_trail.ecs import UNPARSED, Unparsed
from heroku_audit_trail.errors import MalformedDataError

# Strings (with their escapes), punctuation, and runs of anything else (numbers, literals).
_TOKEN = re.compile(r'"(?:[^"\\]|\\.)*"|[\[\]{}:,]|[^\s\[\]{}:,"]+|\s+', re.DOTALL)


class _Unrepresentable:
    """A number no float holds (`1e400`): orjson refuses it, so its event is degraded
    rather than printed with a null or an infinity in its place."""

    def __init__(self, text: str) -> None:
        self.text = text

    def __repr__(self) -> str:
        return self.text


def _number(text: str) -> float | _Unrepresentable:
    value = float(text)
    return value if abs(value) != float("inf") else _Unrepresentable(text)


def _integer(text: str) -> int | _Unrepresentable:
    # Python refuses to read integers of more than 4300 digits (CVE-2020-10735).
    return int(text) if len(text) <= 4000 else _Unrepresentable(text)


def _tolerant_loads(text: str) -> Any:
    return json.loads(
        text, parse_float=_number, parse_int=_integer, parse_constant=_Unrepresentable
    )


def parse_events(content: bytes, what: str = "events", key: str = "data") -> list[dict[str, Any]]:
    """A bare JSON array, or an object whose `key` is an array; each element an event.

    An element that is not an object, or that no parser can read, comes back as
    `{UNPARSED: Unparsed(...)}`, to be printed as a degraded line.
    """
    try:
        body = orjson.loads(content)
    except orjson.JSONDecodeError:
        return _tolerant(content, what, key)
    if isinstance(body, dict) and isinstance(body.get(key), list):
        body = body[key]
    if not isinstance(body, list):
        raise MalformedDataError(
            f"Heroku API returned {what} in an unexpected shape (not a JSON array of objects)"
        )
    return [item if isinstance(item, dict) else _not_an_object(item) for item in body]


def _not_an_object(item: Any) -> dict[str, Any]:
    try:
        text = orjson.dumps(item).decode()
    except (TypeError, orjson.JSONEncodeError):
        text = repr(item)
    return {UNPARSED: Unparsed(text, f"element is a JSON {type(item).__name__}, not an object")}


def _tolerant(content: bytes, what: str, key: str) -> list[dict[str, Any]]:
    text = content.decode("utf-8", "surrogateescape").strip()
    if text.startswith("{"):
        member = _member_span(text, key)
        if member is None:
            raise MalformedDataError(f"Heroku API returned {what} that are not JSON")
        text = text[member[0] : member[1]]
    spans = _array_elements(text)
    if spans is None:
        raise MalformedDataError(f"Heroku API returned {what} that are not JSON")
    events = []
    for begin, end in spans:
        element = text[begin:end]
        try:
            item = _tolerant_loads(element)
        except RecursionError:
            # Its id and time are still worth having: the sink's dedupe key, @timestamp.
            salvaged = _top_level_strings(element)
            events.append({**salvaged, UNPARSED: Unparsed(element, "nested too deeply to read")})
            continue
        except ValueError:
            raise MalformedDataError(f"Heroku API returned {what} that are not JSON") from None
        events.append(item if isinstance(item, dict) else _not_an_object(item))
    return events


def _top_level_strings(element: str) -> dict[str, str]:
    """The string members (`"id": "..."`) at the top of an object too deep to parse."""
    found: dict[str, str] = {}
    depth = 0
    previous: list[str] = []  # the last three tokens at depth 1, for `"key" : "value"`
    for match in _TOKEN.finditer(element):
        token = match.group()
        if token.isspace():
            continue
        if token in "[{":
            depth += 1
        elif token in "]}":
            depth -= 1
        elif depth == 1:
            previous = [*previous[-2:], token]
            key, colon, value = ([""] * 3 + previous)[-3:]
            if colon == ":" and key.startswith('"') and value.startswith('"'):
                with contextlib.suppress(ValueError):
                    found[json.loads(key)] = json.loads(value)
            continue
        previous = []
    return found


def _member_span(text: str, key: str) -> tuple[int, int] | None:
    """The span of the array under `key` at the top of the object `text`, found without
    recursion; None when there is none or the object does not balance."""
    depth = 0
    previous: list[str] = []  # the last tokens at depth 1: `"key"` and `:`
    start: int | None = None
    for match in _TOKEN.finditer(text):
        token = match.group()
        if token.isspace():
            continue
        if depth == 1 and start is None and token == "[" and previous == [f'"{key}"', ":"]:
            start = match.start()
        if token in "[{":
            depth += 1
        elif token in "]}":
            depth -= 1
            if depth == 1 and start is not None:
                return start, match.end()
            if depth < 0:
                return None
        elif depth == 1:
            previous = [*previous[-1:], token]
    return None


def _array_elements(text: str) -> list[tuple[int, int]] | None:
    """Spans of the elements of the array `text`, found without recursion; None when it is not
    one array whose brackets and strings balance."""
    spans: list[tuple[int, int]] = []
    depth = 0
    element_start: int | None = None
    closed = False
    position = 0
    for match in _TOKEN.finditer(text):
        if match.start() != position:
            return None  # an unterminated string or a stray character
        position = match.end()
        token = match.group()
        if token.isspace():
            continue
        if closed:
            return None  # something after the array
        if depth == 0:
            if token != "[":
                return None
            depth = 1
            continue
        if depth == 1 and token in ",]":
            if element_start is not None:
                spans.append((element_start, match.start()))
                element_start = None
            elif token == "," or spans:
                return None  # `[,` or `,,` or `,]`
            if token == "]":
                depth = 0
                closed = True
            continue
        if element_start is None:
            element_start = match.start()
        if token in "[{":
            depth += 1
        elif token in "]}":
            depth -= 1
            if depth < 1:
                return None
    return spans if closed and position == len(text) else None
