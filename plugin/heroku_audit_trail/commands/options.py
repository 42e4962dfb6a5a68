"""The parser and the flags several commands share (pip's `cli/cmdoptions.py`): a command adds
the groups it uses, shown, and the others hidden, so one set of flags (a shipper's, a
script's) is accepted by every command."""

from __future__ import annotations

import argparse
import difflib
import math
import re
from collections.abc import Callable
from datetime import datetime, timezone
from typing import Any, NoReturn, TypeVar

from heroku_audit_trail.config import (
    DEFAULT_API_URL,
    MAX_STOP_GRACE,
    STOP_GRACE_SECONDS,
    default_state_dir,
)
from heroku_audit_trail.days.window import parse_day
from heroku_audit_trail.errors import UsageError


class Parser(argparse.ArgumentParser):
    """argparse, but a usage error is one line, says "did you mean", and exits 64."""

    # The parser with every command's flags, for the hint (only the command run is built).
    complete: Callable[[], argparse.ArgumentParser] | None = None

    def error(self, message: str) -> NoReturn:
        hint = self._did_you_mean(message)
        raise UsageError(f"usage: {self.prog}: {message}{hint} (see --help)")

    def _did_you_mean(self, message: str) -> str:
        full = self.complete() if self.complete is not None else self
        known = _words(full)
        words = re.findall(
            r"(?:argument COMMAND: invalid choice: |unrecognized arguments: )'?([^' ]+)", message
        )
        for word in words:
            owners = _commands_with(full, word)
            if owners:
                return f"; {word} is an option of {' and '.join(owners)}"
            close = [
                match for match in difflib.get_close_matches(word, known, 3, 0.6) if match != word
            ]
            if close:
                return f"; did you mean {close[0]}?"
        return ""


class HelpFormatter(argparse.RawDescriptionHelpFormatter):
    """Descriptions and examples as written; help lines wide enough to read."""

    def __init__(self, prog: str) -> None:
        super().__init__(prog, max_help_position=32, width=100)


def _commands_with(parser: argparse.ArgumentParser, option: str) -> list[str]:
    """The commands (and state subcommands) of `parser` that take `option`, shown."""
    found: list[str] = []
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, child in action.choices.items():
                if option in _words(child, shown_only=True):
                    nested = _commands_with(child, option)
                    found += [f"{name} {sub}" for sub in nested] if nested else [name]
    return found


def _words(parser: argparse.ArgumentParser, shown_only: bool = False) -> list[str]:
    """Every option and command name of `parser` and of its subcommands."""
    known: list[str] = []
    for action in parser._actions:
        if not (shown_only and action.help == argparse.SUPPRESS):
            known += action.option_strings
        if isinstance(action, argparse._SubParsersAction):
            known += list(action.choices)
            for child in action.choices.values():
                known += _words(child, shown_only)
    return known


Number = TypeVar("Number", int, float)


