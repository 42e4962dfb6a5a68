"""Seeded random faults over many runs: the union of everything printed is exactly the
simulator's events for the window, and duplicates appear only where a run was killed."""

from __future__ import annotations

import random
import signal
import time
from collections import Counter
from datetime import timedelta
from pathlib import Path

import orjson
import pytest

from heroku_audit_trail.simulator import Faults, Simulator, SimulatorConfig

from .conftest import Cli, utc_today, window_ids

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
