"""check, state, backfill, demo, usage errors and hostile input, as subprocesses."""

from __future__ import annotations

import stat
from datetime import timedelta
from pathlib import Path

import orjson
import pytest

from heroku_audit_trail.simulator import NO_ACCESS_TOKEN, Simulator, SimulatorConfig

from .conftest import Cli, utc_today

pytestmark = pytest.mark.e2e  # runs the real command (or a build) as a subprocess


def test_check_ok_human_and_json(cli: Cli) -> None:
    human = cli.run("check")
    assert human.code == 0, human.stderr
    assert "OK, polling will work" in human.stdout.decode()
    machine = cli.run("check", "--json")
    report = orjson.loads(machine.stdout)
    assert report["ok"] is True and report["exit_code"] == 0
    assert report["account"]["name"] == "acme"
    assert {step["name"] for step in report["steps"]} >= {"enterprise_account", "events"}
    assert cli.state_bytes() == {}  # check never writes state


@pytest.mark.parametrize(
    ("env", "code", "words"),
    [
        ({"HEROKU_API_KEY": "HRKU-nope-00000000000000000000"}, 77, "Authentication Failed"),
        ({"HEROKU_API_KEY": NO_ACCESS_TOKEN}, 77, "no access"),
        ({"HEROKU_ENTERPRISE": "not-ours"}, 78, "Invalid Enterprise Account Name"),
    ],
)
def test_check_failures(cli: Cli, env: dict[str, str], code: int, words: str) -> None:
    cli.token = env.get("HEROKU_API_KEY", cli.token)
    run = cli.run("check", "--json", env=env)
    assert run.code == code
    report = orjson.loads(run.stdout)
    assert report["ok"] is False and words in orjson.dumps(report).decode()


def test_check_rate_limit_floor(cli: Cli, sim: Simulator) -> None:
    sim.faults.rate_limit_remaining = 100
    run = cli.run("check")
    assert run.code == 75 and "Rate Limiting" in run.stdout.decode()


def test_state_show_and_reset(cli: Cli) -> None:
    never = cli.run("state", "show")
    assert never.code == 78 and "has not been polled" in never.stderr
    cli.run("poll")
    summary = cli.run("state", "show").stdout.decode()
    assert "closed through: " + str(utc_today() - timedelta(days=2)) in summary
    assert "ids printed" in summary
    shown = orjson.loads(cli.run("state", "show", "--json").stdout)
    assert shown["version"] == 1 and shown["account"]["name"] == "acme"
    assert shown["closed_through"] == str(utc_today() - timedelta(days=2))
    assert set(shown["open_days"]) == {str(utc_today() - timedelta(days=1)), str(utc_today())}
    refused = cli.run("state", "reset")
    assert refused.code == 64 and cli.state_bytes()
    assert cli.run("poll", "--type", "app").code == 0
    assert cli.run("state", "reset", "--yes", "--type", "app").code == 0  # a filtered one
    assert len(cli.state_bytes()) == 1
    assert cli.run("state", "reset", "--yes").code == 0
    assert cli.state_bytes() == {}


def test_state_files_are_private(cli: Cli) -> None:
    cli.run("poll")
    assert stat.S_IMODE(cli.state_dir.stat().st_mode) == 0o700
    for path in cli.state_dir.iterdir():
        assert stat.S_IMODE(path.stat().st_mode) == 0o600


def test_corrupt_state_exits_65_and_is_left_alone(cli: Cli) -> None:
    cli.run("poll")
    ((name, _),) = cli.state_bytes().items()
    (cli.state_dir / name).write_bytes(b'{"version": 1, "open_days": [')
    run = cli.run("poll")
    assert run.code == 65 and "corrupt" in run.stderr and run.stdout == b""
    assert (cli.state_dir / name).read_bytes() == b'{"version": 1, "open_days": ['


def test_state_dir_that_is_a_file_exits_73(cli: Cli, tmp_path: Path) -> None:
    blocker = tmp_path / "blocker"
    blocker.write_text("not a dir")
    run = cli.run("poll", env={"HEROKU_AUDIT_STATE_DIR": str(blocker)})
    assert run.code == 73 and run.stdout == b""


def test_read_only_state_dir_exits_73_and_prints_nothing(cli: Cli, readonly_dir: Path) -> None:
    run = cli.run("poll", env={"HEROKU_AUDIT_STATE_DIR": str(readonly_dir / "state")})
    assert run.code == 73, run.stderr
    assert run.stdout == b""


