"""One way to wait for the cluster: poll a predicate until it holds, with a deadline and a reason to give up."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import TypeVar

T = TypeVar("T")


class WaitFailed(TimeoutError):
    """The awaited state never came: the deadline passed, or give_up() named a reason it never will."""


def wait_until(predicate: Callable[[], T], timeout: float, what: str, interval: float = 0.1,
               give_up: Callable[[], str | None] | None = None) -> T:
    """Return predicate()'s first truthy value; raise WaitFailed naming `what` otherwise."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        reason = give_up() if give_up else None
        if reason:
            raise WaitFailed(f"gave up waiting for {what}: {reason}")
        if time.monotonic() > deadline:
            raise WaitFailed(f"timed out after {timeout:g}s waiting for {what}")
        time.sleep(interval)


def wait_for_default_service_account(api, namespace: str, timeout: float = 60) -> None:
    """A new namespace takes no pods until its default ServiceAccount exists (the admission plugin refuses them)."""
    wait_until(lambda: api.get(f"/api/v1/namespaces/{namespace}/serviceaccounts")["items"], timeout,
               f"the default ServiceAccount in {namespace}")
