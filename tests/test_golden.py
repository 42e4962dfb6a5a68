"""The ECS mapping byte for byte: a golden file for a sample, a digest for many more.

Regenerate (only when the mapping is meant to change) with:
    python -m tests.test_golden
"""

from __future__ import annotations

import hashlib
from datetime import date
from pathlib import Path
from typing import Any

from heroku_audit_trail.ecs import render
from heroku_audit_trail.eventgen import generate_day

GOLDEN = Path(__file__).parent / "golden" / "ecs.jsonl"
READ_AT = "2026-11-24T22:00:00.000000Z"
ACCOUNT = {"id": "e1", "name": "acme"}
# sha256 of the lines of 5000 generated events in both formats, with and without the original.
DIGEST = Path(__file__).parent / "golden" / "ecs-5000.sha256"

ODD: list[dict[str, Any]] = [
    {"id": "odd-1", "type": "app", "action": "create", "created_at": "2026-11-23T10:11:12+02"},
    {"type": "collaborator", "action": "create", "actor": {"email": "a@example.com"}},
    {"id": "odd-3", "type": "mystery", "action": "frobnicate", "data": {"a": None, "b": [None]}},
    {"id": "odd-4", "type": "team", "action": "explode", "team": None, "request": None},
    {"id": "odd-5", "created_at": "0001-01-01T00:00:00+01:00", "type": "app"},
    {"id": 42, "actor": "alice", "app": {"name": ""}, "data": {"nested": {"x": None}}},
]


def sample() -> list[dict[str, Any]]:
    return generate_day(7, date(2026, 11, 23), 40, ACCOUNT) + ODD


def lines(events: list[dict[str, Any]], output_format: str, original: bool) -> list[bytes]:
    return [render(event, output_format, READ_AT, original).line for event in events]


def digest() -> str:
    events = generate_day(8, date(2026, 11, 22), 5000, ACCOUNT) + ODD
    hasher = hashlib.sha256()
    for output_format, original in (("ecs", False), ("ecs", True), ("heroku", False)):
        for line in lines(events, output_format, original):
            hasher.update(line)
    return hasher.hexdigest()


def test_sample_is_byte_for_byte_the_golden_file() -> None:
    assert b"".join(lines(sample(), "ecs", False)) == GOLDEN.read_bytes()


def test_five_thousand_events_render_to_the_same_bytes() -> None:
    assert digest() == DIGEST.read_text().strip()


if __name__ == "__main__":
    GOLDEN.write_bytes(b"".join(lines(sample(), "ecs", False)))
    DIGEST.write_text(digest() + "\n")
    print(f"wrote {GOLDEN} and {DIGEST}")
