"""The tracking-server outage, played in the background from the session's first test on.

Most of its minute is waiting: for the pod to train past epoch 20, for the pod to find the server gone,
for the server to come back. On a tracking server of its own it disturbs no other run, so it goes on
beside the first test (Ctrl-C, itself mostly waiting) instead of after every other; its test asserts
what it saw. Until it ends (`settle`) it holds one of the matrix pool's slots, as a run of the matrix
would: one more pod on the node's 2 CPUs would wait for CPU, and in a researcher's one project an
interactive run would preempt it.
"""

from __future__ import annotations

import threading

from kube import ApiError

from .preemption import RunWatch
from .progress import progress
from .runner import Outcome
from .tracking import TrackingServer
from .variants import Variant


class TrackingOutage:
    def __init__(self, e2e, variant: Variant, after_epoch: int):
        self.e2e, self.variant, self.after_epoch = e2e, variant, after_epoch
        self.server: TrackingServer | None = None
        self._thread: threading.Thread | None = None
        self._result: Outcome | BaseException | None = None

    def start(self) -> TrackingOutage:
        self._thread = threading.Thread(target=self._play, name=f"{self.variant.id} scenario", daemon=True)
        self._thread.start()
        return self

    def settle(self, timeout: float) -> Outcome:
        """The run's outcome once the scenario has ended; what went wrong in it is raised here."""
        if self._thread:
            self._thread.join(timeout)
        if self._thread is None or self._thread.is_alive():
            raise TimeoutError(f"{self.variant.id}: the scenario did not end within {timeout:g}s")
        if isinstance(self._result, BaseException):
            raise self._result
        return self._result

    def _play(self) -> None:
        try:
            self._result = self._ride_out()
        except BaseException as err:  # noqa: BLE001 - raised again by settle(), in the test's thread
            self._result = err

    def _ride_out(self) -> Outcome:
        self.server = self.e2e.own_tracking_server(self.variant.id)
        run = self.e2e.project_run(self.variant, tracking=self.server)
        o = run.outcome
        box: dict = {}
        worker = threading.Thread(target=lambda: box.update(outcome=run.execute()), name=f"{o.slug} make run")
        worker.start()
        watch = RunWatch(run, worker, box)

        def pod_log() -> str:
            try:
                return "".join(self.e2e.api.raw(f"/api/v1/namespaces/{o.namespace}/pods/{p['metadata']['name']}/log")
                               .decode(errors="replace") for p in watch.training_pods(terminating=True))
            except ApiError:
                return ""

        try:
            watch.until(lambda: watch.last_epoch() >= self.after_epoch, f"{o.slug}: training past epoch "
                        f"{self.after_epoch}", timeout=run.deadline + 300)
            progress(f"{self.variant.id}: its tracking server stops while the pod trains")
            self.server.stop()
            watch.until(lambda: "trying again in" in pod_log(), "the pod to retry a tracking call", timeout=120)
        finally:
            self.server.start()
        progress(f"{self.variant.id}: its tracking server is back")
        worker.join(run.deadline + 300)
        return box.get("outcome", o)
