"""Reading one page ahead in a worker thread: the same items in the same order, one ahead and
no more, an error where its item would have been, and nothing read after the caller stops."""

from __future__ import annotations

import signal
import threading
import time
from collections.abc import Iterator

import pytest

from heroku_audit_trail.days.ahead import ReadAhead


class Source:
    """Items 0..count-1, noting how far the worker has asked; `fail_at` raises there."""

    def __init__(self, count: int, fail_at: int | None = None) -> None:
        self.count = count
        self.fail_at = fail_at
        self.asked = 0
        self.threads: set[str] = set()
        self.release = threading.Event()
        self.release.set()

    def __iter__(self) -> Iterator[int]:
        for item in range(self.count):
            self.asked = item + 1
            self.threads.add(threading.current_thread().name)
            self.release.wait()
            if item == self.fail_at:
                raise ValueError(f"page {item} failed")
            yield item


def settle() -> None:
    time.sleep(0.05)  # lets the worker run as far as it may


def test_every_item_in_order_one_ahead_and_no_more() -> None:
    source = Source(5)
    ahead = ReadAhead(iter(source))
    settle()
    assert source.asked == 0  # nothing is read before the caller asks
    seen = []
    for item in ahead:
        settle()
        assert source.asked <= item + 2  # this one and, at most, the next
        seen.append(item)
    assert seen == [0, 1, 2, 3, 4]
    assert source.threads == {"read-ahead"}


def test_an_error_comes_after_the_items_before_it() -> None:
    ahead = ReadAhead(iter(Source(5, fail_at=3)))
    seen = []
    with pytest.raises(ValueError, match="page 3 failed"):
        for item in ahead:
            seen.append(item)
    assert seen == [0, 1, 2]
    assert list(ahead) == []  # over: no second error, no more items


def test_nothing_more_is_read_once_the_caller_stops() -> None:
    source = Source(100)
    ahead = ReadAhead(iter(source))
    assert next(ahead) == 0
    (worker,) = [t for t in threading.enumerate() if t.name == "read-ahead"]
    settle()
    ahead.close()
    settle()
    assert source.asked == 2  # the one read ahead, and no other
    assert list(ahead) == []
    worker.join(timeout=5)
    assert not worker.is_alive()  # it ended, rather than waiting for ever


def test_a_signal_reaches_a_caller_waiting_for_a_slow_page() -> None:
    """The main thread waits in the queue while the worker is stuck (a server that does not
    answer): SIGALRM's handler still runs there and its exception ends the wait."""
    source = Source(3)
    source.release.clear()
    ahead = ReadAhead(iter(source))

    def alarm(signum: int, frame: object) -> None:
        raise TimeoutError("deadline")

    previous = signal.signal(signal.SIGALRM, alarm)
    try:
        signal.setitimer(signal.ITIMER_REAL, 0.2)
        started = time.monotonic()
        with pytest.raises(TimeoutError):
            next(ahead)
        assert time.monotonic() - started < 5
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)
        ahead.close()
        source.release.set()
