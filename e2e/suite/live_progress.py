"""pytest plugin for live e2e progress: `pytest -p suite.live_progress` (make e2e does this).

Runs take minutes, and pytest captures output at the file-descriptor level, so progress lines
written during a test would appear only at its end. Loaded with -p, this module is imported before
capture starts: it keeps a duplicate of the terminal's stdout and sends progress lines there, from
any thread, without touching pytest's capture.
"""

from __future__ import annotations

import os
import sys

_terminal = os.fdopen(os.dup(sys.stdout.fileno()), "w", buffering=1, encoding="utf-8", errors="replace")


def _to_terminal(line: str) -> None:
    _terminal.write(line + "\n")
    _terminal.flush()


def pytest_configure(config) -> None:
    from suite import progress

    progress.sink = _to_terminal
