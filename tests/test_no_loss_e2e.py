"""No silent loss (issue G1): each path that once lost audit events, through the real command.

Every test here failed on the main branch before the fix it names, and passes after it.
"""

from __future__ import annotations

import os
import resource
import signal
import subprocess
import threading
import time
from datetime import timedelta
from pathlib import Path
from typing import Any

import orjson
import pytest

from heroku_audit_trail.simulator import Simulator, SimulatorConfig

from .conftest import Cli, utc_today, wait_for_a_full_pipe, window_ids

pytestmark = pytest.mark.e2e  # runs the real command (or a build) as a subprocess

UNBUFFERED = pytest.mark.parametrize(
    "unbuffered", [False, True], ids=["buffered", "PYTHONUNBUFFERED=1"]
)


def unbuffered_env(unbuffered: bool) -> dict[str, str]:
    return {"PYTHONUNBUFFERED": "1"} if unbuffered else {}


def whole_lines(out: bytes) -> list[str]:
    """The ids of the complete lines: a line cut by the reader leaving is not delivered."""
    ids = []
    for line in out.split(b"\n")[:-1]:
        ids.append(orjson.loads(line)["event"]["id"])
    return ids


@pytest.fixture
def busy_sim() -> Any:
    """Days of a few hundred events, some lines over 10 KB: a write is many pipe buffers."""
    with Simulator(SimulatorConfig(seed=11, events_per_day=400, history_days=2)) as simulator:
        yield simulator


# -- 1. short writes -------------------------------------------------------------------------


