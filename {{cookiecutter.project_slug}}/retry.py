"""Ride out a tracking server that restarts or a network that blips, instead of throwing the run away.

A pod that cannot reach the tracking server is not a broken training: its checkpoints are safe in
the run. So a failed tracking call or checkpoint upload is tried again with growing pauses for
up to `--retry-seconds`; after that the pod exits TRANSIENT_EXIT_CODE, which the Job template
counts against backoffLimit and answers with a new pod that resumes from the last checkpoint.
Any other error is a bug and still fails the Job at once.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Callable
from typing import TypeVar

import requests
from mlflow.exceptions import MlflowException

T = TypeVar("T")
# Short enough that a restarted server is noticed within seconds, long enough not to hammer one that is down.
FIRST_PAUSE, LONGEST_PAUSE = 1.0, 10.0


class TrackingUnavailable(Exception):
    """The tracking server did not answer within the retry budget; main() exits TRANSIENT_EXIT_CODE."""


def is_transient(err: BaseException) -> bool:
    """A failure the same call may not meet again: no connection, a timeout, or the server's 5xx/429."""
    if isinstance(err, requests.HTTPError) and err.response is not None:
        return err.response.status_code >= 500 or err.response.status_code == 429
    if isinstance(err, (requests.ConnectionError, requests.Timeout, ConnectionError, TimeoutError)):
        return True
    if isinstance(err, MlflowException):
        # MLflow reports unreachable servers and 5xx answers as INTERNAL_ERROR (500) or TEMPORARILY_UNAVAILABLE.
        return err.get_http_status_code() >= 500
    return False


class Retry:
    def __init__(self, seconds: float):
        self.seconds = seconds

    def __call__(self, what: str, call: Callable[..., T], *args, **kwargs) -> T:
        give_up_at = time.monotonic() + self.seconds
        pause = FIRST_PAUSE
        while True:
            try:
                return call(*args, **kwargs)
            except Exception as err:  # noqa: BLE001 - sorted below: only transient failures are retried
                if not is_transient(err):
                    raise
                left = give_up_at - time.monotonic()
                if left <= 0:
                    raise TrackingUnavailable(
                        f"{what}: the tracking server did not answer for {self.seconds:g} s "
                        f"({type(err).__name__}: {str(err)[:300]})") from err
                pause = min(pause, left)
                print(f"{what} failed ({type(err).__name__}: {str(err)[:200]}); trying again in {pause:.0f} s",
                      file=sys.stderr, flush=True)
                time.sleep(pause)
                pause = min(pause * 2, LONGEST_PAUSE)
