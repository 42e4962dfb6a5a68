"""One poll of a full 100k-event day (yesterday, plus today so far) end to end, as a ratio
to the floor of fetching the same pages with plain requests + orjson. Both run against the
simulator on 127.0.0.1 in this run.

Floor: a requests.Session following Next-Range with max=1000, orjson.loads each page and
orjson.dumps each event to /dev/null. Ours: `python -m heroku_audit_trail poll` as a
subprocess (stdout to /dev/null, a fresh state dir), so interpreter start, cursor writes and
fsyncs are included. Also reported: the child's peak RSS and the state file's size.
    python bench/bench_poll.py [--events 100000] [--json]
"""

from __future__ import annotations

import argparse
import os
import resource
import subprocess
import sys
import tempfile
import time
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import orjson
import requests

from heroku_audit_trail.simulator import DEMO_TOKEN, Simulator, SimulatorConfig

HEADERS = {"Accept": "application/vnd.heroku+json; version=3"}


def floor_fetch(sim: Simulator) -> tuple[float, int]:
    session = requests.Session()
    headers = {**HEADERS, "Authorization": f"Bearer {DEMO_TOKEN}"}
    url = f"{sim.url}/enterprise-accounts/{sim.config.enterprise_id}/events"
    today = datetime.now(timezone.utc).date()
    started = time.perf_counter()
    count = 0
    with open(os.devnull, "wb") as sink:
        for day in (today - timedelta(days=1), today):
            range_header: str | None = None
            while True:
                extra = {"Range": range_header} if range_header else {}
                params = {"day": day.isoformat()}
                response = session.get(url, params=params, headers={**headers, **extra})
                for event in orjson.loads(response.content):
                    sink.write(orjson.dumps(event) + b"\n")
                    count += 1
                next_range = response.headers.get("Next-Range")
                if not next_range:
                    break
                range_header = next_range.replace("max=200", "max=1000")
    return time.perf_counter() - started, count


def ours(sim: Simulator) -> tuple[float, int, int]:
    with tempfile.TemporaryDirectory() as state_dir:
        env = {
            **os.environ,
            "HEROKU_API_URL": sim.url,
            "HEROKU_API_KEY": DEMO_TOKEN,
            "HEROKU_ENTERPRISE": sim.config.enterprise_name,
            "HEROKU_AUDIT_STATE_DIR": state_dir,
            "HEROKU_AUDIT_MIN_INTERVAL": "0",
            "HEROKU_AUDIT_LOG_FORMAT": "json",
        }
        command = [sys.executable, "-m", "heroku_audit_trail", "poll", "--lookback-days", "1"]
        started = time.perf_counter()
        with open(os.devnull, "wb") as sink:
            subprocess.run(command, env=env, stdout=sink, stderr=subprocess.DEVNULL, check=True)
        elapsed = time.perf_counter() - started
        state_bytes = sum(path.stat().st_size for path in Path(state_dir).glob("*.json"))
    peak_kib = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    return elapsed, state_bytes, peak_kib


def measure(count: int) -> dict[str, Any]:
    config = SimulatorConfig(seed=1, events_per_day=count, history_days=1)
    with Simulator(config) as sim:
        sim.all_events()  # generate before timing
        floor_s, fetched = floor_fetch(sim)
        ours_s, state_bytes, peak_kib = ours(sim)
    return {
        "events": fetched,
        "floor_s": round(floor_s, 2),
        "ours_s": round(ours_s, 2),
        "ratio_to_floor": round(ours_s / floor_s, 2),
        "ours_events_per_s": round(fetched / ours_s),
        "peak_rss_mib": round(peak_kib / 1024),
        "state_file_kib": round(state_bytes / 1024),
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=100_000)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    result = measure(args.events)
    if args.json:
        print(orjson.dumps(result).decode())
    else:
        for key, value in result.items():
            print(f"{key:20} {value}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
