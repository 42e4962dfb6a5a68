"""stdout: one compact JSON line per event, every byte written or a failure (DESIGN §6, §8).

stdout may be a raw file (`PYTHONUNBUFFERED=1` makes `sys.stdout.buffer` a FileIO whose
`write` can take only part of what it is given), a pipe whose reader leaves, or a full disk.
A short write is continued, never taken as done; any other failure is exit 74, and the caller
then does not commit the day being written.
"""

from __future__ import annotations

import errno
import os
import re
import select
import signal
import sys
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import contextmanager, suppress
from itertools import islice
from types import FrameType
from typing import TYPE_CHECKING, Any, BinaryIO, TextIO

from heroku_audit_trail.config import STOP_GRACE_SECONDS
from heroku_audit_trail.deadline import Deadline
from heroku_audit_trail.errors import (
    EX_SIGINT,
    EX_SIGTERM,
    AuditTrailError,
    DeadlineError,
    OutputClosedError,
    StoppedError,
)
from heroku_audit_trail.logs import Log

if TYPE_CHECKING:  # not at run time: output is imported before requests is needed
    from heroku_audit_trail.heroku.api import HerokuClient

FLUENT_BIT_LINE_LIMIT = 4095  # fgets() into Fluent Bit's default 4096-byte Buf_Size
_BATCH = 1000
# A write told to give up ends at its next syscall; if it cannot, the alarm ends it this late.
GIVE_UP_SECONDS = 1.0


def _buf_size_for(length: int) -> str:
    kib = 1024
    while kib * 1024 < length + 1:
        kib *= 2
    return f"{kib // 1024}mb" if kib >= 1024 else f"{kib}k"


def stdout_binary() -> BinaryIO:
    """stdout as an unbuffered file on its descriptor, whatever PYTHONUNBUFFERED says, so each
    write's count is seen; OutputClosedError when the process was started without stdout."""
    if sys.stdout is None:
        raise OutputClosedError("stdout is closed: nowhere to print events (exit 74)")
    try:
        fd = sys.stdout.fileno()
    except (OSError, ValueError, AttributeError):
        return sys.stdout.buffer  # not a file: an in-process test's capture
    sys.stdout.flush()
    return open(fd, "wb", buffering=0, closefd=False)


def _wait_writable(stream: Any) -> None:
    """A non-blocking stdout said 'not now': wait until it can take more (signals still land)."""
    with suppress(OSError, ValueError, AttributeError):
        select.select([], [stream.fileno()], [], 1.0)


def _closed(error: OSError, consequence: str) -> OutputClosedError:
    if isinstance(error, BrokenPipeError) or error.errno in (errno.EPIPE, errno.EBADF):
        reason = "stdout was closed by its reader (broken pipe)"
    elif error.errno in (errno.ENOSPC, errno.EDQUOT):
        reason = "stdout cannot be written: no space left on its device"
    else:
        reason = f"stdout cannot be written: {error.strerror or error}"
    return OutputClosedError(f"{reason}; {consequence}")


_C1 = re.compile(rb"\xc2([\x80-\x9f])")  # U+0080..U+009F in UTF-8: CSI is U+009B


def _escape_c1(line: bytes) -> bytes:
    """The line with C1 controls as JSON escapes: the same JSON, which a terminal will not
    take for a command (orjson escapes C0 controls and ESC, not these)."""
    if b"\xc2" not in line:
        return line
    return _C1.sub(lambda match: b"\\u%04x" % match.group(1)[0], line)


