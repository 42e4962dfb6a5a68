"""The day's spool: the same lines in the same order, in memory or spilled to a file."""

from __future__ import annotations

import random
from datetime import datetime, timedelta, timezone

import pytest

from heroku_audit_trail.spool import Spool

START = datetime(2026, 11, 23, tzinfo=timezone.utc)


@pytest.mark.parametrize("threshold", [1 << 30, 100, 0])
def test_lines_come_back_in_created_at_order(threshold: int) -> None:
    rng = random.Random(threshold)
    items = [
        ((START + timedelta(seconds=rng.randrange(1000)), f"id-{n}"), f'{{"n":{n}}}\n'.encode())
        for n in range(2000)
    ]
    spool = Spool(threshold)
    for start in range(0, len(items), 300):  # page by page
        spool.extend(items[start : start + 300])
    assert len(spool) == len(items)
    assert list(spool.in_order()) == [line for _, line in sorted(items, key=lambda i: i[0])]
    spool.close()
