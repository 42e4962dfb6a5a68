"""One month's archive: checksum, bounded inflation, layouts (pure)."""

from __future__ import annotations

import gzip
import hashlib

import orjson
import pytest

from heroku_audit_trail.errors import MalformedDataError
from heroku_audit_trail.heroku.archives import parse_archive

EVENTS = [{"id": "a", "created_at": "2026-10-01T00:00:00Z"}, {"id": "b"}]


def sealed(content: bytes) -> tuple[bytes, str]:
    return content, hashlib.sha256(content).hexdigest()


@pytest.mark.parametrize("layout", [EVENTS, {"entries": EVENTS}])
def test_both_layouts_and_several_gzip_members(layout: object) -> None:
    assert parse_archive(*sealed(gzip.compress(orjson.dumps(layout))), "2026-10") == EVENTS
    text = orjson.dumps(EVENTS)
    two_members = gzip.compress(text[:10]) + gzip.compress(text[10:])
    assert parse_archive(*sealed(two_members), "2026-10") == EVENTS


def test_a_gzip_bomb_is_refused_past_the_cap() -> None:
    bomb = gzip.compress(b"[" + b" " * (40 << 20) + b"]")
    with pytest.raises(MalformedDataError, match="inflates past 16 MiB"):
        parse_archive(*sealed(bomb), "2026-10", cap=16 << 20)


@pytest.mark.parametrize(
    "content", [b"not gzip", gzip.compress(b"[1, 2")[:-8], gzip.compress(b'{"x": 1}')]
)
def test_broken_archives_are_malformed(content: bytes) -> None:
    with pytest.raises(MalformedDataError, match="archive 2026-10"):
        parse_archive(*sealed(content), "2026-10")


def test_a_wrong_checksum_is_refused_before_reading() -> None:
    with pytest.raises(MalformedDataError, match="SHA-256"):
        parse_archive(gzip.compress(b"[]"), "0" * 64, "2026-10")


TRICKY = [
    {"id": "a", "message": 'brackets ] [ } { and commas , , and a quote " and \\ backslash'},
    {"id": "b", "nested": {"list": [1, [2, {"x": "]"}], {}], "empty": []}, "n": -1.5e3},
    {"id": "c\u00e9\u20ac", "esc": '"', "tail": "\\", "both": '\\"'},
    {"id": "d", "actor": {"email": "x@example.com"}, "flag": True, "none": None},
]


@pytest.mark.parametrize("seed", range(20))
@pytest.mark.parametrize("layout", ["bare", "keyed", "pretty"])
def test_the_array_splits_the_same_at_any_chunk_boundary(seed: int, layout: str) -> None:
    """Events cut anywhere, in strings, escapes and multi-byte characters, come out whole."""
    import random

    from heroku_audit_trail.heroku.archives import ArraySplitter

    events = TRICKY * 3
    if layout == "keyed":
        text = orjson.dumps({"before": {"a": [1]}, "entries": events, "after": "]"})
    else:
        option = orjson.OPT_INDENT_2 if layout == "pretty" else 0
        text = orjson.dumps(events, option=option)
    chooser = random.Random(seed)
    cuts = sorted(chooser.sample(range(1, len(text)), 12))
    pieces = [text[a:b] for a, b in zip([0, *cuts], [*cuts, len(text)], strict=True)]
    splitter = ArraySplitter("2026-10")
    elements = [element for piece in pieces for element in splitter.feed(piece)]
    splitter.close()
    assert [orjson.loads(element) for element in elements] == events


@pytest.mark.parametrize(
    "text", [b"[1, 2", b'{"entries": [1}', b"[1,,2]", b"[1] [2]", b'"just a string"', b"]"]
)
def test_text_that_is_no_array_of_events_is_malformed(text: bytes) -> None:
    with pytest.raises(MalformedDataError, match="archive 2026-10"):
        parse_archive(*sealed(gzip.compress(text)), "2026-10")
