"""stdout: one compact JSON line per event, flushed per batch; a closed pipe is exit 74."""

from __future__ import annotations

import errno
import signal
import sys
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from itertools import islice
from types import FrameType
from typing import Any, BinaryIO

import orjson

from heroku_audit_trail.ecs import to_ecs
from heroku_audit_trail.errors import EX_SIGINT, EX_SIGTERM, OutputClosedError, StoppedError
from heroku_audit_trail.logs import Log

FLUENT_BIT_LINE_LIMIT = 4095  # fgets() into Fluent Bit's default 4096-byte Buf_Size
_BATCH = 1000


def render(
    event: dict[str, Any], output_format: str, read_at: str, include_original: bool
) -> bytes:
    """One output line, newline included."""
    if output_format == "heroku":
        return orjson.dumps(event, option=orjson.OPT_APPEND_NEWLINE)
    return orjson.dumps(to_ecs(event, read_at, include_original), option=orjson.OPT_APPEND_NEWLINE)


def _buf_size_for(length: int) -> str:
    kib = 1024
    while kib * 1024 < length + 1:
        kib *= 2
    return f"{kib // 1024}mb" if kib >= 1024 else f"{kib}k"


def stdout_binary() -> BinaryIO:
    """The binary stdout, or OutputClosedError when the process was started without one."""
    if sys.stdout is None:
        raise OutputClosedError("stdout is closed: nowhere to print events (exit 74)")
    return sys.stdout.buffer


class EventWriter:
    def __init__(self, stream: BinaryIO, log: Log) -> None:
        self.stream = stream
        self.log = log
        self.lines_written = 0
        self.longest_line = 0
        self._warned_long = False

    def write(self, lines: Iterable[bytes]) -> int:
        """Write in batches and flush; the number of lines. OutputClosedError if the reader left."""
        written = 0
        try:
            iterator = iter(lines)
            while batch := list(islice(iterator, _BATCH)):
                self.stream.write(b"".join(batch))
                self._measure(batch)
                written += len(batch)
            self.stream.flush()
        except OSError as error:
            if isinstance(error, BrokenPipeError) or error.errno in (errno.EPIPE, errno.EBADF):
                raise OutputClosedError(
                    "stdout was closed by its reader (broken pipe); "
                    "the day being written is not saved and will be printed again"
                ) from None
            raise
        self.lines_written += written
        return written

    def _measure(self, batch: Sequence[bytes]) -> None:
        longest = max((len(line) - 1 for line in batch), default=0)
        self.longest_line = max(self.longest_line, longest)
        if longest > FLUENT_BIT_LINE_LIMIT and not self._warned_long:
            self._warned_long = True
            self.log.warning(
                f"an event line is {longest} bytes, longer than Fluent Bit's default "
                f"Buf_Size of 4096: set Buf_Size {_buf_size_for(longest)} or more "
                "in the exec input, or Fluent Bit drops the line",
                line_bytes=longest,
            )


class StopGuard:
    """SIGINT/SIGTERM: stop at once while fetching, but let a day's write-and-commit finish."""

    def __init__(self) -> None:
        self.pending: StoppedError | None = None
        self._critical = 0

    def install(self) -> None:
        signal.signal(signal.SIGTERM, self._handle)
        signal.signal(signal.SIGINT, self._handle)

    def _handle(self, signum: int, frame: FrameType | None) -> None:
        if signum == signal.SIGTERM:
            self.pending = StoppedError("SIGTERM", EX_SIGTERM)
        else:
            self.pending = StoppedError("SIGINT", EX_SIGINT)
        if not self._critical:
            raise self.pending

    def check(self) -> None:
        if self.pending is not None and not self._critical:
            raise self.pending

    @contextmanager
    def critical(self) -> Iterator[None]:
        self._critical += 1
        try:
            yield
        finally:
            self._critical -= 1
        self.check()
