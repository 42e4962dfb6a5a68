"""Files in the state directory: read without following symlinks and refused when others
could write them, written atomically (temp file, fsync, rename, fsync of the directory), a
probe for room before a write, and the run lock."""

from __future__ import annotations

import errno
import fcntl
import os
import stat
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from pathlib import Path

from heroku_audit_trail.errors import LockHeldError, MalformedDataError, StateWriteError


def refuse_if_shared(path: Path, status: os.stat_result, what: str) -> None:
    """As ssh does with its keys: a state another user could write is refused, since a planted
    cursor (closed_through in 2099, a seen set holding every id) would silence the feed."""
    uid = os.geteuid()
    if status.st_uid not in (uid, 0):
        raise StateWriteError(
            f"{what} {path} belongs to uid {status.st_uid}, not to this user (uid {uid}); "
            f"refusing to trust it: run 'chown {uid} {path}' or choose another --state-dir"
        )
    if status.st_mode & (stat.S_IWGRP | stat.S_IWOTH):
        mode = stat.S_IMODE(status.st_mode)
        raise StateWriteError(
            f"{what} {path} is writable by group or others (mode {mode:o}), so anyone could "
            f"plant a cursor that silences the feed; run 'chmod go-w {path}'"
        )


NO_ROOM = (errno.ENOSPC, errno.EDQUOT, errno.EFBIG)  # a full disk, a quota, `ulimit -f`


def room_for(path: Path, size: int) -> bool | None:
    """Whether a file of `size` bytes can be made beside `path` (a probe is allocated, then
    removed): False when the disk, a quota or RLIMIT_FSIZE says no, None when this filesystem
    cannot tell (no fallocate)."""
    probe = path.with_name(f".probe-{path.name}")
    try:
        with suppress(FileNotFoundError):
            probe.unlink()  # left by a run that was killed mid-proof
        fd = os.open(probe, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600)
        try:
            os.posix_fallocate(fd, 0, max(size, 1))
        finally:
            os.close(fd)
            probe.unlink()
    except OSError as error:
        with suppress(OSError):
            probe.unlink()
        return False if error.errno in NO_ROOM else None
    return True


def room_and_replaceable(path: Path, size: int) -> bool:
    """A file of `size` bytes can be made beside `path` and `path` can be linked; False on
    any doubt (a filesystem without fallocate or hard links), so the caller saves for real."""
    if not room_for(path, size):
        return False
    probe = path.with_name(f".probe-{path.name}")
    try:
        os.link(path, probe)
        probe.unlink()
    except OSError:
        with suppress(OSError):
            probe.unlink()
        return False
    return True


def ensure_state_dir(state_dir: Path) -> None:
    """Create the state directory (0700), and refuse one that others could write."""
    try:
        state_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
    except OSError as error:
        raise StateWriteError(
            f"cannot create state directory {state_dir}: {error.strerror}; "
            "set --state-dir or HEROKU_AUDIT_STATE_DIR to a writable directory"
        ) from None
    if not state_dir.is_dir():
        raise StateWriteError(
            f"state directory {state_dir} is not a directory; "
            "set --state-dir or HEROKU_AUDIT_STATE_DIR to a directory"
        )
    refuse_if_shared(state_dir, os.stat(state_dir), "state directory")


def regular_files(state_dir: Path, pattern: str) -> list[Path]:
    """The names in `state_dir` that match `pattern`, sorted (each is checked when read)."""
    return sorted(state_dir.glob(pattern)) if state_dir.is_dir() else []


def read_private(path: Path, state_dir: Path) -> bytes | None:
    """A state file's bytes (None if there is none), refusing a symlink, anything but a
    regular file (opened without blocking: a FIFO planted there cannot hang the run) or a
    file others can write."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK)
    except FileNotFoundError:
        return None
    except NotADirectoryError:
        raise StateWriteError(f"state directory {state_dir} is not a directory") from None
    except OSError as error:
        if error.errno == errno.ELOOP:
            raise StateWriteError(
                f"state file {path} is a symlink; refusing to follow it (a planted "
                "link could swap the cursor): remove it, or replace it with the file"
            ) from None
        raise MalformedDataError(
            f"cannot read state file {path}: {error.strerror}; it was left untouched"
        ) from None
    with os.fdopen(fd, "rb") as file:
        status = os.fstat(file.fileno())
        if not stat.S_ISREG(status.st_mode):
            raise StateWriteError(
                f"{path} is not a regular file; move it away, it is not this program's"
            )
        refuse_if_shared(path, status, "state file")
        return file.read()


def write_atomic(path: Path, payload: bytes) -> None:
    """Temp file in the same directory, fsync, rename over `path`, fsync the directory."""
    tmp_name: str | None = None
    try:
        fd, tmp_name = tempfile.mkstemp(prefix=".tmp-", suffix=".json", dir=path.parent)
        with os.fdopen(fd, "wb") as tmp:
            tmp.write(payload)
            tmp.flush()
            os.fsync(tmp.fileno())
        os.chmod(tmp_name, 0o600)
        os.replace(tmp_name, path)
        tmp_name = None
        dir_fd = os.open(path.parent, os.O_RDONLY)
        try:
            os.fsync(dir_fd)
        finally:
            os.close(dir_fd)
    except OSError as error:
        raise StateWriteError(
            f"cannot write state file {path}: {error.strerror}; "
            "the events of this run may be printed again by the next run"
        ) from None
    finally:
        if tmp_name is not None:
            with suppress(OSError):
                os.unlink(tmp_name)


def remove_file(path: Path) -> bool:
    try:
        path.unlink()
    except FileNotFoundError:
        return False
    except OSError as error:
        raise StateWriteError(f"cannot remove {path}: {error.strerror}") from None
    return True


@contextmanager
def exclusive_lock(
    lock_path: Path, busy: str = "this run exits and the next scheduled one carries on"
) -> Iterator[None]:
    """An exclusive, non-blocking flock on `lock_path`: held elsewhere, LockHeldError (75)."""
    try:
        fd = os.open(lock_path, os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW, 0o600)
    except OSError as error:
        if error.errno == errno.ELOOP:
            raise StateWriteError(
                f"lock file {lock_path} is a symlink; refusing to follow it: remove it"
            ) from None
        raise StateWriteError(
            f"cannot create lock file {lock_path}: {error.strerror}; "
            "set --state-dir or HEROKU_AUDIT_STATE_DIR to a writable directory"
        ) from None
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as error:
            if error.errno in (errno.EWOULDBLOCK, errno.EAGAIN, errno.EACCES):
                raise LockHeldError(
                    f"another heroku-audit-trail run holds {lock_path}; {busy}"
                ) from None
            raise
        yield
    finally:
        os.close(fd)
