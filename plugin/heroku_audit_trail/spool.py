"""The rendered lines of a day, held until its last page so they print in created_at order.

A busy day's lines are hundreds of megabytes; past a threshold they go to an unnamed temporary
file and only their sort keys and offsets stay in memory, so a poll's memory does not grow with
the size of a day. If no temporary file can be made, they stay in memory.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Iterable, Iterator
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
        if self._file is None:
            for item in lines:
                self._lines.append(item)
                self._size += len(item[1])
            if self._size > self.threshold:
                self._spill()
            return
        self._write(lines)

    def _write(self, lines: Iterable[tuple[Order, bytes]]) -> None:
        chunk = bytearray()
        for order, line in lines:
            self._index.append((order, self._offset + len(chunk), len(line)))
            chunk += line
            if len(chunk) >= WRITE_BYTES:
                self._write_chunk(chunk)
                chunk = bytearray()
        self._write_chunk(chunk)

    def _write_chunk(self, chunk: bytearray) -> None:
        assert self._file is not None
        try:
            self._file.write(chunk)
        except OSError as error:
            raise StateWriteError(
                f"cannot hold a busy day's lines in a temporary file ({error.strerror}); "
                "set TMPDIR to a directory with room; nothing of the day was printed"
            ) from None
        self._offset += len(chunk)

    def _spill(self) -> None:
        try:
            spill = tempfile.TemporaryFile(prefix="heroku-audit-trail-")  # noqa: SIM115 (close())
        except OSError:
            self.threshold = 1 << 62  # no temporary file to be had: keep them in memory
            return
        self._file = spill
        held, self._lines = self._lines, []
        held.reverse()

        def drained() -> Iterator[tuple[Order, bytes]]:
            while held:  # each line let go once copied: memory does not double at the spill
                yield held.pop()

        self._write(drained())

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
