"""A cluster as an ordered list of steps, each with its undo, so that down is up in reverse by construction."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from .procs import Daemon


@dataclass(frozen=True)
class Step:
    name: str
    up: Callable[[], None]  # idempotent: starts what is missing, repairs what is broken, keeps what works
    down: Callable[[], None] | None = None  # None: nothing to undo (a check, or a cache kept across clusters)
    daemon: Daemon | None = None  # the long-running process this step owns, for status
