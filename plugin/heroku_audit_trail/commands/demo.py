"""`demo`: the simulator in-process, one poll into a temporary state dir, real ECS lines out."""

from __future__ import annotations

import argparse
import tempfile
from collections.abc import Mapping
from pathlib import Path

from heroku_audit_trail.commands.poll import poll_each
from heroku_audit_trail.config import Secret, Settings
from heroku_audit_trail.deadline import Deadline
from heroku_audit_trail.heroku.api import HerokuClient
from heroku_audit_trail.logs import Log
from heroku_audit_trail.output import EventWriter, StopGuard, stdout_binary
from heroku_audit_trail.poll import Poller
from heroku_audit_trail.simulator import DEMO_TOKEN, Simulator, SimulatorConfig


def run_demo(seed: int, guard: StopGuard, log: Log) -> int:
    config = SimulatorConfig(seed=seed, events_per_day=6, history_days=1)
    with Simulator(config) as simulator, tempfile.TemporaryDirectory() as state_dir:
        settings = Settings(
            enterprises=(config.enterprise_name,),
            api_url=simulator.url,
            state_dir=Path(state_dir),
            lookback_days=1,
            min_interval=0,
            filters=(),
            output_format="ecs",
            include_original=False,
            rate_limit_floor=0,
            max_runtime=50,
            token_file=None,
        )
        client = HerokuClient(
            simulator.url, Secret(DEMO_TOKEN, "demo"), deadline=Deadline(settings.max_runtime)
        )
        writer = EventWriter(stdout_binary(), log)
        poller = Poller(settings, client, writer, log, guard)
        code = poll_each(poller, list(settings.enterprises), log, {})
        log.info(
            f"demo: printed {writer.lines_written} events from a local Heroku API simulator "
            f"at {simulator.url}; next: 'heroku-audit-trail simulate' to wire up a shipper, "
            "or set HEROKU_API_KEY and HEROKU_ENTERPRISE and run 'heroku-audit-trail check'"
        )
    return code


DESCRIPTION = (
    "Start a simulator in-process, poll it into a temporary state directory and print "
    "its events: the quickest look at the output."
)
EPILOG = "example:\n  heroku-audit-trail demo | head -3\n"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--seed", type=int, default=1, help="same seed, same events (default 1)")


def run(args: argparse.Namespace, env: Mapping[str, str], guard: StopGuard, log: Log) -> int:
    return run_demo(args.seed, guard, log)
