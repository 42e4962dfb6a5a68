"""Hard conditions (issue G2): outages, slow servers, bombs, hostile hosts, through the real
command against the simulator or a hostile server on 127.0.0.1."""

from __future__ import annotations

import gzip
import os
import socket
import ssl
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import timedelta
from pathlib import Path

import orjson
import pytest
import trustme

from heroku_audit_trail.simulator import DEMO_TOKEN, Simulator, SimulatorConfig

from .conftest import Cli, utc_today, window_ids
from .proxy import ForwardProxy

pytestmark = pytest.mark.e2e  # runs the real command (or a build) as a subprocess

# -- failure backoff across runs ------------------------------------------------------------


def state_doc(cli: Cli) -> dict[str, object]:
    [content] = cli.state_bytes().values()
    doc: dict[str, object] = orjson.loads(content)
    return doc


def test_failed_runs_back_off_and_a_success_clears_it(cli: Cli, sim: Simulator) -> None:
    backing = {"HEROKU_AUDIT_MIN_INTERVAL": "60"}
    assert cli.run("poll").code == 0
    sim.faults.error_rate = 1.0
    failed = cli.run("poll", "--max-runtime", "2", env=backing, clock="+2m")
    assert failed.code == 69, failed.stderr
    backoff = state_doc(cli)["backoff"]
    assert isinstance(backoff, dict) and backoff["failures"] == 1

    # Fluent Bit's next tick, a second later: the API is left alone, silently.
    before = len(sim.request_log)
    skipped = cli.run("poll", env=backing, clock="+2m")
    assert skipped.code == 0 and skipped.stdout == b"" and skipped.stderr == ""
    assert len(sim.request_log) == before
    # Text logs to a pipe are still a shipper's; a terminal is a person's, who is told.
    texts = cli.run("poll", env={**backing, "HEROKU_AUDIT_LOG_FORMAT": "text"}, clock="+2m")
    assert texts.code == 0 and texts.stderr == ""
    assert "backing off after 1 failed run" in cli.stderr_on_a_terminal(
        "poll", env=backing, clock="+2m"
    )

    # 60 s after the first failure it tries again, fails, and waits twice as long.
    again = cli.run("poll", "--max-runtime", "2", env=backing, clock="+3m5s")
    assert again.code == 69
    backoff = state_doc(cli)["backoff"]
    assert isinstance(backoff, dict) and backoff["failures"] == 2
    assert cli.run("poll", env=backing, clock="+4m").stdout == b""
    assert len(sim.request_log) > before

    # The outage ends; once the backoff has passed, a success clears it.
    sim.faults.error_rate = 0.0
    late = sim.add_events(sim.today, 2)
    recovered = cli.run("poll", env=backing, clock="+6m")
    assert recovered.code == 0, recovered.stderr
    assert {event["id"] for event in late} <= set(recovered.ids)
    assert state_doc(cli)["backoff"] is None


def test_a_first_run_that_meets_an_outage_backs_off_too(cli: Cli, sim: Simulator) -> None:
    backing = {"HEROKU_AUDIT_MIN_INTERVAL": "60"}
    sim.faults.error_rate = 1.0  # the account lookup itself fails: no state before this
    failed = cli.run("poll", "--max-runtime", "2", env=backing)
    assert failed.code == 69, failed.stderr
    backoff = state_doc(cli)["backoff"]
    assert isinstance(backoff, dict) and backoff["failures"] == 1
    before = len(sim.request_log)
    skipped = cli.run("poll", env=backing)
    assert skipped.code == 0 and skipped.stdout == b"" and len(sim.request_log) == before
    for shown in (cli.run("state", "show"), cli.run("state", "list")):  # a state with no account
        assert shown.code == 0 and b"backing off" in shown.stdout, shown.stderr

    sim.faults.error_rate = 0.0
    recovered = cli.run("poll", env=backing, clock="+2m")
    assert recovered.code == 0, recovered.stderr
    assert set(recovered.ids) == window_ids(sim)
    assert state_doc(cli)["backoff"] is None


