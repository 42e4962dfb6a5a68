"""Peak RSS of `backfill --archives` over 12 months, as a ratio to the same over one month: the
backfill holds one month's archive at a time, so the ratio stays near 1 whatever the range.

Both run as subprocesses (stdout to /dev/null, a fresh state dir) against one simulator on
127.0.0.1 with `--events-per-day` events on every day of the last 13 months; the peak RSS is
each child's own (VmHWM), so the two measurements do not mix.
    python bench/bench_backfill.py [--events-per-day 300] [--json PATH]
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from datetime import date, datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import orjson

from heroku_audit_trail.simulator import DEMO_TOKEN, Simulator, SimulatorConfig

sys.path.insert(0, str(Path(__file__).parent))
from run import watch_peak_rss


def month_start(day: date, months_back: int) -> date:
    year, month = day.year, day.month - months_back
    while month < 1:
        year, month = year - 1, month + 12
    return date(year, month, 1)


def backfill(sim: Simulator, since: date, until: date) -> dict[str, Any]:
    with tempfile.TemporaryDirectory() as home, open(os.devnull, "wb") as sink:
        env = {
            "PATH": os.environ.get("PATH", ""),
            "HOME": home,
            "HEROKU_API_URL": sim.url,
            "HEROKU_API_KEY": DEMO_TOKEN,
            "HEROKU_ENTERPRISE": sim.config.enterprise_name,
            "HEROKU_AUDIT_STATE_DIR": str(Path(home) / "state"),
            "HEROKU_AUDIT_LOG_FORMAT": "json",
        }
        command = [sys.executable, "-m", "heroku_audit_trail", "backfill", "--archives"]
        command += ["--since", str(since), "--until", str(until)]
        started = time.perf_counter()
        with tempfile.TemporaryFile() as errors:
            process = subprocess.Popen(command, env=env, stdout=sink, stderr=errors)
            peak_kib = watch_peak_rss(process)
            elapsed = time.perf_counter() - started
            errors.seek(0)
            stderr = errors.read()
        status = process.returncode
    if status != 0:
        raise SystemExit(f"backfill failed ({status}): {stderr.decode()[-500:]}")
    summary = next(
        orjson.loads(line) for line in stderr.splitlines() if b'"backfill summary"' in line
    )
    return {
        "days": summary["days"],
        "events": summary["events_emitted"],
        "seconds": round(elapsed, 2),
        "peak_rss_mib": round(peak_kib / 1024, 1),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events-per-day", type=int, default=300)
    parser.add_argument(
        "--filler", type=int, default=1_000_000, help="events of the big archive (default 1M)"
    )
    parser.add_argument("--json", metavar="PATH", help="also write the results as JSON")
    args = parser.parse_args()
    today = datetime.now(timezone.utc).date()
    last = month_start(today, 0) - timedelta(days=1)  # the end of last month
    config = SimulatorConfig(
        seed=12,
        events_per_day=args.events_per_day,
        history_days=(today - month_start(today, 13)).days,
    )
    with Simulator(config) as sim:
        one = backfill(sim, month_start(today, 1), last)
        twelve = backfill(sim, month_start(today, 12), last)
    # One day out of an archive that inflates to hundreds of MB (`--filler` small events of
    # another day of its month): the archive is streamed, never held whole.
    wanted = today - timedelta(days=1)
    other = wanted - timedelta(days=1) if wanted.day > 1 else wanted + timedelta(days=1)
    small = SimulatorConfig(seed=13, events_per_day=args.events_per_day, history_days=3)
    with Simulator(small) as big:
        big.faults.archive_filler = (args.filler, str(other))
        heavy = backfill(big, wanted, wanted)
    results = {
        "one_month": one,
        "twelve_months": twelve,
        "rss_ratio": round(twelve["peak_rss_mib"] / one["peak_rss_mib"], 2),
        "big_archive": heavy | {"archive_events": args.filler + args.events_per_day * 3},
        "big_archive_rss_ratio": round(heavy["peak_rss_mib"] / one["peak_rss_mib"], 2),
    }
    print("| backfill --archives | days | events | seconds | peak RSS |")
    print("|---|---|---|---|---|")
    for name, row in (("1 month", one), ("12 months", twelve)):
        print(
            f"| {name} | {row['days']} | {row['events']} | {row['seconds']} | "
            f"{row['peak_rss_mib']} MiB |"
        )
    print(f"\npeak RSS, 12 months / 1 month: {results['rss_ratio']} (target: at most 2)")
    print(
        f"peak RSS, one day of an archive of {results['big_archive']['archive_events']:,} "
        f"events / 1 month: {results['big_archive_rss_ratio']} "
        f"({heavy['peak_rss_mib']} MiB; target: at most 300 MB)"
    )
    if args.json:
        Path(args.json).write_bytes(orjson.dumps(results, option=orjson.OPT_INDENT_2))


if __name__ == "__main__":
    main()
