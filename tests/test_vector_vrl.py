"""examples/vector.toml run by Vector's own language: vrl-python is VRL's compiler and runtime
(the crate Vector embeds) as a Python extension. Real `poll` output, shaped the way Vector's
exec source hands it over, goes through the example's route conditions and remap program;
what reaches the ClickHouse sink lands in the examples' table (chdb)."""

from __future__ import annotations

import sys
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import orjson
import pytest

from heroku_audit_trail.simulator import Simulator, SimulatorConfig

from .conftest import Cli
from .test_examples import EXAMPLES

vrl = pytest.importorskip("vrl_python", reason="vrl-python not installed (test extra)")
pytestmark = pytest.mark.skipif(sys.version_info < (3, 11), reason="tomllib is Python 3.11+")

# What Vector's exec source adds at the root of each event (legacy log namespace).
EXEC_FIELDS = {"host", "pid", "command", "stream", "source_type", "timestamp"}


def vector_config() -> dict[str, Any]:
    import tomllib

    config: dict[str, Any] = tomllib.loads((EXAMPLES / "vector.toml").read_text())
    return config


def from_exec_source(line: bytes, stream: str, read_at: str) -> dict[str, Any]:
    """One line as Vector's exec source with `decoding.codec = "json"` emits it."""
    event: dict[str, Any] = orjson.loads(line)
    event |= {
        "host": "shipper-1",
        "pid": 4242,
        "command": vector_config()["sources"]["heroku_audit"]["command"],
        "stream": stream,
        "source_type": "exec",
        "timestamp": read_at,  # when Vector read the line
    }
    return event


@pytest.fixture(scope="module")
def exec_events(tmp_path_factory: pytest.TempPathFactory) -> list[dict[str, Any]]:
    """A real poll's stdout and stderr (with a warning among the diagnostics)."""
    with Simulator(SimulatorConfig(seed=51, events_per_day=60, history_days=1)) as sim:
        run = Cli(sim, tmp_path_factory.mktemp("vrl")).run("poll", "--type", "spaceship")
    assert run.code == 0 and run.stderr.count("\n") >= 2  # a filter warning and the summary
    with Simulator(SimulatorConfig(seed=51, events_per_day=60, history_days=1)) as sim:
        full = Cli(sim, tmp_path_factory.mktemp("vrl")).run("poll")
    assert full.code == 0 and full.stdout
    read_at = datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
    stdout = [from_exec_source(line, "stdout", read_at) for line in full.stdout.splitlines()]
    stderr = [
        from_exec_source(line.encode(), "stderr", read_at)
        for line in (run.stderr + full.stderr).splitlines()
    ]
    return stdout + stderr


def vrl_time(text: str) -> datetime:
    """A VRL timestamp as vrl-python shows it: `2026-11-24 10:11:12.5 UTC` (no fraction when
    it is zero)."""
    for shape in ("%Y-%m-%d %H:%M:%S.%f %Z", "%Y-%m-%d %H:%M:%S %Z"):
        try:
            return datetime.strptime(text, shape)
        except ValueError:
            pass
    raise AssertionError(f"{text!r} is not a VRL timestamp")


def condition(source: str, event: dict[str, Any]) -> bool:
    result = vrl.VRLRuntime().execute(source, event).runtime_result
    assert isinstance(result, bool), f"{source!r} is not a condition"
    return result


def remap(source: str, event: dict[str, Any]) -> dict[str, Any]:
    processed: dict[str, Any] = vrl.VRLRuntime().execute(source, event).processed_event
    return processed


def test_every_remap_and_route_compiles() -> None:
    transforms = vector_config()["transforms"]
    programs = [t["source"] for t in transforms.values() if t["type"] == "remap"]
    programs += [
        condition
        for t in transforms.values()
        if t["type"] == "route"
        for condition in t["route"].values()
    ]
    assert len(programs) >= 3
    for program in programs:
        vrl.VRLRuntime().compile(program)  # VRLCompileError (or ValueError) if broken


