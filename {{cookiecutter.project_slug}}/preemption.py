"""Turn SIGTERM into a request to stop after the current step, so a preempted pod saves its work.

Run:ai preempts `train` workloads by deleting their pods: Kubernetes sends SIGTERM, waits
terminationGracePeriodSeconds, then sends SIGKILL. `mlflow run` makes this program the container's
PID 1, and PID 1 ignores SIGTERM unless it installs a handler, so without this module every
preemption would end in SIGKILL (exit 137), which the Job template treats as a crash.

Standard library only: train.py installs the handler before its slow imports, so a pod preempted
while it starts up still exits with PREEMPTED_EXIT_CODE.
"""

from __future__ import annotations

import signal
import sys

# 128 + SIGTERM: the exit code the Job template's podFailurePolicy lets the Job retry.
PREEMPTED_EXIT_CODE = 128 + signal.SIGTERM


class Preempted(Exception):
    """Raised by the training loop once the run's state is saved; main() exits with PREEMPTED_EXIT_CODE."""


class StopRequest:
    """Remembers that SIGTERM arrived; the training loop checks it between epochs."""

    def __init__(self) -> None:
        self.received: int | None = None

    def install(self) -> StopRequest:
        signal.signal(signal.SIGTERM, self._handle)
        return self

    def _handle(self, signum: int, _frame: object) -> None:
        if self.received is None:
            print(f"received {signal.Signals(signum).name}: saving a checkpoint after the current epoch, then "
                  f"exiting {PREEMPTED_EXIT_CODE} so the Job replaces this pod", file=sys.stderr, flush=True)
        self.received = signum

    @property
    def requested(self) -> bool:
        return self.received is not None
