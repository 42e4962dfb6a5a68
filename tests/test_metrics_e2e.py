"""--metrics-file, read back with prometheus_client's own parser of the text format."""

from __future__ import annotations

import socket
from pathlib import Path

import pytest
from prometheus_client.parser import text_string_to_metric_families

from heroku_audit_trail.simulator import Simulator
from heroku_audit_trail.state import Partition, StateStore

from .conftest import Cli, utc_today

pytestmark = pytest.mark.e2e  # runs the real command (or a build) as a subprocess

PREFIX = "heroku_audit_trail_"


def samples(path: Path) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    found = {}
    families = list(text_string_to_metric_families(path.read_text()))
    for family in families:  # a counter's samples end in _total; the rest are gauges
        assert family.documentation
        if family.samples:
            total = all(sample.name.endswith("_total") for sample in family.samples)
            assert family.type == ("counter" if total else "gauge")
    for family in families:
        for sample in family.samples:
            found[(sample.name.removeprefix(PREFIX), tuple(sorted(sample.labels.items())))] = (
                sample.value
            )
    return found


def test_metrics_after_a_good_a_failed_and_a_skipped_run(
    cli: Cli, sim: Simulator, tmp_path: Path
) -> None:
    metrics = tmp_path / "textfile" / "heroku_audit_trail.prom"
    metrics.parent.mkdir()
    env = {"HEROKU_AUDIT_METRICS_FILE": str(metrics)}
    acme = (("enterprise", "acme"),)
    apps = (("enterprise", "acme"), ("filters", "type=app"))

    good = cli.run("poll", env=env)
    assert good.code == 0
    assert cli.run("poll", "--type", "app", env=env).code == 0
    after_good = samples(metrics)
    assert after_good[("last_exit_code", acme)] == 0
    assert after_good[("events_emitted", acme)] == len(good.ids)
    assert after_good[("requests", acme)] >= 2
    assert after_good[("consecutive_failures", acme)] == 0
    assert after_good[("last_success_timestamp_seconds", acme)] > 0
    assert after_good[("closed_through_timestamp_seconds", acme)] > 0
    assert ("last_exit_code", apps) in after_good  # every partition of the state dir

    sim.faults.error_rate = 1.0
    failed = cli.run("poll", "--max-runtime", "2", env=env)
    assert failed.code == 69
    after_failure = samples(metrics)
    assert after_failure[("last_exit_code", acme)] == 69
    assert after_failure[("consecutive_failures", acme)] == 1
    success = ("last_success_timestamp_seconds", acme)
    assert after_failure[success] == after_good[success]
    assert after_failure[("last_exit_code", apps)] == 0  # the other partition keeps its own

    backing_off = {**env, "HEROKU_AUDIT_MIN_INTERVAL": "60"}
    skipped = cli.run("poll", env=backing_off)
    assert skipped.code == 0 and skipped.stdout == b""
    after_skip = samples(metrics)
    assert after_skip[("last_exit_code", acme)] == 0
    assert (
        after_skip[("last_run_timestamp_seconds", acme)]
        > after_failure[("last_run_timestamp_seconds", acme)]
    )
    assert after_skip[("consecutive_failures", acme)] == 1


def test_a_first_run_refused_still_has_its_exit_code(cli: Cli, tmp_path: Path) -> None:
    metrics = tmp_path / "metrics.prom"
    run = cli.run("poll", env={"HEROKU_AUDIT_METRICS_FILE": str(metrics), "HEROKU_API_KEY": ""})
    assert run.code == 78
    assert samples(metrics)[("last_exit_code", (("enterprise", "acme"),))] == 78


def test_metrics_never_change_the_exit_code_nor_count_leftovers(
    cli: Cli, sim: Simulator, tmp_path: Path
) -> None:
    metrics = tmp_path / "metrics.prom"
    env = {"HEROKU_AUDIT_METRICS_FILE": str(metrics)}
    assert cli.run("poll", env=env).code == 0
    (cli.state_dir / "notes.json").mkdir()  # something odd in the state dir
    [state_file] = [p for p in cli.state_dir.glob("acme-*.json")]
    (cli.state_dir / f".tmp-{state_file.name}").write_bytes(state_file.read_bytes())
    sim.faults.error_rate = 1.0
    failed = cli.run("poll", "--max-runtime", "2", env=env)
    assert failed.code == 69  # not 70 because of the metrics
    text = metrics.read_text()
    assert text.count('heroku_audit_trail_last_exit_code{enterprise="acme"}') == 1
    assert not list(tmp_path.glob(".*.prom"))  # no temp file a collector could read


