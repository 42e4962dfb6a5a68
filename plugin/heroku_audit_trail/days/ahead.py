"""One item read ahead: the next page is fetched while the caller renders this one.

The server's time per page (or the network's round trip) is then spent while this process
works, not waited for afterwards. Only one item is ever ahead, so memory holds at most one
more page, and a run that stops has asked the server for at most one page it did not use.
"""

from __future__ import annotations

import queue
import threading
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from contextlib import nullcontext
from typing import Generic, TypeVar

T = TypeVar("T")


class _End:
    """The source is exhausted."""


class ReadAhead(Generic[T]):
    """Iterates `source` in a worker thread, one item ahead of the caller. An exception from
    `source` is raised to the caller where that item would have been, after the items before
    it. The worker is a daemon: a run that stops does not wait for its request to end.

    `abandoned` is set on close, for a source that can stop mid-item (no retry of a request
    that nobody will read, while the caller goes on to another account's requests)."""

    def __init__(
        self,
        source: Iterator[T],
        abandoned: threading.Event | None = None,
        slots: threading.Semaphore | None = None,
    ) -> None:
        self._source = source
        self._slots = slots  # shared by every read-ahead of a run: its --concurrency
        self.abandoned = abandoned or threading.Event()
        self._wanted: queue.SimpleQueue[bool] = queue.SimpleQueue()  # True: read one more
        self._items: queue.SimpleQueue[tuple[T | _End | None, BaseException | None]] = (
            queue.SimpleQueue()
        )
        self._worker = threading.Thread(target=self._read, name="read-ahead", daemon=True)
        self._started = False
        self._finished = False

    def _read(self) -> None:
        while self._wanted.get():
            try:
                with self._slots or nullcontext():
                    item: T | _End = next(self._source, _End())
            except BaseException as error:
                self._items.put((None, error))
                return
            self._items.put((item, None))
            if isinstance(item, _End):
                return

    def __iter__(self) -> Iterator[T]:
        return self

    def start(self) -> ReadAhead[T]:
        """Begin reading the first item now, before the caller asks for it."""
        if not self._started:
            self._started = True
            self._worker.start()
            self._wanted.put(True)
        return self

    def __next__(self) -> T:
        if self._finished:
            raise StopIteration
        self.start()
        item, error = self._items.get()
        if error is not None:
            self._finished = True
            raise error
        if isinstance(item, _End):
            self._finished = True
            raise StopIteration
        self._wanted.put(True)  # the next one is read while the caller works on this one
        return item  # type: ignore[return-value]

    def close(self) -> None:
        """Read no more: the worker ends after the item it is reading, if any."""
        self.abandoned.set()
        if not self._finished:
            self._finished = True
            self._wanted.put(False)


D = TypeVar("D")


def days_ahead(
    days: Iterable[D],
    pages_of: Callable[[D, threading.Event], Iterator[T]],
    slots: threading.Semaphore,
    ahead: int,
) -> Iterator[tuple[D, ReadAhead[T]]]:
    """Each day with its pages, in order, while the first pages of the next `ahead` days are
    fetched (at most as many requests at once as `slots` allows). `pages_of(day, abandoned)`
    makes a day's pages; what was started and not taken is abandoned when this ends."""
    started: deque[tuple[D, ReadAhead[T]]] = deque()
    remaining = iter(days)
    try:
        while True:
            while len(started) <= ahead:
                day = next(remaining, _End())
                if isinstance(day, _End):
                    break
                abandoned = threading.Event()
                started.append((day, ReadAhead(pages_of(day, abandoned), abandoned, slots).start()))
            if not started:
                return
            yield started.popleft()
    finally:
        for _, source in started:
            source.close()
