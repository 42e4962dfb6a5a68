"""State file: round trip, validation, atomic write, permissions, lock."""

from __future__ import annotations

import stat
from datetime import date, datetime, timezone
from pathlib import Path

import pytest

from heroku_audit_trail.errors import LockHeldError, MalformedDataError, StateWriteError
from heroku_audit_trail.state import Account, DayState, LastRun, Partition, State, StateStore

from .conftest import freeze_dir, thaw_dir

PARTITION = Partition("acme", (("type", "app"),))
STARTED = datetime(2026, 11, 24, 10, tzinfo=timezone.utc)


def make_state() -> State:
    return State(
        partition=PARTITION,
        account=Account("acct-1", "acme"),
        closed_through=date(2026, 11, 22),
        open_days={
            date(2026, 11, 23): DayState({"b", "a"}, '"etag"'),
            date(2026, 11, 24): DayState(),
        },
        last_run=LastRun(STARTED, STARTED, 2, 3, 4, 4000),
    )


def test_round_trip_and_permissions(tmp_path: Path) -> None:
    store = StateStore(tmp_path / "state", PARTITION)
    store.ensure_dir()
    store.save(make_state())
    assert store.load() == make_state()
    assert stat.S_IMODE(store.state_dir.stat().st_mode) == 0o700
    assert stat.S_IMODE(store.path.stat().st_mode) == 0o600
    assert [p.name for p in store.state_dir.iterdir()] == [store.path.name]  # no temp left


def test_partitions_are_separate_files() -> None:
    names = {
        Partition("acme").file_stem(),
        Partition("acme", (("type", "app"),)).file_stem(),
        Partition("0b7b6f52-8f0c-4d7e-9d55-2b8b0a4a7f11").file_stem(),
    }
    assert len(names) == 3


@pytest.mark.parametrize(
    "content",
    [
        b"",
        b"{",
        b"[]",
        b'{"version": 2, "partition": {"enterprise": "acme", "type": "app"}}',
        b'{"version": 1, "partition": {"enterprise": "acme", "type": "app"}, '
        b'"closed_through": "yesterday"}',
        b'{"version": 1, "partition": {"enterprise": "acme", "type": "app"}, '
        b'"open_days": {"2026-11-23": {"seen": [1, 2]}}}',
        b'{"version": 1, "partition": {"enterprise": "other"}}',
    ],
)
def test_corrupt_state_is_an_error_and_left_untouched(tmp_path: Path, content: bytes) -> None:
    store = StateStore(tmp_path, PARTITION)
    store.path.write_bytes(content)
    with pytest.raises(MalformedDataError, match="corrupt"):
        store.load()
    assert store.path.read_bytes() == content


def test_lock_is_exclusive(tmp_path: Path) -> None:
    store = StateStore(tmp_path, PARTITION)
    with store.lock(), pytest.raises(LockHeldError), StateStore(tmp_path, PARTITION).lock():
        pass
    with store.lock():
        pass  # released


def test_state_dir_that_is_a_file(tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("x")
    store = StateStore(blocker, PARTITION)
    with pytest.raises(StateWriteError):
        store.ensure_dir()
    with pytest.raises(StateWriteError):
        store.load()


def test_unwritable_dir_keeps_the_old_state(tmp_path: Path) -> None:
    store = StateStore(tmp_path / "state", PARTITION)
    store.ensure_dir()
    store.save(make_state())
    before = store.path.read_bytes()
    if not freeze_dir(store.state_dir):
        pytest.skip("cannot make a read-only directory here")
    try:
        with pytest.raises(StateWriteError, match="cannot write state file"):
            store.save(State(partition=PARTITION))
    finally:
        thaw_dir(store.state_dir)
    assert store.path.read_bytes() == before


def test_an_unchanged_state_is_not_rewritten_but_writability_is_still_proven(
    tmp_path: Path,
) -> None:
    store = StateStore(tmp_path / "state", PARTITION)
    store.ensure_dir()
    store.save(make_state())
    reader = StateStore(tmp_path / "state", PARTITION)
    state = reader.load()
    assert state is not None
    inode = store.path.stat().st_ino
    reader.prove_writable(state)  # the probe of every poll
    reader.save(state)  # e.g. a day that answered 304
    assert store.path.stat().st_ino == inode  # not replaced
    assert [p.name for p in store.state_dir.iterdir()] == [store.path.name]  # no probe left
    state.last_run = LastRun(STARTED, STARTED, 0, 0, 1, None)
    reader.save(state)
    assert store.path.stat().st_ino != inode and reader.load() == state
    if not freeze_dir(store.state_dir):
        pytest.skip("cannot make a read-only directory here")
    try:
        with pytest.raises(StateWriteError):
            reader.prove_writable(state)  # unchanged, yet the directory takes no write
    finally:
        thaw_dir(store.state_dir)


FIXTURES = Path(__file__).parent / "fixtures"


@pytest.mark.parametrize(
    ("name", "partition"),
    [
        ("state-written-by-97f3a50-filtered.json", Partition("acme", (("type", "app"),))),
        ("state-written-by-97f3a50-no-account.json", Partition("acme-other", (("type", "app"),))),
    ],
)
def test_a_state_written_by_the_last_untyped_version_loads_and_is_written_back_the_same(
    tmp_path: Path, name: str, partition: Partition
) -> None:
    """The typed state reads what 97f3a50 (its dicts) wrote, and writes the same bytes."""
    raw = (FIXTURES / name).read_bytes()
    store = StateStore(tmp_path, partition)
    store.ensure_dir()
    store.path.write_bytes(raw)
    store.path.chmod(0o600)
    state = store.load()
    assert state is not None and state.partition == partition
    assert (state.account is None) == ("no-account" in name)
    store.on_disk = None  # force the write
    store.save(state)
    assert store.path.read_bytes() == raw
