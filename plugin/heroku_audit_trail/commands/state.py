"""`state list`, `state show` and `state reset`: what the state dir holds, one cursor as JSON,
or a cursor removed (under the run lock)."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import orjson

from heroku_audit_trail.commands import options
from heroku_audit_trail.commands.settings import build_settings, state_dir_of
from heroku_audit_trail.config import Settings
from heroku_audit_trail.ecs import format_time
from heroku_audit_trail.errors import (
    EX_OK,
    AuditTrailError,
    ConfigError,
    MalformedDataError,
    UsageError,
)
from heroku_audit_trail.logs import Log, printable
from heroku_audit_trail.output import StopGuard
from heroku_audit_trail.runs import PREFIX as RUNS_PREFIX
from heroku_audit_trail.runs import load as load_runs
from heroku_audit_trail.runs import record_path
from heroku_audit_trail.state import Partition, StateStore, parse_state
from heroku_audit_trail.statedir import read_private, regular_files, remove_file


def run_state(settings: Settings, action: str, confirmed: bool, as_json: bool, log: Log) -> int:
    stores = [
        StateStore(settings.state_dir, Partition(enterprise, settings.filters))
        for enterprise in settings.enterprises
    ]
    if action == "show":
        return show(stores, as_json, settings.min_interval)
    if not confirmed:
        raise UsageError(
            "state reset removes the cursor, so the next poll re-reads the lookback window "
            "(events may be printed again): add --yes to confirm"
        )
    for store in stores:
        if not store.state_dir.is_dir():
            log.info("no state to reset", enterprise=store.partition.enterprise)
            continue
        with store.lock():
            removed = store.remove()
            remove_file(record_path(store.state_dir, store.partition))  # and its runs
        log.info(
            "state reset" if removed else "no state to reset",
            enterprise=store.partition.enterprise,
            path=str(store.path),
        )
    return EX_OK


def show(stores: list[StateStore], as_json: bool, min_interval: float) -> int:
    """A readable summary of each partition's cursor (ids counted, not listed), or with
    --json the state document itself. A partition never polled here is exit 78."""
    for store in stores:
        state = store.load()
        if state is None:
            filters = ",".join(f"{k}={v}" for k, v in store.partition.filters)
            raise ConfigError(
                f"no state for {store.partition.enterprise}{f' [{filters}]' if filters else ''} "
                f"in {store.state_dir}: it has not been polled with this state dir and these "
                "filters ('heroku-audit-trail state list' shows what there is)"
            )
        if as_json:
            sys.stdout.buffer.write(orjson.dumps(state.to_json(), option=orjson.OPT_APPEND_NEWLINE))
            continue
        row = describe(store.path, store.state_dir)
        account = (
            f"{state.account.name} ({state.account.id})" if state.account else "not looked up yet"
        )
        backoff = "none"
        if state.backoff is not None:
            backoff = (
                f"backing off after {state.backoff.failures} failed run(s) in a row, until "
                f"{format_time(state.backoff.wait_until(min_interval))} at --min-interval "
                f"{min_interval:g}"
            )
        lines = [
            f"{row['enterprise']}" + (f" {row['filters']}" if row["filters"] else ""),
            f"  account:        {account}",
            f"  closed through: {row['closed_through'] or 'none yet'}",
            f"  last run:       {row['last_run'] or 'none yet'}"
            + (f" (exit {row['last_exit_code']})" if row["last_run"] else ""),
            f"  last success:   {row['last_success'] or 'none yet'}",
            f"  backoff:        {backoff}",
            f"  file:           {store.path}",
        ]
        for day, kept in sorted(state.open_days.items()):
            more = f", pass under way at {kept.next_range}" if kept.next_range else ""
            etag = ", ETag kept" if kept.etag else ""
            lines.append(f"  open {day}:  {len(kept.seen)} ids printed{etag}{more}")
        # Names and filters come from the server or the state: written out, never obeyed.
        sys.stdout.write("\n".join(printable(line) for line in lines) + "\n")
    sys.stdout.flush()
    return EX_OK


def describe(path: Path, state_dir: Path) -> dict[str, Any]:
    """One state file as a summary: a poll partition or a backfill in progress."""
    try:
        raw = read_private(path, state_dir)
        if raw is None:
            raise MalformedDataError("it disappeared")
        if path.name.startswith("backfill-"):
            doc = orjson.loads(raw)
            plan, resolved = doc["plan"], doc["range"]
            texts = [plan["enterprise"], plan["source"], resolved["since"], resolved["until"]]
            filters = plan["filters"]
            if not all(isinstance(text, str) for text in texts) or not (
                isinstance(filters, dict) and all(isinstance(v, str) for v in filters.values())
            ):
                raise MalformedDataError("not a backfill record of this program")
            return {
                "kind": "backfill",
                "enterprise": plan["enterprise"],
                "filters": filters,
                "range": f"{resolved['since']}..{resolved['until']}",  # as resolved, not typed
                "source": plan["source"],
                "completed_through": doc.get("completed_through"),
                "path": str(path),
            }
        state = parse_state(path, raw)
    except (AuditTrailError, OSError, orjson.JSONDecodeError, KeyError, TypeError) as error:
        return {"kind": "unreadable", "path": str(path), "error": str(error)}
    filters = dict(state.partition.filters)
    try:
        record = load_runs(path.with_name(RUNS_PREFIX + path.name), state_dir)
    except AuditTrailError:
        record = None
    # An older version's state, no run record yet: its last attempt, else its last success.
    last = state.last_attempt or (state.last_run.to_json() if state.last_run else None)
    last = None if record is not None else last
    success = format_time(state.last_success) if state.last_success else None
    return {
        "kind": "poll",
        "enterprise": state.partition.enterprise,
        "filters": filters,
        "closed_through": state.closed_through.isoformat() if state.closed_through else None,
        "open_days": len(state.open_days),
        "last_run": format_time(record.last.started) if record else (last or {}).get("started_at"),
        "last_exit_code": record.last.exit_code if record else (last or {}).get("exit_code", 0),
        "last_success": format_time(record.last_success)
        if record and record.last_success
        else success,
        "backoff": state.backoff.to_json() if state.backoff else None,
        "path": str(path),
    }


def run_state_list(state_dir: Path, as_json: bool, log: Log) -> int:
    """`state list`: every poll partition and backfill in progress in the state dir."""
    paths = regular_files(state_dir, "*.json")
    rows = [
        describe(path, state_dir)
        for path in paths
        if not path.name.startswith((".", RUNS_PREFIX))  # a run record goes with its state
    ]
    if as_json:
        sys.stdout.buffer.write(orjson.dumps(rows, option=orjson.OPT_APPEND_NEWLINE))
        sys.stdout.flush()
        return EX_OK
    if not rows:
        log.info(f"no state in {state_dir}: nothing has been polled or backfilled here yet")
        return EX_OK
    lines = []
    for row in rows:
        filters = ",".join(f"{key}={value}" for key, value in row.get("filters", {}).items())
        who = str(row.get("enterprise") or "?") + (f" [{filters}]" if filters else "")
        if row["kind"] == "poll":
            backoff = row["backoff"]
            waiting = f", backing off after {backoff['failures']} failure(s)" if backoff else ""
            last_run = f"last run {row['last_run']} (exit {row['last_exit_code']}), "
            lines.append(
                f"poll      {who}: closed through {row['closed_through']}, "
                f"{row['open_days']} open day(s), {last_run if row['last_run'] else ''}"
                f"last success {row['last_success']}{waiting}"
            )
        elif row["kind"] == "backfill":
            lines.append(
                f"backfill  {who}: {row['range']} by {row['source']}, "
                f"done through {row['completed_through']} (in progress)"
            )
        else:
            lines.append(f"unreadable {row['path']}: {row['error']}")
    sys.stdout.write("\n".join(printable(line) for line in lines) + "\n")
    sys.stdout.flush()
    return EX_OK


DESCRIPTION = "What the state directory holds: list every cursor, show one, or reset one."
EPILOG = """\
examples:
  heroku-audit-trail state list
  heroku-audit-trail state show --json
