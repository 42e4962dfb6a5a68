"""Seeded random faults over many runs: the union of everything printed is exactly the
simulator's events for the window, and duplicates appear only where a run was killed."""

from __future__ import annotations

import random
import signal
import time
from collections import Counter
from datetime import timedelta
from pathlib import Path
from typing import Any

import orjson
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from heroku_audit_trail.simulator import Faults, Simulator, SimulatorConfig

from .conftest import Cli, read_slowly, utc_today, window_ids

pytestmark = pytest.mark.e2e  # runs the real command (or a build) as a subprocess

ALLOWED_FAILURES = {0, 65, 69, 75}


def random_faults(rng: random.Random) -> Faults:
    return Faults(
        error_rate=rng.choice([0.0, 0.0, 0.2, 0.4]),
        error_status=rng.choice([500, 502, 503]),
        rate_limit_burst=rng.choice([0, 0, 0, 1, 3]),
        retry_after=rng.choice([None, 0.2]),
        latency=rng.choice([0.0, 0.0, 0.01]),
        cut_rate=rng.choice([0.0, 0.0, 0.2]),
        invalid_json_rate=rng.choice([0.0, 0.0, 0.0, 0.3]),
        envelope=rng.random() < 0.3,
    )


def set_faults(sim: Simulator, faults: Faults) -> None:
    for name in Faults.__dataclass_fields__:
        setattr(sim.faults, name, getattr(faults, name))


@pytest.mark.slow
@pytest.mark.parametrize("seed", [11, 12, 13])
def test_random_faults_never_lose_an_event(tmp_path: Path, seed: int) -> None:
    rng = random.Random(seed)
    config = SimulatorConfig(seed=seed, events_per_day=450, history_days=2)
    with Simulator(config) as sim:
        cli = Cli(sim, tmp_path)
        printed: Counter[str] = Counter()
        killed = 0
        for _ in range(10):
            set_faults(sim, random_faults(rng))
            if rng.random() < 0.4:
                day = utc_today() - timedelta(days=rng.choice([0, 1]))
                sim.add_events(day, rng.randint(1, 4))
            if rng.random() < 0.25:
                process = cli.popen("poll")
                time.sleep(rng.uniform(0.1, 0.8))
                process.send_signal(signal.SIGKILL)
                out, err = process.communicate(timeout=30)
                cli.check_secret(out, err)
                printed.update(orjson.loads(line)["event"]["id"] for line in out.split(b"\n")[:-1])
                killed += 1
                continue
            run = cli.run("poll")
            assert run.code in ALLOWED_FAILURES, run.stderr
            if run.code:
                assert len(run.logs) >= 1 and run.logs[-1]["log.level"] == "error"
            printed.update(run.ids)
        set_faults(sim, Faults())
        final = cli.run("poll")
        assert final.code == 0, final.stderr
        printed.update(final.ids)
        assert set(printed) == window_ids(sim)
        if not killed:
            assert max(printed.values()) == 1


# -- clocks, stops, slow readers, pages and late events (issues G1, G3) -----------------------

DAY_SECONDS = 86_400.0

STEP = st.fixed_dictionaries(
    {
        # This host's clock, in days: small offsets, a year ahead, back in 1971.
        "clock_days": st.one_of(st.integers(-3, 3), st.sampled_from([365, -20000])),
        "server_date": st.booleans(),
        # Heroku's Date, in days: right or three years behind. (Not ahead: with this host's
        # clock ahead too, both clocks would say a day has ended that has not, and no
        # program can tell.)
        "server_offset_days": st.sampled_from([0, 0, -1095]),
        "etag_scope": st.sampled_from(["page", "day"]),
        "stop": st.sampled_from(["none", "deadline", "outage", "sigterm", "sigkill", "slow"]),
        "stop_after": st.floats(0.3, 1.2),  # after start-up: the handlers are in place
        "late_day": st.integers(0, 1),
        "late_count": st.integers(0, 3),
    }
)


def run_step(cli: Cli, sim: Simulator, step: dict[str, Any]) -> list[str]:
    """One run as the step says; the ids of the whole lines it printed."""
    today = utc_today()
    clock = f"{step['clock_days']:+d}d" if step["clock_days"] else None
    sim.faults.send_date = step["server_date"]
    sim.faults.date_offset = step["server_offset_days"] * DAY_SECONDS
    sim.faults.etag_scope = step["etag_scope"]
    if step["late_count"]:
        sim.add_events(today - timedelta(days=step["late_day"]), step["late_count"])
    if step["stop"] in ("sigterm", "sigkill", "slow"):
        sim.faults.latency = 0.05
        args = ["poll", *(["--max-runtime", "1"] if step["stop"] == "slow" else [])]
        process = cli.popen(*args, clock=clock)
        if step["stop"] == "slow":  # a shipper under back-pressure: 20 KB/s, cut by the grace
            out = bytes(read_slowly(process, 1 << 40, pause=0.05, chunk=1024))
            _, err = process.communicate(timeout=30)
        else:
            time.sleep(step["stop_after"])
            process.send_signal(signal.SIGTERM if step["stop"] == "sigterm" else signal.SIGKILL)
            out, err = process.communicate(timeout=30)
        cli.check_secret(out, err)
        sim.faults.latency = 0.0
        assert process.returncode in (0, 75, 143, -signal.SIGKILL), err
        return [orjson.loads(line)["event"]["id"] for line in out.split(b"\n")[:-1]]
    args = ["poll"]
    if step["stop"] == "deadline":
        sim.faults.latency = 0.3
        args += ["--max-runtime", "1"]
    if step["stop"] == "outage":
        sim.faults.failing_days = (today - timedelta(days=step["late_day"]),)
    run = cli.run(*args, clock=clock)
    sim.faults.latency, sim.faults.failing_days = 0.0, ()
    assert run.code in (0, 69, 75), run.stderr
    return run.ids


@pytest.mark.slow
@settings(
    max_examples=5,
    deadline=None,
    derandomize=True,
    database=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(steps=st.lists(STEP, min_size=3, max_size=5), page_size=st.sampled_from([7, 200]))
def test_clocks_stops_readers_and_late_events_lose_nothing(
    tmp_path_factory: pytest.TempPathFactory, steps: list[dict[str, Any]], page_size: int
) -> None:
    """Every event of the window is printed at least once, and once the faults stop, today's
    new events are printed within two runs."""
    home = tmp_path_factory.mktemp("clocks")
    config = SimulatorConfig(seed=len(steps), events_per_day=60, history_days=6)
    config.page_size = config.max_page_size = page_size  # 7: pages Heroku's client never sees
    with Simulator(config) as sim:
        cli = Cli(sim, home)
        printed = set(cli.run("poll").ids)  # the install: its window is the one to keep whole
        for step in steps:
            printed.update(run_step(cli, sim, step))
        sim.faults.send_date, sim.faults.date_offset, sim.faults.etag_scope = True, 0.0, "page"
        fresh = {event["id"] for event in sim.add_events(utc_today(), 2)}
        after: set[str] = set()
        for _ in range(2):  # the clocks right again: what is owed arrives
            final = cli.run("poll")
            assert final.code == 0, final.stderr
            after.update(final.ids)
        assert fresh <= after, "today's events were not printed within two runs"
        assert window_ids(sim) <= printed | after
