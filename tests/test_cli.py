"""main(): the one place exceptions become exit codes; bugs are one masked JSON line."""

from __future__ import annotations

import io
import socket
from pathlib import Path

import orjson
import pytest

from heroku_audit_trail import cli
from heroku_audit_trail.commands.settings import build_settings

TOKEN = "HRKU-cli-unit-secret-token-0123456789"


class Stderr:
    """What main() logs: its Log writes to sys.stderr as it is when a line is written."""

    def __init__(self, capsys: pytest.CaptureFixture[str]) -> None:
        self.capsys = capsys
        self.text = ""

    def getvalue(self) -> str:
        self.text += self.capsys.readouterr().err
        return self.text


@pytest.fixture
def stderr(capsys: pytest.CaptureFixture[str]) -> Stderr:
    return Stderr(capsys)


def env(tmp_path: Path) -> dict[str, str]:
    return {
        "HEROKU_API_KEY": TOKEN,
        "HEROKU_ENTERPRISE": "acme",
        "HEROKU_API_URL": "http://127.0.0.1:9",
        "HEROKU_AUDIT_STATE_DIR": str(tmp_path),
        "HEROKU_AUDIT_LOG_FORMAT": "json",
        "HOME": str(tmp_path),
    }


def test_a_bug_is_exit_70_and_one_json_line_without_the_token(
    tmp_path: Path, stderr: Stderr, monkeypatch: pytest.MonkeyPatch
) -> None:
    def explode(*args: object, **kwargs: object) -> int:
        raise RuntimeError(f"unexpected state while holding {TOKEN}")

    from heroku_audit_trail.commands import poll

    monkeypatch.setattr(
        poll, "run_poll", lambda settings, env, guard, log: explode(env["HEROKU_API_KEY"])
    )
    code = cli.main(["poll"], env(tmp_path))
    assert code == 70
    lines = stderr.getvalue().splitlines()
    assert len(lines) == 1
    record = orjson.loads(lines[0])
    assert record["error_type"] == "RuntimeError" and record["exit_code"] == 70
    assert TOKEN not in stderr.getvalue() and "Traceback" not in stderr.getvalue()


def test_usage_error_is_64(tmp_path: Path, stderr: Stderr) -> None:
    assert cli.main(["poll", "--lookback-days", "x"], env(tmp_path)) == 64
    assert "usage" in orjson.loads(stderr.getvalue())["message"]


def test_no_command_is_64(tmp_path: Path) -> None:
    assert cli.main([], env(tmp_path)) == 64


def test_flag_wins_over_environment(tmp_path: Path) -> None:
    args = cli.parse(["poll", "--enterprise", "flagged", "--lookback-days", "3"])
    settings = build_settings(
        args, {**env(tmp_path), "HEROKU_AUDIT_LOOKBACK_DAYS": "5", "HEROKU_AUDIT_MIN_INTERVAL": "7"}
    )
    assert settings.enterprises == ("flagged",)
    assert settings.lookback_days == 3 and settings.min_interval == 7
    assert settings.max_runtime == 50 and settings.rate_limit_floor == 500
    backfill = cli.parse(["backfill", "--since", "2026-01-01"])
    assert build_settings(backfill, env(tmp_path), max_runtime=None).max_runtime is None


