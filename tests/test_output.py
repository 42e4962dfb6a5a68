"""The stdout writer under a stop, in a process of its own (it installs signal handlers)."""

from __future__ import annotations

import subprocess
import sys

import orjson

# A reader that never reads, 1 MB of 5 KB lines, SIGTERM after 0.5 s: the write must end at a
# syscall once the grace (1 s here, as --stop-grace 1 sets it) is over (not spin until an
# alarm cuts it), counting exactly the whole lines that went into the pipe.
STALLED = r"""
import os, signal, threading, orjson
from heroku_audit_trail.logs import Log
from heroku_audit_trail.output import EventWriter, StopGuard
read_end, write_end = os.pipe()
guard = StopGuard(grace=1.0)
guard.install()
writer = EventWriter(open(write_end, "wb", buffering=0, closefd=False), Log("json"), guard)
calls = 0
write_some = writer._write_some
def counted(data, offset):
    global calls
    calls += 1
    return write_some(data, offset)
writer._write_some = counted
threading.Timer(0.5, lambda: os.kill(os.getpid(), signal.SIGTERM)).start()
error = None
try:
    with guard.critical():
        writer.write([b'{"x":"' + b"a" * 5000 + b'"}\n' for _ in range(200)])
except BaseException as stop:
    error = type(stop).__name__
os.set_blocking(read_end, False)
got = b""
try:
    while chunk := os.read(read_end, 65536):
        got += chunk
except BlockingIOError:
    pass
print(orjson.dumps({"error": error, "calls": calls, "lines_done": writer.lines_done,
                    "whole_lines_in_pipe": got.count(b"\n")}).decode())
"""


def test_a_stalled_write_gives_up_at_a_syscall_and_counts_whole_lines() -> None:
    done = subprocess.run(
        [sys.executable, "-c", STALLED], capture_output=True, timeout=30, check=True
    )
    result = orjson.loads(done.stdout)
    assert result["error"] == "StoppedError"
    assert result["calls"] < 20  # no busy loop on a full, non-blocking pipe
    assert result["lines_done"] == result["whole_lines_in_pipe"] > 0


# After a stop, every step that must still run (the day's commit, a state save, the run
# records) is a critical section with a grace; six of them stall in turn (a disk that stopped
# answering). Each is abandoned, and all of them together end within twice the grace and 1 s of the
# stop, not six graces.
STALLED_SAVES = r"""
import os, signal, threading, time, orjson
from heroku_audit_trail.output import StopGuard
guard = StopGuard(grace=0.5)
guard.install()
threading.Timer(0.2, lambda: os.kill(os.getpid(), signal.SIGTERM)).start()
stopped_at = None
try:
    with guard.critical():
        stopped_at = time.monotonic() + 0.2
        time.sleep(100)
except BaseException:
    pass
abandoned = 1
for _ in range(5):
    try:
        with guard.critical():
            time.sleep(100)
    except BaseException:
        abandoned += 1
print(orjson.dumps({"abandoned": abandoned, "after_stop": time.monotonic() - stopped_at}).decode())
"""


def test_steps_that_stall_after_a_stop_all_end_within_twice_the_grace_and_a_second() -> None:
    done = subprocess.run(
        [sys.executable, "-c", STALLED_SAVES], capture_output=True, timeout=30, check=True
    )
    result = orjson.loads(done.stdout)
    assert result["abandoned"] == 6
    assert result["after_stop"] < 2 * 0.5 + 1 + 0.3, result  # six graces would be 3 s
