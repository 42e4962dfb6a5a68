"""Command line: arguments, settings, dispatch, and the one place exceptions become exit codes."""

from __future__ import annotations

import argparse
import difflib
import gc
import os
import re
import signal
import sys
import textwrap
from collections.abc import Callable, Mapping, Sequence
from contextlib import suppress
from datetime import datetime, timezone
from pathlib import Path
from typing import TYPE_CHECKING, Any, NoReturn, TypeVar

from heroku_audit_trail import __version__
from heroku_audit_trail.config import (
    DEFAULT_API_URL,
    Secret,
    Settings,
    default_log_format,
    default_state_dir,
    load_token,
    parse_enterprises,
    validate_api_url,
)
from heroku_audit_trail.days.window import parse_day
from heroku_audit_trail.ecs import CONFIGURATION_OBJECTS, IAM_OBJECTS, VERB_TYPES
from heroku_audit_trail.errors import (
    EX_SOFTWARE,
    EX_USAGE,
    AuditTrailError,
    ConfigError,
    OutputClosedError,
    UsageError,
)
from heroku_audit_trail.logs import Log, capture_library_logs
from heroku_audit_trail.output import EventWriter, StopGuard, stdout_binary
from heroku_audit_trail.poll import Poller, due_enterprises, utc_now
from heroku_audit_trail.runs import Attempt

if TYPE_CHECKING:
    from heroku_audit_trail.api import HerokuClient

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


class Parser(argparse.ArgumentParser):
    """argparse, but a usage error is one line, says "did you mean", and exits 64."""

    def error(self, message: str) -> NoReturn:
        hint = self._did_you_mean(message)
        raise UsageError(f"usage: {self.prog}: {message}{hint} (see --help)")

    def _did_you_mean(self, message: str) -> str:
        known = _words(self)
        words = re.findall(
            r"(?:argument COMMAND: invalid choice: |unrecognized arguments: )'?"
            r"([^' ]+)",
            message,
        )
        for word in words:
            owners = _commands_with(self, word)
            if owners:
                return f"; {word} is an option of {' and '.join(owners)}"
            close = [
                match for match in difflib.get_close_matches(word, known, 3, 0.6) if match != word
            ]
            if close:
                return f"; did you mean {close[0]}?"
        return ""


def _commands_with(parser: argparse.ArgumentParser, option: str) -> list[str]:
    """The commands (and state subcommands) of `parser` that take `option`."""
    found: list[str] = []
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, child in action.choices.items():
                if option in _words(child):
                    nested = _commands_with(child, option)
                    found += [f"{name} {sub}" for sub in nested] if nested else [name]
    return found


def _words(parser: argparse.ArgumentParser) -> list[str]:
    """Every option and command name of `parser` and of its subcommands."""
    known: list[str] = []
    for action in parser._actions:
        known += action.option_strings
        if isinstance(action, argparse._SubParsersAction):
            known += list(action.choices)
            for child in action.choices.values():
                known += _words(child)
    return known


Number = TypeVar("Number", int, float)


