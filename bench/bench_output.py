"""Mapping + serialization cost per event, as a ratio to plain orjson on the same events.

The floor is `orjson.dumps(event)` of the raw Heroku event; ours is `render(event, "ecs", ...)`
(the ECS mapping plus orjson), and the dedupe + sort a day goes through. Best of N rounds,
measured in this run, so the ratio holds on any machine.
    python bench/bench_output.py [--events 100000] [--rounds 5] [--json]
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Callable
from datetime import date, datetime, timezone
from typing import Any

import orjson

from heroku_audit_trail.ecs import event_key, format_time, render, sort_key
from heroku_audit_trail.eventgen import generate_day


def best_of(rounds: int, work: Callable[[], object]) -> float:
    timings = []
    for _ in range(rounds):
        started = time.perf_counter()
        work()
        timings.append(time.perf_counter() - started)
    return min(timings)


def measure(count: int, rounds: int) -> dict[str, Any]:
    events = generate_day(1, date(2026, 11, 23), count, {"id": "e1", "name": "acme"})
    read_at = format_time(datetime.now(timezone.utc))
    floor = best_of(rounds, lambda: [orjson.dumps(event) + b"\n" for event in events])
    ecs = best_of(rounds, lambda: [render(event, "ecs", read_at, False) for event in events])
    raw = best_of(rounds, lambda: [render(event, "heroku", read_at, False) for event in events])
    # Each id once, in print order: what the day engine does besides rendering.
    dedupe = best_of(
        rounds, lambda: sorted({event_key(e): e for e in events}.values(), key=sort_key)
    )
    return {
        "events": count,
        "floor_orjson_events_per_s": round(count / floor),
        "ecs_events_per_s": round(count / ecs),
        "ecs_ratio_to_floor": round(ecs / floor, 2),
        "heroku_format_ratio_to_floor": round(raw / floor, 2),
        "dedupe_sort_events_per_s": round(count / dedupe),
        "dedupe_sort_ratio_to_floor": round(dedupe / floor, 2),
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=100_000)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    result = measure(args.events, args.rounds)
    if args.json:
        print(orjson.dumps(result).decode())
    else:
        for key, value in result.items():
            print(f"{key:32} {value}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