@pytest.mark.parametrize("command", ["poll", "backfill", "events", "check"])
def test_the_stop_grace_is_a_flag_then_the_environment_then_3_s(
    tmp_path: Path, command: str, stderr: Stderr, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Each command that prints hands its --stop-grace to the run's stop guard before anything
    else (the run below ends at the unreachable API: what counts is the guard's grace)."""
    from heroku_audit_trail.output import StopGuard

    guards: list[StopGuard] = []

    class Recorded(StopGuard):
        def __init__(self) -> None:
            super().__init__()
            guards.append(self)

    monkeypatch.setattr(cli, "StopGuard", Recorded)
    days = ["--since", "2026-01-01"] if command in ("backfill", "events") else []
    quick = {**env(tmp_path), "HEROKU_AUDIT_RETRY_BUDGET": "0", "HEROKU_AUDIT_MIN_INTERVAL": "0"}
    for argv, extra, grace in [
        ([], {}, 3.0),
        ([], {"HEROKU_AUDIT_STOP_GRACE": "0.5"}, 0.5),
        (["--stop-grace", "7"], {"HEROKU_AUDIT_STOP_GRACE": "0.5"}, 7.0),
    ]:
        cli.main([command, *days, *argv], {**quick, **extra})
        assert guards[-1].grace == grace, (argv, extra)
    # Zero would switch the alarm off (no grace at all); nan passes every comparison and inf
    # no timer takes; past a minute a stop would not end "within a few seconds" (DESIGN §8).
    for bad in ("0", "nan", "inf", "61"):
        assert cli.main([command, *days, "--stop-grace", bad], quick) == 64, bad
    for bad in ("soon", "nan", "-inf", "1e9"):
        assert cli.main([command, *days], {**quick, "HEROKU_AUDIT_STOP_GRACE": bad}) == 78
    assert "HEROKU_AUDIT_STOP_GRACE" in stderr.getvalue()


def test_masking_ignores_secrets_too_short_to_be_tokens() -> None:
    from heroku_audit_trail.logs import Log

    stream = io.StringIO()
    masked = Log("json", stream)
    masked.add_secret("x")
    masked.add_secret(TOKEN)
    masked.error(f"exit with {TOKEN}", exit_code=70)
    record = orjson.loads(stream.getvalue())
    assert record["exit_code"] == 70 and TOKEN not in stream.getvalue()
    assert "[REDACTED]" in record["message"]


def test_simulate_on_a_busy_port_names_it_and_exits_78(capfd: pytest.CaptureFixture[str]) -> None:
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        code = cli.main(["simulate", "--port", str(port)], env={})
    assert code == 78
    assert f"127.0.0.1:{port}" in capfd.readouterr().err


def test_help_teaches_and_flags_belong_to_their_commands(
    capsys: pytest.CaptureFixture[str],
) -> None:
    with pytest.raises(SystemExit):
        cli.main(["poll", "--help"], env={})
    poll_help = capsys.readouterr().out
    for words in ("HEROKU_AUDIT_MIN_INTERVAL", "default 60", "examples:", "--metrics-file"):
        assert words in poll_help
    assert "heroku-audit-trail" in poll_help and "state" in poll_help  # the real state dir
    with pytest.raises(SystemExit):
        cli.main(["check", "--help"], env={})
    check_help = capsys.readouterr().out
    assert "--min-interval" not in check_help and "--format" not in check_help
    # A flag a command does not use is still accepted there (one set of flags for every
    # command, as shippers and scripts pass them), just not shown in its help.
    for elsewhere in (["check", "--format", "heroku"], ["state", "list", "--min-interval", "5"]):
        assert cli.parse(elsewhere).command in ("check", "state")


@pytest.mark.parametrize(
    ("argv", "suggestion"),
    [
        (["pol"], "did you mean poll?"),
        (["poll", "--enterprize", "x"], "did you mean --enterprise?"),
    ],
)
def test_a_misspelt_command_or_flag_says_did_you_mean(
    argv: list[str], suggestion: str, stderr: Stderr
) -> None:
    assert cli.main(argv, env={}) == 64
    assert suggestion in stderr.getvalue()


def test_bare_command_lists_the_commands(capsys: pytest.CaptureFixture[str]) -> None:
    assert cli.main([], env={}) == 64
    listing = capsys.readouterr().err
    assert all(name in listing for name in ("poll", "check", "backfill", "state", "demo"))


def test_an_option_of_another_command_says_whose_it_is(tmp_path: Path, stderr: Stderr) -> None:
    assert cli.main(["poll", "--since", "2d"], env(tmp_path)) == 64
    message = orjson.loads(stderr.getvalue())["message"]
    assert "--since is an option of backfill and events" in message


def test_an_overlapping_run_is_a_warning_not_an_error(tmp_path: Path, stderr: Stderr) -> None:
    """The lock held by another run needs nobody's action: a shipper that routes error
    lines to alerting must not page anyone for it (exit 75 all the same)."""
    from heroku_audit_trail.state import Partition, StateStore

    store = StateStore(tmp_path, Partition("acme"))
    store.ensure_dir()
    with store.lock():
        assert cli.main(["poll"], env(tmp_path)) == 75
    [line] = [orjson.loads(text) for text in stderr.getvalue().splitlines()]
    assert line["log.level"] == "warning" and "another heroku-audit-trail run" in line["message"]


def test_sigterm_while_the_metrics_file_is_written_is_143(
    tmp_path: Path, stderr: Stderr, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The file is still written whole, and the run ends as stopped, not as a success."""
    import os
    import signal
    from datetime import datetime, timezone

    from heroku_audit_trail import metrics
    from heroku_audit_trail.state import LastRun, Partition, State, StateStore

    store = StateStore(tmp_path, Partition("acme"))
    store.ensure_dir()
    started = datetime.now(timezone.utc)
    last_run = LastRun(started, started, 1, 1, 1, None)
    store.save(State(partition=Partition("acme"), last_run=last_run))
    collect = metrics.collect

    def collect_then_sigterm(state_dir: Path) -> list[metrics.Sample]:
        os.kill(os.getpid(), signal.SIGTERM)
        return collect(state_dir)

    monkeypatch.setattr(metrics, "collect", collect_then_sigterm)
    prom = tmp_path / "metrics.prom"
    settings = {**env(tmp_path), "HEROKU_AUDIT_MIN_INTERVAL": "60"}  # a skipped run
    assert cli.main(["poll", "--metrics-file", str(prom)], settings) == 143
    assert 'heroku_audit_trail_last_exit_code{enterprise="acme"} 0' in prom.read_text()
    assert "SIGTERM" in stderr.getvalue()


def test_the_man_page_shows_each_usage_once_and_not_the_build_machines_state_dir(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import importlib.util

    monkeypatch.setenv("XDG_STATE_HOME", str(tmp_path / "builder"))
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    from heroku_audit_trail.commands import options

    monkeypatch.setattr(options, "default_state_dir", options.default_state_dir)  # restored
    path = Path(__file__).parent.parent / "packaging" / "manpage.py"
    spec = importlib.util.spec_from_file_location("manpage", path)
    assert spec is not None and spec.loader is not None
    manpage = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(manpage)
    page = manpage.manpage()
    assert str(tmp_path) not in page and "/root" not in page
    state_dir_help = page[page.index("--state-dir DIR ") :][:300]  # its help, not the usage
    assert "$XDG_STATE_HOME/heroku-audit-trail" in " ".join(state_dir_help.split())
    commands = [name for name, _ in manpage.subcommands(cli.build_parser())]
    assert page.count("usage: heroku-audit-trail") == len(commands)


# -- usage errors (64), before any token or request: in-process ---------------------------


@pytest.mark.parametrize(
    ("args", "words"),
    [
        (["--since", "2026-13-01"], "month 13"),
        (["--since", "+2d"], "not a day"),
        (["--since", "today", "--until", "3d"], "is after --until"),
    ],
)
def test_bad_ranges_of_events_are_usage_errors(
    tmp_path: Path, stderr: Stderr, args: list[str], words: str
) -> None:
    assert cli.main(["events", *args], env(tmp_path)) == 64
    [line] = stderr.getvalue().splitlines()
    assert words in orjson.loads(line)["message"]


def test_a_future_day_is_a_usage_error(tmp_path: Path, stderr: Stderr) -> None:
    from datetime import datetime, timedelta, timezone

    future = str(datetime.now(timezone.utc).date() + timedelta(days=2))
    assert cli.main(["events", "--since", future], env(tmp_path)) == 64
    assert "is after today" in stderr.getvalue()


def test_a_usage_error_is_told_in_the_log_format_asked_for(tmp_path: Path, stderr: Stderr) -> None:
    told = {**env(tmp_path), "HEROKU_AUDIT_LOG_FORMAT": "text"}
    assert cli.main(["events", "--log-format", "json", "--limit", "0"], told) == 64
    assert orjson.loads(stderr.getvalue())["exit_code"] == 64


def test_a_filter_that_is_not_utf8_is_a_usage_error(tmp_path: Path, stderr: Stderr) -> None:
    import os

    assert cli.main(["poll", "--actor", os.fsdecode(b"\xff")], env(tmp_path)) == 64
    assert "--actor" in stderr.getvalue()
