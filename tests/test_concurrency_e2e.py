"""--concurrency (issue P3): days and accounts fetched side by side, and still a day's lines
written together, days in order within an account, a cursor saved only after its lines."""

from __future__ import annotations

import os
import signal
import time
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import timedelta
from itertools import groupby
from pathlib import Path
from typing import Any

import orjson
import pytest

from heroku_audit_trail.simulator import Simulator, SimulatorConfig
from heroku_audit_trail.simulators import AccountRouter

from .conftest import Cli, Run, utc_today, wait_until

pytestmark = pytest.mark.e2e

NAMES = ("acme", "globex", "initech")
LOOKBACK = "2"  # three days a window: today and two before


@contextmanager
def accounts(latency: float = 0.0, per_day: int = 25) -> Iterator[list[Simulator]]:
    sims = [
        Simulator(SimulatorConfig(seed=50 + n, events_per_day=per_day, history_days=3,
                                  enterprise_name=name))
        for n, name in enumerate(NAMES)
    ]  # fmt: skip
    for sim in sims:
        sim.start()
        sim.faults.latency = latency
    try:
        yield sims
    finally:
        for sim in sims:
            sim.stop()


def window(sims: list[Simulator]) -> set[str]:
    today = utc_today()
    return {
        event["id"]
        for sim in sims
        for back in range(int(LOOKBACK) + 1)
        for event in sim.events_for_day(today - timedelta(days=back))
    }


def poll_args(*extra: str) -> list[str]:
    return ["poll", "--lookback-days", LOOKBACK, *extra]


def cli_for(sims: list[Simulator], router: AccountRouter, home: Path) -> Cli:
    return Cli(
        sims[0], home, env={"HEROKU_API_URL": router.url, "HEROKU_ENTERPRISE": ",".join(NAMES)}
    )


def runs_of_lines(lines: list[dict[str, Any]]) -> list[tuple[str, str]]:
    """(account, day) of each run of consecutive lines."""
    keys = [(line["organization"]["name"], line["@timestamp"][:10]) for line in lines]
    return [key for key, _ in groupby(keys)]


@pytest.mark.slow
def test_days_and_accounts_side_by_side_print_as_one_at_a_time(tmp_path: Path) -> None:
    """Slow answers (0.1 s), three accounts of three days: each (account, day) is one run of
    lines, days oldest first within an account, every event once; and the same bytes as
    --concurrency 1 (the API's objects, which hold no read time)."""
    with accounts(latency=0.1) as sims, AccountRouter(sims) as router:
        outputs = {}
        for concurrency in ("1", "8"):
            cli = cli_for(sims, router, tmp_path / f"c{concurrency}")
            run = cli.run(*poll_args("--concurrency", concurrency, "--format", "heroku"))
            assert run.code == 0, run.stderr
            outputs[concurrency] = run.stdout
        assert outputs["1"] == outputs["8"]
        cli = cli_for(sims, router, tmp_path / "ecs")
        ecs = cli.run(*poll_args("--concurrency", "8"))
        assert ecs.code == 0, ecs.stderr
        order = runs_of_lines(ecs.lines)
        assert len(order) == len(set(order))  # no (account, day) split in two
        for _, days in groupby(order, key=lambda key: key[0]):
            dates = [day for _, day in days]
            assert dates == sorted(dates)
        assert sorted(ecs.ids) == sorted(window(sims))
        assert cli.run(*poll_args()).ids == []  # every cursor saved


def test_one_day_failing_stops_its_account_only(tmp_path: Path) -> None:
    with accounts(latency=0.1) as sims, AccountRouter(sims) as router:
        cli = cli_for(sims, router, tmp_path)
        yesterday = utc_today() - timedelta(days=1)
        sims[1].faults.failing_days = (yesterday,)
        failed = cli.run(*poll_args("--concurrency", "8"))
        assert failed.code == 69, failed.stderr
        printed = {line["organization"]["name"] for line in failed.lines}
        assert {"acme", "initech"} <= printed  # the others are read in full
        globex_days = {
            line["@timestamp"][:10]
            for line in failed.lines
            if line["organization"]["name"] == "globex"
        }
        assert str(yesterday) not in globex_days
        sims[1].faults.failing_days = ()
        rest = cli.run(*poll_args("--concurrency", "8"))
        assert rest.code == 0, rest.stderr
        assert sorted(failed.ids + rest.ids) == sorted(window(sims))  # each once


