"""`check`: walk the guide's troubleshooting steps against the live API and say what is wrong."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass
from datetime import datetime, timezone
from typing import Any

import orjson

from heroku_audit_trail.commands import options
from heroku_audit_trail.commands.settings import command_settings, make_client
from heroku_audit_trail.config import Settings
from heroku_audit_trail.ecs import format_time
from heroku_audit_trail.errors import EX_OK, EX_TEMPFAIL, AuditTrailError, LockHeldError
from heroku_audit_trail.heroku.api import HerokuClient
from heroku_audit_trail.logs import Log, printable
from heroku_audit_trail.output import StopGuard
from heroku_audit_trail.state import Partition, StateStore
from heroku_audit_trail.statedir import remove_file, write_atomic


@dataclass
class Step:
    name: str
    status: str  # ok | warn | fail
    detail: str


def state_steps(settings: Settings, enterprise: str) -> tuple[int, list[Step]]:
    """Can poll keep its cursor? The state dir is created if need be, a file written and
    removed in it, the partition's lock taken, and its state file (if any) read; and is poll
    backing off after failed runs (so a fixed setting is not tried until the backoff ends)?"""
    store = StateStore(settings.state_dir, Partition(enterprise, settings.filters))
    probe = settings.state_dir / ".check-probe"
    try:
        store.ensure_dir()
        write_atomic(probe, b"probe\n")
        remove_file(probe)
        with store.lock():
            state = store.load()
    except LockHeldError:
        return EX_OK, [Step("state", "warn", f"a poll holds the lock in {settings.state_dir} now")]
    except AuditTrailError as error:
        return error.exit_code, [Step("state", "fail", str(error))]
    steps = [Step("state", "ok", f"state directory {settings.state_dir} is writable")]
    backoff = state.backoff if state is not None else None
    now = datetime.now(timezone.utc)
    if backoff is not None and now < backoff.wait_until(settings.min_interval):
        until = format_time(backoff.wait_until(settings.min_interval))
        steps.append(
            Step(
                "backoff",
                "warn",
                f"poll is backing off after {backoff.failures} failed run(s) in a row: the "
                f"runs until {until} skip the API; to try now, run 'heroku-audit-trail poll "
                "--min-interval 0' (a success ends the backoff)",
            )
        )
    return EX_OK, steps


def diagnose(
    settings: Settings, client: HerokuClient, enterprise: str
) -> tuple[int, list[Step], dict[str, Any]]:
    """The steps for one enterprise account, and the exit code that poll would have."""
    steps: list[Step] = []
    facts: dict[str, Any] = {"enterprise": enterprise, "state_dir": str(settings.state_dir)}
    state_code, state_checks = state_steps(settings, enterprise)
    steps += state_checks
    if state_code:
        return state_code, steps, facts
    try:
        account = client.enterprise_account(enterprise)
    except AuditTrailError as error:
        steps.append(Step("enterprise_account", "fail", str(error)))
        return error.exit_code, steps, facts
    facts["account"] = {"id": account["id"], "name": account.get("name")}
    steps.append(
        Step("enterprise_account", "ok", f"found {account.get('name')!s} ({account['id']})")
    )
    permissions = account.get("permissions")
    if isinstance(permissions, list):
        facts["permissions"] = permissions
        if "manage" in permissions:
            steps.append(Step("permission", "ok", "the token's user has the manage permission"))
        else:
            steps.append(
                Step(
                    "permission",
                    "warn",
                    "the token's user lacks the manage permission, which the audit trail "
                    f"needs (has: {', '.join(map(str, permissions)) or 'none'})",
                )
            )
    today = datetime.now(timezone.utc).date()
    try:
        fetch = client.fetch_day(account["id"], today, settings.filters)
    except AuditTrailError as error:
        steps.append(Step("events", "fail", str(error)))
        return error.exit_code, steps, facts
    facts["events_today"] = len(fetch.events)
    if fetch.events:
        steps.append(Step("events", "ok", f"{len(fetch.events)} events so far today ({today})"))
    else:
        steps.append(
            Step(
                "events",
                "ok",
                f"No Events: none yet today ({today}); normal for a quiet account, "
                "the audit trail lists changes, not requests",
            )
        )
    remaining = client.rate_limit_remaining
    facts["rate_limit_remaining"] = remaining
    if remaining is not None and remaining < settings.rate_limit_floor:
        steps.append(
            Step(
                "rate_limit",
                "fail",
                f"Rate Limiting: RateLimit-Remaining is {remaining}, under the floor of "
                f"{settings.rate_limit_floor}; poll would stop at once (exit 75) until the "
                "account's quota refills (75 requests a minute)",
            )
        )
        return EX_TEMPFAIL, steps, facts
    steps.append(Step("rate_limit", "ok", f"RateLimit-Remaining {remaining}"))
    return EX_OK, steps, facts


def record_of(code: int, steps: list[Step], facts: dict[str, Any]) -> dict[str, Any]:
    record = {"ok": code == EX_OK, "exit_code": code, **facts}
    record["steps"] = [asdict(step) for step in steps]
    return record


def report(enterprise: str, code: int, steps: list[Step], log: Log) -> None:
    """The steps for a person, on stdout; the failure on stderr too, where shippers look,
    unless both are the same terminal (a person would read it twice)."""
    lines = [f"{enterprise}: {'OK, polling will work' if code == EX_OK else 'FAILED'}"]
    lines += [f"  [{step.status:4}] {step.name}: {step.detail}" for step in steps]
    # A name the server sent may hold terminal escapes: written out, never obeyed.
    sys.stdout.write("\n".join(printable(line) for line in lines) + "\n")
    sys.stdout.flush()
    same_terminal = sys.stdout.isatty() and sys.stderr.isatty()
    log_failure(enterprise, code, steps, log, same_terminal)


def log_failure(
    enterprise: str, code: int, steps: list[Step], log: Log, same_terminal: bool
) -> None:
    failed = [step for step in steps if step.status == "fail"]
    if failed and not same_terminal:
        log.error(failed[0].detail, enterprise=enterprise, check=failed[0].name, exit_code=code)


def run_check(
    settings: Settings, make_client: Callable[[], HerokuClient], as_json: bool, log: Log
) -> int:
    """Diagnose each enterprise account; the token's absence is a failed step, too. With
    --json, one document: the account's record, or for several {ok, exit_code, accounts}."""
    results: list[tuple[str, int, list[Step], dict[str, Any]]] = []
    try:
        client = make_client()
    except AuditTrailError as error:
        for enterprise in settings.enterprises:
            step = Step("token", "fail", str(error))
            results.append((enterprise, error.exit_code, [step], {"enterprise": enterprise}))
    else:
        for enterprise in settings.enterprises:
            code, steps, facts = diagnose(settings, client, enterprise)
            steps.insert(0, Step("token", "ok", f"read from {client.token_source}"))
            results.append((enterprise, code, steps, facts))
    first_failure = next((code for _, code, _, _ in results if code), EX_OK)
    if not as_json:
        for enterprise, code, steps, _ in results:
            report(enterprise, code, steps, log)
        return first_failure
    records = [record_of(code, steps, facts) for _, code, steps, facts in results]
    document: dict[str, Any] = records[0]
    if len(records) > 1:
        document = {"ok": first_failure == EX_OK, "exit_code": first_failure, "accounts": records}
    sys.stdout.buffer.write(orjson.dumps(document, option=orjson.OPT_APPEND_NEWLINE))
    sys.stdout.flush()
    for enterprise, code, steps, _ in results:
        log_failure(enterprise, code, steps, log, same_terminal=False)
    return first_failure


DESCRIPTION = (
    "Walk the troubleshooting steps: state directory, token, enterprise account, "
    "permission, today's events, rate limit. Exit 0 only when poll would work."
)
EPILOG = """\
examples:
  heroku-audit-trail check
  heroku-audit-trail check --json | jq .steps
"""


def add_arguments(parser: argparse.ArgumentParser) -> None:
    options.reading(parser)
    options.output(parser, hidden=True)
    options.scheduling(parser, hidden=True)
    parser.add_argument("--json", action="store_true", help="one JSON object per account on stdout")


def run(args: argparse.Namespace, env: Mapping[str, str], guard: StopGuard, log: Log) -> int:
    settings = command_settings(args, env, log, guard)
    return run_check(settings, lambda: make_client(settings, env, log), args.json, log)
