"""The rendered lines of a day, held until its last page so they print in created_at order.

A busy day's lines are hundreds of megabytes; past a threshold they go to an unnamed temporary
file and only their sort keys and offsets stay in memory, so a poll's memory does not grow with
the size of a day. If no temporary file can be made, they stay in memory.
"""

from __future__ import annotations

import errno
import os
import tempfile
from collections.abc import Iterable, Iterator
from contextlib import suppress
from datetime import datetime
from typing import BinaryIO

from heroku_audit_trail.errors import StateWriteError

Order = tuple[datetime, str]

IN_MEMORY_BYTES = 4 << 20  # below this a day's lines stay in memory
WRITE_BYTES = 1 << 20  # lines go to the file in writes of about this size


class Spool:
    def __init__(self, threshold: int = IN_MEMORY_BYTES) -> None:
        self.threshold = threshold
        self._lines: list[tuple[Order, bytes]] = []  # while in memory
        self._index: list[tuple[Order, int, int]] = []  # once on disk: (order, offset, length)
        self._file: BinaryIO | None = None
        self._offset = 0
        self._size = 0

    def __len__(self) -> int:
        return len(self._lines) + len(self._index)

    def extend(self, lines: Iterable[tuple[Order, bytes]]) -> None:
        """Hold these lines too; all of them, or (StateWriteError) none of them."""
        if self._file is None:
            for item in lines:
                self._lines.append(item)
                self._size += len(item[1])
            if self._size > self.threshold:
                self._spill()
            return
        self._write(self._file, lines)

    def _write(self, file: BinaryIO, lines: Iterable[tuple[Order, bytes]]) -> None:
        """Append the lines to the file in writes of about WRITE_BYTES, and index them only
        once all are written; a failed write cuts the file back, so the spool is as it was."""
        entries = []
        offset = self._offset
        chunk = bytearray()
        try:
            for order, line in lines:
                entries.append((order, offset + len(chunk), len(line)))
                chunk += line
                if len(chunk) >= WRITE_BYTES:
                    _write_all(file, chunk)
                    offset += len(chunk)
                    chunk = bytearray()
            _write_all(file, chunk)
            offset += len(chunk)
        except OSError as error:
            with suppress(OSError):
                file.seek(self._offset)
                file.truncate()
            raise StateWriteError(
                f"cannot hold a busy day's lines in a temporary file ({error.strerror}); "
                "set TMPDIR to a directory with room; the pages read before are printed, "
                "the rest of the day follows on the next run"
            ) from None
        self._index += entries
        self._offset = offset

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
            self._write(spill, self._lines)  # in 1 MiB writes: memory does not double
        except StateWriteError:
            spill.close()
            self._index, self._offset = [], 0
            self.threshold = 1 << 62
            return
        self._file = spill
        self._lines = []

    def in_order(self) -> Iterator[bytes]:
        """Every line, in created_at order (then id)."""
        if self._file is None:
            self._lines.sort(key=lambda item: item[0])
            for _, line in self._lines:
                yield line
            return
        self._file.flush()
        self._index.sort(key=lambda item: item[0])
        fd = self._file.fileno()
        for _, offset, length in self._index:
            yield os.pread(fd, length, offset)

    def close(self) -> None:
        if self._file is not None:
            self._file.close()
            self._file = None


def _write_all(file: BinaryIO, data: bytearray) -> None:
    """Write all of `data` (an unbuffered file may take part of it: a nearly full disk)."""
    view = memoryview(data)
    while view:
        written = file.write(view)
        if not written:
            raise OSError(errno.ENOSPC, "no space left on device")
        view = view[written:]