@pytest.mark.slow
def test_sigterm_with_several_days_in_flight_loses_nothing(tmp_path: Path) -> None:
    with accounts(latency=0.3) as sims, AccountRouter(sims) as router:
        sims[1].faults.latency, sims[2].faults.latency = 1.0, 1.5  # later accounts slower
        cli = cli_for(sims, router, tmp_path)
        process = cli.popen(*poll_args("--concurrency", "8"))
        # A first day printed (one reader: os.read, then communicate() on the same
        # descriptor), while requests for the other days are still unanswered.
        assert process.stdout is not None
        received = bytearray()
        while b"\n" not in received:
            chunk = os.read(process.stdout.fileno(), 65536)
            assert chunk, "the run ended before printing a day"
            received += chunk
        in_flight = sum(sim.arrivals for sim in sims) - sum(len(sim.request_log) for sim in sims)
        stopped = time.monotonic()
        process.send_signal(signal.SIGTERM)
        out, err = process.communicate(timeout=30)
        assert time.monotonic() - stopped < 5
        assert process.returncode == 143, err
        assert in_flight >= 2, in_flight
        first = [orjson.loads(line)["event"]["id"] for line in (received + out).splitlines()]
        assert first, "nothing was printed before the stop: nothing to show as committed"
        for sim in sims:
            sim.faults.latency = 0
        rest = cli.run(*poll_args())
        assert rest.code == 0, rest.stderr
        assert set(first) | set(rest.ids) == window(sims)
        assert not set(first) & set(rest.ids)  # what was printed was committed


@pytest.mark.slow
def test_a_deadline_moves_every_account_on_in_turn(tmp_path: Path) -> None:
    """Runs too short for all three accounts: the account that succeeded longest ago goes
    first, so none starves, and the window arrives whole."""
    with accounts(latency=0.25) as sims, AccountRouter(sims) as router:
        cli = cli_for(sims, router, tmp_path)
        printed: list[str] = []
        runs: list[Run] = []
        for _ in range(8):
            run = cli.run(*poll_args("--concurrency", "2", "--max-runtime", "1"))
            assert run.code in (0, 75), run.stderr
            runs.append(run)
            printed += run.ids
            if set(printed) == window(sims):
                break
        assert set(printed) == window(sims)
        assert len(printed) == len(set(printed))
        assert len(runs) >= 3, "the runs were not too short for the three accounts"


# -- found by review ---------------------------------------------------------------------------


def test_sigterm_while_first_runs_look_up_their_accounts_stops_at_once(tmp_path: Path) -> None:
    """Lookups side by side, each answered only after 6 s: SIGTERM ends the run at once,
    not after every lookup has answered."""
    with accounts(latency=6.0) as sims, AccountRouter(sims) as router:
        cli = cli_for(sims, router, tmp_path)
        process = cli.popen(*poll_args())
        wait_until(lambda: sum(sim.arrivals for sim in sims) >= 3, "three lookups under way")
        stopped = time.monotonic()
        process.send_signal(signal.SIGTERM)
        _, err = process.communicate(timeout=30)
        assert process.returncode == 143, err
        assert time.monotonic() - stopped < 3
        assert b'"log.level":"warning"' in err and b"SIGTERM" in err


@pytest.mark.slow
def test_a_clock_ahead_asks_no_day_after_herokus_today_for_the_next_accounts(
    tmp_path: Path,
) -> None:
    """Heroku a day behind this host, three accounts, one request at a time: only the first
    request (before any Date is known) may be for this host's today."""
    with accounts(latency=0.05) as sims, AccountRouter(sims) as router:
        for sim in sims:
            sim.faults.date_offset = -86_400.0
        cli = cli_for(sims, router, tmp_path)
        assert cli.run(*poll_args("--concurrency", "1")).code == 0
        for sim in sims:
            sim.request_log.clear()
        steady = cli.run(*poll_args("--concurrency", "1"))
        assert steady.code == 0, steady.stderr
        today = str(utc_today())
        asked = [e for sim in sims for e in sim.request_log if e["query"].get("day") == today]
        assert len(asked) <= 1, asked