def _number(kind: Callable[[str], Number], minimum: Number) -> Callable[[str], Number]:
    def parse(text: str) -> Number:
        try:
            value = kind(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{text!r} is not a number") from None
        if value < minimum:
            raise argparse.ArgumentTypeError(f"{text} is below {minimum}")
        return value

    return parse


def _env_number(
    env: Mapping[str, str], name: str, kind: Callable[[str], Number], minimum: Number
) -> Number | None:
    text = env.get(name, "").strip()
    if not text:
        return None
    try:
        return _number(kind, minimum)(text)
    except argparse.ArgumentTypeError as error:
        raise ConfigError(f"{name}: {error}") from None


def day_argument(text: str) -> str:
    """argparse type for --since/--until: a bad day is a usage error (64), before any token.
    The text is kept as typed (`90d`): a resumed backfill is found by its arguments."""
    try:
        parse_day(text, datetime.now(timezone.utc).date())
    except ValueError as error:
        raise argparse.ArgumentTypeError(str(error)) from None
    return text


def _parent() -> Parser:
    return Parser(add_help=False, formatter_class=HelpFormatter)


class HelpFormatter(argparse.RawDescriptionHelpFormatter):
    """Descriptions and examples as written; help lines wide enough to read."""

    def __init__(self, prog: str) -> None:
        super().__init__(prog, max_help_position=32, width=100)


def hidden(flags: Parser) -> Parser:
    """The same flags, accepted but not shown: a command they do not affect takes and ignores
    them, so one set of flags (a shipper's, a script's) works with every command."""
    for action in flags._actions:
        action.help = argparse.SUPPRESS
    return flags


def account_flags() -> Parser:
    """Which account, where its state lives, how logs look: every command that reads the API."""
    flags = _parent()
    group = flags.add_argument_group("account and state")
    group.add_argument(
        "--enterprise",
        action="append",
        metavar="NAME_OR_ID",
        help="enterprise account, by name or id; repeat for several, one cursor each "
        "(env HEROKU_ENTERPRISE, comma-separated; required)",
    )
    group.add_argument(
        "--state-dir",
        metavar="DIR",
        help=f"where cursors are kept (env HEROKU_AUDIT_STATE_DIR; default {default_state_dir()})",
    )
    group.add_argument(
        "--log-format",
        choices=["text", "json"],
        help="stderr as text or JSON lines (env HEROKU_AUDIT_LOG_FORMAT; default text on a "
        "terminal, json otherwise)",
    )
    return flags


def api_flags() -> Parser:
    flags = _parent()
    group = flags.add_argument_group("the Heroku API")
    group.add_argument(
        "--api-url",
        metavar="URL",
        help=f"(env HEROKU_API_URL; default {DEFAULT_API_URL}; http:// only to loopback)",
    )
    group.add_argument(
        "--token-file",
        metavar="PATH",
        help="file holding the token (env HEROKU_API_KEY_FILE; else HEROKU_API_KEY, "
        "HEROKU_API_TOKEN, $CREDENTIALS_DIRECTORY/heroku-api-key, ~/.netrc)",
    )
    group.add_argument(
        "--rate-limit-floor",
        type=_number(int, 0),
        metavar="N",
        help="stop (exit 75) when RateLimit-Remaining is under N, leaving the account's "
        "other automation its quota (env HEROKU_AUDIT_RATE_LIMIT_FLOOR; default 500)",
    )
    group.add_argument(
        "--concurrency",
        type=_number(int, 1),
        metavar="N",
        help="requests in flight at once: days and accounts read side by side, printed in "
        "order (env HEROKU_AUDIT_CONCURRENCY; default 8; 1 reads one at a time)",
    )
    group.add_argument(
        "--retry-budget",
        type=_number(float, 0.0),
        metavar="SECONDS",
        help="the most a run waits between retries of failed requests, in all; the waits "
        "grow exponentially within it (env HEROKU_AUDIT_RETRY_BUDGET; default 15)",
    )
    group.add_argument(
        "--max-runtime",
        type=_number(float, 1.0),
        metavar="SECONDS",
        help="stop (exit 75) after this long, keeping what was printed "
        "(env HEROKU_AUDIT_MAX_RUNTIME; default 50 for poll, none for backfill)",
    )
    return flags


def filter_flags() -> Parser:
    flags = _parent()
    group = flags.add_argument_group(
        "filters (sent to the API; a filtered poll has its own cursor)"
    )
    group.add_argument("--type", dest="event_type", metavar="TYPE", help="e.g. app, collaborator")
    group.add_argument("--action", metavar="ACTION", help="e.g. create, destroy")
    group.add_argument("--actor", metavar="EMAIL", help="the acting user's email")
    return flags


def output_flags() -> Parser:
    flags = _parent()
    group = flags.add_argument_group("output")
    group.add_argument(
        "--format",
        choices=["ecs", "heroku"],
        default="ecs",
        dest="output_format",
        help="ECS JSON lines, or the API's objects as sent (default ecs)",
    )
    group.add_argument(
        "--include-original", action="store_true", help="add event.original, the source JSON"
    )
    return flags


def poll_flags() -> Parser:
    flags = _parent()
    group = flags.add_argument_group("scheduling")
    group.add_argument(
        "--lookback-days",
        type=_number(int, 0),
        metavar="N",
        help="days before today read again for late events (env HEROKU_AUDIT_LOOKBACK_DAYS; "
        "default 1)",
    )
    group.add_argument(
        "--min-interval",
        type=_number(float, 0.0),
        metavar="SECONDS",
        help="exit 0 at once if the last success started sooner than this; also the base of "
        "the failure backoff (env HEROKU_AUDIT_MIN_INTERVAL; default 60; 0 turns both off)",
    )
    group.add_argument(
        "--metrics-file",
        metavar="PATH",
        help="write Prometheus text metrics here after every run, for node_exporter's "
        "textfile collector (env HEROKU_AUDIT_METRICS_FILE; default none)",
    )
    return flags


COMMAND_HELP: dict[str, tuple[str, str]] = {
    "poll": (
        "Print the audit-trail events that are new since the last run, one ECS JSON object "
        "per line, then save the cursor. This is what a shipper's exec input runs.",
        "examples:\n"
        "  heroku-audit-trail poll --enterprise acme\n"
        "  HEROKU_AUDIT_STATE_DIR=/var/lib/heroku-audit-trail heroku-audit-trail poll\n"
        "  heroku-audit-trail poll --type collaborator    # only collaborator events\n",
    ),
    "check": (
        "Walk the troubleshooting steps: state directory, token, enterprise account, "
        "permission, today's events, rate limit. Exit 0 only when poll would work.",
        "examples:\n  heroku-audit-trail check\n  heroku-audit-trail check --json | jq .steps\n",
    ),
    "backfill": (
        "Print the events of past days, day by day, through the events API or the monthly "
        "archives. Resumable: run the same command again after any stop. Never moves the "
        "poll cursor.",
        "examples:\n"
        "  heroku-audit-trail backfill --since 90d >> history.jsonl   # >>: a rerun carries on\n"
        "  heroku-audit-trail backfill --since 2026-01-01 --until 2026-06-30 --archives\n",
    ),
    "events": (
        "Look up the events of a range of days (default today) as a person would: filtered "
        "by the API (--type, --action, --actor) and by app, a table on a terminal, ECS JSON "
        "lines otherwise. Keeps no state and takes no lock: safe beside a running poll.",
        "examples:\n"
        "  heroku-audit-trail events --since yesterday --type app --action destroy\n"
        "  heroku-audit-trail events --since 7d --actor alice@example.com\n"
        "  heroku-audit-trail events --since 30d --app acme-prod --limit 20\n"
        "  heroku-audit-trail events --since 7d --output jsonl | jq -r .message\n",
    ),
    "state": (
        "What the state directory holds: list every cursor, show one, or reset one.",
        "examples:\n  heroku-audit-trail state list\n  heroku-audit-trail state show --json\n",
    ),
    "simulate": ("Run a local Heroku API simulator in the foreground.", ""),
    "demo": (
        "Start a simulator in-process, poll it into a temporary state directory and print "
        "its events: the quickest look at the output.",
        "example:\n  heroku-audit-trail demo | head -3\n",
    ),
}


def build_parser() -> Parser:
    account, api, filters, output, schedule = (
        account_flags(),
        api_flags(),
        filter_flags(),
        output_flags(),
        poll_flags(),
    )
    parser = Parser(
        prog="heroku-audit-trail",
        description="Print the Heroku Enterprise audit trail as ECS JSON lines, "
        "for Vector's and Fluent Bit's exec inputs.",
        epilog=EXAMPLES,
        formatter_class=HelpFormatter,
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND")

    def command(name: str, summary: str, parents: list[Parser], **extra: Any) -> Parser:
        description, epilog = COMMAND_HELP[name]
        added: Parser = commands.add_parser(
            name,
            parents=parents,
            help=summary,
            description=textwrap.fill(description, 96),
            epilog=epilog,
            formatter_class=HelpFormatter,
            **extra,
        )
        return added

    reading = [account, api, filters]
    command("poll", "print new events, then save the cursor", [*reading, output, schedule])
    check = command(
        "check",
        "diagnose state dir, token, account and permission",
        [*reading, hidden(output_flags()), hidden(poll_flags())],
    )
    check.add_argument("--json", action="store_true", help="one JSON object per account on stdout")
    backfill = command(
        "backfill", "print the events of past days", [*reading, output, hidden(poll_flags())]
    )
    days = backfill.add_argument_group("range")
    days.add_argument(
        "--since",
        required=True,
        type=day_argument,
        metavar="DAY",
        help="first day: YYYY-MM-DD, today, yesterday or Nd (N days ago, UTC)",
    )
    days.add_argument(
        "--until", type=day_argument, metavar="DAY", help="last day, inclusive (default yesterday)"
    )
    days.add_argument(
        "--archives", action="store_true", help="read the monthly archives (SHA-256 checked)"
    )
    events = command(
        "events",
        "look events up: a table on a terminal, JSON lines otherwise",
        [*reading, hidden(output_flags()), hidden(poll_flags())],
    )
    look_up = events.add_argument_group("look-up")
    look_up.add_argument(
        "--since",
        type=day_argument,
        metavar="DAY",
        help="first day: YYYY-MM-DD, today, yesterday or Nd (N days ago, UTC; default today)",
    )
    look_up.add_argument(
        "--until", type=day_argument, metavar="DAY", help="last day, inclusive (default today)"
    )
    look_up.add_argument("--app", metavar="NAME", help="only events about this app (name or id)")
    look_up.add_argument(
        "--limit",
        type=_number(int, 1),
        metavar="N",
        help="only the N most recent events; older days are then not read",
    )
    look_up.add_argument(
        "--output",
        choices=["table", "jsonl", "heroku"],
        help="table, ECS JSON lines or the API's objects (default: table on a terminal, "
        "jsonl otherwise)",
    )
    state = command("state", "list, show or reset the cursors", [])
    state_commands = state.add_subparsers(dest="state_command", metavar="ACTION", required=True)
    unused = [hidden(api_flags()), hidden(output_flags()), hidden(poll_flags())]
    listing = state_commands.add_parser(
        "list",
        parents=[account, hidden(filter_flags()), *unused],
        help="every poll cursor and backfill in progress",
    )
    listing.add_argument("--json", action="store_true", help="one JSON array on stdout")
    show = state_commands.add_parser(
        "show",
        parents=[account, filters, *unused],
        help="a partition's cursor: a summary, or --json",
    )
    show.add_argument("--json", action="store_true", help="the state document as JSON")
    reset = state_commands.add_parser(
        "reset", parents=[account, filters, *unused], help="remove a partition's cursor"
    )
    reset.add_argument("-y", "--yes", action="store_true", help="confirm the reset")
    # Listed for --help; main() hands `simulate` its own parser (see simulate_parser).
    command("simulate", "run a local Heroku API simulator", [], add_help=False)
    demo = command("demo", "poll a built-in simulator and print its events", [])
    demo.add_argument("--seed", type=int, default=1, help="same seed, same events (default 1)")
    return parser


def simulate_parser() -> Parser:
    from heroku_audit_trail import simulator

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


# The documented objects and verbs (reference §1.1), for a warning on a likely typo.
DOCUMENTED: dict[str, frozenset[str]] = {
    "type": frozenset(IAM_OBJECTS) | CONFIGURATION_OBJECTS,
    "action": frozenset(VERB_TYPES),
}


def _surrogates(text: str) -> bool:
    """Bytes that are not UTF-8 reach argv as lone surrogates."""
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return True
    return False


def build_settings(
    args: argparse.Namespace, env: Mapping[str, str], log: Log | None = None
) -> Settings:
    def flag(name: str, default: Any = None) -> Any:
        """A flag's value, or `default` for a command that does not have that flag."""
        return getattr(args, name, default)

    api_url = validate_api_url(flag("api_url") or env.get("HEROKU_API_URL") or DEFAULT_API_URL)
    state_dir = flag("state_dir") or env.get("HEROKU_AUDIT_STATE_DIR")
    filters = tuple(
        (name, value)
        for name, value in (
            ("action", flag("action")),
            ("actor", flag("actor")),
            ("type", flag("event_type")),
        )
        if value
    )

    def pick(flag: Number | None, name: str, low: Number, default: Number) -> Number:
        """The flag, else the environment variable, else the default."""
        value = flag if flag is not None else _env_number(env, name, type(default), low)
        return default if value is None else value

    if flag("output_format") == "heroku" and flag("include_original"):
        raise UsageError(
            "--include-original adds event.original to ECS lines; --format heroku already "
            "prints each event as the API sent it: use one or the other"
        )
    for name, value in filters:
        if not value.isprintable() or _surrogates(value):
            raise UsageError(f"--{name}: {value!r} is not a printable UTF-8 value")
    for name, value in filters:
        if name in ("type", "action") and value not in DOCUMENTED[name]:
            (log or Log()).warning(
                f"--{name} {value!r} is not a documented Heroku audit-trail {name} "
                f"(e.g. {', '.join(sorted(DOCUMENTED[name])[:4])}); the API may return nothing"
            )
    metrics = flag("metrics_file") or env.get("HEROKU_AUDIT_METRICS_FILE")
    max_runtime = flag("max_runtime")
    if max_runtime is None and args.command not in ("backfill", "events"):  # people's: none
        max_runtime = pick(None, "HEROKU_AUDIT_MAX_RUNTIME", 1.0, 50.0)
    return Settings(
        enterprises=parse_enterprises(args.enterprise, env),
        api_url=api_url,
        state_dir=Path(state_dir).expanduser() if state_dir else default_state_dir(),
        lookback_days=pick(flag("lookback_days"), "HEROKU_AUDIT_LOOKBACK_DAYS", 0, 1),
        min_interval=pick(flag("min_interval"), "HEROKU_AUDIT_MIN_INTERVAL", 0.0, 60.0),
        filters=filters,
        output_format=flag("output_format", "ecs"),
        include_original=flag("include_original", False),
        rate_limit_floor=pick(flag("rate_limit_floor"), "HEROKU_AUDIT_RATE_LIMIT_FLOOR", 0, 500),
        max_runtime=max_runtime,
        token_file=flag("token_file"),
        metrics_file=Path(metrics).expanduser() if metrics else None,
        retry_budget=pick(flag("retry_budget"), "HEROKU_AUDIT_RETRY_BUDGET", 0.0, 15.0),
        concurrency=min(pick(flag("concurrency"), "HEROKU_AUDIT_CONCURRENCY", 1, 8), 64),
    )


def read_token(settings: Settings, env: Mapping[str, str], log: Log) -> Secret:
    token = load_token(settings.token_file, env, settings.api_url)
    log.add_secret(token.reveal())
    if token.warning:
        log.warning(token.warning)
    return token


def make_client(
    settings: Settings, env: Mapping[str, str], log: Log, token: Secret | None = None
) -> HerokuClient:
    from heroku_audit_trail.api import Deadline, HerokuClient

    token = token or read_token(settings, env, log)
    return HerokuClient(
        settings.api_url,
        token,
        deadline=Deadline(settings.max_runtime),
        rate_limit_floor=settings.rate_limit_floor,
        retry_budget=settings.retry_budget,
        connections=settings.concurrency,
    )


def run_poll(settings: Settings, env: Mapping[str, str], guard: StopGuard, log: Log) -> int:
    started = utc_now()
    due = list(settings.enterprises)
    exit_codes: dict[str, int] = {}
    poller: Poller | None = None
    try:
        # The configuration first: a missing token is told at once, backoff or not.
        token = read_token(settings, env, log)
        due = due_enterprises(settings, started, log)
        # Only partitions this run skipped (0) or ran get a mark; one a stop never reached,
        # none.
        exit_codes = {name: 0 for name in settings.enterprises if name not in due}
        if not due:
            return 0
        client = make_client(settings, env, log, token)
        stdout = stdout_binary()
        writer = EventWriter(stdout, log, guard)
        writer.warn_long_lines = not stdout.isatty()  # a person reading lines needs no Buf_Size
        arm_deadline(settings, guard)
        poller = Poller(settings, client, writer, log, guard)
        try:
            return poller.run(due, exit_codes)
        finally:
            guard.disarm()
    except AuditTrailError as error:  # before any partition ran (no token, no stdout)
        exit_codes |= {name: error.exit_code for name in due}
        raise
    except Exception:  # a bug (exit 70): the partitions without an exit code ended with it
        exit_codes |= {name: EX_SOFTWARE for name in due if name not in exit_codes}
        raise
    finally:
        attempts = poller.attempts if poller is not None else {}
        # A signal now is told (130/143) once the records and the file are written.
        with guard.critical():
            record_runs(settings, started, due, exit_codes, attempts, log)
            if settings.metrics_file is not None:
                publish_metrics(settings, log)


def record_runs(
    settings: Settings,
    started: datetime,
    due: list[str],
    exit_codes: dict[str, int],
    attempts: Mapping[str, Attempt],
    log: Log,
) -> None:
    """Each partition's run record, after every run that reached it: what the poller saw, or
    (refused before it: no token, the lock held) the exit code alone. A skipped run is
    recorded only for the metrics file (without one, a skip costs no write). A failure to
    write is logged, never the run's."""
    from heroku_audit_trail.cursor import Partition, ensure_state_dir
    from heroku_audit_trail.runs import after, load, record_path, save

    for enterprise, code in exit_codes.items():
        skipped = enterprise not in due
        if skipped and settings.metrics_file is None:
            continue
        attempt = attempts.get(enterprise)
        if attempt is None or attempt.exit_code != code:
            attempt = Attempt(started, code, skipped=skipped)
        partition = Partition(enterprise, settings.filters)
        path = record_path(settings.state_dir, partition)
        try:
            ensure_state_dir(settings.state_dir)
            try:
                previous = load(path, settings.state_dir)
            except AuditTrailError:
                previous = None  # unreadable: begun again
            save(path, after(previous, partition.as_dict(), attempt))
        except AuditTrailError as error:
            log.warning(f"cannot record the run of {enterprise}: {error}", enterprise=enterprise)


def publish_metrics(settings: Settings, log: Log) -> None:
    """--metrics-file, after every run: a projection of the state dir; a failure to write it
    is logged, never the run's."""
    from heroku_audit_trail.metrics import collect, render, write_metrics

    assert settings.metrics_file is not None
    try:
        write_metrics(settings.metrics_file, render(collect(settings.state_dir)))
    except AuditTrailError as error:  # the metrics never change a run's exit code
        log.warning(str(error))
    except Exception as error:
        log.warning(f"cannot write metrics file {settings.metrics_file}: {error}")


def arm_deadline(settings: Settings, guard: StopGuard) -> None:
    """--max-runtime bounds the whole run by the clock, whatever the server or the reader do."""
    if settings.max_runtime is not None:
        guard.arm_deadline(
            settings.max_runtime,
            f"the run reached --max-runtime ({settings.max_runtime:g} s); days already "
            "printed are saved and the next run carries on",
        )


def dispatch(args: argparse.Namespace, env: Mapping[str, str], guard: StopGuard, log: Log) -> int:
    if args.command == "demo":
        from heroku_audit_trail.demo import run_demo

        return run_demo(args.seed, guard, log)
    if args.command == "state" and args.state_command == "list":
        from heroku_audit_trail.state_cmd import run_state_list

        state_dir = args.state_dir or env.get("HEROKU_AUDIT_STATE_DIR")
        return run_state_list(
            Path(state_dir).expanduser() if state_dir else default_state_dir(), args.json, log
        )
    settings = build_settings(args, env, log)
    if args.command == "poll":
        return run_poll(settings, env, guard, log)
    if args.command == "check":
        from heroku_audit_trail.check import run_check

        return run_check(settings, lambda: make_client(settings, env, log), args.json, log)
    if args.command == "backfill":
        from heroku_audit_trail.backfill import run_backfill

        writer = EventWriter(stdout_binary(), log, guard)
        writer.warn_long_lines = False  # Fluent Bit's Buf_Size is poll's concern
        arm_deadline(settings, guard)
        return run_backfill(
            settings,
            lambda: make_client(settings, env, log),
            writer,
            guard,
            log,
            args.since,
            args.until,
            args.archives,
            tuple(getattr(args, "command_line", ())),
        )
    if args.command == "events":
        from heroku_audit_trail.events import Query, resolve_days, run_events

        since, until = resolve_days(args.since, args.until, datetime.now(timezone.utc).date())
        on_terminal = sys.stdout is not None and sys.stdout.isatty()
        output = args.output or ("heroku" if args.output_format == "heroku" else None)
        output = output or ("table" if on_terminal else "jsonl")
        query = Query(since, until, args.app, args.limit, output)
        arm_deadline(settings, guard)
        client = make_client(settings, env, log)
        return run_events(settings, client, query, stdout_binary(), log, guard)
    from heroku_audit_trail.state_cmd import run_state

    return run_state(
        settings,
        args.state_command,
        confirmed=getattr(args, "yes", False),
        as_json=getattr(args, "json", False),
        log=log,
    )


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
        if arguments[:1] == ["simulate"]:
            # Imported only here: the simulator is not needed by a shipper's every run.
            from heroku_audit_trail import simulator

            return int(simulator.run(simulate_parser().parse_args(arguments[1:])))
        log.log_format = _log_format_flag(arguments) or log.log_format  # for a usage error
        args = build_parser().parse_args(arguments)
        if getattr(args, "log_format", None):
            log.log_format = args.log_format
        if args.command is None:  # bare: the command list, as a reminder
            build_parser().print_help(sys.stderr)
            return EX_USAGE
        args.command_line = arguments
        code = dispatch(args, env, guard, log)
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
