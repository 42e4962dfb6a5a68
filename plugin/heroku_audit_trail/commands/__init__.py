"""The commands, one module each (pip's `commands/*`). Each owns its flags and help
(`DESCRIPTION`, `EPILOG`, `add_arguments`) and its `run(args, env, guard, log) -> exit code`;
the entry module (cli) keeps this table, the dispatch and the process's fd and signal handling.
A module is imported only when its command runs (or the full --help is asked for)."""

from __future__ import annotations

import importlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from types import ModuleType

from heroku_audit_trail.errors import (
    EX_IOERR,
    EX_SIGINT,
    EX_SIGTERM,
    AuditTrailError,
    LockHeldError,
    StoppedError,
)
from heroku_audit_trail.logs import Log


@dataclass(frozen=True)
class CommandInfo:
    module: str  # under heroku_audit_trail.commands
    summary: str  # its line in the command list


COMMANDS: dict[str, CommandInfo] = {
    "poll": CommandInfo("poll", "print new events, then save the cursor"),
    "check": CommandInfo("check", "diagnose state dir, token, account and permission"),
    "backfill": CommandInfo("backfill", "print the events of past days"),
    "events": CommandInfo("events", "look events up: a table on a terminal, JSON lines otherwise"),
    "state": CommandInfo("state", "list, show or reset the cursors"),
    "simulate": CommandInfo("simulate", "run a local Heroku API simulator"),
    "demo": CommandInfo("demo", "poll a built-in simulator and print its events"),
}


def load(name: str) -> ModuleType:
    return importlib.import_module(f"heroku_audit_trail.commands.{COMMANDS[name].module}")


def each_partition(
    enterprises: Sequence[str],
    work: Callable[[str], None],
    log: Log,
    exit_codes: dict[str, int] | None = None,
) -> int:
    """Run `work` per enterprise; a failure of one does not stop the others. First failure
    wins. `exit_codes`, when given, gets each enterprise's own code."""
    first_failure = 0
    for enterprise in enterprises:
        try:
            work(enterprise)
            if exit_codes is not None:
                exit_codes[enterprise] = 0
        except AuditTrailError as error:
            if exit_codes is not None:
                exit_codes[enterprise] = error.exit_code
            # An overlapping run or a stop asked for needs nobody's action: not an error line
            # (a shipper may route those to alerting).
            tell = log.warning if isinstance(error, (LockHeldError, StoppedError)) else log.error
            tell(
                str(error),
                enterprise=enterprise,
                exit_code=error.exit_code,
                request_id=error.request_id,
            )
            first_failure = first_failure or error.exit_code
            if error.exit_code in (EX_IOERR, EX_SIGINT, EX_SIGTERM):
                break  # no reader left, or told to stop: nothing more can be delivered
    return first_failure
