"""examples/detections.sql in a real ClickHouse engine (chdb): every query runs on a month of
simulated events as the program prints them (through `events`), before and after the test
plants the pattern it must find and near-misses it must not. What a query returns after is
exactly what it returned before plus its planted events."""

from __future__ import annotations

import re
from collections.abc import Iterator
from typing import Any

import pytest

from .planted import PLAN, month_printed
from .test_examples import EXAMPLES

chdb_session = pytest.importorskip("chdb.session", reason="chdb not installed (extra: clickhouse)")
from .test_clickhouse import insert, rows  # noqa: E402  (needs chdb)

pytestmark = pytest.mark.e2e  # runs the real command (or a build) as a subprocess


def detections() -> dict[str, str]:
    """name → query, from the file's `-- detection: NAME` headers."""
    text = (EXAMPLES / "detections.sql").read_text()
    parts = re.split(r"^-- detection: (\w+)\n", text, flags=re.M)
    pairs = zip(parts[1::2], parts[2::2], strict=True)
    return {name: body.strip().rstrip(";") for name, body in pairs}


@pytest.fixture(scope="module")
def database(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    """One engine (chdb allows one per process) with the month twice: in database `before`
    without the planted events, in `after` with them; each has the examples' table."""
    before, after = month_printed(PLAN, 31, tmp_path_factory.mktemp)
    session = chdb_session.Session(str(tmp_path_factory.mktemp("chdb")))
    for name, lines in (("before", before), ("after", after)):
        session.query(f"CREATE DATABASE {name}")
        session.query(f"USE {name}")
        session.query((EXAMPLES / "heroku_logs.sql").read_text())
        insert(session, lines)
    yield session
    session.close()


def found(session: Any, database: str, query: str) -> set[str]:
    session.query(f"USE {database}")
    result = rows(session, query)
    assert all(
        {"@timestamp", "actor", "action", "target", "ip", "event_id", "why"} <= row.keys()
        for row in result
    )
    return {row["event_id"] for row in result}


def test_every_detection_is_planted_for() -> None:
    sql = set(detections())
    assert sql == set(PLAN.missed) and sql <= set(PLAN.found)  # the rest: Sigma rules' only


@pytest.mark.parametrize("name", sorted(detections()))
def test_a_detection_finds_exactly_its_pattern(name: str, database: Any) -> None:
    query = detections()[name]
    background = found(database, "before", query)
    assert not background & {event["id"] for event in PLAN.events}
    after = found(database, "after", query)
    assert after == background | PLAN.found[name]
    assert not PLAN.missed[name] & after