def number(
    kind: Callable[[str], Number], minimum: Number, maximum: Number | None = None
) -> Callable[[str], Number]:
    """argparse type: a finite number of `kind`, at least `minimum` (and at most `maximum`)."""

    def parse(text: str) -> Number:
        try:
            value = kind(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{text!r} is not a number") from None
        if not math.isfinite(value):  # nan passes every comparison; inf no timer takes
            raise argparse.ArgumentTypeError(f"{text!r} is not a finite number")
        if value < minimum:
            raise argparse.ArgumentTypeError(f"{text} is below {minimum}")
        if maximum is not None and value > maximum:
            raise argparse.ArgumentTypeError(f"{text} is above {maximum:g}")
        return value

    return parse


def day_argument(text: str) -> str:
    """argparse type for --since/--until: a bad day is a usage error (64), before any token.
    The text is kept as typed (`90d`): a resumed backfill is found by its arguments."""
    try:
        parse_day(text, datetime.now(timezone.utc).date())
    except ValueError as error:
        raise argparse.ArgumentTypeError(str(error)) from None
    return text


Add = Callable[..., Any]


def _group(parser: argparse.ArgumentParser, title: str, hidden: bool) -> Add:
    """`add_argument` of a titled group, or (hidden) of the parser with the help suppressed:
    a command these flags do not affect takes and ignores them."""
    if not hidden:
        return parser.add_argument_group(title).add_argument

    def add(*flags: str, **options: Any) -> Any:
        return parser.add_argument(*flags, **{**options, "help": argparse.SUPPRESS})

    return add


def account(parser: argparse.ArgumentParser, keeps_state: bool = True) -> None:
    """Which account, where its state lives, how logs look. A command that keeps no state
    (events) takes --state-dir and does not show it."""
    add = _group(parser, "account and state" if keeps_state else "account", hidden=False)
    add(
        "--enterprise",
        action="append",
        metavar="NAME_OR_ID",
        help="enterprise account, by name or id; repeat for several"
        + (", one cursor each" if keeps_state else "")
        + " (env HEROKU_ENTERPRISE, comma-separated; required)",
    )
    (add if keeps_state else _group(parser, "", hidden=True))(
        "--state-dir",
        metavar="DIR",
        help=f"where cursors are kept (env HEROKU_AUDIT_STATE_DIR; default {default_state_dir()})",
    )
    add(
        "--log-format",
        choices=["text", "json"],
        help="stderr as text or JSON lines (env HEROKU_AUDIT_LOG_FORMAT; default text on a "
        "terminal, json otherwise)",
    )


def api(parser: argparse.ArgumentParser, hidden: bool = False) -> None:
    add = _group(parser, "the Heroku API", hidden)
    add(
        "--api-url",
        metavar="URL",
        help=f"(env HEROKU_API_URL; default {DEFAULT_API_URL}; http:// only to loopback)",
    )
    add(
        "--token-file",
        metavar="PATH",
        help="file holding the token (env HEROKU_API_KEY_FILE; else HEROKU_API_KEY, "
        "HEROKU_API_TOKEN, $CREDENTIALS_DIRECTORY/heroku-api-key, ~/.netrc)",
    )
    add(
        "--rate-limit-floor",
        type=number(int, 0),
        metavar="N",
        help="stop (exit 75) when RateLimit-Remaining is under N, leaving the account's "
        "other automation its quota (env HEROKU_AUDIT_RATE_LIMIT_FLOOR; default 500)",
    )
    add(
        "--concurrency",
        type=number(int, 1),
        metavar="N",
        help="requests in flight at once: days and accounts read side by side, printed in "
        "order (env HEROKU_AUDIT_CONCURRENCY; default 8; 1 reads one at a time)",
    )
    add(
        "--retry-budget",
        type=number(float, 0.0),
        metavar="SECONDS",
        help="the most a run waits between retries of failed requests, in all; the waits "
        "grow exponentially within it (env HEROKU_AUDIT_RETRY_BUDGET; default 15)",
    )
    add(
        "--max-runtime",
        type=number(float, 1.0),
        metavar="SECONDS",
        help="stop (exit 75) after this long, keeping what was printed "
        "(env HEROKU_AUDIT_MAX_RUNTIME; default 50 for poll, none for backfill and events)",
    )
    add(
        "--stop-grace",
        type=number(float, 0.1, MAX_STOP_GRACE),
        metavar="SECONDS",
        help="after SIGTERM, SIGINT or the deadline, how long a write to a reader that stopped "
        "reading (or a save to a disk that stopped) is given; then the whole lines already "
        "written are saved and the run ends (env HEROKU_AUDIT_STOP_GRACE; default "
        f"{STOP_GRACE_SECONDS:g}; at most {MAX_STOP_GRACE:g})",
    )


def filters(parser: argparse.ArgumentParser, hidden: bool = False, cursor: bool = True) -> None:
    title = "filters (sent to the API" + (
        "; a filtered poll has its own cursor)" if cursor else ")"
    )
    add = _group(parser, title, hidden)
    add("--type", dest="event_type", metavar="TYPE", help="e.g. app, collaborator")
    add("--action", metavar="ACTION", help="e.g. create, destroy")
    add("--actor", metavar="EMAIL", help="the acting user's email")


def output(parser: argparse.ArgumentParser, hidden: bool = False) -> None:
    add = _group(parser, "output", hidden)
    add(
        "--format",
        choices=["ecs", "heroku"],
        dest="output_format",
        help="ECS JSON lines, or the API's objects as sent (default ecs)",
    )
    add("--include-original", action="store_true", help="add event.original, the source JSON")


def scheduling(parser: argparse.ArgumentParser, hidden: bool = False) -> None:
    add = _group(parser, "scheduling", hidden)
    add(
        "--lookback-days",
        type=number(int, 0),
        metavar="N",
        help="days before today read again for late events (env HEROKU_AUDIT_LOOKBACK_DAYS; "
        "default 1)",
    )
    add(
        "--min-interval",
        type=number(float, 0.0),
        metavar="SECONDS",
        help="exit 0 at once if the last success started sooner than this; also the base of "
        "the failure backoff (env HEROKU_AUDIT_MIN_INTERVAL; default 60; 0 turns both off)",
    )
    add(
        "--metrics-file",
        metavar="PATH",
        help="write Prometheus text metrics here after every run, for node_exporter's "
        "textfile collector (env HEROKU_AUDIT_METRICS_FILE; default none)",
    )


def reading(parser: argparse.ArgumentParser, keeps_state: bool = True) -> None:
    """The groups of every command that reads the API."""
    account(parser, keeps_state)
    api(parser)
    filters(parser, cursor=keeps_state)


def day_range(
    parser: argparse.ArgumentParser, title: str, since: str, until: str, required: bool = False
) -> Any:
    """--since and --until (days as typed: YYYY-MM-DD, today, yesterday, Nd), with what each
    defaults to in this command, in a group of that title (returned, for the command's own)."""
    group = parser.add_argument_group(title)
    group.add_argument(
        "--since",
        required=required,
        type=day_argument,
        metavar="DAY",
        help=f"first day: YYYY-MM-DD, today, yesterday or Nd (N days ago, UTC{since})",
    )
    group.add_argument(
        "--until", type=day_argument, metavar="DAY", help=f"last day, inclusive (default {until})"
    )
    return group