"""


def _unused(parser: argparse.ArgumentParser) -> None:
    """Flags of other commands, accepted and not shown: one set of flags for every command."""
    options.api(parser, hidden=True)
    options.output(parser, hidden=True)
    options.scheduling(parser, hidden=True)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    actions = parser.add_subparsers(dest="state_command", metavar="ACTION", required=True)
    listing = actions.add_parser("list", help="every poll cursor and backfill in progress")
    options.account(listing)
    options.filters(listing, hidden=True)
    _unused(listing)
    listing.add_argument("--json", action="store_true", help="one JSON array on stdout")
    show = actions.add_parser("show", help="a partition's cursor: a summary, or --json")
    options.account(show)
    options.filters(show)
    _unused(show)
    show.add_argument("--json", action="store_true", help="the state document as JSON")
    reset = actions.add_parser("reset", help="remove a partition's cursor")
    options.account(reset)
    options.filters(reset)
    _unused(reset)
    reset.add_argument("-y", "--yes", action="store_true", help="confirm the reset")


def run(args: argparse.Namespace, env: Mapping[str, str], guard: StopGuard, log: Log) -> int:
    if args.state_command == "list":  # every partition in the dir: no --enterprise needed
        return run_state_list(state_dir_of(args, env), args.json, log)
    return run_state(
        build_settings(args, env, log),
        args.state_command,
        confirmed=getattr(args, "yes", False),
        as_json=getattr(args, "json", False),
        log=log,
    )