@pytest.mark.parametrize(
    ("args", "env", "code"),
    [
        (["poll", "--lookback-days", "-1"], {}, 64),
        (["poll", "--no-such-flag"], {}, 64),
        (["frobnicate"], {}, 64),
        (["poll"], {"HEROKU_API_URL": "http://api.heroku.com"}, 78),
        (["poll"], {"HEROKU_AUDIT_LOOKBACK_DAYS": "many"}, 78),
        (["poll", "--enterprise", "../x"], {}, 78),
        (["poll", "--enterprise", "acme corp"], {}, 78),
        (["poll", "--enterprise", "a" * 300], {}, 78),
        (["backfill", "--since", "2026-99-01"], {}, 64),
    ],
)
def test_bad_input_is_one_line_and_the_documented_code(
    cli: Cli, args: list[str], env: dict[str, str], code: int
) -> None:
    run = cli.run(*args, env=env)
    assert run.code == code, run.stderr
    assert len(run.stderr.strip().splitlines()) == 1
    assert "Traceback" not in run.stderr and run.stdout == b""


def test_help_and_version(cli: Cli) -> None:
    helped = cli.run("--help")
    assert helped.code == 0 and b"examples:" in helped.stdout
    assert cli.token.encode() not in helped.stdout
    assert cli.run("--version").stdout.startswith(b"heroku-audit-trail ")


def test_backfill_through_the_events_api(cli: Cli, sim: Simulator) -> None:
    since = utc_today() - timedelta(days=3)
    run = cli.run("backfill", "--since", since.isoformat())
    assert run.code == 0, run.stderr
    expected = {
        event["id"]
        for offset in (1, 2, 3)
        for event in sim.events_for_day(utc_today() - timedelta(days=offset))
    }
    assert sorted(run.ids) == sorted(expected)
    assert cli.state_bytes() == {}  # backfill never touches the poll cursor


def test_backfill_from_archives(tmp_path: Path) -> None:
    config = SimulatorConfig(seed=5, events_per_day=10, history_days=40, archive_layout="entries")
    with Simulator(config) as sim:
        cli = Cli(sim, tmp_path)
        since = utc_today() - timedelta(days=35)
        until = utc_today() - timedelta(days=1)
        run = cli.run("backfill", "--since", str(since), "--until", str(until), "--archives")
        assert run.code == 0, run.stderr
        expected = {
            event["id"]
            for offset in range(1, 36)
            for event in sim.events_for_day(utc_today() - timedelta(days=offset))
        }
        assert sorted(run.ids) == sorted(expected)
        archive_calls = [e for e in sim.request_log if "/archives/" in e["path"]]
        assert archive_calls


def test_backfill_refuses_a_bad_checksum(tmp_path: Path) -> None:
    month = (utc_today() - timedelta(days=1)).strftime("%Y-%m")
    config = SimulatorConfig(seed=5, events_per_day=5, history_days=3, bad_checksum_months=(month,))
    with Simulator(config) as sim:
        cli = Cli(sim, tmp_path)
        since = utc_today() - timedelta(days=1)
        run = cli.run("backfill", "--since", str(since), "--archives")
        assert run.code == 65 and "SHA-256" in run.stderr
        assert run.stdout == b""


def test_backfill_month_without_archive_uses_the_api(tmp_path: Path) -> None:
    month = (utc_today() - timedelta(days=1)).strftime("%Y-%m")
    config = SimulatorConfig(
        seed=5, events_per_day=5, history_days=3, missing_archive_months=(month,)
    )
    with Simulator(config) as sim:
        cli = Cli(sim, tmp_path)
        yesterday = utc_today() - timedelta(days=1)
        run = cli.run("backfill", "--since", str(yesterday), "--archives")
        assert run.code == 0, run.stderr
        assert sorted(run.ids) == sorted(e["id"] for e in sim.events_for_day(yesterday))
        assert "no archive" in run.stderr


def test_demo_prints_ecs_lines(tmp_path: Path) -> None:
    with Simulator() as sim:  # only for the runner's plumbing; demo starts its own
        run = Cli(sim, tmp_path).run("demo")
    assert run.code == 0, run.stderr
    assert run.lines and all(line["event"]["dataset"] == "heroku.audit" for line in run.lines)


def test_state_dir_turned_read_only_prints_nothing(cli: Cli, sim: Simulator) -> None:
    from .conftest import freeze_dir, thaw_dir

    assert cli.run("poll").code == 0
    sim.add_events(utc_today(), 2)
    before = cli.state_bytes()
    if not freeze_dir(cli.state_dir):
        pytest.skip("cannot make a read-only directory here")
    try:
        run = cli.run("poll")
    finally:
        thaw_dir(cli.state_dir)
    assert run.code == 73 and run.stdout == b"" and "cannot write state file" in run.stderr
    assert cli.state_bytes() == before
    assert len(cli.run("poll").ids) == 2