class EventWriter:
    """Writes rendered lines in batches. Between writes it honours a pending stop: it finishes
    the line under way, then raises, so the caller leaves that day uncommitted."""

    def __init__(self, stream: BinaryIO, log: Log, guard: StopGuard | None = None) -> None:
        self.stream = stream
        self.log = log
        self.guard = guard
        self.lines_written = 0
        self.lines_done = 0
        self.longest_line = 0
        self.warn_long_lines = True
        # Asked before the warning: whether it is still news (poll tells it once a day).
        self.long_lines_news: Callable[[], bool] = lambda: True
        self._warned_long = False
        self._offset = 0  # bytes of the batch under way written so far
        self._given_up = False  # the stop's grace ran out while writing
        # What a closed stdout means for the command, told in its error.
        self.when_closed = "the day being written is not saved and will be printed again"
        # A person's terminal: what a server sent must not drive it.
        try:
            self.on_terminal = stream.isatty()
        except (OSError, ValueError, AttributeError):
            self.on_terminal = False

    def write(self, lines: Iterable[bytes]) -> int:
        """Write every line and flush; the number of lines. OutputClosedError if stdout fails,
        the pending stop (after finishing the line under way) if told to stop mid-way."""
        written = 0
        self.lines_done = 0  # whole lines of this call written so far, for a partial record
        self._given_up = False
        if self.guard is not None:
            self.guard.on_grace_over = self._give_up
        try:
            iterator = map(_escape_c1, lines) if self.on_terminal else iter(lines)
            while batch := list(islice(iterator, _BATCH)):
                if written and (self._told_to_stop() or self._given_up):
                    raise self._stop_error()
                data = b"".join(batch)
                try:
                    self._write_all(data)
                finally:
                    # Whatever ends the batch (a stop, the grace's alarm, a closed pipe), only
                    # lines whose newline went out count; a count is never more than that.
                    self.lines_done = written + data.count(b"\n", 0, self._offset)
                self._measure(batch)
                written += len(batch)
            self.stream.flush()
        except OSError as error:
            raise _closed(error, self.when_closed) from None
        finally:
            if self.guard is not None:
                self.guard.write_ended()
        self.lines_written += written
        return written

    def _give_up(self) -> None:
        """The grace for a stalled write is over (from the alarm's handler): end the write at
        its next syscall, which then cannot block, so exactly what went out is known."""
        self._given_up = True
        with suppress(OSError, ValueError, AttributeError):
            os.set_blocking(self.stream.fileno(), False)

    def _write_all(self, data: bytes) -> None:
        """All of `data`; `_offset` says how much went out, whatever interrupts it."""
        self._offset = 0
        while self._offset < len(data):
            self._offset += self._write_some(data, self._offset)
            if self._offset < len(data) and self._given_up:
                raise self._stop_error()  # mid-line perhaps: only whole lines are counted
            if self._offset < len(data) and self._told_to_stop():
                # Told to stop in the middle of a batch: end the line under way, then stop.
                end = data.find(b"\n", self._offset)
                line_end = len(data) if end < 0 else end + 1
                while self._offset < line_end and not self._given_up:
                    self._offset += self._write_some(data[:line_end], self._offset)
                raise self._stop_error()

    def _told_to_stop(self) -> bool:
        """SIGTERM or SIGINT: stop between lines. The deadline lets a day's write finish (its
        pages are fetched already); a stalled write is ended by the guard's grace timer."""
        return self.guard is not None and isinstance(self.guard.pending, StoppedError)

    def _stop_error(self) -> AuditTrailError:
        assert self.guard is not None and self.guard.pending is not None
        return self.guard.pending

    def _write_some(self, data: bytes, offset: int) -> int:
        """One write from `offset`: how many bytes it took (0 while a non-blocking fd is full)."""
        count: int | None  # a raw file answers None when a non-blocking fd is full
        try:
            count = self.stream.write(memoryview(data)[offset:])
        except BlockingIOError as error:
            count = error.characters_written
        if not count and not self._given_up:
            _wait_writable(self.stream)
        return count or 0

    def _measure(self, batch: Sequence[bytes]) -> None:
        longest = max((len(line) - 1 for line in batch), default=0)
        self.longest_line = max(self.longest_line, longest)
        if longest > FLUENT_BIT_LINE_LIMIT and self.warn_long_lines and not self._warned_long:
            self._warned_long = True
            if not self.long_lines_news():
                return
            self.log.warning(
                f"an event line is {longest} bytes, longer than Fluent Bit's default "
                f"Buf_Size of 4096: set Buf_Size {_buf_size_for(longest)} or more "
                "in the exec input, or Fluent Bit drops the line",
                line_bytes=longest,
            )


