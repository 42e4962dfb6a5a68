"""`events`, the read-only look-up, through the real command against the simulator: JSON
lines and the table (on a real pseudo-terminal), filters, --limit, no state and no lock."""

from __future__ import annotations

import fcntl
import os
import pty
import subprocess
import unicodedata
from datetime import timedelta
from pathlib import Path
from typing import Any

import orjson
import pytest

from heroku_audit_trail.ecs import sort_key
from heroku_audit_trail.simulator import Simulator, SimulatorConfig
from heroku_audit_trail.simulators import AccountRouter

from .conftest import Cli, utc_today, window_ids

pytestmark = pytest.mark.e2e  # runs the real command (or a build) as a subprocess


def truth(sim: Simulator, days_back: int) -> list[dict[str, Any]]:
    """The simulator's events from `days_back` days ago to today, in created_at order."""
    today = utc_today()
    events = [
        event
        for offset in range(days_back, -1, -1)
        for event in sim.events_for_day(today - timedelta(days=offset))
    ]
    return sorted(events, key=sort_key)


def on_a_terminal(cli: Cli, *args: str) -> tuple[int, str, str]:
    """Run with stdout a pseudo-terminal (the table is for a person): code, stdout, stderr."""
    controller, terminal = pty.openpty()
    process = subprocess.Popen(
        cli.command(*args),
        env=cli.env_for({"HEROKU_AUDIT_LOG_FORMAT": "text", "COLUMNS": "40"}, None),
        stdout=terminal,
        stderr=subprocess.PIPE,
    )
    os.close(terminal)
    chunks = []
    while True:
        try:
            chunk = os.read(controller, 65536)
        except OSError:  # EIO: the program closed its end
            break
        if not chunk:
            break
        chunks.append(chunk)
    os.close(controller)
    _, stderr = process.communicate(timeout=60)
    cli.check_secret(b"".join(chunks), stderr)
    output = b"".join(chunks).decode().replace("\r\n", "\n")
    return process.returncode, output, stderr.decode()


def test_json_lines_are_the_range_in_order_and_nothing_is_kept(cli: Cli, sim: Simulator) -> None:
    run = cli.run("events", "--since", "3d")
    assert run.code == 0, run.stderr
    expected = [event["id"] for event in truth(sim, 3)]
    assert run.ids == expected  # every event of the four days, oldest first, once
    assert all(line["event"]["kind"] == "event" for line in run.lines)
    span = f"{utc_today() - timedelta(days=3)}..{utc_today()}"
    assert run.logs[-1]["message"] == f"{len(expected)} events on {span}"
    assert not cli.state_dir.exists()  # no state file, no lock file, no directory
    poll = cli.run("poll")  # the look-up took nothing away from the shipper's feed
    assert poll.code == 0 and set(poll.ids) == window_ids(sim)


def test_api_filters_and_the_app_filter(cli: Cli, sim: Simulator) -> None:
    events = truth(sim, 3)
    destroys = [e["id"] for e in events if (e["type"], e["action"]) == ("app", "destroy")]
    run = cli.run("events", "--since", "3d", "--type", "app", "--action", "destroy")
    assert run.code == 0 and run.ids == destroys and destroys
    actor = events[0]["actor"]["email"]
    run = cli.run("events", "--since", "3d", "--actor", actor)
    assert run.ids == [e["id"] for e in events if e["actor"]["email"] == actor]
    app = next(e["app"]["name"] for e in events if "app" in e)
    run = cli.run("events", "--since", "3d", "--app", app.upper())
    assert run.ids == [e["id"] for e in events if e.get("app", {}).get("name") == app]
    assert run.ids and all(line["heroku"]["app"]["name"] == app for line in run.lines)


def test_limit_prints_the_most_recent_in_order_and_reads_no_older_day(
    cli: Cli, sim: Simulator
) -> None:
    today = sim.events_for_day(utc_today())
    assert len(today) >= 5
    requests_before = sim.events_requests()
    run = cli.run("events", "--since", "30d", "--limit", "5")
    assert run.code == 0
    assert run.ids == [event["id"] for event in sorted(today, key=sort_key)[-5:]]
    assert sim.events_requests() - requests_before == 1  # today was enough: 30 days unread
    assert "the 5 most recent events" in run.logs[-1]["message"]


def test_heroku_output_is_the_api_objects(cli: Cli, sim: Simulator) -> None:
    run = cli.run("events", "--output", "heroku")
    assert [orjson.loads(line) for line in run.stdout.splitlines()] == truth(sim, 0)


