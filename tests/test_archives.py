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
    "content",
    [b"not gzip", gzip.compress(b"[1, 2", mtime=0)[:-8], gzip.compress(b'{"x": 1}', mtime=0)],
    ids=["not-gzip", "truncated", "an-object"],  # the same names in every xdist worker
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
    elements += splitter.close()  # what the last pieces held
    assert [orjson.loads(element) for element in elements] == events


@pytest.mark.parametrize(
    "text", [b"[1, 2", b'{"entries": [1}', b"[1,,2]", b"[1] [2]", b'"just a string"', b"]"]
)
def test_text_that_is_no_array_of_events_is_malformed(text: bytes) -> None:
    with pytest.raises(MalformedDataError, match="archive 2026-10"):
        parse_archive(*sealed(gzip.compress(text)), "2026-10")


@pytest.mark.parametrize(
    "text",
    [
        b'{"entries":[{"id":"a"}]\x0c}',  # whitespace to Python, not to JSON: it once hung
        b'{"x":\x0c1,"entries":[{"id":"a"}]}',
        b'{\xc2\xa0"entries":[{"id":"a"}]}',
        b'{"x": tru, "entries": [{"id":"a"}]}',
    ],
)
def test_what_json_calls_no_whitespace_or_value_outside_the_array_is_malformed(
    text: bytes,
) -> None:
    with pytest.raises(MalformedDataError, match="archive 2026-10"):
        parse_archive(*sealed(gzip.compress(text)), "2026-10")


def test_odd_but_valid_archives_read_as_json_reads_them() -> None:
    deep = b'[{"id":"a","d":' + b"[" * 995 + b"]" * 995 + b"}]"  # past the json module's depth
    assert [event["id"] for event in parse_archive(*sealed(gzip.compress(deep)), "2026-10")] == [
        "a"
    ]
    escaped_key = b'{"entr\\u0069es":[{"id":"b"}]}'
    assert parse_archive(*sealed(gzip.compress(escaped_key)), "2026-10") == [{"id": "b"}]


def test_a_number_cut_by_a_piece_boundary_is_one_element() -> None:
    from heroku_audit_trail.heroku.archives import ArraySplitter

    splitter = ArraySplitter("2026-10")
    elements = splitter.feed(b"[1.") + splitter.feed(b"5, -2e") + splitter.feed(b"3]")
    assert elements + splitter.close() == [b"1.5", b"-2e3"]


def test_a_huge_element_is_not_read_again_for_every_piece(monkeypatch: pytest.MonkeyPatch) -> None:
    """An event of 16 MiB over 16 pieces: tried a few times as it grows (each try at least
    doubles what it reads), not once a piece (which took quadratic time)."""
    from heroku_audit_trail.heroku import archives

    tries = 0
    decode = archives._DECODER.raw_decode

    def counted(text: str, at: int) -> tuple[object, int]:
        nonlocal tries
        tries += 1
        return decode(text, at)

    monkeypatch.setattr(archives._DECODER, "raw_decode", counted)
    text = b'[{"id":"a","note":"' + b"x" * (16 << 20) + b'"}]'
    splitter = archives.ArraySplitter("2026-10")
    pieces = [text[at : at + (1 << 20)] for at in range(0, len(text), 1 << 20)]
    elements = [element for piece in pieces for element in splitter.feed(piece)]
    elements += splitter.close()
    assert len(elements) == 1 and tries <= 8, tries
