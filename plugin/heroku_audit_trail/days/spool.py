"""The rendered lines of a day, held until its last page so they print in created_at order.

A busy day's lines are hundreds of megabytes; past a threshold they go to an unnamed temporary
file and only their sort keys and offsets stay in memory, so a poll's memory does not grow with
the size of a day. If no temporary file can be made, they stay in memory.
"""

from __future__ import annotations

import errno
import os
import tempfile
from collections.abc import Iterator, Sequence
from contextlib import suppress
from datetime import datetime
from itertools import accumulate
from typing import BinaryIO

from heroku_audit_trail.errors import StateWriteError

Order = tuple[datetime, str]

IN_MEMORY_BYTES = 4 << 20  # below this a day's lines stay in memory
READ_BYTES = 1 << 20  # printing reads the file in windows of about this size


class Spool:
    """Each line is kept with its sort key; a line's place in the file follows from the
    lengths of the lines before it, so the index is two flat lists, not a tuple per line."""

    def __init__(self, threshold: int = IN_MEMORY_BYTES) -> None:
        self.threshold = threshold
        self._orders: list[Order] = []
        self._lengths: list[int] = []
        self._lines: list[bytes] = []  # while in memory
        self._file: BinaryIO | None = None
        self._size = 0  # bytes held, in memory or in the file
        self._ranked: list[int] | None = None  # print order, once asked for

    def __len__(self) -> int:
        return len(self._orders)

    def extend(self, orders: Sequence[Order], lines: Sequence[bytes]) -> None:
        """Hold these lines too, `orders` their sort keys; all of them, or (StateWriteError)
        none of them."""
        if self._file is None:
            self._lines += lines
        else:
            self._write(self._file, b"".join(lines), self._size)
        lengths = [len(line) for line in lines]
        self._orders += orders
        self._lengths += lengths
        self._size += sum(lengths)
        if self._file is None and self._size > self.threshold:
            self._spill()

    def _write(self, file: BinaryIO, data: bytes, size: int) -> None:
        """Append `data` to the file, `size` bytes long; a failed write cuts it back to that,
        so the spool is as it was."""
        try:
            _write_all(file, data)
        except OSError as error:
            with suppress(OSError):
                file.seek(size)
                file.truncate()
            raise StateWriteError(
                f"cannot hold a busy day's lines in a temporary file ({error.strerror}); "
                "set TMPDIR to a directory with room; the pages read before are printed, "
                "the rest of the day follows on the next run"
            ) from None

    def _spill(self) -> None:
        """Move the held lines to an unnamed temporary file. Without one (none can be made,
        or its disk is full) they stay in memory: a bigger process, nothing lost."""
        try:
            # Unbuffered: a failed write leaves nothing in a buffer to land later.
            spill = tempfile.TemporaryFile(prefix="heroku-audit-trail-", buffering=0)  # noqa: SIM115
        except OSError:
            self.threshold = 1 << 62
            return
        try:
            self._write(spill, b"".join(self._lines), 0)
        except StateWriteError:
            spill.close()
            self.threshold = 1 << 62
            return
        self._file = spill
        self._lines = []

    def in_order(self) -> Iterator[bytes]:
        """Every line, in created_at order (then id)."""
        orders = self._orders
        ranked = self._ranked = sorted(range(len(orders)), key=orders.__getitem__)
        if self._file is None:
            lines = self._lines
            for index in ranked:
                yield lines[index]
            return
        yield from _read_in_order(self._file.fileno(), self._lengths, ranked)

    def keys(self, count: int | None = None) -> set[str]:
        """The ids of the first `count` lines in print order (all of them: None)."""
        orders = self._orders
        if count is None:
            return {key for _, key in orders}
        if self._ranked is None or len(self._ranked) != len(orders):
            self._ranked = sorted(range(len(orders)), key=orders.__getitem__)
        return {orders[index][1] for index in self._ranked[:count]}

    def close(self) -> None:
        if self._file is not None:
            self._file.close()
            self._file = None


def _read_in_order(fd: int, lengths: list[int], ranked: list[int]) -> Iterator[bytes]:
    """The lines of the file in `ranked` order. A run of lines that lie one after another in
    the file (forwards or backwards) is read at once, up to about READ_BYTES, so a day the
    API sent in either time order costs a read per window rather than one per line, and a day
    in no order costs no more than a read per line (measured: cheaper than merging sorted
    runs, on a 200-page day)."""
    offsets = list(accumulate(lengths, initial=0))
    window, window_start = b"", 0
    last = len(ranked) - 1
    for position, index in enumerate(ranked):
        start, end = offsets[index], offsets[index + 1]
        if start < window_start or end > window_start + len(window):
            run_end = position  # the run of ranked lines that are neighbours in the file
            step = ranked[position + 1] - index if position < last else 0
            if step in (1, -1):
                wanted = end - start
                while (
                    run_end < last
                    and ranked[run_end + 1] == ranked[run_end] + step
                    and wanted < READ_BYTES
                ):
                    run_end += 1
                    wanted += lengths[ranked[run_end]]
            first, final = sorted((index, ranked[run_end]))
            window_start = offsets[first]
            window = _read_exactly(fd, window_start, offsets[final + 1])
        yield window[start - window_start : end - window_start]


def _read_exactly(fd: int, start: int, end: int) -> bytes:
    data = os.pread(fd, end - start, start)
    while len(data) < end - start:  # a regular file reads short only at its end
        more = os.pread(fd, end - start - len(data), start + len(data))
        if not more:
            raise OSError(errno.EIO, "the spool file is shorter than what was written to it")
        data += more
    return data


def _write_all(file: BinaryIO, data: bytes) -> None:
    """Write all of `data` (an unbuffered file may take part of it: a nearly full disk)."""
    view = memoryview(data)
    while view:
        written = file.write(view)
        if not written:
            raise OSError(errno.ENOSPC, "no space left on device")
        view = view[written:]
