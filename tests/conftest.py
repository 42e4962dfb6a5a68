"""Shared fixtures: a simulator on 127.0.0.1 and a runner for the real command as a subprocess.

Every subprocess run checks that the token appears in none of stdout, stderr or the state dir.
"""

from __future__ import annotations

import fcntl
import glob
import os
import pty
import struct
import subprocess
import sys
import termios
import time
from collections.abc import Callable, Iterator
from contextlib import suppress
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import orjson
import pytest

from heroku_audit_trail.simulator import DEMO_TOKEN, Simulator, SimulatorConfig


def utc_today() -> date:
    return datetime.now(timezone.utc).date()


def window_ids(sim: Simulator, lookback_days: int = 1) -> set[str]:
    """The ids a first poll must print: today and the lookback days."""
    today = utc_today()
    return {
        event["id"]
        for offset in range(lookback_days + 1)
        for event in sim.events_for_day(today - timedelta(days=offset))
    }


@dataclass
class Run:
    code: int
    stdout: bytes
    stderr: str

    @property
    def lines(self) -> list[dict[str, Any]]:
        return [orjson.loads(line) for line in self.stdout.splitlines()]

    @property
    def ids(self) -> list[str]:
        return [line["event"]["id"] for line in self.lines]

    @property
    def logs(self) -> list[dict[str, Any]]:
        return [orjson.loads(line) for line in self.stderr.splitlines() if line.strip()]


def assert_secret_absent(secret: str, *places: bytes | str | Path) -> None:
    needle = secret.encode()
    for place in places:
        if isinstance(place, Path):
            for path in [place] if place.is_file() else place.rglob("*"):
                if path.is_file():
                    assert needle not in path.read_bytes(), f"token leaked into {path}"
        else:
            data = place.encode() if isinstance(place, str) else place
            assert needle not in data, "token leaked into the output"


def faketime_library() -> str:
    """libfaketime, preloaded directly: the `faketime` wrapper forks, and a signal sent to it
    would not reach the program (.ci/run installs Debian's faketime)."""
    found = sorted(glob.glob("/usr/lib/*/faketime/libfaketime.so.1"))
    assert found, "libfaketime is missing: apt-get install faketime"
    return found[0]


@dataclass
class Cli:
    """Runs `python -m heroku_audit_trail` against the simulator with a private state dir."""

    sim: Simulator
    home: Path
    token: str = DEMO_TOKEN
    env: dict[str, str] = field(default_factory=dict)

    @property
    def state_dir(self) -> Path:
        return self.home / "state"

    def base_env(self) -> dict[str, str]:
        # PYTHONPATH passes through, so the suite can be run against another checkout's code.
        inherited = {key: os.environ[key] for key in ("PYTHONPATH",) if key in os.environ}
        return {
            **inherited,
            "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
            "HOME": str(self.home),
            "HEROKU_API_URL": self.sim.url,
            "HEROKU_API_KEY": self.token,
            "HEROKU_ENTERPRISE": self.sim.config.enterprise_name,
            "HEROKU_AUDIT_STATE_DIR": str(self.state_dir),
            "HEROKU_AUDIT_MIN_INTERVAL": "0",
            "HEROKU_AUDIT_LOG_FORMAT": "json",
            # Retries keep their schedule, made short: no test sleeps through 15 s of backoff.
            "HEROKU_AUDIT_RETRY_BUDGET": "1",
            # A stalled write's grace, made short too (a test that stalls its reader on
            # purpose would otherwise wait 3 s a run for it).
            "HEROKU_AUDIT_STOP_GRACE": "1",
            **self.env,
        }

    def command(self, *args: str) -> list[str]:
        return [sys.executable, "-m", "heroku_audit_trail", *args]

    def env_for(self, env: dict[str, str] | None, clock: str | None) -> dict[str, str]:
        """The run's environment; `clock` (e.g. "+3d") moves its clock with libfaketime."""
        full = {**self.base_env(), **(env or {})}
        if clock:
            # The monotonic clock moves too: with it left alone, libfaketime breaks sleep().
            full |= {"LD_PRELOAD": faketime_library(), "FAKETIME": clock}
        return full

    def stderr_on_a_terminal(
        self, *args: str, env: dict[str, str] | None = None, clock: str | None = None
    ) -> str:
        """Run the command with stderr on a (pseudo-)terminal, text logs: what it wrote there.
        Expects exit 0 and nothing on stdout."""
        primary, secondary = pty.openpty()
        try:
            done = subprocess.run(
                self.command(*args),
                env=self.env_for({**(env or {}), "HEROKU_AUDIT_LOG_FORMAT": "text"}, clock),
                stdout=subprocess.PIPE,
                stderr=secondary,
                timeout=60,
                check=False,
            )
            assert done.returncode == 0 and done.stdout == b""
            os.close(secondary)
            secondary = -1
            written = b""
            with suppress(OSError):  # EIO once everything written is read
                while chunk := os.read(primary, 65536):
                    written += chunk
            return written.decode()
        finally:
            os.close(primary)
            if secondary >= 0:
                os.close(secondary)

    def popen(
        self,
        *args: str,
        env: dict[str, str] | None = None,
        stdout: Any = subprocess.PIPE,
        clock: str | None = None,
    ) -> subprocess.Popen[bytes]:
        return subprocess.Popen(
            self.command(*args),
            env=self.env_for(env, clock),
            stdout=stdout,
            stderr=subprocess.PIPE,
        )

    def run(
        self,
        *args: str,
        env: dict[str, str] | None = None,
        timeout: float = 90,
        clock: str | None = None,
    ) -> Run:
        full_env = self.env_for(env, clock)
        done = subprocess.run(
            self.command(*args),
            env=full_env,
            capture_output=True,
            timeout=timeout,
            check=False,
        )
        self.check_secret(done.stdout, done.stderr)
        run = Run(done.returncode, done.stdout, done.stderr.decode("utf-8", "replace"))
        if full_env.get("HEROKU_AUDIT_LOG_FORMAT") == "json":
            # Shippers read stderr as JSON lines: every diagnostic must be one, and marked.
            assert all(log["log.logger"] == "heroku-audit-trail" for log in run.logs), run.stderr
        if done.returncode:
            assert run.stderr.strip(), "a non-zero exit must say why on stderr"
        return run

    def check_secret(self, *outputs: bytes) -> None:
        assert_secret_absent(self.token, *outputs, self.home)

    def state_bytes(self) -> dict[str, bytes]:
        if not self.state_dir.is_dir():
            return {}
        return {
            p.name: p.read_bytes()
            for p in self.state_dir.iterdir()
            if p.suffix == ".json" and not p.name.startswith("runs-")  # a state's run record
        }


