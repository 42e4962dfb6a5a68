"""`state list`, `state show` and `state reset`: what the state dir holds, one cursor as JSON,
or a cursor removed (under the run lock)."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import orjson

from heroku_audit_trail.config import Settings
from heroku_audit_trail.cursor import Partition, State, StateStore, parse_state, read_private
from heroku_audit_trail.errors import EX_OK, AuditTrailError, MalformedDataError, UsageError
from heroku_audit_trail.logs import log


def run_state(settings: Settings, action: str, confirmed: bool) -> int:
    stores = [
        StateStore(settings.state_dir, Partition(enterprise, settings.filters))
        for enterprise in settings.enterprises
    ]
    if action == "show":
        # The state file's own document; an empty cursor when there is none yet.
        for store in stores:
            state = store.load() or State(partition=store.partition.as_dict())
            log.info("state file", enterprise=store.partition.enterprise, path=str(store.path))
            sys.stdout.buffer.write(orjson.dumps(state.to_json(), option=orjson.OPT_APPEND_NEWLINE))
        sys.stdout.flush()
        return EX_OK
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
        log.info(
            "state reset" if removed else "no state to reset",
            enterprise=store.partition.enterprise,
            path=str(store.path),
        )
    return EX_OK


def describe(path: Path, state_dir: Path) -> dict[str, Any]:
    """One state file as a summary: a poll partition or a backfill in progress."""
    try:
        raw = read_private(path, state_dir)
        if raw is None:
            raise MalformedDataError("it disappeared")
        if path.name.startswith("backfill-"):
            plan = orjson.loads(raw)["plan"]
            return {
                "kind": "backfill",
                "enterprise": plan["enterprise"],
                "filters": plan["filters"],
                "range": f"{plan['since']}..{plan['until']}",
                "source": plan["source"],
                "completed_through": orjson.loads(raw)["completed_through"],
                "path": str(path),
            }
        state = parse_state(path, raw)
    except (AuditTrailError, orjson.JSONDecodeError, KeyError, TypeError) as error:
        return {"kind": "unreadable", "path": str(path), "error": str(error)}
    filters = {key: value for key, value in state.partition.items() if key != "enterprise"}
    return {
        "kind": "poll",
        "enterprise": state.partition.get("enterprise"),
        "filters": filters,
        "closed_through": state.closed_through.isoformat() if state.closed_through else None,
        "open_days": len(state.open_days),
        "last_success": (state.last_run or {}).get("started_at"),
        "backoff": state.backoff.to_json() if state.backoff else None,
        "path": str(path),
    }


def run_state_list(state_dir: Path, as_json: bool) -> int:
    """`state list`: every poll partition and backfill in progress in the state dir."""
    paths = sorted(state_dir.glob("*.json")) if state_dir.is_dir() else []
    rows = [describe(path, state_dir) for path in paths]
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
        who = row.get("enterprise", "?") + (f" [{filters}]" if filters else "")
        if row["kind"] == "poll":
            backoff = row["backoff"]
            waiting = f", backing off after {backoff['failures']} failure(s)" if backoff else ""
            lines.append(
                f"poll      {who}: closed through {row['closed_through']}, "
                f"{row['open_days']} open day(s), last success {row['last_success']}{waiting}"
            )
        elif row["kind"] == "backfill":
            lines.append(
                f"backfill  {who}: {row['range']} by {row['source']}, "
                f"done through {row['completed_through']} (in progress)"
            )
        else:
            lines.append(f"unreadable {row['path']}: {row['error']}")
    sys.stdout.write("\n".join(lines) + "\n")
    sys.stdout.flush()
    return EX_OK
