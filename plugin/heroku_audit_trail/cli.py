"""The entry point: the command table, parsing, dispatch, the process's standard streams and
signals, and the one place exceptions become exit codes. Each command is a module of
`heroku_audit_trail.commands`: its flags, help and run()."""

from __future__ import annotations

import argparse
import gc
import os
import signal
import sys
import textwrap
from collections.abc import Mapping, Sequence
from contextlib import suppress
from typing import NoReturn

from heroku_audit_trail import __version__
from heroku_audit_trail.commands import COMMANDS, load
from heroku_audit_trail.commands.options import HelpFormatter, Parser
from heroku_audit_trail.config import default_log_format
from heroku_audit_trail.errors import EX_SOFTWARE, EX_USAGE, AuditTrailError, OutputClosedError
from heroku_audit_trail.logs import Log, capture_library_logs
from heroku_audit_trail.output import StopGuard

EXAMPLES = """\
examples:
  heroku-audit-trail demo                       # try it: a local simulator, no account needed
  export HEROKU_API_KEY=$(heroku auth:token) HEROKU_ENTERPRISE=acme
  heroku-audit-trail check                      # is the token, account and permission right?
  heroku-audit-trail poll                       # print new events as ECS JSON lines
  heroku-audit-trail backfill --since 2026-01-01 --archives >> history.jsonl
  heroku-audit-trail state show
  heroku-audit-trail simulate --port 8765       # a local Heroku API for shipper configs

exit codes: 0 ok, 64 usage, 65 bad data, 69 API unavailable, 70 bug, 73 state not writable,
74 stdout closed, 75 try later, 77 permission denied, 78 configuration, 130/143 signal.
The token is read from HEROKU_API_KEY_FILE, HEROKU_API_KEY, HEROKU_API_TOKEN,
$CREDENTIALS_DIRECTORY/heroku-api-key or ~/.netrc, never from the command line.
"""


def build_parser(only: str | None = None) -> Parser:
    """The command line's parser. With `only`, that command's flags alone (the others are
    listed, not imported): a shipper's every poll does not import every command."""
    parser = Parser(
        prog="heroku-audit-trail",
        description="Print the Heroku Enterprise audit trail as ECS JSON lines, "
        "for Vector's and Fluent Bit's exec inputs.",
        epilog=EXAMPLES,
        formatter_class=HelpFormatter,
    )
    if only is not None:
        parser.complete = build_parser
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name, info in COMMANDS.items():
        if only is not None and name != only:
            commands.add_parser(name, help=info.summary)
            continue
        module = load(name)
        own_parser = getattr(module, "OWN_PARSER", False)
        command: Parser = commands.add_parser(
            name,
            help=info.summary,
            description=textwrap.fill(module.DESCRIPTION, 96),
            epilog=module.EPILOG,
            formatter_class=HelpFormatter,
            add_help=not own_parser,
        )
        module.add_arguments(command)
    return parser


def _command_of(arguments: Sequence[str]) -> str | None:
    """The command named on the line (its first word not an option), if it is one."""
    first = next((word for word in arguments if not word.startswith("-")), None)
    return first if first in COMMANDS else None


def parse(arguments: Sequence[str]) -> argparse.Namespace:
    return build_parser(_command_of(arguments)).parse_args(arguments)


def _to_devnull(fd: int) -> None:
    """Point `fd` at /dev/null, so Python's exit-time flush of it cannot fail."""
    with suppress(OSError):
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, fd)
        os.close(devnull)


def _silence_stdout() -> None:
    """After a broken pipe, keep Python's exit-time flush from printing a traceback."""
    try:
        fd = sys.stdout.fileno()
    except (OSError, ValueError, AttributeError):
        return  # no stdout at all: nothing will be flushed
    _to_devnull(fd)


