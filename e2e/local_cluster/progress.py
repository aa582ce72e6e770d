"""Print each step of a long operation with its elapsed time, so a slow CI log explains itself."""

from __future__ import annotations

import sys
import time
from contextlib import contextmanager
from pathlib import Path

_START = time.monotonic()


def say(message: str) -> None:
    print(f"[{time.monotonic() - _START:7.1f}s] {message}", file=sys.stderr, flush=True)


@contextmanager
def step(name: str):
    started = time.monotonic()
    say(f"{name} ...")
    try:
        yield
    except BaseException:
        say(f"{name}: FAILED after {time.monotonic() - started:.1f}s")
        raise
    say(f"{name}: done in {time.monotonic() - started:.1f}s")


class ClusterError(RuntimeError):
    """A failure with its cause and the log to read."""

    def __init__(self, message: str, log: object | None = None):
        super().__init__(f"{message}" + (f" (log: {log}){log_tail(log)}" if log else ""))
        self.log = log


def log_tail(log: object, lines: int = 12) -> str:
    """The log's last lines, indented: the message keeps the cause when a clean-up removes the log itself."""
    try:
        tail = Path(str(log)).read_text(errors="replace").splitlines()[-lines:]
    except OSError:
        return ""
    return "".join(f"\n    {line[:300]}" for line in tail)
