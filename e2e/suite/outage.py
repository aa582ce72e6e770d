"""The tracking-server outage, played in the background from the session's first test on.

Most of its minute is waiting: for the pod to train past epoch 20, for the pod to find the server gone,
for the server to come back. On a tracking server of its own it disturbs no other run, so it goes on
beside the first test (Ctrl-C, itself mostly waiting) instead of after every other; its test asserts
what it saw. The matrix's pool waits for it to end (`settle`): a third pod on the node's 2 CPUs would
wait for CPU, and in a researcher's one project an interactive run would preempt it.
"""

from __future__ import annotations

import threading

import mlflow
from kube import ApiError, wait_until

from .progress import progress
from .runner import Outcome
from .tracking import TrackingServer
from .variants import Variant


class TrackingOutage:
    def __init__(self, e2e, variant: Variant, after_epoch: int, metric: str):
        self.e2e, self.variant, self.after_epoch, self.metric = e2e, variant, after_epoch, metric
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
        client = mlflow.MlflowClient(self.server.uri)

        def ended() -> str | None:
            return None if worker.is_alive() else f"`make run` ended early:\n{run.outcome.output[-3000:]}"

        def trained_epochs() -> int:
            experiment = client.get_experiment_by_name(o.experiment)
            runs = client.search_runs([experiment.experiment_id]) if experiment else []
            return max((m.step for m in client.get_metric_history(runs[0].info.run_id, self.metric)), default=-1) \
                if runs else -1

        def pod_log() -> str:
            try:
                pods = self.e2e.api.get(f"/api/v1/namespaces/{o.namespace}/pods",
                                        labelSelector=f"app.kubernetes.io/name={o.slug}")["items"]
                return "".join(self.e2e.api.raw(f"/api/v1/namespaces/{o.namespace}/pods/{p['metadata']['name']}/log")
                               .decode(errors="replace") for p in pods)
            except ApiError:
                return ""

        try:
            wait_until(lambda: trained_epochs() >= self.after_epoch, run.deadline + 300,
                       f"{o.slug}: training past epoch {self.after_epoch}", interval=0.5, give_up=ended)
            progress(f"{self.variant.id}: its tracking server stops while the pod trains")
            self.server.stop()
            wait_until(lambda: "trying again in" in pod_log(), 120, "the pod to retry a tracking call", interval=0.5,
                       give_up=ended)
        finally:
            self.server.start()
        progress(f"{self.variant.id}: its tracking server is back")
        worker.join(run.deadline + 300)
        return box.get("outcome", o)
