"""A feed that never stalls, never floods and never dies quietly (issue G3): the real command
against the simulator over HTTP, each test failing without the fix it names."""

from __future__ import annotations

import resource
import subprocess
from collections import Counter
from collections.abc import Callable
from datetime import timedelta
from pathlib import Path

import orjson
import pytest

from heroku_audit_trail.heroku.api import PAGE_CAP, RUN_PAGES
from heroku_audit_trail.simulator import Simulator, SimulatorConfig

from .conftest import Cli, Run, read_slowly, utc_today, window_ids

pytestmark = pytest.mark.e2e

DAY_SECONDS = 86_400.0
LAST_IDS = [f"ffffffff-ffff-4fff-bfff-fffffffffff{n}" for n in range(3)]  # sort after all ids


def counted(sim: Simulator, run: Callable[[], Run]) -> tuple[Run, int]:
    """`run`'s result, and how many requests the simulator answered while it ran."""
    before = len(sim.request_log)
    result = run()
    return result, len(sim.request_log) - before


def late_event(event_id: str, day: object) -> dict[str, object]:
    return {
        "id": event_id,
        "type": "app",
        "action": "destroy",
        "created_at": f"{day}T23:00:00Z",
        "actor": {"id": "late", "email": "late@example.com"},
    }


# -- 1. a slow sink under a deadline -----------------------------------------------------------


@pytest.mark.slow
def test_a_slow_reader_under_a_deadline_still_moves_the_feed_on(tmp_path: Path) -> None:
    """Stdout read at about 400 KB/s, runs of 1 s (and the suite's 1 s of --stop-grace for the
    write): no run can print yesterday (1000 lines of about 1 KB) whole. Each run records the
    whole lines it printed, so the next goes on from there: every run prints new events and
    today is reached."""
    config = SimulatorConfig(seed=21, events_per_day=1000, history_days=1)
    with Simulator(config) as sim:
        cli = Cli(sim, tmp_path)
        yesterday = {event["id"] for event in sim.events_for_day(utc_today() - timedelta(days=1))}
        printed: Counter[str] = Counter()
        for number in range(1, 9):
            process = cli.popen("poll", "--max-runtime", "1")
            received = read_slowly(process, 1 << 40, pause=0.04, chunk=16384)  # 400 KB/s
            _, stderr = process.communicate(timeout=30)
            assert process.returncode in (0, 75), stderr
            whole = bytes(received).split(b"\n")[:-1]  # a line cut by the grace is not one
            ids = [orjson.loads(line)["event"]["id"] for line in whole]
            assert ids, f"run {number} printed nothing"
            if number == 1:
                assert not yesterday <= set(ids), "the reader was not slow enough to test this"
            assert not set(ids) & set(printed), f"run {number} printed again what one had"
            printed.update(ids)
            if set(printed) == window_ids(sim):
                break
        assert set(printed) == window_ids(sim)


# -- 2. no 304 closes a day -------------------------------------------------------------------


def test_a_late_event_behind_a_304_is_read_before_its_day_closes(tmp_path: Path) -> None:
    """A server that pages 7 events at a time, its ETag over the first page only: a late event
    on page two of a day kept by its ETag answers 304 while the day is in the window; the pass
    that closes the day, once it left the window, is unconditional and finds it."""
    config = SimulatorConfig(seed=5, events_per_day=7, history_days=1, page_size=7)
    config.max_page_size = 7
    with Simulator(config) as sim:
        cli = Cli(sim, tmp_path)
        yesterday = utc_today() - timedelta(days=1)
        first = cli.run("poll")
        assert first.code == 0 and set(first.ids) == window_ids(sim)
        sim.plant(yesterday, [late_event(LAST_IDS[0], yesterday)])  # page two: one event
        assert cli.run("poll").code == 0  # yesterday: 304 (its first page is unchanged)
        sim.faults.date_offset = DAY_SECONDS  # a day later for Heroku and for this host
        later = [cli.run("poll", clock="+1d") for _ in range(2)]
        assert all(run.code == 0 for run in later), later[0].stderr
        assert LAST_IDS[0] in later[0].ids + later[1].ids
        closed = orjson.loads(next(iter(cli.state_bytes().values())))["closed_through"]
        assert closed == str(yesterday)  # and then it closed


# -- 3. the clock -----------------------------------------------------------------------------


def test_a_host_clock_a_year_ahead_reads_no_day_after_herokus_today(
    cli: Cli, sim: Simulator
) -> None:
    assert cli.run("poll").code == 0
    for _ in range(2):
        run, cost = counted(sim, lambda: cli.run("poll", clock="+365d"))
        assert run.code == 0, run.stderr
        # The window by Heroku's date (two days) and one request for the host's own day,
        # which tells Heroku's date: not a request for every day up to the host's date.
        assert cost <= 4, cost
    state = orjson.loads(next(iter(cli.state_bytes().values())))
    assert max(state["open_days"]) <= str(utc_today())