def reserve_standard_fds() -> None:
    """A process started with stderr (or stdin) closed would hand that descriptor number to
    the next file it opens, a state file among them, and a stray write to "stderr" would land
    in it. Hold the closed ones on /dev/null, and give Python a stdin and a stderr there (it
    set them to None), so every command runs as usual with nowhere to tell. A closed stdout
    stays an error (exit 74): sys.stdout stays None, whatever fd 1 becomes."""
    for fd in (0, 1, 2):
        try:
            os.fstat(fd)
        except OSError:
            with suppress(OSError):
                devnull = os.open(os.devnull, os.O_RDWR)
                if devnull != fd:
                    os.dup2(devnull, fd)
                    os.close(devnull)
    with suppress(OSError):
        if sys.stdin is None:
            sys.stdin = open(0, encoding="utf-8", closefd=False)  # noqa: SIM115
        if sys.stderr is None:
            sys.stderr = open(2, "w", encoding="utf-8", errors="backslashreplace", closefd=False)  # noqa: SIM115


def _log_format_flag(arguments: Sequence[str]) -> str | None:
    """--log-format as given, read before the rest is parsed: a usage error is then told
    in the format asked for."""
    for at, flag in enumerate(arguments):
        value = arguments[at + 1] if at + 1 < len(arguments) else ""
        if flag == "--log-format" and value in ("text", "json"):
            return value
        if flag in ("--log-format=text", "--log-format=json"):
            return flag.partition("=")[2]
    return None


def _silence_stderr() -> None:
    """A reader of stderr that went away leaves unwritten text in sys.stderr's buffer, and
    Python's exit-time flush would then fail (exit 120) over the run's real exit code."""
    try:
        if sys.stderr is not None:
            sys.stderr.flush()
    except (OSError, ValueError):
        _to_devnull(2)


def main(
    argv: Sequence[str] | None = None,
    env: Mapping[str, str] | None = None,
    log: Log | None = None,
) -> int:
    env = os.environ if env is None else env
    log = Log() if log is None else log
    guard = StopGuard()
    guard.install()
    for name in ("HEROKU_API_KEY", "HEROKU_API_TOKEN"):
        log.add_secret(env.get(name, "").strip())  # masked even if a bug strikes before use
    try:
        log.log_format = default_log_format(env)
        arguments = list(sys.argv[1:] if argv is None else argv)
        if arguments[:1] == ["simulate"]:  # the simulator's own flags
            return int(load("simulate").main(arguments[1:]))
        log.log_format = _log_format_flag(arguments) or log.log_format  # for a usage error
        args = parse(arguments)
        if getattr(args, "log_format", None):
            log.log_format = args.log_format
        if args.command is None:  # bare: the command list, as a reminder
            build_parser().print_help(sys.stderr)
            return EX_USAGE
        args.command_line = arguments
        code = int(load(args.command).run(args, env, guard, log))
        guard.settle()
    except AuditTrailError as error:
        guard.settle()
        log.error(str(error), exit_code=error.exit_code, request_id=error.request_id)
        code = error.exit_code
    except Exception as error:  # a bug: one JSON line with its type, never a raw traceback
        guard.settle()
        log.error(
            f"internal error (a bug, please report it): {type(error).__name__}: {error}",
            error_type=type(error).__name__,
            exit_code=EX_SOFTWARE,
        )
        code = EX_SOFTWARE
    if code == OutputClosedError.exit_code:
        _silence_stdout()
    return code


def run() -> NoReturn:
    """The process entry point: main(), then exit with its code. From here on a SIGTERM or
    SIGINT is ignored: the run's work is saved, and Python's shutdown restores the default
    handlers, so a signal arriving now would turn a clean exit into "killed by signal"."""
    reserve_standard_fds()
    # A busy day keeps 100,000s of small objects alive (ids, sort keys) and makes almost no
    # cycles: the cyclic collector's default (a pass every 700 allocations) costs a poll
    # about a tenth of its time for nothing. What is loaded so far is never collected.
    gc.freeze()
    gc.set_threshold(20_000, 20, 20)
    log = Log()
    capture_library_logs(log)  # the process's own: not for main() called in-process by tests
    code = main(log=log)
    _silence_stderr()
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    sys.exit(code)
