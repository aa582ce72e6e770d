"""`make run`: submit with `mlflow run --backend kubernetes`, and show what the Job does while it waits.

`mlflow run` submits and decides the outcome, unchanged; this runs it as a child and adds what a
person at the terminal needs: the run's URL, the pod's log as it is written, why a pod waits
(follow.py), every pod's log as artifacts of the run, why a failed run failed (why_failed.py), and
a Ctrl-C that removes the Job with its pods and marks the run KILLED (cancel.py). A second Ctrl-C
exits at once.
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import threading
import time
from urllib.parse import urlparse

MLFLOW_RUN = ["mlflow", "run", ".", "--backend", "kubernetes", "--backend-config", "kubernetes_config.json",
              "--build-image"]
CREATING_JOB = re.compile(r"=== Creating Job (\S+) ===")  # mlflow.projects.kubernetes logs it before creating
LOG_ARTIFACTS = "pod-logs"
INTERRUPTED = 130
JOB_APPEARS_SECONDS = 30
CHILD_EXIT_SECONDS = 30  # for `mlflow run` to cancel after its SIGINT, before it is killed
_print_lock = threading.Lock()


def say(line: str) -> None:
    with _print_lock:
        print(line, flush=True)


def run_url(run_id: str) -> str:
    from mlflow import MlflowClient

    uri = os.environ.get("MLFLOW_TRACKING_URI", "").rstrip("/")
    if urlparse(uri).scheme not in ("http", "https"):
        return f"run {run_id}"
    experiment = MlflowClient().get_run(run_id).info.experiment_id
    return f"{uri}/#/experiments/{experiment}/runs/{run_id}"


def keep_logs(run_id: str, logs: dict[str, str]) -> None:
    """Every pod's log, numbered in the order the pods ran, as artifacts of the run; after those of earlier
    submissions of the same run (make resume)."""
    from mlflow import MlflowClient

    client = MlflowClient()
    earlier = len(client.list_artifacts(run_id, LOG_ARTIFACTS))
    for number, (pod, text) in enumerate(logs.items(), start=earlier + 1):
        client.log_text(run_id, text, f"{LOG_ARTIFACTS}/{number:02d}-{pod}.log")
    say(f"run: the log of each pod ({len(logs)}) is kept in the run's artifacts, under {LOG_ARTIFACTS}/")


class Submission:
    """One `mlflow run` child, the Job it creates, and what follows that Job."""

    def __init__(self, command: list[str]):
        self.command = command
        self.child: subprocess.Popen | None = None
        self.job: str | None = None
        self.run_id: str | None = None
        self.cluster = None
        self.follower = None
        self.interrupts = 0
        self.project_pods = None  # follow.PodStates of this project's pods, watched from before the Job exists
        self.watching = threading.Event()  # set once that watch has listed, or could not start

    def on_interrupt(self, signum, frame) -> None:
        self.interrupts += 1
        if self.interrupts > 1:
            say(f"run: second Ctrl-C: exiting now. Left on the cluster: "
                f"{'Job ' + self.job + ' (make cancel JOB=' + self.job + ')' if self.job else 'nothing known'}")
            if self.child and self.child.poll() is None:
                os.killpg(self.child.pid, signal.SIGKILL)
            os._exit(INTERRUPTED)
        say("run: Ctrl-C: cancelling (Ctrl-C again to exit at once)")
        if self.follower:
            self.follower.cancelled = True
        if self.child and self.child.poll() is None:
            os.killpg(self.child.pid, signal.SIGINT)  # mlflow's own cancel: it stops waiting
            deadline = threading.Timer(CHILD_EXIT_SECONDS, self._kill_child)
            deadline.daemon = True
            deadline.start()

    def _kill_child(self) -> None:
        if self.child and self.child.poll() is None:
            os.killpg(self.child.pid, signal.SIGKILL)

    def _watch_project_pods(self) -> None:
        """Watch this project's pods before `mlflow run` creates the Job: its first pod can be scheduled, run,
        preempted and deleted before the Job's name is known, and would otherwise never be told."""
        from cluster import PROJECT_PODS, connect
        from follow import PodStates

        try:
            self.cluster = connect()
            self.project_pods = PodStates(self.cluster, PROJECT_PODS)
            self.project_pods.start()
            self.project_pods.listed.wait(JOB_APPEARS_SECONDS)
        except Exception:  # noqa: BLE001 - _job_created connects again and says what fails
            self.project_pods = None
        finally:
            self.watching.set()

    def _job_created(self, job: str) -> None:
        """Find the run in the Job's pod template and start following its pods."""
        from cluster import PROJECT_PODS, connect, read_job, run_id_of
        from follow import JobFollower, PodStates

        self.job = job
        try:
            self.watching.wait(JOB_APPEARS_SECONDS)
            self.cluster = self.cluster or connect()
            if self.project_pods is None:  # the early watch could not start: watch from now on
                self.project_pods = PodStates(self.cluster, PROJECT_PODS)
                self.project_pods.start()
            found, give_up = None, time.monotonic() + JOB_APPEARS_SECONDS
            while found is None and time.monotonic() < give_up:  # mlflow logs the line, then creates the Job
                found = read_job(self.cluster, job) or time.sleep(0.5)
            if found is None:
                raise LookupError(f"Job {job} did not appear within {JOB_APPEARS_SECONDS} s")
            self.run_id = run_id_of(found["spec"]["template"]["spec"])
            if self.run_id:
                say(f"run: {run_url(self.run_id)}")
            self.follower = JobFollower(self.cluster, job, say, self.project_pods)
            self.follower.start()
        except Exception as err:  # noqa: BLE001 - mlflow goes on waiting; only the live view is lost
            say(f"run: cannot follow Job {job}: {type(err).__name__}: {err}")

    def execute(self) -> int:
        signal.signal(signal.SIGINT, self.on_interrupt)
        threading.Thread(target=self._watch_project_pods, name="watch the project's pods", daemon=True).start()
        # A session of its own: the terminal's Ctrl-C reaches this process only, which hands it on once.
        self.child = subprocess.Popen(self.command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                      start_new_session=True, text=True, errors="replace", bufsize=1)
        for line in self.child.stdout:
            say(line.rstrip("\n"))
            created = CREATING_JOB.search(line)
            if created and self.job is None and not self.interrupts:
                threading.Thread(target=self._job_created, args=(created[1],), daemon=True).start()
        code = self.child.wait()
        if self.interrupts:
            return self._cancelled()
        self._stop_following()
        self._keep_logs()
        if code != 0 and self.job is None:
            say("run: mlflow run failed before it created a Job (see its message above): nothing was submitted")
        elif code != 0:
            import why_failed

            why_failed.main(self.job)
        return code

    def _keep_logs(self) -> None:
        if not (self.follower and self.run_id):
            return
        from cluster import pods_of_job

        logs = {name: "\n".join(lines) + "\n" for name, lines in self.follower.logs.items()}
        try:  # a pod that is still there has its whole log, also what a broken stream missed
            for pod in pods_of_job(self.cluster, self.job):
                name = pod["metadata"]["name"]
                logs[name] = self.cluster.core.read_namespaced_pod_log(name, self.cluster.namespace)
            keep_logs(self.run_id, logs)
        except Exception as err:  # noqa: BLE001 - the run's outcome is decided; its logs are extra
            say(f"run: could not keep the pod logs in the run: {type(err).__name__}: {err}")

    def _cancelled(self) -> int:
        import cancel

        if self.job is None:
            say("run: interrupted before the Job was created: nothing of this run is on the cluster")
            return INTERRUPTED
        if self.cluster is None:
            from cluster import connect

            self.cluster = connect()
        if self.follower:  # it may have started after the Ctrl-C
            self.follower.cancelled = True
        cancel.cancel(self.cluster, self.job, lambda line: say(f"run: {line}"), self.run_id)
        self._stop_following()  # its pods are gone: the rest of their logs has come
        self._keep_logs()
        return INTERRUPTED

    def _stop_following(self) -> None:
        if self.follower:
            self.follower.finish()
        if self.project_pods:
            self.project_pods.stopped.set()


def prepare_peers_service() -> bool:
    """A several-node project's headless Service, made before the Job: its pods look each other up from their
    first second. False (and why) when it cannot be made."""
    from kubernetes.client.exceptions import ApiException

    from cluster import PEERS_SERVICE_FILE, connect, ensure_peers_service

    if not PEERS_SERVICE_FILE.is_file():
        return True
    try:
        created = ensure_peers_service(connect())
    except ApiException as err:
        say(f"run: cannot create the headless Service of {PEERS_SERVICE_FILE.name} ({err.status} {err.reason}): "
            "the pods of a several-node run find each other by it. Nothing was submitted.")
        return False
    if created:
        say(f"run: {created}")
    return True


def main(argv: list[str]) -> int:
    if not prepare_peers_service():
        return 2
    return Submission([*MLFLOW_RUN, *argv]).execute()


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
