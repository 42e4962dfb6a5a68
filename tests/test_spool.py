"""The day's spool: the same lines in the same order, in memory or spilled to a file."""

from __future__ import annotations

import random
from datetime import datetime, timedelta, timezone

import pytest

from heroku_audit_trail.days import spool as spool_module
from heroku_audit_trail.days.spool import Spool

START = datetime(2026, 11, 23, tzinfo=timezone.utc)


@pytest.mark.parametrize(
    "arrival", ["oldest first", "newest first", "newest first, ties by id", "shuffled"]
)
@pytest.mark.parametrize("threshold", [1 << 30, 100, 0])
def test_lines_come_back_in_created_at_order(
    threshold: int, arrival: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Whatever order the API sends a day in; each run of the file is read in windows (small
    here, so that lines cross their edges), and one line is longer than a window."""
    monkeypatch.setattr(spool_module, "READ_BYTES", 4096)
    rng = random.Random(threshold)
    items = [
        ((START + timedelta(seconds=n // 3), f"id-{n}"), f'{{"n":{n}}}\n'.encode())
        for n in range(2000)
    ]
    items[700] = (items[700][0], b'{"long":"' + b"x" * 10000 + b'"}\n')
    if arrival == "newest first":
        items.reverse()
    elif arrival == "newest first, ties by id":  # runs of three, each backwards in the file
        items = [
            item for second in range(666, -1, -1) for item in items[second * 3 : second * 3 + 3]
        ]
    elif arrival == "shuffled":
        rng.shuffle(items)
    spool = Spool(threshold)
    for start in range(0, len(items), 300):  # page by page
        page = items[start : start + 300]
        spool.extend([order for order, _ in page], [line for _, line in page])
    assert len(spool) == len(items)
    assert list(spool.in_order()) == [line for _, line in sorted(items, key=lambda i: i[0])]
    spool.close()
