"""bench/run.py --quick runs and writes its JSON (no timing is asserted: ratios vary by host)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import orjson
import pytest

pytestmark = pytest.mark.e2e  # runs the real command (or a build) as a subprocess

BENCH = Path(__file__).parent.parent / "bench" / "run.py"


@pytest.mark.slow
def test_quick_bench_runs_and_writes_json(pyz: Path, tmp_path: Path) -> None:
    target = tmp_path / "bench.json"
    done = subprocess.run(
        [sys.executable, str(BENCH), "--quick", "--json", str(target), "--zipapp", str(pyz)],
        capture_output=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stderr.decode()[-2000:]
    assert b"ECS mapping vs orjson loads+dumps" in done.stdout
    results = orjson.loads(target.read_bytes())
    assert results["quick"] is True
    assert results["mapping"]["ratio"] > 0
    assert set(results["days"]) == {"1000", "5000"}
    assert all(
        day["events"] >= 1000 and day["peak_rss_mib"] > 0 for day in results["days"].values()
    )
    assert results["nothing_new"]["requests_per_steady_poll"] >= 1
    assert results["mapping"]["lines_dropped"]["ratio"] > 0
    assert all(day["cpu_ratio"] > 0 for day in results["days"].values())
    assert results["days"]["5000"]["mapping_stubbed_ratio"] > 0  # the largest day only
    assert "mapping_stubbed_ratio" not in results["days"]["1000"]
    assert results["days"]["5000"]["backfill_peak_rss_mib"] > 0  # the other commands' day
    network = results["network"]  # at 0.2 s a request
    assert network["ten"]["steady_ratio"] > 0 and network["backfill"]["ratio"] > 0


def test_the_stubbed_mapping_replaces_what_the_day_engine_renders_with(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """bench/stub_mapping.py must stub the mapping the day engine really calls (it once
    patched a module that no longer rendered, and its row measured the real mapping)."""
    import importlib.util

    from heroku_audit_trail.days import engine

    path = Path(__file__).parent.parent / "bench" / "stub_mapping.py"
    spec = importlib.util.spec_from_file_location("stub_mapping", path)
    assert spec is not None and spec.loader is not None
    stub = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(stub)
    monkeypatch.setattr(engine, "render", engine.render)  # restored after the test
    stub.install()
    event = {"id": "a", "created_at": "2026-12-01T00:00:00Z"}
    options = engine.RenderOptions("ecs", False, "2026-12-01T00:00:00Z")
    assert engine._render(event, "a", options).line == stub.LINE
