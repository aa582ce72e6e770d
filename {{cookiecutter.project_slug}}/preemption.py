"""Turn SIGTERM into a request to stop after the current step, and name the exit codes the Job template knows.

Run:ai preempts `train` workloads by deleting their pods: Kubernetes sends SIGTERM, waits
terminationGracePeriodSeconds, then sends SIGKILL. `mlflow run` makes this program the container's
PID 1, and PID 1 ignores SIGTERM unless it installs a handler, so without this module every
preemption would end in SIGKILL (exit 137), which the Job template treats as a crash.

Standard library only: train.py installs the handler before its slow imports, so a pod preempted
while it starts up still exits with PREEMPTED_EXIT_CODE.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

# 128 + SIGTERM: stopped on request with the progress saved. The Job replaces the pod, which resumes.
PREEMPTED_EXIT_CODE = 128 + signal.SIGTERM
# EX_TEMPFAIL: the tracking server stayed unreachable. The Job replaces the pod, counted against backoffLimit.
TRANSIENT_EXIT_CODE = 75
# Each of several training processes (launch.py) says which it is.
WHO = f"rank {os.environ['RANK']}: " if "RANK" in os.environ else ""


class Preempted(Exception):
    """Raised by the training loop once the run's state is saved; main() exits with PREEMPTED_EXIT_CODE."""


class StopRequest:
    """Remembers that SIGTERM arrived, and when; the training loop checks it after every step."""

    def __init__(self) -> None:
        self.received: int | None = None
        self.at: float | None = None  # time.monotonic() of the first signal
        self.children: list[subprocess.Popen] = []
        self.saved = False  # the stop's checkpoint is written: this process is on its way out

    def forward_to(self, child: subprocess.Popen) -> None:
        """Pass the first signal on to a process that trains for this one (torchrun, launch.py), now if it came
        already."""
        self.children.append(child)
        if self.received is not None:
            child.send_signal(self.received)

    def install(self) -> StopRequest:
        signal.signal(signal.SIGTERM, self._handle)
        return self

    def stopped_with_a_checkpoint(self) -> None:
        """Called once the stop's checkpoint is saved. A signal after that changes nothing, and says so: with
        several processes, torchrun sends SIGTERM to the ranks still exiting as soon as the first one has exited."""
        self.saved = True

    def _handle(self, signum: int, _frame: object) -> None:
        if self.saved:
            print(f"{WHO}{signal.Signals(signum).name} while exiting: the checkpoint is saved already", file=sys.stderr,
                  flush=True)
            return
        if self.received is None:
            self.at = time.monotonic()
            print(f"{WHO}received {signal.Signals(signum).name}: saving a checkpoint after the current step, then "
                  f"exiting {PREEMPTED_EXIT_CODE} so the Job replaces this pod", file=sys.stderr, flush=True)
            for child in self.children:  # once: a second SIGTERM would cut torchrun's own shutdown short
                if child.poll() is None:
                    child.send_signal(signum)
        self.received = signum

    @property
    def requested(self) -> bool:
        return self.received is not None
