"""`backfill` (issue C2): resumable, bounded, honest about where it stopped, through the real
command against the simulator."""

from __future__ import annotations

import random
import signal
import time
from collections import Counter
from datetime import date, timedelta
from pathlib import Path

import orjson
import pytest

from heroku_audit_trail.simulator import Simulator, SimulatorConfig

from .conftest import Cli, day_requests, read_slowly, utc_today, wait_until

pytestmark = pytest.mark.e2e  # runs the real command (or a build) as a subprocess

DAYS = 90


def events_between(sim: Simulator, since: date, until: date) -> list[str]:
    ids = []
    day = since
    while day <= until:
        ids += [event["id"] for event in sim.events_for_day(day)]
        day += timedelta(days=1)
    return ids


@pytest.fixture(scope="module")
def long_sim() -> Simulator:
    config = SimulatorConfig(seed=31, events_per_day=12, history_days=DAYS + 5)
    with Simulator(config) as sim:
        yield sim


def span() -> tuple[date, date]:
    until = utc_today() - timedelta(days=1)
    return until - timedelta(days=DAYS - 1), until


def backfill_args(since: date, until: date, archives: bool) -> list[str]:
    args = ["backfill", "--since", str(since), "--until", str(until)]
    return [*args, "--archives"] if archives else args


def records(cli: Cli) -> list[Path]:
    return sorted(cli.state_dir.glob("backfill-*.json")) if cli.state_dir.is_dir() else []


@pytest.mark.parametrize("archives", [False, True], ids=["days", "archives"])
def test_ninety_days_print_every_event_once_and_in_order(
    long_sim: Simulator, tmp_path: Path, archives: bool
) -> None:
    since, until = span()
    cli = Cli(long_sim, tmp_path)
    run = cli.run(*backfill_args(since, until, archives))
    assert run.code == 0, run.stderr
    expected = events_between(long_sim, since, until)
    assert sorted(run.ids) == sorted(expected)
    stamps = [line["@timestamp"] for line in run.lines]
    assert stamps == sorted(stamps)
    summary = [log for log in run.logs if log["message"] == "backfill summary"]
    assert summary and summary[0]["days"] == DAYS and summary[0]["events_emitted"] == len(expected)
    assert records(cli) == [] and cli.state_bytes() == {}  # done: no record, no poll cursor


