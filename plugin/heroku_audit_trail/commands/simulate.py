"""`simulate`: a local Heroku Platform API in the foreground, for trying shipper configs. It has
its own parser (the simulator's flags), run on the words after `simulate`."""

from __future__ import annotations

import argparse
from collections.abc import Mapping, Sequence

from heroku_audit_trail.logs import Log
from heroku_audit_trail.output import StopGuard

DESCRIPTION = "Run a local Heroku API simulator in the foreground."
EPILOG = ""
OWN_PARSER = True  # the words after `simulate` go to `main`, not to the command line's parser


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Listed in the command list only: `main` parses the simulator's flags."""


def parser() -> argparse.ArgumentParser:
    from heroku_audit_trail import simulator
    from heroku_audit_trail.commands.options import Parser

    parser = Parser(
        prog="heroku-audit-trail simulate",
        description="A local Heroku Platform API for trying shipper configs without an account.",
        epilog=f"It accepts the token {simulator.DEMO_TOKEN} (set HEROKU_API_KEY to it);\n"
        f"{simulator.NO_ACCESS_TOKEN} is a valid token without access (403).\n"
        "example:\n  heroku-audit-trail simulate --port 8765 --events-per-day 200 --error-rate 0.1",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    simulator.add_arguments(parser)
    return parser


def main(words: Sequence[str]) -> int:
    from heroku_audit_trail import simulator

    return int(simulator.run(parser().parse_args(words)))


def run(args: argparse.Namespace, env: Mapping[str, str], guard: StopGuard, log: Log) -> int:
    raise AssertionError("simulate is run through main(), with its own parser")
