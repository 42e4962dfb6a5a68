"""`heroku-audit-trail` with the ECS mapping replaced by a constant line of the average size,
everything else as shipped (sort keys, dedupe, spool, printing, state): what the rest of a poll
costs, the lowest a faster mapping could bring it to. A diagnostic of bench/run.py; not shipped.

    python bench/stub_mapping.py poll [options]
"""

from __future__ import annotations

import sys
from datetime import datetime, timezone
from typing import Any

from heroku_audit_trail.cli import run
from heroku_audit_trail.days import engine
from heroku_audit_trail.ecs import Rendered, parse_time

LINE = b'{"message":"' + b"x" * 1190 + b'"}\n'  # the generator's events average 1,204 bytes
LATEST = datetime.max.replace(tzinfo=timezone.utc)


def constant_line(
    event: dict[str, Any],
    output_format: str,
    read_at: str,
    include_original: bool = False,
    key: str | None = None,
) -> Rendered:
    """What render() returns, without the mapping: the event's real sort key, a fixed line."""
    return Rendered(LINE, (parse_time(event.get("created_at")) or LATEST, key or ""))


def install() -> None:
    """The day engine renders through `ecs.render` as imported into it: replaced there."""
    engine.render = constant_line  # type: ignore[assignment]


if __name__ == "__main__":
    install()
    sys.argv[0] = "heroku-audit-trail"
    run()
