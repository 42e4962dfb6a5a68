"""`poll` end to end: the real command as a subprocess against the simulator on 127.0.0.1."""

from __future__ import annotations

import signal
import time
from collections import Counter
from datetime import timedelta
from pathlib import Path

import orjson
import pytest

from heroku_audit_trail.simulator import NO_ACCESS_TOKEN, Faults, Simulator, SimulatorConfig

from .conftest import Cli, utc_today, wait_until, window_ids

pytestmark = pytest.mark.e2e  # runs the real command (or a build) as a subprocess


def test_first_run_prints_yesterday_and_today_then_only_what_is_new(
    cli: Cli, sim: Simulator
) -> None:
    first = cli.run("poll")
    assert first.code == 0, first.stderr
    assert sorted(first.ids) == sorted(window_ids(sim))
    assert len(first.ids) == len(set(first.ids))

    again = cli.run("poll")
    assert again.code == 0 and again.stdout == b""

    yesterday = utc_today() - timedelta(days=1)
    late = sim.add_events(yesterday, 3)
    after_late = cli.run("poll")
    assert sorted(after_late.ids) == sorted(event["id"] for event in late)


def test_lines_are_ecs_in_time_order_and_stderr_is_json(cli: Cli) -> None:
    run = cli.run("poll")
    assert run.stdout.endswith(b"\n")
    stamps = [line["@timestamp"] for line in run.lines]
    for line in run.lines:
        assert line["event"]["module"] == "heroku"
        assert "log.logger" not in line
        assert b"null" not in orjson.dumps(line)
    days: dict[str, list[str]] = {}
    for stamp in stamps:
        days.setdefault(stamp[:10], []).append(stamp)
    assert all(day == sorted(day) for day in days.values())
    assert all(len(stamp) == 27 and stamp.endswith("Z") for stamp in stamps)
    summary = [log for log in run.logs if log["message"] == "poll summary"]
    assert run.logs and all(log["log.logger"] == "heroku-audit-trail" for log in run.logs)
    assert summary[0]["events_emitted"] == len(run.lines)
    assert summary[0]["rate_limit_remaining"] > 0


def test_multi_page_days_lose_nothing(tmp_path: Path) -> None:
    with Simulator(SimulatorConfig(seed=3, events_per_day=1234, history_days=1)) as sim:
        cli = Cli(sim, tmp_path)
        run = cli.run("poll")
        assert run.code == 0, run.stderr
        assert sorted(run.ids) == sorted(window_ids(sim))
        ranged = [entry for entry in sim.request_log if entry.get("range")]
        assert ranged and all("max=1000" in entry["range"] for entry in ranged)


def test_no_duplicates_across_many_runs_with_late_events(cli: Cli, sim: Simulator) -> None:
    printed: list[str] = []
    for round_number in range(4):
        if round_number:
            sim.add_events(utc_today() - timedelta(days=round_number % 2), 2)
        run = cli.run("poll")
        assert run.code == 0, run.stderr
        printed += run.ids
    assert len(printed) == len(set(printed))
    assert set(printed) == window_ids(sim)


def test_unchanged_single_page_days_cost_a_304(cli: Cli, sim: Simulator) -> None:
    cli.run("poll")
    before = len(sim.request_log)
    cli.run("poll")
    statuses = [entry["status"] for entry in sim.request_log[before:]]
    assert statuses.count(304) == 2  # yesterday and today, no account lookup again


def test_format_heroku_and_include_original(cli: Cli, sim: Simulator) -> None:
    raw = cli.run("poll", "--format", "heroku")
    truth = {event["id"]: event for event in sim.all_events()}
    assert raw.lines and all(line == truth[line["id"]] for line in raw.lines)
    other = Cli(sim, cli.home / "other")
    ecs = other.run("poll", "--include-original")
    assert all(
        orjson.loads(line["event"]["original"]) == truth[line["event"]["id"]] for line in ecs.lines
    )