def test_events_and_diagnostics_are_routed_apart_and_remapped(
    exec_events: list[dict[str, Any]],
) -> None:
    config = vector_config()
    routes = config["transforms"]["heroku_split"]["route"]
    remap_source = config["transforms"]["heroku_events"]["source"]
    sinks = config["sinks"]
    assert config["transforms"]["heroku_events"]["inputs"] == ["heroku_split.events"]
    assert sinks["heroku_clickhouse"]["inputs"] == ["heroku_events"]
    assert sinks["heroku_file"]["inputs"] == ["heroku_events"]
    assert "heroku_split.diagnostics" in sinks["console"]["inputs"]
    events = diagnostics = 0
    for event in exec_events:
        taken = {name for name, source in routes.items() if condition(source, event)}
        if event["stream"] == "stdout":
            assert taken == {"events"}, event
            events += 1
            out = remap(remap_source, event)
            assert not EXEC_FIELDS - {"timestamp"} & out.keys()  # the exec metadata is gone
            assert set(out) - {"timestamp"} == set(event) - EXEC_FIELDS  # and only it
            # Vector's event time is the audit event's own time, to the microsecond.
            stamp = vrl_time(out["timestamp"])
            assert stamp.strftime("%Y-%m-%dT%H:%M:%S.%fZ") == event["@timestamp"]
        else:
            assert taken == {"diagnostics"}, event
            assert event["log.logger"] == "heroku-audit-trail"
            diagnostics += 1
    assert events >= 60 and diagnostics >= 2


def test_what_reaches_the_clickhouse_sink_lands_in_the_table(
    exec_events: list[dict[str, Any]], tmp_path: Path
) -> None:
    chdb_session = pytest.importorskip("chdb.session", reason="chdb not installed")
    config = vector_config()
    sink = config["sinks"]["heroku_clickhouse"]
    routes = config["transforms"]["heroku_split"]["route"]
    remap_source = config["transforms"]["heroku_events"]["source"]
    rows = []
    for event in exec_events:
        if condition(routes["events"], event):
            out = remap(remap_source, event)
            # The sink writes timestamps as RFC 3339 (JSONEachRow, best-effort parsing).
            moment = vrl_time(out["timestamp"])
            out["timestamp"] = moment.strftime("%Y-%m-%dT%H:%M:%S.%fZ")
            rows.append(out)
    session = chdb_session.Session(str(tmp_path / "chdb"))
    try:
        session.query((EXAMPLES / "heroku_logs.sql").read_text())
        columns = {
            orjson.loads(line)["name"]
            for line in session.query("DESCRIBE TABLE heroku_logs", "JSONEachRow")
            .bytes()
            .splitlines()
        }
        assert sink["table"] == "heroku_logs"
        # skip_unknown_fields drops Vector's `timestamp`; nothing the program prints is dropped.
        assert set().union(*(row.keys() for row in rows)) - {"timestamp"} <= columns
        settings = {
            "input_format_skip_unknown_fields": int(sink["skip_unknown_fields"]),
            "date_time_input_format": "best_effort" if sink["date_time_best_effort"] else "basic",
        }
        session.query("SET " + ", ".join(f"{key} = '{value}'" for key, value in settings.items()))
        body = b"\n".join(orjson.dumps(row) for row in rows).decode()
        session.query(f"INSERT INTO {sink['table']} FORMAT JSONEachRow\n{body}")
        stored = {
            row["id"]: row
            for row in map(
                orjson.loads,
                session.query(
                    "SELECT event.id AS id, toString(`@timestamp`) AS ts, user.email AS email "
                    "FROM heroku_logs FINAL",
                    "JSONEachRow",
                )
                .bytes()
                .splitlines(),
            )
        }
    finally:
        session.close()
    assert len(stored) == len(rows)
    for row in rows:
        kept = stored[row["event"]["id"]]
        stamp = datetime.strptime(row["@timestamp"], "%Y-%m-%dT%H:%M:%S.%fZ")
        assert kept["ts"] == stamp.strftime("%Y-%m-%d %H:%M:%S.%f")
        assert kept["email"] == row.get("user", {}).get("email", "")