@pytest.mark.slow
def test_failures_of_any_kind_count_and_samples_outlive_other_runs(
    cli: Cli, sim: Simulator, tmp_path: Path
) -> None:
    metrics = tmp_path / "metrics.prom"
    env = {"HEROKU_AUDIT_METRICS_FILE": str(metrics)}
    acme = (("enterprise", "acme"),)
    assert cli.run("poll", env=env).code == 0
    remaining = samples(metrics)[("rate_limit_remaining", acme)]

    # A revoked token (77), then a host that does not answer (69, no RateLimit-Remaining).
    assert cli.run("poll", env={**env, "HEROKU_API_KEY": "HRKU-revoked-0123456789"}).code == 77
    assert samples(metrics)[("consecutive_failures", acme)] == 1
    with socket.socket() as unused:
        unused.bind(("127.0.0.1", 0))
        nowhere = f"http://127.0.0.1:{unused.getsockname()[1]}"
    gone = cli.run("poll", "--max-runtime", "2", env={**env, "HEROKU_API_URL": nowhere})
    assert gone.code == 69, gone.stderr
    after = samples(metrics)
    assert after[("consecutive_failures", acme)] == 2
    assert after[("rate_limit_remaining", acme)] == remaining  # the last one seen

    # A skipped run is in the file only; another partition's run rewrites the file.
    skipped = cli.run("poll", env={**env, "HEROKU_AUDIT_MIN_INTERVAL": "60"})
    assert skipped.code == 0 and skipped.stdout == b""
    skipped_at = samples(metrics)[("last_run_timestamp_seconds", acme)]
    assert skipped_at > after[("last_run_timestamp_seconds", acme)]
    assert cli.run("poll", "--type", "app", env=env).code == 0
    assert samples(metrics)[("last_run_timestamp_seconds", acme)] == skipped_at

    # Runs that fail before they can save a state: no token (78), the lock held (75).
    assert cli.run("poll", env={**env, "HEROKU_API_KEY": ""}).code == 78
    with StateStore(cli.state_dir, Partition("acme")).lock():
        assert cli.run("poll", env=env).code == 75
    unsaved = samples(metrics)
    assert unsaved[("consecutive_failures", acme)] == 4
    assert unsaved[("last_exit_code", acme)] == 75
    assert cli.run("poll", "--type", "app", env=env).code == 0  # rewrites the file
    rewritten = samples(metrics)
    for name in ("consecutive_failures", "last_exit_code", "last_run_timestamp_seconds"):
        assert rewritten[(name, acme)] == unsaved[(name, acme)]
    saved = cli.run("poll", "--max-runtime", "2", env={**env, "HEROKU_API_URL": nowhere})
    assert saved.code == 69  # a failure the state counts too: the count goes on from 4
    assert samples(metrics)[("consecutive_failures", acme)] == 5
    assert cli.run("poll", "--type", "app", env=env).code == 0  # and it stays 5 on a rewrite
    assert samples(metrics)[("consecutive_failures", acme)] == 5

    assert cli.run("poll", env=env).code == 0
    assert samples(metrics)[("consecutive_failures", acme)] == 0
    assert cli.run("poll", "--type", "app", env=env).code == 0  # another partition rewrites
    assert samples(metrics)[("consecutive_failures", acme)] == 0  # and the success holds


def test_a_corrupt_state_keeps_the_last_success_to_alert_on(
    cli: Cli, sim: Simulator, tmp_path: Path
) -> None:
    metrics = tmp_path / "metrics.prom"
    env = {"HEROKU_AUDIT_METRICS_FILE": str(metrics)}
    acme = (("enterprise", "acme"),)
    assert cli.run("poll", env=env).code == 0
    success = samples(metrics)[("last_success_timestamp_seconds", acme)]
    [state_file] = cli.state_dir.glob("acme-*.json")
    state_file.write_bytes(b"{not json")
    for failures in (1, 2):
        assert cli.run("poll", env=env).code == 65
        now = samples(metrics)
        assert now[("last_success_timestamp_seconds", acme)] == success
        assert now[("last_exit_code", acme)] == 65
        assert now[("consecutive_failures", acme)] == failures


def test_events_emitted_total_is_a_counter_to_rate(
    cli: Cli, sim: Simulator, tmp_path: Path
) -> None:
    metrics = tmp_path / "metrics.prom"
    env = {"HEROKU_AUDIT_METRICS_FILE": str(metrics)}
    first = cli.run("poll", env=env)
    sim.add_events(utc_today(), 4)
    second = cli.run("poll", env=env)
    assert first.code == second.code == 0
    acme = (("enterprise", "acme"),)
    found = samples(metrics)
    assert found[("events_emitted_total", acme)] == len(first.ids) + len(second.ids)
    assert found[("events_emitted", acme)] == len(second.ids) == 4
