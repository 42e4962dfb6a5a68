"""The examples run by the real shippers, when their binaries are on PATH.

Neither `fluent-bit` nor `vector` is in Debian or PyPI, so CI skips these; a developer with
either binary runs them as they are. The example is copied with only what a user changes
(enterprise, token source) plus test plumbing: the simulator's URL, temp paths, a short
interval, and the ClickHouse endpoint replaced by a local HTTP catcher.
"""

from __future__ import annotations

import re
import shutil
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from datetime import datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import ClassVar

import orjson
import pytest

from heroku_audit_trail.simulator import DEMO_TOKEN, Simulator, SimulatorConfig

from .conftest import window_ids
from .test_examples import EXAMPLES

pytestmark = pytest.mark.e2e  # runs the real command (or a build) as a subprocess

PROGRAM = Path(sys.executable).with_name("heroku-audit-trail")


class Catcher(BaseHTTPRequestHandler):
    """Stands in for ClickHouse's HTTP interface: keeps each POST's query and body."""

    posts: ClassVar[list[tuple[str, bytes]]] = []

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
        self.posts.append((self.path, body))
        self.send_response(200)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, format: str, *args: object) -> None:
        pass


@pytest.fixture
def catcher() -> Iterator[ThreadingHTTPServer]:
    Catcher.posts = []
    server = ThreadingHTTPServer(("127.0.0.1", 0), Catcher)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield server
    server.shutdown()


def delivered(out_dir: Path) -> list[bytes]:
    """Every line the shipper's file sink wrote so far."""
    return [line for path in sorted(out_dir.glob("*")) for line in path.read_bytes().splitlines()]


def run_shipper(argv: list[str], done: Callable[[], bool], seconds: float) -> tuple[bytes, bytes]:
    """Start the shipper, wait until `done()` (or time is up), stop it with SIGTERM."""
    process = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline and not done():
        time.sleep(0.5)
    time.sleep(1)  # let a last flush land
    process.send_signal(signal.SIGTERM)
    return process.communicate(timeout=90)


@pytest.mark.skipif(shutil.which("fluent-bit") is None, reason="fluent-bit is not on PATH")
def test_fluent_bit_delivers_every_event_with_its_time(
    tmp_path: Path, catcher: ThreadingHTTPServer
) -> None:
    token_file = tmp_path / "api-key"
    token_file.write_text(DEMO_TOKEN + "\n")
    with Simulator(SimulatorConfig(seed=4, events_per_day=120, history_days=1)) as sim:
        conf = (EXAMPLES / "fluent-bit.conf").read_text()
        command = (
            f"HEROKU_API_URL={sim.url} HEROKU_ENTERPRISE=acme HEROKU_API_KEY_FILE={token_file} "
            f"HEROKU_AUDIT_STATE_DIR={tmp_path / 'state'} HEROKU_AUDIT_MAX_RUNTIME=240 "
            f"{PROGRAM} poll"
        )
        conf = re.sub(r"(?m)^(\s+Command\s+).*$", lambda m: m.group(1) + command, conf)
        conf = conf.replace("Interval_Sec  300", "Interval_Sec  1")
        conf = conf.replace("/var/log/heroku-audit-trail", str(tmp_path / "out"))
        conf = conf.replace("Parsers_File  parsers.conf", f"Parsers_File  {EXAMPLES}/parsers.conf")
        conf = conf.replace("Port          8123", f"Port          {catcher.server_address[1]}")
        # The stdout output shows Fluent Bit's own record time: use it to check the parser.
        conf = conf.replace(
            "Format        json_lines\n    Json_Date_Key false\n\n[OUTPUT]\n    Name          file",
            "Format        json_lines\n    Json_Date_Key date\n    Json_Date_Format iso8601\n\n"
            "[OUTPUT]\n    Name          file",
            1,
        )
        (tmp_path / "fluent-bit.conf").write_text(conf)
        expected = window_ids(sim)
        stdout, stderr = run_shipper(
            ["fluent-bit", "-c", str(tmp_path / "fluent-bit.conf")],
            lambda: len(delivered(tmp_path / "out")) >= len(expected) and bool(Catcher.posts),
            30,
        )
    assert DEMO_TOKEN.encode() not in stdout + stderr
    records = [orjson.loads(line) for line in delivered(tmp_path / "out")]
    assert {record["event"]["id"] for record in records} == expected
    assert len(records) == len(expected)
    shown = [orjson.loads(line) for line in stdout.splitlines() if line.startswith(b"{")]
    assert len(shown) == len(expected)
    for record in shown:
        parsed = datetime.strptime(record["date"][:19], "%Y-%m-%dT%H:%M:%S")
        assert parsed == datetime.strptime(record["@timestamp"][:19], "%Y-%m-%dT%H:%M:%S")
    posted = b"".join(body for _, body in Catcher.posts).splitlines()
    assert {orjson.loads(line)["event"]["id"] for line in posted} == expected
    assert all("INSERT%20INTO%20heroku_logs" in path for path, _ in Catcher.posts)