def test_min_interval_skips_before_calling_the_api(cli: Cli, sim: Simulator) -> None:
    assert cli.run("poll").code == 0
    before = len(sim.request_log)
    skipped = cli.run("poll", env={"HEROKU_AUDIT_MIN_INTERVAL": "60"})
    assert skipped.code == 0 and skipped.stdout == b""
    assert len(sim.request_log) == before
    assert skipped.stderr == ""  # silent for shippers: Fluent Bit may run it every second
    texts = cli.run(
        "poll", env={"HEROKU_AUDIT_MIN_INTERVAL": "60", "HEROKU_AUDIT_LOG_FORMAT": "text"}
    )
    assert texts.stderr == ""  # text logs to a pipe are a shipper's still
    assert "skipped" in cli.stderr_on_a_terminal("poll", env={"HEROKU_AUDIT_MIN_INTERVAL": "60"})


@pytest.mark.parametrize(
    ("token", "code", "words"),
    [
        ("HRKU-wrong-token-0000000000000000000000", 77, "Authentication Failed"),
        (NO_ACCESS_TOKEN, 77, "no access"),
    ],
)
def test_auth_failures(cli: Cli, token: str, code: int, words: str) -> None:
    cli.token = token
    run = cli.run("poll")
    assert run.code == code and words in run.stderr
    assert run.stdout == b""
    # What is kept of a first run refused by the API: its backoff only (G3), no account.
    [state] = [orjson.loads(raw) for raw in cli.state_bytes().values()]
    assert state["account"] is None and state["backoff"]["failures"] == 1
    assert len(run.stderr.strip().splitlines()) <= 2


def test_unknown_account_and_missing_token(cli: Cli) -> None:
    unknown = cli.run("poll", "--enterprise", "no-such-account")
    assert unknown.code == 78 and "Invalid Enterprise Account Name" in unknown.stderr
    no_token = cli.run("poll", env={"HEROKU_API_KEY": ""})
    assert no_token.code == 78 and "HEROKU_API_KEY" in no_token.stderr


@pytest.mark.parametrize(
    ("faults", "code"),
    [
        ({"invalid_json_rate": 1.0}, 65),
        ({"error_rate": 1.0}, 69),
        ({"rate_limit_burst": 1000}, 75),
    ],
)
def test_failures_keep_the_cursor_and_the_next_run_recovers(
    cli: Cli, sim: Simulator, faults: dict[str, float], code: int
) -> None:
    assert cli.run("poll").code == 0
    late = sim.add_events(utc_today(), 2)
    before = cli.state_bytes()
    for name, value in faults.items():
        setattr(sim.faults, name, value)
    failed = cli.run("poll")
    assert failed.code == code, failed.stderr
    assert failed.stdout == b"" and cursor_of(cli.state_bytes()) == cursor_of(before)
    assert failed.stderr.strip()
    for name in faults:
        setattr(sim.faults, name, getattr(Faults(), name))
    recovered = cli.run("poll")
    assert recovered.code == 0 and sorted(recovered.ids) == sorted(e["id"] for e in late)


def cursor_of(state_files: dict[str, bytes]) -> dict[str, object]:
    """The state files less what a failed run records: its backoff and its exit code."""
    docs = {name: orjson.loads(content) for name, content in state_files.items()}
    for doc in docs.values():
        doc.pop("backoff", None)
        doc.pop("last_attempt", None)
    return docs


def test_overlapping_runs_print_no_duplicate(cli: Cli, sim: Simulator) -> None:
    sim.faults.latency = 0.3
    runs = [cli.popen("poll") for _ in range(2)]
    outputs = [run.communicate(timeout=60) for run in runs]
    codes = sorted(run.returncode for run in runs)
    ids = [orjson.loads(line)["event"]["id"] for out, _ in outputs for line in out.splitlines()]
    assert codes in ([0, 0], [0, 75])
    assert Counter(ids).most_common(1)[0][1] == 1
    sim.faults.latency = 0
    rest = cli.run("poll")
    assert set(ids) | set(rest.ids) == window_ids(sim)
    for run, (_, err) in zip(runs, outputs, strict=True):
        if run.returncode == 75:
            assert b"another heroku-audit-trail run holds" in err


