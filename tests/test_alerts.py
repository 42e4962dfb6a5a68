"""examples/prometheus-rules.yml, tested with `promtool test rules` over the samples of a
metrics file the real command wrote after good, failed, skipped and never-successful runs
(issue O3). promtool comes with Debian's `prometheus` package (.ci/run installs it)."""

from __future__ import annotations

import re
import shutil
import subprocess
import time
from pathlib import Path
from typing import Any

import pytest
import yaml
from prometheus_client.parser import text_string_to_metric_families

from heroku_audit_trail.simulator import Simulator

from .conftest import Cli

pytestmark = pytest.mark.e2e

RULES = Path(__file__).parent.parent / "examples" / "prometheus-rules.yml"
START = 1200  # seconds into the test's clock at which the command's runs are placed
MINUTE = 60


Samples = list[tuple[str, dict[str, str], float]]


def written_samples(cli: Cli, sim: Simulator, metrics: Path) -> Samples:
    """Runs of three partitions, then the samples of the file the last run wrote:
    acme polls fine; acme [type=app] succeeded once, then failed three times (a revoked
    token), with a low quota; "nope" never succeeded (no such account), and was skipped."""
    env = {"HEROKU_AUDIT_METRICS_FILE": str(metrics)}
    assert cli.run("poll", "--type", "app", env=env).code == 0
    sim.faults.rate_limit_remaining = 800
    revoked = {**env, "HEROKU_API_KEY": "HRKU-revoked-0000000000000000000000000000"}
    for _ in range(3):
        assert cli.run("poll", "--type", "app", env=revoked).code == 77
    sim.faults.rate_limit_remaining = None
    for _ in range(2):
        assert cli.run("poll", "--enterprise", "nope", env=env).code == 78
    skipped = {**env, "HEROKU_AUDIT_MIN_INTERVAL": "60"}
    assert cli.run("poll", "--enterprise", "nope", env=skipped).code == 0  # backing off
    assert cli.run("poll", env=env).code == 0
    return [
        (sample.name, dict(sample.labels), sample.value)
        for family in text_string_to_metric_families(metrics.read_text())
        for sample in family.samples
    ]


def as_series(samples: Samples, now: float, minutes: int) -> list[dict[str, str]]:
    """promtool input series, constant over `minutes`; a time is moved onto the test's clock,
    where the runs happened at START seconds."""
    series = []
    for name, labels, value in samples:
        if name.endswith("_timestamp_seconds"):
            value = value - now + START
        selector = ",".join(f'{key}="{label}"' for key, label in sorted(labels.items()))
        series.append({"series": f"{name}{{{selector}}}", "values": f"{value:.3f}+0x{minutes}"})
    return series


def rules() -> dict[str, dict[str, Any]]:
    groups = yaml.safe_load(RULES.read_text())["groups"]
    return {rule["alert"]: rule for group in groups for rule in group["rules"]}


def expected(alert: str, labels: dict[str, str], value: float) -> dict[str, Any]:
    """What promtool should see fire: the rule's labels and its annotations rendered."""
    rule = rules()[alert]

    def render(text: str) -> str:
        text = text.replace("{{ $labels.enterprise }}", labels["enterprise"])
        return text.replace("{{ $value }}", f"{value:g}")

    return {
        "exp_labels": {**labels, **rule["labels"]},
        "exp_annotations": {key: render(text) for key, text in rule["annotations"].items()},
    }


def test_the_alerts_fire_as_an_on_call_engineer_needs(
    cli: Cli, sim: Simulator, tmp_path: Path
) -> None:
    promtool = shutil.which("promtool")
    if promtool is None:
        pytest.skip("promtool is missing: apt-get install prometheus")
    samples = written_samples(cli, sim, tmp_path / "heroku_audit_trail.prom")
    now = time.time()
    acme = {"enterprise": "acme"}
    app = {"enterprise": "acme", "filters": "type=app"}
    nope = {"enterprise": "nope"}

    def alerts(at_minutes: int, firing: dict[str, list[tuple[dict[str, str], float]]]) -> list:
        return [
            {
                "eval_time": f"{at_minutes}m",
                "alertname": name,
                "exp_alerts": [
                    expected(name, labels, value) for labels, value in firing.get(name, [])
                ],
            }
            for name in rules()
        ]

    soon = START // MINUTE + 1  # just after the runs
    later = START // MINUTE + 45  # three quarters of an hour of silence
    # The samples exist from the test's start: the conditions have held long enough at once.
    # "nope" never succeeded; its failures in a row (2, the skip counts none) are under 3.
    test = {
        "rule_files": [str(RULES)],
        "evaluation_interval": "1m",
        "tests": [
            {
                "interval": "1m",
                "input_series": as_series(samples, now, later + 5),
                "alert_rule_test": [
                    *alerts(
                        soon,
                        {
                            "HerokuAuditTrailNeverSucceeded": [(nope, 0.0)],
                            "HerokuAuditTrailFailing": [(app, 3.0)],
                            "HerokuAuditTrailRateLimitLow": [(app, 800.0)],
                        },
                    ),
                    *alerts(
                        later,
                        {
                            "HerokuAuditTrailNeverSucceeded": [(nope, 0.0)],
                            "HerokuAuditTrailFailing": [(app, 3.0)],
                            "HerokuAuditTrailRateLimitLow": [(app, 800.0)],
                            "HerokuAuditTrailStalled": [(acme, 0.0), (app, 0.0)],
                            "HerokuAuditTrailNotRunning": [(acme, 0.0), (app, 0.0), (nope, 0.0)],
                        },
                    ),
                ],
            }
        ],
    }
    path = tmp_path / "alerts-test.yml"
    path.write_text(yaml.safe_dump(test, sort_keys=False))
    done = subprocess.run([promtool, "test", "rules", str(path)], capture_output=True, text=True)
    assert done.returncode == 0, done.stdout + done.stderr
    assert re.search(r"SUCCESS", done.stdout + done.stderr)
