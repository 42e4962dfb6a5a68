"""`state show` and `state reset`: the cursor as JSON, or removed (under the run lock)."""

from __future__ import annotations

import sys

import orjson

from heroku_audit_trail.config import Settings
from heroku_audit_trail.cursor import Partition, State, StateStore
from heroku_audit_trail.errors import EX_OK, UsageError
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