@pytest.mark.parametrize("archives", [False, True], ids=["days", "archives"])
def test_an_outage_midway_then_the_same_command_prints_each_event_once(
    long_sim: Simulator, tmp_path: Path, archives: bool
) -> None:
    since, until = span()
    cli = Cli(long_sim, tmp_path)
    broken = since + timedelta(days=DAYS // 2)
    long_sim.faults.failing_days = (broken,)
    if archives:  # the month of the broken day has no archive: its days come from the API
        missing = broken.strftime("%Y-%m")
        long_sim.config.missing_archive_months = (missing,)
    try:
        stopped = cli.run(*backfill_args(since, until, archives))
    finally:
        long_sim.faults.failing_days = ()
        long_sim.config.missing_archive_months = ()
    assert stopped.code == 69, stopped.stderr
    last_done = broken - timedelta(days=1)
    error = [log for log in stopped.logs if log["log.level"] == "error"][-1]["message"]
    assert f"the last day printed in full is {last_done}" in error
    assert f"--since {since} --until {until}" in error
    assert records(cli)
    listed = orjson.loads(cli.run("state", "list", "--json").stdout)
    assert [(row["kind"], row["completed_through"]) for row in listed] == [
        ("backfill", str(last_done))
    ]
    assert "in progress" in cli.run("state", "list").stdout.decode()
    resumed = cli.run(*backfill_args(since, until, archives))
    assert resumed.code == 0, resumed.stderr
    printed = stopped.ids + resumed.ids
    assert Counter(printed) == Counter(events_between(long_sim, since, until))
    assert min(line["@timestamp"] for line in resumed.lines)[:10] == str(broken)
    assert records(cli) == []


@pytest.mark.slow
@pytest.mark.parametrize("archives", [False, True], ids=["days", "archives"])
def test_sigkill_at_random_points_then_reruns_lose_nothing(
    long_sim: Simulator, tmp_path: Path, archives: bool
) -> None:
    since, until = span()
    cli = Cli(long_sim, tmp_path)
    rng = random.Random(4 + archives)
    printed: list[str] = []
    long_sim.faults.latency = 0.02
    try:
        for _ in range(3):
            process = cli.popen(*backfill_args(since, until, archives))
            time.sleep(rng.uniform(0.4, 1.5))
            process.send_signal(signal.SIGKILL)
            out, err = process.communicate(timeout=30)
            cli.check_secret(out, err)
            printed += [orjson.loads(line)["event"]["id"] for line in out.split(b"\n")[:-1]]
    finally:
        long_sim.faults.latency = 0.0
    final = cli.run(*backfill_args(since, until, archives))
    assert final.code == 0, final.stderr
    printed += final.ids
    expected = events_between(long_sim, since, until)
    assert set(printed) == set(expected)
    # Only the day in flight when each kill struck may repeat: at most three days' worth.
    repeated = sum(count - 1 for count in Counter(printed).values())
    assert repeated <= 3 * long_sim.config.events_per_day


def test_sigterm_stops_and_the_rerun_prints_each_event_once(
    long_sim: Simulator, tmp_path: Path
) -> None:
    since, until = span()
    cli = Cli(long_sim, tmp_path)
    long_sim.faults.latency = 0.05
    try:
        asked_before = day_requests(long_sim)  # the simulator serves the whole module
        process = cli.popen(*backfill_args(since, until, False))
        wait_until(lambda: day_requests(long_sim) >= asked_before + 3, "days under way")
        process.send_signal(signal.SIGTERM)
        out, err = process.communicate(timeout=30)
    finally:
        long_sim.faults.latency = 0.0
    assert process.returncode == 143, err
    assert b"to carry on, run the same command again: heroku-audit-trail backfill" in err
    resumed = cli.run(*backfill_args(since, until, False))
    printed = [orjson.loads(line)["event"]["id"] for line in out.splitlines()] + resumed.ids
    assert Counter(printed) == Counter(events_between(long_sim, since, until))


def test_an_archive_built_on_the_tenth_covers_the_ninth_at_most(tmp_path: Path) -> None:
    first = (utc_today().replace(day=1) - timedelta(days=1)).replace(day=1)  # last month
    last = utc_today().replace(day=1) - timedelta(days=1)
    tenth = first.replace(day=10)
    label = first.strftime("%Y-%m")
    config = SimulatorConfig(
        seed=9, events_per_day=6, history_days=70, archive_built_on=((label, tenth),)
    )
    with Simulator(config) as sim:
        cli = Cli(sim, tmp_path)
        run = cli.run(*backfill_args(first, last, True))
        assert run.code == 0, run.stderr
        assert Counter(run.ids) == Counter(events_between(sim, first, last))
        api_days = {e["query"]["day"] for e in sim.request_log if e["path"].endswith("/events")}
        expected_api_days = {str(day) for day in _days(tenth, last)}
        assert api_days == expected_api_days


def _days(since: date, until: date) -> list[date]:
    return [since + timedelta(days=n) for n in range((until - since).days + 1)]


def test_a_corrupt_archive_is_65_and_prints_nothing_of_its_month(tmp_path: Path) -> None:
    this_month = utc_today().replace(day=1)
    last_month = (this_month - timedelta(days=1)).replace(day=1)
    earlier = (last_month - timedelta(days=1)).replace(day=1)
    config = SimulatorConfig(
        seed=9,
        events_per_day=4,
        history_days=80,
        bad_checksum_months=(last_month.strftime("%Y-%m"),),
    )
    with Simulator(config) as sim:
        cli = Cli(sim, tmp_path)
        run = cli.run(*backfill_args(earlier, this_month - timedelta(days=1), True))
        assert run.code == 65 and "SHA-256" in run.stderr
        months = {line["@timestamp"][:7] for line in run.lines}
        assert months == {earlier.strftime("%Y-%m")}  # the month before it, whole
        assert Counter(run.ids) == Counter(events_between(sim, earlier, last_month - timedelta(1)))
        assert "run the same command again" in run.stderr


def test_relative_days_and_clear_date_errors(cli: Cli, sim: Simulator) -> None:
    run = cli.run("backfill", "--since", "2d", "--until", "yesterday")
    assert run.code == 0, run.stderr
    today = utc_today()
    assert Counter(run.ids) == Counter(
        events_between(sim, today - timedelta(days=2), today - timedelta(days=1))
    )
    month = cli.run("backfill", "--since", "2026-13-01", env={"HEROKU_API_KEY": ""})
    assert month.code == 64 and "month 13" in month.stderr
    after = cli.run("backfill", "--since", "today", env={"HEROKU_API_KEY": ""})
    assert after.code == 64 and "defaults to yesterday" in after.stderr  # 64 before the 78


@pytest.mark.slow
def test_sigterm_while_a_slow_reader_drains_a_big_day_prints_each_event_once(
    tmp_path: Path,
) -> None:
    """The day under way is cut at a line: the record keeps the ids already printed."""
    config = SimulatorConfig(seed=41, events_per_day=4000, history_days=4)
    with Simulator(config) as sim:
        cli = Cli(sim, tmp_path)
        since, until = utc_today() - timedelta(days=3), utc_today() - timedelta(days=1)
        process = cli.popen(*backfill_args(since, until, False))
        # into the second or third day, slowly
        received = read_slowly(process, 6_000_000, pause=0.01)
        process.send_signal(signal.SIGTERM)
        rest, _ = process.communicate(timeout=30)
        received += rest
        assert process.returncode in (0, 143)
        first = [orjson.loads(line)["event"]["id"] for line in bytes(received).split(b"\n")[:-1]]
        again = cli.run(*backfill_args(since, until, False))
        assert again.code == 0, again.stderr
        assert Counter(first + again.ids) == Counter(events_between(sim, since, until))


def test_the_same_relative_arguments_carry_on_after_midnight(cli: Cli, sim: Simulator) -> None:
    sim.faults.failing_days = (utc_today() - timedelta(days=1),)
    stopped = cli.run("backfill", "--since", "3d", "--state-dir", str(cli.state_dir))
    sim.faults.failing_days = ()
    assert stopped.code == 69 and "--since 3d --state-dir" in stopped.stderr
    tomorrow = cli.run("backfill", "--since", "3d", "--state-dir", str(cli.state_dir), clock="+1d")
    assert tomorrow.code == 0, tomorrow.stderr
    today = utc_today()
    expected = events_between(sim, today - timedelta(days=3), today - timedelta(days=1))
    assert Counter(stopped.ids + tomorrow.ids) == Counter(expected)


def test_an_archived_event_without_a_time_is_printed_from_mid_month(tmp_path: Path) -> None:
    last_month_end = utc_today().replace(day=1) - timedelta(days=1)
    since = last_month_end.replace(day=15)
    with Simulator(SimulatorConfig(seed=3, events_per_day=3, history_days=70)) as sim:
        sim.plant(last_month_end.replace(day=2), [{"id": "timeless", "type": "app"}])
        cli = Cli(sim, tmp_path)
        run = cli.run(*backfill_args(since, last_month_end, True))
        assert run.code == 0, run.stderr
        assert "timeless" in run.ids


def test_a_backfill_carried_on_with_another_format_is_refused(cli: Cli, sim: Simulator) -> None:
    """Begun as ECS lines, stopped by an outage: carried on with --format heroku, one output
    would hold two kinds of line. It is refused (64, nothing printed); the same format goes on."""
    since, until = utc_today() - timedelta(days=3), utc_today() - timedelta(days=1)
    sim.faults.failing_days = (until,)
    stopped = cli.run(*backfill_args(since, until, False))
    assert stopped.code == 69 and stopped.ids
    sim.faults.failing_days = ()
    other = cli.run(*backfill_args(since, until, False), "--format", "heroku")
    assert other.code == 64 and other.stdout == b""
    assert "begun printing ecs lines, not heroku" in other.stderr
    same = cli.run(*backfill_args(since, until, False))
    assert same.code == 0, same.stderr
    assert Counter(stopped.ids + same.ids) == Counter(events_between(sim, since, until))


# Runs a command and tells its own peak RSS: measured from a small process, as a child forked
# from the test process (the simulator's archive in its memory) would count that memory too.
PEAK_RSS = (
    "import os, subprocess, sys\n"
    "child = subprocess.Popen(sys.argv[1:])\n"
    "_, status, usage = os.wait4(child.pid, 0)\n"
    "print(f'peak_rss_kib={usage.ru_maxrss}', file=sys.stderr)\n"
    "sys.exit(os.waitstatus_to_exitcode(status))\n"
)


def test_a_big_archive_is_read_in_bounded_memory(tmp_path: Path) -> None:
    """An archive that inflates to about 70 MB (250,000 events, all but a few on another day)
    for a backfill of one day: it is streamed through temporary files, so the command's peak
    RSS stays far under what the month takes held whole (over 400 MB before: the inflated
    text and every event as a dict)."""
    import re
    import subprocess
    import sys

    wanted = utc_today() - timedelta(days=1)
    other = wanted - timedelta(days=1) if wanted.day > 1 else wanted + timedelta(days=1)
    with Simulator(SimulatorConfig(seed=11, events_per_day=20, history_days=3)) as sim:
        sim.faults.archive_filler = (250_000, str(other))
        cli = Cli(sim, tmp_path)
        done = subprocess.run(
            [sys.executable, "-c", PEAK_RSS, *cli.command(*backfill_args(wanted, wanted, True))],
            env=cli.env_for(None, None),
            capture_output=True,
            timeout=120,
            check=False,
        )
    err = done.stderr.decode()
    assert done.returncode == 0, err[-500:]
    ids = [orjson.loads(line)["event"]["id"] for line in done.stdout.splitlines()]
    assert sorted(ids) == sorted(event["id"] for event in sim.events_for_day(wanted))
    peak = re.search(r"peak_rss_kib=(\d+)", err)
    assert peak is not None and int(peak.group(1)) < 300 * 1024, err[-300:]


def test_temporary_files_that_cannot_be_written_are_a_clear_73(tmp_path: Path) -> None:
    """`ulimit -f` under the archive's size: its temporary file cannot be written. A clear
    exit 73 naming TMPDIR, nothing printed (it was an internal error, 70)."""
    import resource
    import subprocess

    wanted = utc_today() - timedelta(days=1)
    other = wanted - timedelta(days=1) if wanted.day > 1 else wanted + timedelta(days=1)
    with Simulator(SimulatorConfig(seed=12, events_per_day=20, history_days=3)) as sim:
        sim.faults.archive_filler = (20_000, str(other))
        cli = Cli(sim, tmp_path)

        def limited() -> None:
            resource.setrlimit(resource.RLIMIT_FSIZE, (32 << 10, 32 << 10))

        done = subprocess.run(
            cli.command(*backfill_args(wanted, wanted, True)),
            env=cli.env_for(None, None),
            capture_output=True,
            preexec_fn=limited,
            timeout=60,
            check=False,
        )
    assert done.returncode == 73, done.stderr.decode()[-500:]
    assert done.stdout == b""
    assert b"TMPDIR" in done.stderr and b"internal error" not in done.stderr