def test_simulate_serves_in_the_foreground_until_sigterm(cli: Cli, tmp_path: Path) -> None:
    import signal
    import subprocess
    import sys

    server = subprocess.Popen(
        [sys.executable, "-m", "heroku_audit_trail", "simulate", "--port", "0", "--seed", "3"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    try:
        assert server.stdout is not None
        banner = [server.stdout.readline().decode() for _ in range(4)]
        url = banner[0].split()[-1]
        assert url.startswith("http://127.0.0.1:")
        assert any("HEROKU_API_KEY=" in line for line in banner)
        run = cli.run("poll", env={"HEROKU_API_URL": url})
        assert run.code == 0 and run.lines
    finally:
        server.send_signal(signal.SIGTERM)
        assert server.wait(timeout=10) == 0


def test_check_without_a_token_still_answers_in_json(cli: Cli) -> None:
    run = cli.run("check", "--json", env={"HEROKU_API_KEY": ""})
    assert run.code == 78
    report = orjson.loads(run.stdout)
    assert report["ok"] is False and report["steps"][0]["name"] == "token"
    assert "HEROKU_API_KEY" in report["steps"][0]["detail"]


@pytest.mark.slow
def test_backfill_has_a_deadline_only_when_asked(cli: Cli, sim: Simulator) -> None:
    sim.faults.latency = 0.6
    since = utc_today() - timedelta(days=3)
    stopped = cli.run("backfill", "--since", str(since), "--max-runtime", "1")
    assert stopped.code == 75 and "max-runtime" in stopped.stderr
    finished = cli.run("backfill", "--since", str(since), env={"HEROKU_AUDIT_MAX_RUNTIME": "1"})
    assert finished.code == 0
    # The second run carries on where the first stopped: each event once over the two.
    printed = stopped.ids + finished.ids
    assert len(printed) == len(set(printed)) == 3 * sim.config.events_per_day


def test_started_without_stdout_exits_74(cli: Cli) -> None:
    import os
    import subprocess

    done = subprocess.run(
        cli.command("poll"),
        env=cli.base_env(),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        check=False,
        preexec_fn=lambda: os.close(1),  # as `heroku-audit-trail poll >&-`
    )
    assert done.returncode == 74
    assert b"stdout is closed" in done.stderr and b"Traceback" not in done.stderr
    assert cli.state_bytes() == {}


def test_state_list_shows_partitions_with_their_backoff(cli: Cli, sim: Simulator) -> None:
    assert cli.run("state", "list", "--json").stdout == b"[]\n"
    assert cli.run("poll").code == 0
    assert cli.run("poll", "--type", "app").code == 0
    sim.faults.error_rate = 1.0
    assert cli.run("poll", "--max-runtime", "1").code == 69
    rows = orjson.loads(cli.run("state", "list", "--json").stdout)
    by_filters = {str(row["filters"]): row for row in rows}
    assert set(by_filters) == {"{}", "{'type': 'app'}"}
    assert by_filters["{}"]["backoff"]["failures"] == 1
    assert by_filters["{}"]["last_exit_code"] == 69  # the last run, not the last success
    assert by_filters["{'type': 'app'}"]["backoff"] is None
    assert by_filters["{'type': 'app'}"]["last_exit_code"] == 0
    text = cli.run("state", "list", env={"HEROKU_ENTERPRISE": ""}).stdout.decode()
    assert "backing off after 1 failure" in text and "acme [type=app]" in text
    assert "(exit 69)" in text


def test_check_fails_when_poll_could_not_keep_its_cursor(cli: Cli, tmp_path: Path) -> None:
    """A service user with no writable home got "OK" and then a failing poll."""
    blocker = tmp_path / "not-a-dir"
    blocker.write_text("")
    run = cli.run("check", "--json", env={"HEROKU_AUDIT_STATE_DIR": str(blocker / "state")})
    assert run.code == 73
    report = orjson.loads(run.stdout)
    assert report["ok"] is False and report["steps"][1]["name"] == "state"
    assert "state directory" in report["steps"][1]["detail"]
    good = cli.run("check")
    assert good.code == 0 and "is writable" in good.stdout.decode()


def test_usage_rough_edges(cli: Cli, sim: Simulator) -> None:
    both = cli.run("check", "--json", "--enterprise", "acme", "--enterprise", "nope")
    document = orjson.loads(both.stdout)  # one JSON document, not one per account
    assert both.code == 78 and document["ok"] is False and len(document["accounts"]) == 2
    refused = cli.run("poll", "--format", "heroku", "--include-original")
    assert refused.code == 64 and "one or the other" in refused.stderr
    typo = cli.run("poll", "--type", "apps")
    assert typo.code == 0 and "not a documented" in typo.stderr
    denied = cli.run("poll", env={"HEROKU_API_KEY": "HRKU-wrong-token-0000000000000000000000"})
    assert denied.code == 77 and "poll summary" not in denied.stderr  # no summary of nothing


def test_the_same_account_by_name_and_by_id_is_read_once(cli: Cli, sim: Simulator) -> None:
    run = cli.run("poll", "--enterprise", "acme", "--enterprise", sim.config.enterprise_id)
    assert run.code == 0, run.stderr
    assert len(run.ids) == len(set(run.ids))
    assert "read under another name or id" in run.stderr
