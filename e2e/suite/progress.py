"""Progress lines of the e2e suite: runs take minutes, and a person watching wants to see which phase each is in."""

from __future__ import annotations

import sys
import threading
import time

_lock = threading.Lock()  # variants run in threads: one line at a time


def _print_to_stderr(line: str) -> None:
    print(line, file=sys.__stderr__, flush=True)


# Where progress lines go; the live_progress plugin sends them past pytest's output capture.
sink = _print_to_stderr


def progress(message: str) -> None:
    with _lock:
        sink(f"[e2e {time.strftime('%H:%M:%S')}] {message}")