@pytest.mark.skipif(shutil.which("vector") is None, reason="vector is not on PATH")
def test_vector_delivers_every_event_with_its_time(tmp_path: Path) -> None:
    import tomllib

    token_file = tmp_path / "api-key"
    token_file.write_text(DEMO_TOKEN + "\n")
    with Simulator(SimulatorConfig(seed=4, events_per_day=120, history_days=1)) as sim:
        doc = (EXAMPLES / "vector.toml").read_text()
        doc = doc.replace('data_dir = "/var/lib/vector"', f'data_dir = "{tmp_path}"')
        doc = doc.replace('["heroku-audit-trail", "poll"]', f'["{PROGRAM}", "poll"]')
        doc = doc.replace("exec_interval_secs = 300", "exec_interval_secs = 5")
        doc = doc.replace("/etc/heroku-audit-trail/api-key", str(token_file))
        doc = doc.replace("/var/lib/heroku-audit-trail", str(tmp_path / "state"))
        doc = doc.replace("/var/log/heroku-audit-trail", str(tmp_path / "out"))
        doc = doc.replace(
            'HEROKU_ENTERPRISE = "acme"',
            f'HEROKU_ENTERPRISE = "acme"\nHEROKU_API_URL = "{sim.url}"',
        )
        doc = doc[: doc.index("[sinks.heroku_clickhouse]")]  # no ClickHouse server here
        tomllib.loads(doc)
        (tmp_path / "vector.toml").write_text(doc)
        expected = window_ids(sim)
        run_shipper(
            ["vector", "--config", str(tmp_path / "vector.toml")],
            lambda: len(delivered(tmp_path / "out")) >= len(expected),
            60,
        )
    records = [orjson.loads(line) for line in delivered(tmp_path / "out")]
    assert {record["event"]["id"] for record in records} == expected
    for record in records:
        assert "pid" not in record and "stream" not in record
        assert record["timestamp"][:19] == record["@timestamp"][:19]


@pytest.mark.skipif(shutil.which("fluent-bit") is None, reason="fluent-bit is not on PATH")
def test_fluent_bit_yaml_twin_delivers_every_event(tmp_path: Path) -> None:
    token_file = tmp_path / "api-key"
    token_file.write_text(DEMO_TOKEN + "\n")
    with Simulator(SimulatorConfig(seed=6, events_per_day=120, history_days=1)) as sim:
        command = (
            f"HEROKU_API_URL={sim.url} HEROKU_ENTERPRISE=acme HEROKU_API_KEY_FILE={token_file} "
            f"HEROKU_AUDIT_STATE_DIR={tmp_path / 'state'} {PROGRAM} poll"
        )
        doc = (EXAMPLES / "fluent-bit.yaml").read_text()
        doc = re.sub(r"(?m)^(\s+command: ).*$", lambda m: m.group(1) + command, doc)
        doc = doc.replace("interval_sec: 300", "interval_sec: 1")
        doc = doc.replace("/var/log/heroku-audit-trail", str(tmp_path / "out"))
        doc = doc.replace("port: 8123", "port: 9")  # nothing listens: ClickHouse is not here
        (tmp_path / "fluent-bit.yaml").write_text(doc)
        expected = window_ids(sim)
        run_shipper(
            ["fluent-bit", "-c", str(tmp_path / "fluent-bit.yaml")],
            lambda: len(delivered(tmp_path / "out")) >= len(expected),
            30,
        )
    records = [orjson.loads(line) for line in delivered(tmp_path / "out")]
    assert sorted(record["event"]["id"] for record in records) == sorted(expected)