def test_a_retry_after_longer_than_the_backoff_is_honoured(cli: Cli, sim: Simulator) -> None:
    backing = {"HEROKU_AUDIT_MIN_INTERVAL": "60"}
    assert cli.run("poll").code == 0
    sim.faults.rate_limit_burst, sim.faults.retry_after = 1000, 600
    limited = cli.run("poll", env=backing, clock="+2m")
    assert limited.code == 75, limited.stderr
    sim.faults.rate_limit_burst = 0
    before = len(sim.request_log)
    assert cli.run("poll", env=backing, clock="+7m").stdout == b""  # 5 min: still waiting
    assert len(sim.request_log) == before
    resumed = cli.run("poll", env=backing, clock="+13m")
    assert resumed.code == 0 and len(sim.request_log) > before


# -- a hard deadline ------------------------------------------------------------------------


@contextmanager
def loopback_server(serve: Callable[[socket.socket, threading.Event], None]) -> Iterator[str]:
    """A raw TCP server on 127.0.0.1 that hands each connection to `serve` on a thread."""
    listener = socket.create_server(("127.0.0.1", 0))
    stop = threading.Event()

    def accept() -> None:
        listener.settimeout(0.2)
        while not stop.is_set():
            try:
                connection, _ = listener.accept()
            except TimeoutError:
                continue
            threading.Thread(target=serve, args=(connection, stop), daemon=True).start()

    thread = threading.Thread(target=accept, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{listener.getsockname()[1]}"
    finally:
        stop.set()
        thread.join(timeout=5)
        listener.close()


def trickle(connection: socket.socket, stop: threading.Event) -> None:
    """Headers, then one byte of body every half second."""
    with connection:
        connection.recv(65536)
        connection.sendall(
            b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 100000\r\n\r\n["
        )
        while not stop.wait(0.5):
            try:
                connection.sendall(b" ")
            except OSError:
                return


@pytest.fixture
def trickling_server() -> Iterator[str]:
    with loopback_server(trickle) as url:
        yield url


def test_max_runtime_bounds_the_whole_run_against_a_trickling_server(
    cli: Cli, trickling_server: str
) -> None:
    started = time.monotonic()
    run = cli.run(
        "poll", "--max-runtime", "1.5", env={"HEROKU_API_URL": trickling_server}, timeout=60
    )
    elapsed = time.monotonic() - started
    assert run.code == 75, run.stderr
    assert "max-runtime" in run.stderr
    assert elapsed < 4.5


# -- the token, even in pieces ----------------------------------------------------------------


@pytest.mark.slow
def test_an_error_body_echoing_the_token_never_shows_any_of_it(cli: Cli, sim: Simulator) -> None:
    for padding in range(150, 205, 3):  # the old 200-character cut fell inside the token
        sim.faults.echo_authorization = padding
        sim.faults.error_rate, sim.faults.error_status = 1.0, 422
        run = cli.run("poll")
        assert run.code == 69, run.stderr
        for size in range(8, len(DEMO_TOKEN) + 1):
            for start in range(len(DEMO_TOKEN) - size + 1):
                piece = DEMO_TOKEN[start : start + size]
                if piece.startswith("HRKU-simulator") or "0000" in piece:
                    continue  # shared with the simulator's own words or other numbers
                assert piece not in run.stderr, (padding, piece)


# -- bounded input ----------------------------------------------------------------------------


def test_a_gzip_bomb_is_exit_65_without_eating_memory(cli: Cli, sim: Simulator) -> None:
    bomb = gzip.compress(b"[" + b" " * (300 << 20) + b"]", compresslevel=9)  # 300 MiB inflated
    sim.faults.gzip_body = bomb
    run = cli.run("poll", env={"HEROKU_AUDIT_MAX_RUNTIME": "30"})
    assert run.code == 65, run.stderr
    assert "MiB" in run.stderr


# -- the host -----------------------------------------------------------------------------------


def test_a_world_writable_state_dir_is_refused(cli: Cli) -> None:
    cli.state_dir.mkdir(parents=True)
    cli.state_dir.chmod(0o777)
    run = cli.run("poll")
    assert run.code == 73 and "chmod" in run.stderr
    assert cli.state_bytes() == {}


def test_a_state_file_that_is_a_symlink_is_refused(cli: Cli, tmp_path: Path) -> None:
    assert cli.run("poll").code == 0
    [name] = cli.state_bytes()
    target = tmp_path / "elsewhere.json"
    (cli.state_dir / name).rename(target)
    (cli.state_dir / name).symlink_to(target)
    run = cli.run("poll")
    assert run.code in (65, 73) and "symlink" in run.stderr


COMMANDS_WITH_OUTPUT = {
    "poll": ("poll",),
    "check": ("check",),
    "events": ("events", "--output", "jsonl"),
    "backfill": ("backfill", "--since", "2d"),
    "state list": ("state", "list"),
}


@pytest.mark.parametrize("settings", ["none", "json"])
@pytest.mark.parametrize("closed_fd", [0, 2], ids=["stdin-closed", "stderr-closed"])
@pytest.mark.parametrize("command", COMMANDS_WITH_OUTPUT)
def test_every_command_runs_with_a_standard_stream_closed_at_exec(
    cli: Cli, sim: Simulator, command: str, closed_fd: int, settings: str
) -> None:
    """`poll 2>&-` or a supervisor that closes stdin: Python then sets sys.stderr (sys.stdin)
    to None; the command runs as usual, with a log format in the environment or with no
    HEROKU_AUDIT_* setting at all (the state in its default place under HOME)."""
    import subprocess

    env = cli.env_for(None, None)
    state_dir = {}
    if settings == "none":
        env = {name: value for name, value in env.items() if not name.startswith("HEROKU_AUDIT_")}
        state_dir = {"HEROKU_AUDIT_STATE_DIR": str(cli.home / ".local/state/heroku-audit-trail")}
    if command == "state list":
        assert cli.run("poll", env=state_dir).code == 0  # a partition to list
    done = subprocess.run(
        cli.command(*COMMANDS_WITH_OUTPUT[command]),
        env=env,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE if closed_fd == 0 else subprocess.DEVNULL,
        preexec_fn=lambda: __import__("os").close(closed_fd),
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout
    if command == "poll":
        printed = {orjson.loads(line)["event"]["id"] for line in done.stdout.splitlines()}
        assert printed == window_ids(sim)
        assert cli.run("poll", env=state_dir).ids == []  # the days were committed


# -- proxies and CAs ----------------------------------------------------------------------


@pytest.fixture(scope="module")
def test_ca() -> trustme.CA:
    return trustme.CA()


@pytest.fixture
def tls_sim(test_ca: trustme.CA) -> Iterator[Simulator]:
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    test_ca.issue_cert("127.0.0.1", "localhost", PROXIED_NAME).configure_cert(context)
    with Simulator(SimulatorConfig(seed=7, events_per_day=30, history_days=3, tls=context)) as sim:
        yield sim


@pytest.fixture
def ca_file(test_ca: trustme.CA, tmp_path: Path) -> str:
    path = tmp_path / "test-ca.pem"
    test_ca.cert_pem.write_to_path(str(path))
    return str(path)


@pytest.mark.parametrize("variable", ["REQUESTS_CA_BUNDLE", "SSL_CERT_FILE"])
def test_https_with_a_ca_from_the_environment(
    tls_sim: Simulator, tmp_path: Path, ca_file: str, variable: str
) -> None:
    assert tls_sim.url.startswith("https://")
    run = Cli(tls_sim, tmp_path, env={variable: ca_file}).run("poll")
    assert run.code == 0, run.stderr
    assert set(run.ids) == window_ids(tls_sim)


def test_an_untrusted_certificate_fails_at_once_and_says_why(
    tls_sim: Simulator, tmp_path: Path
) -> None:
    started = time.monotonic()
    run = Cli(tls_sim, tmp_path).run("poll")
    assert run.code == 69 and "certificate is not trusted" in run.stderr
    assert "REQUESTS_CA_BUNDLE" in run.stderr
    assert time.monotonic() - started < 5  # not retried
    assert tls_sim.request_log == []


def test_plain_http_on_an_https_url_fails_at_once(cli: Cli, sim: Simulator) -> None:
    https_url = sim.url.replace("http://", "https://")
    run = cli.run("poll", env={"HEROKU_API_URL": https_url})
    assert run.code == 69 and "does not speak TLS" in run.stderr


PROXIED_NAME = "api.heroku-sim.test"  # not loopback: only the proxy knows where it is


def test_https_through_a_forward_proxy(tls_sim: Simulator, tmp_path: Path, ca_file: str) -> None:
    port = tls_sim.url.rsplit(":", 1)[1]
    with ForwardProxy(hosts={PROXIED_NAME: "127.0.0.1"}) as proxy:
        env = {
            "HTTPS_PROXY": proxy.url,
            "REQUESTS_CA_BUNDLE": ca_file,
            "HEROKU_API_URL": f"https://{PROXIED_NAME}:{port}",
        }
        run = Cli(tls_sim, tmp_path, env=env).run("poll")
        assert run.code == 0, run.stderr
        assert set(run.ids) == window_ids(tls_sim)
        assert f"CONNECT {PROXIED_NAME}:{port}" in proxy.seen
        # NO_PROXY is honoured (here the name then cannot be reached: exit 69, no request).
        proxy.seen.clear()
        bypass = Cli(tls_sim, tmp_path, env={**env, "NO_PROXY": PROXIED_NAME}).run(
            "poll", "--retry-budget", "0"
        )
        assert bypass.code == 69 and proxy.seen == []


@pytest.mark.parametrize("scheme", ["http", "https"])
def test_a_loopback_api_url_never_goes_through_a_proxy(
    tls_sim: Simulator, sim: Simulator, tmp_path: Path, ca_file: str, scheme: str
) -> None:
    """The token would travel to the proxy, in clear for http://: a simulator or a local
    relay is reached directly, whatever HTTP(S)_PROXY say."""
    target = tls_sim if scheme == "https" else sim
    with ForwardProxy() as proxy:
        env = {"HTTP_PROXY": proxy.url, "HTTPS_PROXY": proxy.url, "REQUESTS_CA_BUNDLE": ca_file}
        run = Cli(target, tmp_path, env=env).run("poll")
        assert run.code == 0, run.stderr
        assert set(run.ids) == window_ids(target)
        assert proxy.seen == []


def test_netrc_credentials_never_replace_the_token(cli: Cli, sim: Simulator) -> None:
    """requests reads ~/.netrc for a host when a session has no auth: that must not happen."""
    netrc = cli.home / ".netrc"
    netrc.write_text("machine 127.0.0.1\n  login someone\n  password HRKU-not-the-token-1234567\n")
    netrc.chmod(0o600)
    run = cli.run("poll")
    assert run.code == 0, run.stderr


def test_an_archive_redirect_carries_no_netrc_credentials(tmp_path: Path) -> None:
    """An archive's storage may answer with a redirect; requests then adds the ~/.netrc entry
    of the host it is sent to, unless told not to. Here that host is the simulator's."""
    this_month = utc_today().replace(day=1)
    last_month = (this_month - timedelta(days=1)).replace(day=1)
    config = SimulatorConfig(seed=5, events_per_day=3, history_days=70, archive_redirect=True)
    with Simulator(config) as sim:
        cli = Cli(sim, tmp_path)
        cli.home.mkdir(exist_ok=True)
        netrc = cli.home / ".netrc"
        netrc.write_text("machine 127.0.0.1\n  login someone\n  password netrc-secret-0123\n")
        netrc.chmod(0o600)
        until = str(this_month - timedelta(days=1))
        run = cli.run("backfill", "--since", str(last_month), "--until", until, "--archives")
        assert run.code == 0, run.stderr
        files = [entry for entry in sim.request_log if "/archive-" in entry["path"]]
        assert [entry["status"] for entry in files] == [302, 200]  # the redirect was followed
        assert not any(entry["credentials"] for entry in files)
        assert len(run.ids) == len(set(run.ids)) > 0


def malformed_header(connection: socket.socket, stop: threading.Event) -> None:
    """A header line that is not a header: urllib3 warns."""
    with connection:
        connection.recv(65536)
        body = b'{"id": "acct", "name": "acme"}'
        connection.sendall(
            b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n"
            b": no name\r\nConnection: close\r\n"
            b"Content-Length: " + str(len(body)).encode() + b"\r\n\r\n" + body
        )


@pytest.fixture
def malformed_header_server() -> Iterator[str]:
    with loopback_server(malformed_header) as url:
        yield url


def test_a_library_warning_is_a_json_line_too(cli: Cli, malformed_header_server: str) -> None:
    run = cli.run("poll", "--max-runtime", "3", env={"HEROKU_API_URL": malformed_header_server})
    # Cli.run asserts every stderr line is one of our JSON lines; urllib3 did speak:
    assert any(log.get("origin", "").startswith("urllib3") for log in run.logs), run.stderr


# -- hostile hosts and servers (issue G4) ------------------------------------------------------


def test_junk_in_the_state_directory_is_listed_as_unreadable_never_a_crash(
    cli: Cli, sim: Simulator
) -> None:
    assert cli.run("poll").code == 0
    state_dir = cli.state_dir
    plan = {"enterprise": "acme", "filters": {}, "source": "days"}
    resolved = {"since": "2026-01-01", "until": "2026-01-02"}
    junk = {
        "empty-partition.json": b'{"version": 1, "partition": {}}',
        "backfill-string-filters.json": orjson.dumps(
            {"plan": {**plan, "filters": "type=app"}, "range": resolved}
        ),
        "backfill-number.json": orjson.dumps(
            {"plan": {**plan, "enterprise": 7}, "range": resolved}
        ),
    }
    for name, content in junk.items():
        (state_dir / name).write_bytes(content)
        (state_dir / name).chmod(0o600)
    os.mkfifo(state_dir / "fifo.json", 0o600)
    listed = cli.run("state", "list", timeout=20)
    assert listed.code == 0, listed.stderr
    text = listed.stdout.decode()
    assert "poll      acme:" in text
    for name in ("backfill-string-filters.json", "backfill-number.json", "fifo.json"):
        assert f"unreadable {state_dir / name}" in text
    metrics = cli.home / "metrics.prom"
    polled = cli.run("poll", "--metrics-file", str(metrics), timeout=20)
    assert polled.code == 0 and "acme" in metrics.read_text()


def test_names_from_the_server_cannot_drive_the_terminal(tmp_path: Path) -> None:
    """An account name holding escape sequences (a title change, colours, a CSI) is written
    out by `check` and `state show`, never sent to the terminal as it is."""
    evil = "acme\x1b]0;pwned\x07\x1b[31m\u009b2J"
    with Simulator(SimulatorConfig(seed=7, events_per_day=3, enterprise_name=evil)) as sim:
        cli = Cli(sim, tmp_path, env={"HEROKU_ENTERPRISE": sim.config.enterprise_id})
        checked = cli.run("check")
        assert checked.code == 0, checked.stderr
        assert cli.run("poll").code == 0
        shown = cli.run("state", "show")
        listed = cli.run("state", "list")
        for out in (checked.stdout, shown.stdout, listed.stdout):
            text = out.decode()
            assert "\x1b" not in text and "\x07" not in text and "\u009b" not in text
        assert "\\x1b]0;pwned" in shown.stdout.decode()


# -- another user on the same host -------------------------------------------------------------


def _as_user_possible() -> bool:
    """Root with runuser, the users nobody and daemon, and a system python3 of this minor
    version (the vendored orjson is built for it)."""
    import shutil
    import subprocess
    import sys

    runuser = shutil.which("runuser")
    if os.geteuid() != 0 or runuser is None or not Path("/usr/bin/python3").exists():
        return False
    probe = subprocess.run(
        [
            runuser,
            "-u",
            "nobody",
            "--",
            "/usr/bin/python3",
            "-c",
            "import sys; print(*sys.version_info[:2])",
        ],
        env={"PATH": "/usr/bin:/bin"},
        capture_output=True,
        check=False,
    )
    return probe.stdout.split() == [str(part).encode() for part in sys.version_info[:2]]


_RUNTIME_PACKAGES = (
    "heroku_audit_trail",
    "orjson",
    "platformdirs",
    "requests",
    "urllib3",
    "idna",
    "charset_normalizer",
    "certifi",
)


@pytest.fixture(scope="module")
def service_path() -> Iterator[str]:
    """The program and its dependencies copied where a service user can read them: this
    checkout may be under a directory only root can enter (a clone under mktemp -d), and this
    interpreter's packages under /root."""
    import importlib.util
    import shutil
    import tempfile

    tree = Path(tempfile.mkdtemp(prefix="service-", dir="/tmp"))
    try:
        tree.chmod(0o755)
        for name in _RUNTIME_PACKAGES:
            spec = importlib.util.find_spec(name)
            assert spec is not None and spec.submodule_search_locations, name
            source = Path(next(iter(spec.submodule_search_locations)))
            ignore = shutil.ignore_patterns("__pycache__")
            shutil.copytree(source, tree / name, ignore=ignore)
        for path in tree.rglob("*"):
            path.chmod(0o755 if path.is_dir() else 0o644)
        yield str(tree)
    finally:
        shutil.rmtree(tree, ignore_errors=True)


def _service_env(path: str, extra: dict[str, str]) -> dict[str, str]:
    """A service user's environment: no HOME, the program and its dependencies importable."""
    return {"PATH": "/usr/bin:/bin", "PYTHONPATH": path, "PYTHONDONTWRITEBYTECODE": "1", **extra}


@pytest.mark.skipif(
    not _as_user_possible(),
    reason="needs root, runuser and a system python3 of this version",
)
@pytest.mark.parametrize("planted", ["fifo", "symlink to /dev/zero"])
def test_another_users_file_at_the_metrics_path_neither_hangs_nor_fails_the_poll(
    sim: Simulator, service_path: str, planted: str
) -> None:
    """A sticky, world-writable textfile directory shared with another user (daemon), who put
    a FIFO (or a link to /dev/zero) at the metrics path. The poll, run as a service user
    (nobody, no HOME), prints its events and exits 0 at once, with a warning: the file is a
    projection of the state dir, never read back, and cannot be replaced (the sticky bit)."""
    import shutil
    import subprocess
    import tempfile

    shared = Path(tempfile.mkdtemp(prefix="textfile-", dir="/tmp"))
    state = Path(tempfile.mkdtemp(prefix="state-", dir="/tmp"))
    try:
        shared.chmod(0o1777)
        shutil.chown(state, "nobody", "nogroup")
        metrics = shared / "heroku.prom"
        plant = (
            ["mkfifo", str(metrics)]
            if planted == "fifo"
            else ["ln", "-s", "/dev/zero", str(metrics)]
        )
        runuser = shutil.which("runuser") or "runuser"  # found with this PATH, not the child's
        subprocess.run([runuser, "-u", "daemon", "--", *plant], check=True)
        env = _service_env(
            service_path,
            {
                "HEROKU_API_KEY": DEMO_TOKEN,
                "HEROKU_ENTERPRISE": sim.config.enterprise_name,
                "HEROKU_API_URL": sim.url,
                "HEROKU_AUDIT_STATE_DIR": str(state),
                "HEROKU_AUDIT_METRICS_FILE": str(metrics),
                "HEROKU_AUDIT_LOG_FORMAT": "json",
            },
        )
        command = ["/usr/bin/python3", "-m", "heroku_audit_trail", "poll", "--max-runtime", "20"]
        run = subprocess.run(
            [runuser, "-u", "nobody", "--", *command],
            env=env,
            capture_output=True,
            timeout=30,
            check=False,
        )
        assert run.returncode == 0, run.stderr.decode()[-500:]
        printed = {orjson.loads(line)["event"]["id"] for line in run.stdout.splitlines()}
        assert printed == window_ids(sim)
        assert "cannot write metrics file" in run.stderr.decode()
        assert metrics.is_symlink() or metrics.is_fifo()  # the other user's, untouched
    finally:
        shutil.rmtree(shared, ignore_errors=True)
        shutil.rmtree(state, ignore_errors=True)