@pytest.mark.parametrize(
    "fault", ["host clock at 1971", "server Date years behind"], ids=["host", "server"]
)
def test_a_clock_far_behind_for_one_run_does_not_send_the_feed_back_years(
    cli: Cli, sim: Simulator, fault: str
) -> None:
    assert cli.run("poll").code == 0
    if fault == "host clock at 1971":
        wrong = cli.run("poll", clock="-20000d")
    else:
        sim.faults.date_offset = -3 * 365 * DAY_SECONDS
        wrong = cli.run("poll")
        sim.faults.date_offset = 0
    assert wrong.code == 0, wrong.stderr
    late = {event["id"] for event in sim.add_events(utc_today(), 3)}
    printed: set[str] = set()
    for _ in range(2):  # today's events within two runs once the fault is gone
        run, cost = counted(sim, lambda: cli.run("poll"))
        assert run.code == 0 and cost <= 4, (cost, run.stderr)
        printed.update(run.ids)
    assert late <= printed
    state = orjson.loads(next(iter(cli.state_bytes().values())))
    assert state["closed_through"] >= str(utc_today() - timedelta(days=3))


# -- 4. failures that reach the API back off --------------------------------------------------


@pytest.mark.parametrize("failure", ["not JSON", "revoked token", "unknown account"])
def test_every_failure_from_the_api_backs_off(cli: Cli, sim: Simulator, failure: str) -> None:
    """A proxy answering HTML (65), a revoked token (77), an account the API does not know
    (78): the next runs leave the API alone instead of asking once a run, every run."""
    env = {"HEROKU_AUDIT_MIN_INTERVAL": "60"}
    expected = {"not JSON": 65, "revoked token": 77, "unknown account": 78}[failure]
    if failure == "not JSON":
        sim.faults.invalid_json_rate = 1.0
    elif failure == "revoked token":
        env["HEROKU_API_KEY"] = "HRKU-revoked-0000000000000000000000000000"
    else:
        env["HEROKU_ENTERPRISE"] = "no-such-account"
    failed, cost = counted(sim, lambda: cli.run("poll", env=env))
    assert failed.code == expected and cost >= 1, failed.stderr
    for _ in range(3):
        skipped, cost = counted(sim, lambda: cli.run("poll", env=env))
        assert (skipped.code, cost) == (0, 0)  # skipped: silent, exit 0, no request


def test_a_configuration_error_is_told_even_while_backing_off(cli: Cli, sim: Simulator) -> None:
    sim.faults.rate_limit_burst, sim.faults.retry_after = 10, 0  # 75, and a backoff
    env = {"HEROKU_AUDIT_MIN_INTERVAL": "60"}
    assert cli.run("poll", env=env).code == 75
    missing = cli.run("poll", env={**env, "HEROKU_API_KEY_FILE": "/etc/nope"})
    assert missing.code == 78 and "/etc/nope" in missing.stderr


def test_pagination_that_never_ends_costs_a_bounded_run_then_backs_off(
    cli: Cli, sim: Simulator
) -> None:
    """Each run reads at most RUN_PAGES pages of a day and saves where the pass goes on; a
    pass past PAGE_CAP pages in all is exit 65, and the runs after it back off."""
    sim.faults.endless_next_range = True
    today_only = ("poll", "--lookback-days", "0")
    first, cost = counted(sim, lambda: cli.run(*today_only))
    assert first.code == 0, first.stderr
    assert cost <= RUN_PAGES + 1, cost  # the account, then RUN_PAGES pages of today
    [name] = cli.state_bytes()
    state = orjson.loads(cli.state_bytes()[name])
    [day] = state["open_days"].values()
    assert day["pass_pages"] == RUN_PAGES and day["next_range"]
    day["pass_pages"] = PAGE_CAP - RUN_PAGES - 5  # as if many runs had gone on with it
    (cli.state_dir / name).write_bytes(orjson.dumps(state))
    assert cli.run(*today_only).code == 0  # 75 pages more: under the cap still
    ended, cost = counted(sim, lambda: cli.run(*today_only))
    assert ended.code == 65 and "does not end" in ended.stderr
    assert cost <= 6, cost
    env = {"HEROKU_AUDIT_MIN_INTERVAL": "60"}
    assert counted(sim, lambda: cli.run(*today_only, env=env))[1] == 0  # backing off


# -- 6. a nearly full state disk --------------------------------------------------------------