class StopGuard:
    """SIGINT/SIGTERM and the run's deadline: stop at once while fetching, but let a day's
    write-and-commit finish; if that write stalls (a reader that stopped reading), give it
    `grace` seconds (--stop-grace), then end it at a syscall and commit the whole lines it
    wrote, with a grace of its own. Whatever else stalls after the stop (a state save, the run
    records), the run ends at most twice the grace and GIVE_UP_SECONDS after it.

    The deadline is a real-time alarm (SIGALRM), so it bounds the whole run, a server that
    trickles one byte at a time included, not just each socket read.
    """

    def __init__(self, grace: float = STOP_GRACE_SECONDS) -> None:
        self.grace = grace
        self.pending: AuditTrailError | None = None
        self._stop_by: float | None = None  # monotonic: no grace goes past it
        self._critical = 0
        self._grace_armed = False
        self._deadline: Deadline | None = None
        self._settled = False
        # Set by a write under way: told when the grace is over, it ends itself at a syscall
        # (exactly what went out is then known) rather than being cut by an exception.
        self.on_grace_over: Callable[[], None] | None = None
        self._gave_up = False

    def install(self) -> None:
        signal.signal(signal.SIGTERM, self._handle)
        signal.signal(signal.SIGINT, self._handle)
        signal.signal(signal.SIGALRM, self._alarm)

    def arm_deadline(self, deadline: Deadline) -> None:
        """Raise DeadlineError (exit 75) when the deadline is reached; none: no alarm."""
        self._deadline = deadline
        if deadline.seconds is not None:
            signal.setitimer(signal.ITIMER_REAL, max(deadline.remaining(), 1e-3))

    def write_ended(self) -> None:
        """A write is over: if its grace ran out, what follows it (the commit of the lines it
        did write) gets a grace of its own before the alarm abandons it too."""
        self.on_grace_over = None
        if self._gave_up:
            self._arm(self.grace)

    def disarm(self) -> None:
        signal.setitimer(signal.ITIMER_REAL, 0.0)

    def settle(self) -> None:
        """The work is over (done or failed): a signal now is noted, never raised, so the exit
        and its one error line are not cut short by a traceback."""
        self.disarm()
        self._settled = True

    def _arm(self, seconds: float) -> None:
        """The alarm in `seconds`, or sooner: a stop's graces all end by its _stop_by."""
        left = seconds if self._stop_by is None else self._stop_by - time.monotonic()
        signal.setitimer(signal.ITIMER_REAL, max(min(seconds, left), 1e-3))

    def _handle(self, signum: int, frame: FrameType | None) -> None:
        if signum == signal.SIGTERM:
            self.pending = StoppedError("SIGTERM", EX_SIGTERM)
        else:
            self.pending = StoppedError("SIGINT", EX_SIGINT)
        self._stop()

    def _alarm(self, signum: int, frame: FrameType | None) -> None:
        if self._grace_armed:
            assert self.pending is not None
            if self.on_grace_over is not None and not self._gave_up:
                self._gave_up = True
                self.on_grace_over()  # the write ends itself; if it cannot, the next alarm
                self._arm(GIVE_UP_SECONDS)
                return
            raise self.pending  # the grace is over: abandon the stalled write
        if self.pending is None:
            self.pending = DeadlineError(self._deadline.message if self._deadline else "")
        self._stop()

    def _stop(self) -> None:
        assert self.pending is not None
        if self._stop_by is None:
            self._stop_by = time.monotonic() + 2 * self.grace + GIVE_UP_SECONDS
        if self._settled:
            return
        if not self._critical:
            raise self.pending
        self._start_grace()

    def _start_grace(self) -> None:
        """A critical section told to stop gets its grace (once), then is abandoned."""
        if not self._grace_armed:
            self._grace_armed = True
            self._arm(self.grace)

    def check(self) -> None:
        if self.pending is not None and not self._critical:
            raise self.pending

    @contextmanager
    def critical(self) -> Iterator[None]:
        self._critical += 1
        if self.pending is not None:
            # Entered already told to stop (a deadline that struck while fetching, whose
            # pages are now printed): this write too must end, even if the reader stalls.
            self._start_grace()
        try:
            yield
        finally:
            self._critical -= 1
            if not self._critical and self._grace_armed:
                self._grace_armed = self._gave_up = False
                signal.setitimer(signal.ITIMER_REAL, 0.0)
        self.check()


class Progress:
    """A live line on a terminal: done of total, events, requests, rate limit, ETA. Cleared
    before any log line, so the two never collide."""

    def __init__(self, stream: TextIO | None, total: int, label: str) -> None:
        self.stream = stream if stream is not None and stream.isatty() else None
        self.total = total
        self.label = label
        self.started = time.monotonic()
        self._shown = False

    def show(self, what: str, done: int, events: int, client: HerokuClient) -> None:
        """`what` is the day (or month) under way; `client` tells requests and quota."""
        if self.stream is None:
            return
        elapsed = time.monotonic() - self.started
        eta = elapsed / done * (self.total - done) if done else 0.0
        remaining = client.rate_limit_remaining
        line = (
            f"{self.label} {what}: {done}/{self.total} days, {events} events, "
            f"{client.requests_made} requests, RateLimit-Remaining "
            f"{'?' if remaining is None else remaining}, ETA {eta:.0f} s"
        )
        self.stream.write("\r\x1b[K" + line)
        self.stream.flush()
        self._shown = True

    def clear(self) -> None:
        if self.stream is not None and self._shown:
            self.stream.write("\r\x1b[K")
            self.stream.flush()
            self._shown = False