def test_the_table_on_a_terminal_cuts_nothing_and_escapes_what_a_server_sends(
    cli: Cli, sim: Simulator
) -> None:
    long_actor = "a.very.long.name.that.no.column.width.should.cut@example-enterprise.com"
    sim.plant(
        utc_today(),
        [
            {
                "id": "planted-1",
                "type": "app",
                "action": "destroy",
                "created_at": f"{utc_today()}T00:00:01Z",
                "actor": {"email": long_actor},
                "app": {"name": "evil\x1b]0;pwned\x07-app"},
                "request": {"ip_address": "2001:db8::dead:beef"},
            },
            {
                "id": "planted-2",
                "type": "team",
                "action": "update",
                "created_at": f"{utc_today()}T00:00:02Z",
                "actor": {"email": "wide@example.com"},
                "team": {"name": "開発チーム"},
            },
        ],
    )
    code, table, stderr = on_a_terminal(cli, "events", "--limit", "1000")
    assert code == 0, stderr
    lines = table.splitlines()
    assert lines[0].split() == ["TIME", "(UTC)", "ACTOR", "ACTION", "TARGET", "IP"]
    assert len(lines) == 1 + len(sim.events_for_day(utc_today()))
    planted = next(line for line in lines if long_actor in line)  # whole, though COLUMNS=40
    assert "evil\\x1b]0;pwned\\x07-app" in planted and "\x1b" not in table
    assert f"{utc_today()} 00:00:01" in planted and "app.destroy" in planted
    assert planted.rstrip().endswith("2001:db8::dead:beef")
    # Columns line up: ACTION starts at the same column in every row; a wide character
    # takes two columns, so the IP column after 開発チーム lines up too.
    action_at = lines[0].index("ACTION")
    assert all(line[action_at - 2 : action_at] == "  " for line in lines[1:])
    wide = next(line for line in lines if "開発チーム" in line)
    assert "events on" in stderr and "{" not in stderr  # a person's text, not JSON
    assert wide.index("開発チーム") == planted.index("evil")
    ip_at = columns(lines[0][: lines[0].index("IP")])
    assert (
        columns(wide[: wide.rindex(" ") + 1]) == ip_at == columns(planted[: planted.index("2001:")])
    )


def columns(text: str) -> int:
    return sum(2 if unicodedata.east_asian_width(c) in "WF" else 1 for c in text)


def test_it_takes_no_lock_and_needs_no_writable_state(cli: Cli, sim: Simulator) -> None:
    assert cli.run("poll").code == 0
    lock = next(cli.state_dir.glob("*.lock"))
    with open(lock, "a") as held:  # a poll of the same account is running
        fcntl.flock(held, fcntl.LOCK_EX | fcntl.LOCK_NB)
        run = cli.run("events", env={"HEROKU_AUDIT_STATE_DIR": "/nonexistent/state"})
        assert run.code == 0 and len(run.ids) == len(sim.events_for_day(utc_today()))
        assert cli.run("poll").code == 75  # the lock was real


def test_the_rate_limit_floor_holds(cli: Cli) -> None:
    # The bad ranges (64, before any request) are in-process: tests/test_cli.py.
    run = cli.run("events", "--rate-limit-floor", "4500")
    assert run.code == 75 and "RateLimit-Remaining" in run.logs[-1]["message"]
    assert not cli.state_dir.exists()


def test_help_has_examples(cli: Cli) -> None:
    done = subprocess.run(cli.command("events", "--help"), capture_output=True, check=True)
    assert b"--since 7d --actor" in done.stdout and b"--limit" in done.stdout
    assert b"--min-interval" not in done.stdout  # poll's, not this command's


def test_a_closed_stdout_or_a_gone_stderr_reader_keeps_the_documented_codes(cli: Cli) -> None:
    closed = subprocess.run(
        ["sh", "-c", 'exec "$@" >&-', "sh", *cli.command("events")],
        env=cli.env_for(None, None),
        capture_output=True,
        check=False,
    )
    assert closed.returncode == 74, closed.stderr
    for args, code in ((["events", "--since", "3d"], 0), (["events", "--enterprise", "nope"], 78)):
        reader, writer = os.pipe()
        os.close(reader)  # whoever read stderr is gone
        done = subprocess.run(
            cli.command(*args),
            env=cli.env_for({"HEROKU_AUDIT_LOG_FORMAT": "text"}, None),
            stdout=subprocess.DEVNULL,
            stderr=writer,
            check=False,
        )
        os.close(writer)
        assert done.returncode == code, args  # not 120 from Python's exit-time flush


def test_one_account_failing_does_not_stop_the_others_and_limit_is_for_the_whole_run(
    cli: Cli, sim: Simulator
) -> None:
    run = cli.run("events", "--enterprise", "nope", "--enterprise", "acme", "--limit", "3")
    assert run.code == 78  # the first failure
    today = sorted(sim.events_for_day(utc_today()), key=sort_key)
    assert run.ids == [event["id"] for event in today[-3:]]  # acme's, all the same
    assert any(log.get("enterprise") == "nope" and log["exit_code"] == 78 for log in run.logs)
    assert "the 3 most recent events" in run.logs[-1]["message"]