@pytest.mark.slow
def test_sigkill_at_any_point_loses_nothing(cli: Cli, sim: Simulator) -> None:
    sim.faults.latency = 0.05
    printed: list[str] = []
    for delay in (0.05, 0.2, 0.35, 0.5, 0.8):
        process = cli.popen("poll")
        time.sleep(delay)
        process.send_signal(signal.SIGKILL)
        out, err = process.communicate(timeout=30)
        cli.check_secret(out, err)
        # A line cut by the kill is not delivered; whole lines are.
        printed += [orjson.loads(line)["event"]["id"] for line in out.split(b"\n")[:-1]]
    sim.faults.latency = 0
    final = cli.run("poll")
    assert final.code == 0
    assert set(printed) | set(final.ids) == window_ids(sim)


def test_sigterm_stops_quickly_and_keeps_flushed_days(cli: Cli, sim: Simulator) -> None:
    sim.faults.latency = 1.0
    process = cli.popen("poll")
    wait_until(lambda: sim.request_log, "the account lookup")  # now the days are asked for
    started = time.monotonic()
    process.send_signal(signal.SIGTERM)
    out, err = process.communicate(timeout=30)
    assert time.monotonic() - started < 5
    assert process.returncode == 143, err
    assert b"SIGTERM" in err
    sim.faults.latency = 0
    rest = cli.run("poll")
    printed = [orjson.loads(line)["event"]["id"] for line in out.splitlines()]
    assert set(printed) | set(rest.ids) == window_ids(sim)


def test_broken_pipe_exits_74_and_the_day_is_printed_again(cli: Cli, sim: Simulator) -> None:
    process = cli.popen("poll")
    assert process.stdout is not None
    process.stdout.readline()
    process.stdout.close()
    process.wait(timeout=30)
    assert process.returncode in (0, 74)
    rest = cli.run("poll")
    assert rest.code == 0
    if process.returncode == 74:
        assert rest.ids  # nothing of the broken day was committed
    assert process.stderr is not None
    stderr = process.stderr.read().decode()
    assert "Traceback" not in stderr


def test_max_runtime_exits_75_and_next_run_finishes(cli: Cli, sim: Simulator) -> None:
    sim.faults.latency = 0.7
    first = cli.run("poll", "--max-runtime", "1")
    assert first.code == 75, first.stderr
    assert "max-runtime" in first.stderr
    sim.faults.latency = 0
    rest = cli.run("poll")
    assert set(first.ids) | set(rest.ids) == window_ids(sim)


def test_long_lines_warn_about_fluent_bit_buf_size_once_a_day(tmp_path: Path) -> None:
    with Simulator(SimulatorConfig(seed=21, events_per_day=300, history_days=1)) as sim:
        cli = Cli(sim, tmp_path)
        run = cli.run("poll")
        sim.add_events(utc_today(), 300)  # long lines again
        again = cli.run("poll", "--min-interval", "0")
        sim.add_events(utc_today(), 300)
        next_day = cli.run("poll", "--min-interval", "0", clock="+1d")
    longest = max(len(line) for line in run.stdout.splitlines())
    assert longest > 4095
    warnings = [log for log in run.logs if log["log.level"] == "warning"]
    assert len(warnings) == 1 and "Buf_Size" in warnings[0]["message"]
    # The first line over the limit is named (the run warns once), never a short one.
    assert 4095 < warnings[0]["line_bytes"] <= longest
    # Told once a day: not by every run of a shipper whose Buf_Size is set already.
    assert max(len(line) for line in again.stdout.splitlines()) > 4095
    assert "Buf_Size" not in again.stderr
    assert "Buf_Size" in next_day.stderr
