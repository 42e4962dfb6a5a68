"""examples/heroku_logs.sql in a real ClickHouse engine (chdb, in-process): the program's
lines go in with the very statement the Fluent Bit example posts, typed columns come out."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import orjson
import pytest

from heroku_audit_trail.simulator import Simulator, SimulatorConfig

from .conftest import Cli, window_ids
from .test_examples import EXAMPLES, read_classic

pytestmark = pytest.mark.e2e  # runs the real command (or a build) as a subprocess

chdb_session = pytest.importorskip("chdb.session", reason="chdb not installed (extra: clickhouse)")


def fluent_bit_insert() -> tuple[str, dict[str, str]]:
    """The INSERT statement and settings from the Fluent Bit example's http output URI."""
    (http,) = [
        options
        for kind, options in read_classic(EXAMPLES / "fluent-bit.conf")
        if kind == "output" and options["name"] == "http"
    ]
    query = {key: values[0] for key, values in parse_qs(urlsplit(http["uri"]).query).items()}
    return query.pop("query"), query


@pytest.fixture(scope="module")
def printed(tmp_path_factory: pytest.TempPathFactory) -> list[bytes]:
    config = SimulatorConfig(seed=21, events_per_day=300, history_days=1)
    with Simulator(config) as sim:
        run = Cli(sim, tmp_path_factory.mktemp("ch")).run("poll")
    assert run.code == 0, run.stderr
    return run.stdout.splitlines()


@pytest.fixture
def clickhouse(tmp_path: Path) -> Iterator[Any]:
    session = chdb_session.Session(str(tmp_path / "chdb"))
    session.query((EXAMPLES / "heroku_logs.sql").read_text())
    yield session
    session.close()


def insert(session: Any, lines: list[bytes]) -> None:
    statement, settings = fluent_bit_insert()
    assert statement == "INSERT INTO heroku_logs FORMAT JSONEachRow"
    pairs = ", ".join(f"{key} = '{value}'" for key, value in settings.items())
    session.query(f"SET {pairs}")
    session.query(f"{statement}\n" + b"\n".join(lines).decode())


def rows(session: Any, sql: str) -> list[dict[str, Any]]:
    return [orjson.loads(line) for line in session.query(sql, "JSONEachRow").bytes().splitlines()]


def test_lines_land_in_typed_columns(clickhouse: Any, printed: list[bytes]) -> None:
    insert(clickhouse, printed)
    stored = rows(
        clickhouse,
        "SELECT toString(`@timestamp`) AS ts, event.id AS id, event.action AS action, "
        "event.category AS category, user.email AS email, source.ip AS ip, "
        "organization.name AS org, toString(heroku.app.name) AS app FROM heroku_logs FINAL",
    )
    by_id = {row["id"]: row for row in stored}
    assert len(by_id) == len(printed)
    longest = max(len(line) for line in printed)
    assert longest > 4096  # a large `data` event went through too
    for line in map(orjson.loads, printed):
        row = by_id[line["event"]["id"]]
        stamp = datetime.strptime(line["@timestamp"], "%Y-%m-%dT%H:%M:%S.%fZ")
        assert row["ts"] == stamp.strftime("%Y-%m-%d %H:%M:%S.%f")  # microseconds kept
        assert row["action"] == line["event"]["action"]
        assert row["category"] == line["event"].get("category", [])
        assert row["email"] == line.get("user", {}).get("email", "")
        assert row["ip"] == line.get("source", {}).get("ip", "")
        assert row["org"] == "acme"
        assert row["app"] == line["heroku"].get("app", {}).get("name", "")


def test_a_line_delivered_twice_is_kept_once(clickhouse: Any, printed: list[bytes]) -> None:
    insert(clickhouse, printed[:10])
    insert(clickhouse, printed[:10])
    (count,) = rows(clickhouse, "SELECT count() AS n FROM heroku_logs FINAL")
    assert int(count["n"]) == 10


def test_a_high_availability_pair_gives_every_event_once(clickhouse: Any, tmp_path: Path) -> None:
    """README "Running it in pairs": two hosts poll the same account, each with its own state,
    late events reaching them at different times; both insert into one heroku_logs. FINAL (or
    OPTIMIZE ... FINAL) leaves every event exactly once."""
    today = datetime.now(timezone.utc).date()
    yesterday = today - timedelta(days=1)
    with Simulator(SimulatorConfig(seed=41, events_per_day=120, history_days=2)) as sim:
        host_a, host_b = Cli(sim, tmp_path / "host-a"), Cli(sim, tmp_path / "host-b")
        printed: dict[str, list[bytes]] = {"a": [], "b": []}

        def poll(host: str, cli: Cli) -> None:
            run = cli.run("poll")
            assert run.code == 0, run.stderr
            printed[host] += run.stdout.splitlines()

        poll("a", host_a)
        sim.add_events(yesterday, 15)  # late: B's first run sees them, A's second run does
        poll("b", host_b)
        poll("a", host_a)
        sim.add_events(yesterday, 5)
        sim.add_events(today, 5)
        poll("b", host_b)  # B first this time
        poll("a", host_a)
        expected = window_ids(sim)
    for host in ("a", "b"):  # each host's shipper inserts on its own
        ids = [orjson.loads(line)["event"]["id"] for line in printed[host]]
        assert sorted(ids) == sorted(expected)  # each host alone: every event, once
        insert(clickhouse, printed[host])
    (raw,) = rows(clickhouse, "SELECT count() AS n FROM heroku_logs")
    # The pair repeats every line (until a background merge, which may already have run)...
    assert len(expected) <= int(raw["n"]) <= 2 * len(expected)
    final = rows(
        clickhouse, "SELECT event.id AS id, count() AS n FROM heroku_logs FINAL GROUP BY id"
    )
    assert {row["id"] for row in final} == expected and all(int(r["n"]) == 1 for r in final)
    clickhouse.query("OPTIMIZE TABLE heroku_logs FINAL")
    (merged,) = rows(clickhouse, "SELECT count() AS n, uniqExact(event.id) AS ids FROM heroku_logs")
    assert int(merged["n"]) == int(merged["ids"]) == len(expected)  # ...the table keeps one