def test_a_state_disk_without_room_for_this_runs_ids_prints_nothing(
    cli: Cli, sim: Simulator
) -> None:
    """`ulimit -f` just over the state file's size: the state with this run's 2,000 new ids
    will not fit, so nothing is printed (exit 73), rather than the same events every run."""
    assert cli.run("poll").code == 0
    [name] = cli.state_bytes()
    size = (cli.state_dir / name).stat().st_size
    new = {event["id"] for event in sim.add_events(utc_today(), 2000)}

    def limited() -> None:
        resource.setrlimit(resource.RLIMIT_FSIZE, (size + 4096, size + 4096))

    for _ in range(2):
        done = subprocess.run(
            cli.command("poll"),
            env=cli.env_for(None, None),
            capture_output=True,
            preexec_fn=limited,
            timeout=60,
            check=False,
        )
        assert done.returncode == 73, done.stderr
        assert done.stdout == b""
        assert b"no room" in done.stderr
    freed = cli.run("poll")
    assert freed.code == 0 and set(freed.ids) == new


def test_a_state_that_cannot_be_saved_costs_no_request(cli: Cli, sim: Simulator) -> None:
    """`ulimit -f` under the state file's size: each run exits 73 before any request, though
    several open days would be fetched side by side (73 starts no backoff: a run a second
    must not spend the account's quota)."""
    assert cli.run("poll", "--lookback-days", "6").code == 0
    [name] = cli.state_bytes()
    size = (cli.state_dir / name).stat().st_size

    def limited() -> None:
        resource.setrlimit(resource.RLIMIT_FSIZE, (size // 2, size // 2))

    for _ in range(2):
        before = len(sim.request_log)
        done = subprocess.run(
            cli.command("poll", "--lookback-days", "6", "--min-interval", "0"),
            env=cli.env_for(None, None),
            capture_output=True,
            preexec_fn=limited,
            timeout=60,
            check=False,
        )
        assert done.returncode == 73, done.stderr
        assert len(sim.request_log) == before  # not one request


# -- what the suite missed (issue R3) ---------------------------------------------------------


FIRST_ID = "00000000-0000-4000-8000-000000000000"  # sorts before every other id: page one


def test_a_resumed_pass_counts_as_begun_when_it_began(tmp_path: Path) -> None:
    """A two-page day whose page two fails: the pass stops after page one. A late event then
    lands on page one. The next day the pass finishes from page two; it began while the day
    was in the window, so it cannot close the day: one more run reads the day whole and
    prints the late event."""
    config = SimulatorConfig(seed=9, events_per_day=10, history_days=2, page_size=6)
    config.max_page_size = 6
    with Simulator(config) as sim:
        cli = Cli(sim, tmp_path)
        yesterday = utc_today() - timedelta(days=1)
        sim.faults.failing_ranged = True
        assert cli.run("poll").code == 69  # yesterday's page one printed, page two failed
        sim.faults.failing_ranged = False
        sim.plant(yesterday, [late_event(FIRST_ID, yesterday)])
        sim.faults.date_offset = DAY_SECONDS
        next_day = [cli.run("poll", clock="+1d") for _ in range(2)]
        assert all(run.code == 0 for run in next_day), next_day[0].stderr
        assert FIRST_ID in next_day[0].ids + next_day[1].ids


def test_days_are_not_closed_by_this_hosts_clock_alone(cli: Cli, sim: Simulator) -> None:
    """Two polls with this host's clock a day ahead (Heroku's right): the first closes
    nothing early, so the second has nothing to print and no cursor to move back."""
    assert cli.run("poll").code == 0
    ahead = [cli.run("poll", clock="+1d") for _ in range(2)]
    assert all(run.code == 0 for run in ahead), ahead[0].stderr
    assert ahead[1].ids == []
    assert not [log for log in ahead[1].logs if "closed_through" in log["message"]]
    closed = orjson.loads(next(iter(cli.state_bytes().values())))["closed_through"]
    assert closed == str(utc_today() - timedelta(days=2))


def test_check_says_when_poll_is_backing_off_and_how_to_try_now(cli: Cli, sim: Simulator) -> None:
    """After failed runs, `check` on a fixed setting says OK and that poll still skips the
    API until the backoff ends, and how to try at once (issue O3)."""
    env = {"HEROKU_AUDIT_MIN_INTERVAL": "60"}
    sim.faults.invalid_json_rate = 1.0
    assert cli.run("poll", env=env).code == 65
    sim.faults.invalid_json_rate = 0.0
    checked = cli.run("check", env=env)
    assert checked.code == 0, checked.stderr
    text = checked.stdout.decode()
    assert "OK, polling will work" in text
    assert "backing off after 1 failed run(s)" in text and "--min-interval 0" in text
    now = cli.run("poll", "--min-interval", "0", env=env)
    assert now.code == 0 and now.ids
    assert "backing off" not in cli.run("check", env=env).stdout.decode()