@UNBUFFERED
def test_a_reader_that_leaves_early_loses_nothing(
    busy_sim: Simulator, tmp_path: Path, unbuffered: bool
) -> None:
    """`poll | head -c 100000`: the day cut short is not committed, the next run prints it."""
    cli = Cli(busy_sim, tmp_path, env=unbuffered_env(unbuffered))
    out = tmp_path / "head.out"
    command = " ".join(cli.command("poll"))
    done = subprocess.run(
        ["bash", "-c", f'{command} | head -c 100000 > {out}; exit "${{PIPESTATUS[0]}}"'],
        env=cli.base_env(),
        capture_output=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 74, done.stderr
    assert b"broken pipe" in done.stderr
    first = whole_lines(out.read_bytes())
    rest = cli.run("poll")
    assert rest.code == 0, rest.stderr
    assert set(first) | set(rest.ids) == window_ids(busy_sim)


def read_slowly(stream: Any, sink: bytearray, started: threading.Event) -> None:
    while chunk := stream.read(4096):
        sink += chunk
        started.set()
        time.sleep(0.002)


@UNBUFFERED
def test_sigterm_while_a_slow_reader_drains_stdout_loses_nothing(
    busy_sim: Simulator, tmp_path: Path, unbuffered: bool
) -> None:
    cli = Cli(busy_sim, tmp_path, env=unbuffered_env(unbuffered))
    process = cli.popen("poll")
    received = bytearray()
    started = threading.Event()
    reader = threading.Thread(target=read_slowly, args=(process.stdout, received, started))
    reader.start()
    assert started.wait(30)
    process.send_signal(signal.SIGTERM)
    stopped = time.monotonic()
    process.wait(timeout=30)
    reader.join(timeout=30)
    assert time.monotonic() - stopped < 5
    assert process.returncode in (0, 143)
    assert process.stderr is not None
    cli.check_secret(bytes(received), process.stderr.read())
    # Every line that reached the reader is whole JSON: no spliced line.
    first = whole_lines(bytes(received))
    rest = cli.run("poll")
    assert set(first) | set(rest.ids) == window_ids(busy_sim)


@UNBUFFERED
def test_sigterm_with_a_reader_that_stopped_reading_exits_promptly(
    busy_sim: Simulator, tmp_path: Path, unbuffered: bool
) -> None:
    """A shipper that stalled: the write cannot finish, SIGTERM still ends the run."""
    cli = Cli(busy_sim, tmp_path, env=unbuffered_env(unbuffered))
    read_end, write_end = os.pipe()
    process = cli.popen("poll", stdout=write_end)
    os.close(write_end)
    wait_for_a_full_pipe(read_end)  # the run is blocked in a write
    assert process.poll() is None
    process.send_signal(signal.SIGTERM)
    stopped = time.monotonic()
    process.wait(timeout=30)
    # The stalled write had its grace (the suite's --stop-grace of 1 s) and no more than
    # that, a second to end it at a syscall and another grace for the commit.
    assert 1.0 <= time.monotonic() - stopped < 1.0 + 1 + 1.0 + 1.5
    assert process.returncode == 143
    assert process.stderr is not None
    assert b"SIGTERM" in process.stderr.read()
    in_pipe = b""
    while chunk := os.read(read_end, 1 << 16):  # what stdout took before it stalled
        in_pipe += chunk
    os.close(read_end)
    rest = cli.run("poll")
    # The whole lines stdout took are committed; the rest of the stalled day comes next run.
    first = whole_lines(in_pipe)
    assert set(first) | set(rest.ids) == window_ids(busy_sim)
    assert not set(first) & set(rest.ids)


@UNBUFFERED
def test_a_full_disk_on_stdout_is_exit_74_and_commits_nothing(
    busy_sim: Simulator, tmp_path: Path, unbuffered: bool
) -> None:
    cli = Cli(busy_sim, tmp_path, env=unbuffered_env(unbuffered))
    with open("/dev/full", "wb") as full:
        process = cli.popen("poll", stdout=full)
        _, err = process.communicate(timeout=60)
    assert process.returncode == 74, err
    assert b"no space left" in err
    rest = cli.run("poll")
    assert set(rest.ids) == window_ids(busy_sim)


@UNBUFFERED
def test_stdout_to_a_file_holds_every_event(
    busy_sim: Simulator, tmp_path: Path, unbuffered: bool
) -> None:
    cli = Cli(busy_sim, tmp_path, env=unbuffered_env(unbuffered))
    target = tmp_path / "events.jsonl"
    with target.open("wb") as out:
        process = cli.popen("poll", stdout=out)
        process.communicate(timeout=60)
    assert process.returncode == 0
    assert sorted(whole_lines(target.read_bytes())) == sorted(window_ids(busy_sim))


# -- 2. closing only days this run read in full -----------------------------------------------


def test_a_run_stopped_after_an_outage_does_not_close_days_it_did_not_read(
    tmp_path: Path,
) -> None:
    today = utc_today()
    with Simulator(SimulatorConfig(seed=5, events_per_day=20, history_days=6)) as sim:
        cli = Cli(sim, tmp_path)
        # The last run before a three-day outage of the shipper.
        before = cli.run("poll", clock="-3d")
        assert before.code == 0, before.stderr
        # A late event on the last day that run read, then a run stopped on its second day.
        late = sim.add_events(today - timedelta(days=3), 2)
        sim.faults.failing_days = (today - timedelta(days=3),)
        stopped = cli.run("poll")
        assert stopped.code == 69, stopped.stderr
        sim.faults.failing_days = ()
        after = cli.run("poll")
        assert after.code == 0, after.stderr
        printed = set(before.ids) | set(stopped.ids) | set(after.ids)
        assert {event["id"] for event in late} <= printed
        assert set(after.ids).isdisjoint(stopped.ids)


# -- 3. the clock --------------------------------------------------------------------------


def test_a_clock_days_ahead_does_not_silence_the_feed(cli: Cli, sim: Simulator) -> None:
    first = cli.run("poll")
    assert first.code == 0
    assert not [log for log in first.logs if "clock" in log["message"]]
    ahead = cli.run("poll", clock="+3d")
    assert ahead.code == 0, ahead.stderr
    told = [log for log in ahead.logs if "clock is 4320 min ahead of Heroku's" in log["message"]]
    assert len(told) == 1 and told[0]["log.level"] == "warning"
    late = sim.add_events(utc_today(), 2) + sim.add_events(utc_today() - timedelta(days=1), 2)
    back = cli.run("poll")
    assert back.code == 0, back.stderr
    assert {event["id"] for event in late} <= set(back.ids)


def test_a_clock_ahead_with_no_server_date_is_caught_by_the_next_run(
    cli: Cli, sim: Simulator
) -> None:
    sim.faults.send_date = False  # no second opinion: the cursor runs ahead, then is rewound
    assert cli.run("poll").code == 0
    assert cli.run("poll", clock="+3d").code == 0
    late = sim.add_events(utc_today(), 2)
    back = cli.run("poll")
    assert back.code == 0, back.stderr
    assert {event["id"] for event in late} <= set(back.ids)
    warnings = [log["message"] for log in back.logs if log["log.level"] == "warning"]
    assert any("ahead" in message for message in warnings)


def test_a_cursor_planted_in_2099_is_rewound(cli: Cli, sim: Simulator) -> None:
    assert cli.run("poll").code == 0
    [name] = cli.state_bytes()
    path = cli.state_dir / name
    state = orjson.loads(path.read_bytes())
    state["closed_through"] = "2099-12-31"
    path.write_bytes(orjson.dumps(state))
    late = sim.add_events(utc_today(), 3)
    run = cli.run("poll")
    assert run.code == 0, run.stderr
    assert {event["id"] for event in late} <= set(run.ids)
    assert any("2099-12-31" in log["message"] for log in run.logs)


def test_a_larger_lookback_reads_the_wider_window(cli: Cli, sim: Simulator) -> None:
    """Days closed under a smaller --lookback-days are read again when it grows: a late
    event there is printed (what they printed before may print twice), and days a first run
    never read are read."""
    assert cli.run("poll").code == 0  # lookback 1: today less two days was never read
    assert cli.run("poll", "--lookback-days", "2").code == 0
    assert cli.run("poll", "--lookback-days", "1").code == 0  # closes today less two days
    two_days_ago = utc_today() - timedelta(days=2)
    closed = orjson.loads(next(iter(cli.state_bytes().values())))["closed_through"]
    assert closed == str(two_days_ago)
    late = sim.add_events(two_days_ago, 2)
    wider = cli.run("poll", "--lookback-days", "2")
    assert wider.code == 0, wider.stderr
    assert {event["id"] for event in late} <= set(wider.ids)
    warnings = [log["message"] for log in wider.logs if log["log.level"] == "warning"]
    assert any("--lookback-days is larger" in message for message in warnings)


def test_a_first_run_then_a_larger_lookback_reads_the_days_never_read(
    cli: Cli, sim: Simulator
) -> None:
    first = cli.run("poll")
    assert set(first.ids) == window_ids(sim, 1)
    wider = cli.run("poll", "--lookback-days", "3")
    assert wider.code == 0, wider.stderr
    assert set(first.ids) | set(wider.ids) == window_ids(sim, 3)


# -- 4. a full single page -----------------------------------------------------------------


LAST_ID = "ffffffff-ffff-4fff-bfff-ffffffffffff"  # sorts after every other id: the last page


@pytest.mark.parametrize("per_day", [200, 250], ids=["one-full-page", "two-pages"])
def test_a_late_event_after_a_full_first_page_is_read(tmp_path: Path, per_day: int) -> None:
    """Heroku's ETag covers the body of the page it came with: page one of a day answers 304
    while a late event waits on page two. No ETag is kept for such a day."""
    yesterday = utc_today() - timedelta(days=1)
    with Simulator(SimulatorConfig(seed=2, events_per_day=per_day, history_days=1)) as sim:
        cli = Cli(sim, tmp_path)
        assert cli.run("poll").code == 0
        late = {"id": LAST_ID, "type": "app", "action": "destroy"}
        sim.plant(yesterday, [{**late, "created_at": f"{yesterday}T23:59:59Z"}])
        run = cli.run("poll")
        assert run.code == 0, run.stderr
        assert LAST_ID in run.ids
        day_requests = [e for e in sim.request_log if e["query"].get("day") == str(yesterday)]
        assert not any(e["if_none_match"] for e in day_requests)


# -- 5. poison events ------------------------------------------------------------------------


def nested(depth: int) -> bytes:
    return b'{"x":' * depth + b"1" + b"}" * depth


POISON: dict[str, bytes] = {
    "00000000-0000-4000-8000-00000000000a": b'{"id":"00000000-0000-4000-8000-00000000000a",'
    b'"type":"app","action":"create","created_at":"0001-01-01T00:00:00+01:00"}',
    "00000000-0000-4000-8000-00000000000b": b'{"id":"00000000-0000-4000-8000-00000000000b",'
    b'"type":"app","action":"update","data":' + nested(300) + b"}",
    "00000000-0000-4000-8000-00000000000c": b'{"id":"00000000-0000-4000-8000-00000000000c",'
    b'"type":"app","action":"update","data":' + nested(5000) + b"}",
    "00000000-0000-4000-8000-00000000000d": b'{"id":"00000000-0000-4000-8000-00000000000d",'
    b'"type":"app","action":"update","data":{"name":"\\ud800"}}',
    "00000000-0000-4000-8000-00000000000e": b'{"id":"00000000-0000-4000-8000-00000000000e",'
    b'"type":"app","action":"update","data":{"size":1e400}}',
    "00000000-0000-4000-8000-00000000000f": b'{"id":"00000000-0000-4000-8000-00000000000f",'
    b'"type":"app","action":"update","data":{"name":"caf\xe9"}}',
}


def test_poison_events_are_printed_degraded_and_never_stall_the_feed(
    cli: Cli, sim: Simulator
) -> None:
    today = utc_today()
    for sort_id, raw in POISON.items():
        sim.plant_raw(today, sort_id, raw)
    run = cli.run("poll")
    assert run.code == 0, run.stderr
    assert set(run.ids) == window_ids(sim)
    by_id = {line["event"]["id"]: line for line in run.lines}
    for sort_id in POISON:
        line = by_id[sort_id]
        assert line["event"]["kind"] == "pipeline_error", sort_id
        assert line["error"]["message"] and line["@timestamp"]
    assert all(line["event"]["kind"] == "event" for key, line in by_id.items() if key not in POISON)
    assert any("could not map" in log["message"] for log in run.logs)
    # Committed like any event: the next run does not print them again, and goes on.
    late = sim.add_events(today, 2)
    again = cli.run("poll")
    assert again.code == 0 and sorted(again.ids) == sorted(event["id"] for event in late)


def test_a_body_that_is_not_json_is_still_exit_65(cli: Cli, sim: Simulator) -> None:
    sim.plant_raw(utc_today(), "0", b'{"id": "x", "unterminated')
    run = cli.run("poll")
    assert run.code == 65 and "not JSON" in run.stderr


# -- 6. non-conforming answers -----------------------------------------------------------


def test_a_304_to_a_later_page_keeps_the_pages_before_it(tmp_path: Path) -> None:
    with Simulator(SimulatorConfig(seed=4, events_per_day=450, history_days=1)) as sim:
        cli = Cli(sim, tmp_path)
        sim.faults.not_modified_ranged = True
        first = cli.run("poll")
        assert first.code == 0, first.stderr
        assert len(first.ids) >= 200  # page one of each multi-page day
        assert any("304" in log["message"] for log in first.logs)
        sim.faults.not_modified_ranged = False
        rest = cli.run("poll")
        assert set(first.ids) | set(rest.ids) == window_ids(sim)
        assert set(first.ids).isdisjoint(rest.ids)


def test_a_206_without_next_range_is_the_end_and_is_logged(tmp_path: Path) -> None:
    with Simulator(SimulatorConfig(seed=4, events_per_day=450, history_days=1)) as sim:
        cli = Cli(sim, tmp_path)
        sim.faults.drop_next_range = True
        first = cli.run("poll")
        assert first.code == 0 and first.ids
        assert any("Next-Range" in log["message"] for log in first.logs)


def test_an_event_under_two_days_prints_once(cli: Cli, sim: Simulator) -> None:
    today = utc_today()
    twin = {"id": LAST_ID, "type": "app", "action": "create", "created_at": f"{today}T00:00:01Z"}
    sim.plant(today, [twin])
    sim.plant(today - timedelta(days=1), [twin])
    run = cli.run("poll")
    assert run.ids.count(LAST_ID) == 1


def test_id_less_events_get_stable_distinct_ids_and_times_are_understood(
    cli: Cli, sim: Simulator
) -> None:
    today = utc_today()
    anonymous = [
        {"type": "app", "action": "destroy", "actor": {"email": "a@example.com"}},
        {"type": "app", "action": "destroy", "actor": {"email": "b@example.com"}},
    ]
    sim.plant(today, [{**event, "created_at": f"{today}T02:00:00+02"} for event in anonymous])
    sim.plant(today, [{"id": "no-time", "type": "app", "action": "update"}])
    run = cli.run("poll")
    assert run.code == 0, run.stderr
    synthetic = [line for line in run.lines if line["event"]["id"].startswith("sha256:")]
    assert len({line["event"]["id"] for line in synthetic}) == 2
    assert {line["@timestamp"] for line in synthetic} == {f"{today}T00:00:00.000000Z"}
    untimed = next(line for line in run.lines if line["event"]["id"] == "no-time")
    assert untimed["@timestamp"] and untimed["event"]["kind"] == "event"
    assert all(line["@timestamp"] for line in run.lines)
    assert cli.run("poll").ids == []  # the synthetic ids are stable: nothing printed twice


# -- G2: a day too big for one run --------------------------------------------------------


@pytest.mark.slow
def test_a_day_too_big_for_one_run_goes_on_where_it_stopped_and_today_is_reached(
    tmp_path: Path,
) -> None:
    """12 pages of 100 at 0.1 s each against --max-runtime 1 (and today at least 6): no run
    can read yesterday whole. Each run continues the day's pass at its Next-Range, and the run
    after the one that finished yesterday reads today at the latest: no run is spent
    re-reading yesterday while today is unread."""
    today = utc_today()
    config = SimulatorConfig(seed=8, events_per_day=1200, history_days=1)
    config.page_size = config.max_page_size = 100
    with Simulator(config) as sim:
        # Today too big for the rest of the run that finishes yesterday, whatever the hour
        # (early in the UTC day today has few events: one run would finish both).
        sim.add_events(today, 600)
        cli = Cli(sim, tmp_path)
        window = window_ids(sim)
        yesterday = {event["id"] for event in sim.events_for_day(today - timedelta(days=1))}
        sim.faults.latency = 0.1
        printed: list[str] = []
        reached_today_by = yesterday_done_by = None
        for number in range(1, 9):
            run = cli.run("poll", "--max-runtime", "1")
            assert run.code in (0, 75), run.stderr
            assert run.ids, f"run {number} made no progress"
            printed += run.ids
            days = {line["@timestamp"][:10] for line in run.lines}
            if reached_today_by is None and str(today) in days:
                reached_today_by = number
            if yesterday_done_by is None and yesterday <= set(printed):
                yesterday_done_by = number
            if set(printed) == window:
                break
        assert yesterday_done_by is not None and yesterday_done_by >= 2  # too big for one run
        assert reached_today_by is not None and reached_today_by <= yesterday_done_by + 1
        assert set(printed) == window
        assert len(printed) == len(set(printed))  # each stop committed what it printed


# -- found by review: ids no writer takes, first runs with a fast clock, servers that cap max -----


@pytest.mark.parametrize("log_format", ["json", "text"])
def test_ids_with_a_lone_surrogate_or_bad_bytes_are_replaced_not_fatal(
    cli: Cli, sim: Simulator, log_format: str
) -> None:
    today = utc_today()
    sim.plant_raw(
        today, "00000000-0000-4000-8000-0000000000a1", b'{"id":"abc\\ud800","type":"app"}'
    )
    sim.plant_raw(today, "00000000-0000-4000-8000-0000000000a2", b'{"id":"abc\xff","type":"app"}')
    run = cli.run("poll", env={"HEROKU_AUDIT_LOG_FORMAT": log_format})
    assert run.code == 0, run.stderr
    assert len(run.lines) == len(window_ids(sim))  # every line parses as strict JSON
    synthetic = [line for line in run.lines if line["event"]["id"].startswith("sha256:")]
    assert len(synthetic) == 2
    assert cli.run("poll").ids == []  # committed: not printed again


def test_a_first_run_with_a_clock_ahead_reads_the_real_window(cli: Cli, sim: Simulator) -> None:
    first = cli.run("poll", clock="+3d")
    assert first.code == 0, first.stderr
    assert window_ids(sim) <= set(first.ids)


def test_a_fast_clock_that_stays_fast_is_corrected_by_the_server_date(
    cli: Cli, sim: Simulator
) -> None:
    sim.faults.send_date = False
    assert cli.run("poll", clock="+3d").code == 0  # no second opinion: the cursor runs ahead
    sim.faults.send_date = True
    late = sim.add_events(utc_today(), 2)
    still_fast = cli.run("poll", clock="+3d")
    assert {event["id"] for event in late} <= set(still_fast.ids)


def test_a_server_that_refuses_max_1000_is_asked_as_it_said(tmp_path: Path) -> None:
    config = SimulatorConfig(seed=3, events_per_day=600, history_days=1, max_page_size=500)
    with Simulator(config) as sim:
        cli = Cli(sim, tmp_path)
        run = cli.run("poll")
        assert run.code == 0, run.stderr
        assert set(run.ids) == window_ids(sim)


@pytest.mark.slow
def test_a_deadline_while_fetching_then_a_stalled_reader_still_ends_the_run(
    tmp_path: Path,
) -> None:
    with Simulator(SimulatorConfig(seed=11, events_per_day=400, history_days=2)) as sim:
        sim.faults.latency = 0.8
        cli = Cli(sim, tmp_path)
        read_end, write_end = os.pipe()
        started = time.monotonic()
        process = cli.popen("poll", "--max-runtime", "2", stdout=write_end)
        os.close(write_end)
        process.wait(timeout=30)
        assert time.monotonic() - started < 2 + 3 + 4  # deadline, grace, start-up
        assert process.returncode == 75
        os.close(read_end)


@pytest.mark.parametrize(
    ("file_limit", "first_code"),
    [
        (2 << 20, 0),  # the spill itself fails: the day stays in memory, nothing is lost
        (7 << 20, 73),  # a page after the spill fails: the pages before it print and commit
    ],
)
def test_a_full_disk_under_the_spool_loses_nothing(
    tmp_path: Path, file_limit: int, first_code: int
) -> None:
    """A busy day's lines spill to a temporary file; its disk fills up (RLIMIT_FSIZE here).
    No line is cut or lost and nothing is committed that was not printed; the next run with
    room prints the rest, each event once."""
    config = SimulatorConfig(seed=17, events_per_day=12000, history_days=1)
    with Simulator(config) as sim:  # yesterday: 12000 events, some 10 MiB of lines
        cli = Cli(sim, tmp_path, env={"TMPDIR": str(tmp_path)})

        def limited() -> None:
            signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
            resource.setrlimit(resource.RLIMIT_FSIZE, (file_limit, resource.RLIM_INFINITY))

        first = subprocess.run(
            cli.command("poll"),
            env=cli.env_for(None, None),
            capture_output=True,
            preexec_fn=limited,
            check=False,
            timeout=120,
        )
        assert first.returncode == first_code, first.stderr.decode()[-500:]
        printed = [orjson.loads(line)["event"]["id"] for line in first.stdout.splitlines()]
        second = cli.run("poll")  # room again
        assert second.code == 0, second.stderr
        printed += second.ids
        expected = window_ids(sim)
    assert len(expected) >= 12000
    assert sorted(printed) == sorted(expected)  # every event, once


def test_a_state_file_that_cannot_be_replaced_stops_the_run_before_printing(
    cli: Cli, sim: Simulator
) -> None:
    """The check before printing must not be fooled by a writable directory: an immutable
    state file (chattr +i) makes every save fail, so the run prints nothing (else every run
    would print the same events again)."""
    assert cli.run("poll").code == 0
    (state_file,) = cli.state_bytes()
    path = cli.state_dir / state_file
    if subprocess.run(["chattr", "+i", str(path)], capture_output=True, check=False).returncode:
        pytest.skip("chattr +i is not available here")
    try:
        sim.add_events(utc_today(), 3)
        run = cli.run("poll")
        assert run.code == 73 and run.stdout == b""
    finally:
        subprocess.run(["chattr", "-i", str(path)], check=True)
    later = cli.run("poll")
    assert later.code == 0 and len(later.ids) == 3