def test_odd_events_keep_their_place(cli: Cli, sim: Simulator) -> None:
    today, yesterday = utc_today(), utc_today() - timedelta(days=1)
    listed_twice = {"id": "twice", "type": "app", "action": "create"}
    sim.plant(yesterday, [{**listed_twice, "created_at": f"{yesterday}T12:00:00Z"}])
    sim.plant(today, [{**listed_twice, "created_at": f"{yesterday}T12:00:00Z"}])
    sim.plant(today, [{"id": "undated", "type": "app", "action": "update"}])
    run = cli.run("events", "--since", "yesterday")
    assert run.ids.count("twice") == 1 and "undated" in run.ids
    times = [line["@timestamp"] for line in run.lines if line["event"]["id"] != "undated"]
    assert times == sorted(times)
    newest_two = cli.run("events", "--since", "yesterday", "--limit", "2")
    # An event without a time sorts last in its day, in every command (the README says so).
    assert newest_two.ids[-1] == "undated"
    heroku = cli.run("events", "--format", "heroku", "--limit", "1")  # poll's flag, honoured
    assert "ecs" not in orjson.loads(heroku.stdout)


def test_what_a_server_sends_cannot_reach_a_terminal_through_logs_or_a_giant_cell(
    cli: Cli, sim: Simulator
) -> None:
    sim.plant(
        utc_today(),
        [
            {"id": "x\x1b]0;pwned\x07\x1b[2J", "created_at": "not a time", "type": "app"},
            {
                "id": "giant",
                "type": "app",
                "action": "update",
                "created_at": f"{utc_today()}T00:00:03Z",
                "actor": {"email": "a" * 100_000 + "@example.com"},
            },
        ],
    )
    run = cli.run("events", "--output", "jsonl", env={"HEROKU_AUDIT_LOG_FORMAT": "text"})
    assert "\x1b" not in run.stderr and "\\x1b]0;pwned" in run.stderr
    code, table, _ = on_a_terminal(cli, "events")
    assert code == 0 and "a" * 100_000 in table
    assert len(table) < 100_000 + 200 * len(table.splitlines())  # no row padded to the giant


def test_limit_across_two_accounts_is_the_most_recent_overall(tmp_path: Path) -> None:
    """Two accounts that both answer: --limit N is the N most recent of both, merged in
    time, not N of each nor the first account's N."""
    configs = [
        SimulatorConfig(seed=seed, events_per_day=20, history_days=1, enterprise_name=name)
        for seed, name in ((31, "acme"), (32, "globex"))
    ]
    with (
        Simulator(configs[0]) as acme,
        Simulator(configs[1]) as globex,
        AccountRouter([acme, globex]) as router,
    ):
        cli = Cli(acme, tmp_path, env={"HEROKU_API_URL": router.url})
        run = cli.run(
            "events", "--since", "yesterday", "--enterprise", "acme",
            "--enterprise", "globex", "--limit", "7",
        )  # fmt: skip
        assert run.code == 0, run.stderr
        everything = [
            (event["created_at"], event["id"])
            for sim in (acme, globex)
            for day in (utc_today() - timedelta(days=1), utc_today())
            for event in sim.events_for_day(day)
        ]
        assert run.ids == [event_id for _, event_id in sorted(everything)[-7:]]
        assert {line["organization"]["name"] for line in run.lines} == {"acme", "globex"}


def test_json_lines_on_a_terminal_carry_no_c1_control(cli: Cli, sim: Simulator) -> None:
    """JSON lines read on a terminal: a CSI (U+009B) a server put in a field is written as
    its JSON escape, the same JSON, never the raw control (issue G4)."""
    sim.plant(
        utc_today(),
        [{"id": "csi", "type": "app", "action": "create", "app": {"name": "x\u009b2Jy"},
          "created_at": f"{utc_today()}T01:00:00Z"}],
    )  # fmt: skip
    code, output, stderr = on_a_terminal(cli, "events", "--output", "jsonl")
    assert code == 0, stderr
    assert "\u009b" not in output and "\\u009b" in output
    [line] = [orjson.loads(text) for text in output.splitlines() if '"csi"' in text]
    assert line["heroku"]["app"]["name"] == "x\u009b2Jy"


@pytest.mark.slow
def test_a_table_over_a_long_range_does_not_hold_its_rows(tmp_path: Path) -> None:
    """A table with no --limit over 45 days (36,000 rows) peaks within half again of one over
    5 days: the rows wait in temporary files, not in memory (held whole, it was 2.1 times)."""
    import re
    import sys

    from .test_backfill_e2e import PEAK_RSS

    with Simulator(SimulatorConfig(seed=4, events_per_day=800, history_days=46)) as sim:
        cli = Cli(sim, tmp_path)
        peaks = {}
        for since in ("5d", "45d"):
            command = cli.command("events", "--since", since, "--output", "table")
            done = subprocess.run(
                [sys.executable, "-c", PEAK_RSS, *command],
                env=cli.env_for(None, None),
                capture_output=True,
                timeout=120,
                check=False,
            )
            assert done.returncode == 0, done.stderr.decode()[-300:]
            rows = done.stdout.decode().splitlines()[1:]
            days = [utc_today() - timedelta(days=n) for n in range(int(since[:-1]) + 1)]
            assert len(rows) == sum(len(sim.events_for_day(day)) for day in days)
            found = re.search(r"peak_rss_kib=(\d+)", done.stderr.decode())
            assert found is not None
            peaks[since] = int(found.group(1))
    assert peaks["45d"] <= 1.5 * peaks["5d"], peaks
