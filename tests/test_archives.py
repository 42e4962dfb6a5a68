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