def read_slowly(
    process: subprocess.Popen[bytes], limit: int, pause: float, chunk: int = 65536
) -> bytearray:
    """Read the child's stdout as a slow reader does (`chunk` bytes, then a `pause`), up to
    `limit` bytes or EOF.

    One reader only: `os.read` on the raw descriptor, so a later `communicate()` (which reads
    the descriptor too) finds every byte not read here; a buffered `process.stdout.read()` would
    keep some in its buffer, lost to `communicate()`, and two lines would splice."""
    assert process.stdout is not None
    descriptor = process.stdout.fileno()
    received = bytearray()
    while len(received) < limit:
        data = os.read(descriptor, chunk)
        if not data:
            break
        received += data
        time.sleep(pause)
    return received


def wait_until(condition: Callable[[], object], what: str, timeout: float = 30.0) -> None:
    """Polls `condition` until it is true: a wait on an event, not a fixed sleep."""
    give_up = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < give_up, f"waited {timeout} s for {what}"
        time.sleep(0.02)


def day_requests(sim: Simulator) -> int:
    """The requests for a day's events the simulator has answered."""
    return sum(1 for entry in list(sim.request_log) if entry["path"].endswith("/events"))


def wait_for_a_full_pipe(read_end: int, timeout: float = 30.0) -> None:
    """Until the writer at the other end of the pipe is blocked: the pipe holds its whole
    capacity (a writer of big chunks fills it to the byte) for 0.1 s. A fixed sleep would wait
    longer than needed, or not long enough on a busy machine."""
    capacity = fcntl.fcntl(read_end, 1032)  # F_GETPIPE_SZ
    full_since: list[float] = []

    def blocked() -> bool:
        held = struct.unpack("i", fcntl.ioctl(read_end, termios.FIONREAD, b"\0" * 4))[0]
        if held < capacity:
            full_since.clear()
            return False
        full_since[:] = full_since or [time.monotonic()]
        return time.monotonic() - full_since[0] >= 0.1

    wait_until(blocked, f"a full pipe ({capacity} bytes)", timeout)


@pytest.fixture(scope="session")
def pyz(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """packaging/build_zipapp.py's zipapp, built once for the tests (and the bench) that run it."""
    out = tmp_path_factory.mktemp("pyz") / "heroku-audit-trail.pyz"
    root = Path(__file__).resolve().parent.parent
    subprocess.run(
        [sys.executable, str(root / "packaging" / "build_zipapp.py"), "--out", str(out)],
        check=True,
        capture_output=True,
    )
    return out


@pytest.fixture
def sim() -> Iterator[Simulator]:
    with Simulator(SimulatorConfig(seed=7, events_per_day=30, history_days=3)) as simulator:
        yield simulator


@pytest.fixture
def cli(sim: Simulator, tmp_path: Path) -> Cli:
    return Cli(sim, tmp_path)


def freeze_dir(path: Path) -> bool:
    """Make `path` refuse new files, even to root (chattr +i); False if that is impossible."""
    immutable = subprocess.run(["chattr", "+i", str(path)], capture_output=True, check=False)
    if immutable.returncode != 0:
        path.chmod(0o500)
    probe = path / "probe"
    try:
        probe.write_text("x")
    except OSError:
        return True
    probe.unlink()
    thaw_dir(path)
    return False


def thaw_dir(path: Path) -> None:
    subprocess.run(["chattr", "-i", str(path)], capture_output=True, check=False)
    path.chmod(0o700)


@pytest.fixture
def readonly_dir(tmp_path: Path) -> Iterator[Path]:
    """A directory nothing can be created in (a full or read-only disk), or skip."""
    path = tmp_path / "readonly"
    path.mkdir()
    if not freeze_dir(path):
        pytest.skip("cannot make a read-only directory here (root without chattr)")
    yield path
    thaw_dir(path)
