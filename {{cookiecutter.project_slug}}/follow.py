"""Follow a submitted Job from the terminal: why its pod waits, what it prints, how it ended.

MLflow's Kubernetes backend prints only the Job's status changes. This follows each of the Job's
pods as it appears (the first attempt, each replacement after a preemption, and on several nodes
the pods of one gang side by side): while one is Pending it prints the scheduler's reason once per
change; once it runs it streams its log line by line; when it ends it says how, and whether the
Job hands over to a replacement. It only reads: what MLflow submitted and how the run's outcome is
decided stay MLflow's.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Callable

from cluster import JOB_NAME_LABEL, Cluster
from preemption import PREEMPTED_EXIT_CODE, TRANSIENT_EXIT_CODE

COMPLETION_INDEX = "batch.kubernetes.io/job-completion-index"  # an Indexed Job's pod: its node rank
POLL_SECONDS = 2.0  # how often a waiting pod's state is read again (a terminal display, not a deadline)
ENDINGS = {
    0: "finished",
    PREEMPTED_EXIT_CODE: "stopped by SIGTERM (preempted or deleted) after saving a checkpoint",
    TRANSIENT_EXIT_CODE: "could not reach the tracking server for --retry-seconds",
    137: "was killed (SIGKILL: out of memory, or a grace period overrun)",
}
HANDED_OVER = (PREEMPTED_EXIT_CODE, TRANSIENT_EXIT_CODE)  # the exits the Job template answers with a new pod
HAND_OVER = "; the Job starts a replacement that resumes the run from its last checkpoint, if its backoffLimit allows"


def waiting_reason(pod: dict) -> str | None:
    """The scheduler's word on a pod it has not placed: PodScheduled=False and its message."""
    for condition in pod.get("status", {}).get("conditions", []):
        if condition["type"] == "PodScheduled" and condition["status"] == "False":
            return condition.get("message") or condition.get("reason") or "waiting for the scheduler"
    return None


def has_started(pod: dict) -> bool:
    """A container that runs or ran has a log to stream."""
    return any("running" in status.get("state", {}) or "terminated" in status.get("state", {})
               for status in pod.get("status", {}).get("containerStatuses", []))


def ending(pod: dict, events: list[dict], replaced: bool = True) -> str:
    """How a pod ended, in words: its exit code, else the scheduler's eviction message for a pod that is gone.
    replaced: whether the Job may still start a replacement (not once `make run` cancels it)."""
    hand_over = HAND_OVER if replaced else ""
    for status in pod.get("status", {}).get("containerStatuses", []):
        terminated = status.get("state", {}).get("terminated")
        if terminated:
            code = terminated.get("exitCode")
            words = ENDINGS.get(code, "failed")
            if terminated.get("reason") == "OOMKilled":
                words = "was killed for using more memory than its limit (OOMKilled)"
            return f"exit {code}: {words}{hand_over if code in HANDED_OVER else ''}"
    evicted = [e["message"] for e in events if e.get("reason") in ("Evict", "Preempting", "Preempted")]
    if evicted:
        return f"{evicted[-1]}{hand_over}"
    return "was deleted before it reported an exit code"


class PodStates(threading.Thread):
    """The project's pods (those matching `selector`) as a watch sees them, kept after they are deleted: a
    preempted pod is gone from the API a moment after it exits, and only its last state still tells how it
    ended."""

    def __init__(self, cluster: Cluster, selector: str):
        super().__init__(name=f"watch pods ({selector})", daemon=True)
        self.cluster, self.selector = cluster, selector
        self.latest: dict[str, dict] = {}
        self.gone: set[str] = set()
        self.changed = threading.Condition()
        self.stopped = threading.Event()
        self.listed = threading.Event()  # set once the first listing is in: from then on nothing is missed

    def run(self) -> None:
        from kubernetes import watch

        core, namespace = self.cluster.core, self.cluster.namespace
        while not self.stopped.is_set():
            try:  # list, then watch from the list's version: no change falls in between
                listing = json.loads(core.list_namespaced_pod(namespace, label_selector=self.selector,
                                                              _preload_content=False).data)
                names = {pod["metadata"]["name"] for pod in listing["items"]}
                self._update(listing["items"], gone=set(self.latest) - names)
                self.listed.set()
                for event in watch.Watch().stream(core.list_namespaced_pod, namespace, label_selector=self.selector,
                                                  resource_version=listing["metadata"]["resourceVersion"],
                                                  timeout_seconds=30):
                    pod = event["raw_object"]
                    if event["type"] == "ERROR" or self.stopped.is_set():
                        break
                    self._update([pod], gone={pod["metadata"]["name"]} if event["type"] == "DELETED" else set())
            except Exception:  # noqa: BLE001 - an expired version or a broken connection: list again
                self.stopped.wait(POLL_SECONDS)

    def _update(self, pods: list[dict], gone: set[str]) -> None:
        with self.changed:
            self.latest.update({pod["metadata"]["name"]: pod for pod in pods})
            self.gone |= gone
            self.changed.notify_all()

    def wait(self, seconds: float) -> None:
        """Until the next change, or `seconds`."""
        with self.changed:
            self.changed.wait(seconds)

    def in_order(self, job: str) -> list[str]:
        """The Job's pods seen so far, oldest first."""
        with self.changed:
            pods = [pod for pod in self.latest.values()
                    if (pod["metadata"].get("labels") or {}).get(JOB_NAME_LABEL) == job]
            pods.sort(key=lambda pod: pod["metadata"]["creationTimestamp"])
            return [pod["metadata"]["name"] for pod in pods]


class JobFollower(threading.Thread):
    """Prints, via `say`, what the Job's pods do until `finish()`; keeps every pod's log in `logs`, in order.

    `states` is the caller's watch of the project's pods, started before the Job was created (submit.py), so
    that a pod preempted and deleted before the Job's name was known is still told."""

    def __init__(self, cluster: Cluster, job: str, say: Callable[[str], None], states: PodStates):
        super().__init__(name=f"follow {job}", daemon=True)
        self.cluster, self.job, self.say = cluster, job, say
        self.states = states
        self.logs: dict[str, list[str]] = {}
        self.cancelled = False  # set when `make run` deletes the Job: no replacement follows
        self._finished = threading.Event()

    def finish(self, timeout: float = 30) -> None:
        """The Job is done: stream what is left of its pods' logs, then stop."""
        self._finished.set()
        self.join(timeout)

    def run(self) -> None:
        try:
            self._follow()
        except Exception as err:  # noqa: BLE001 - following is a courtesy; mlflow still decides the run
            self.say(f"(live logs stopped: {type(err).__name__}: {err})")

    def _follow(self) -> None:
        """One follower per pod, started as the pod appears: a gang's pods run, and print, side by side; a
        replacement (the same index) is followed once its predecessor's end has been said."""
        followers: dict[str, threading.Thread] = {}
        latest_of_index: dict[str, threading.Thread] = {}
        while True:
            for name in self.states.in_order(self.job):
                if name in followers:
                    continue
                index = self.states.latest[name]["metadata"].get("annotations", {}).get(COMPLETION_INDEX, "0")
                follower = threading.Thread(target=self._follow_pod, args=(name, latest_of_index.get(index)),
                                            daemon=True)
                followers[name] = latest_of_index[index] = follower
                follower.start()
            if self._finished.is_set() and not any(f.is_alive() for f in followers.values()):
                return
            self.states.wait(POLL_SECONDS)

    def _follow_pod(self, name: str, predecessor: threading.Thread | None) -> None:
        try:
            if predecessor:
                predecessor.join()
                self.say(f"pod {name} takes over")
            self._wait_until_started(name)
            self._stream(name)
        except Exception as err:  # noqa: BLE001 - following is a courtesy; mlflow still decides the run
            self.say(f"(live log of {name} stopped: {type(err).__name__}: {err})")

    def _ended(self, name: str) -> bool:
        pod = self.states.latest[name]
        return name in self.states.gone or pod["status"].get("phase") in ("Succeeded", "Failed")

    def _wait_until_started(self, name: str) -> None:
        said = None
        while not self._ended(name) and not has_started(self.states.latest[name]):
            pod = self.states.latest[name]
            reason = waiting_reason(pod) or (
                "scheduled, starting its container" if pod["spec"].get("nodeName") else "waiting for the scheduler")
            if reason != said:
                self.say(f"pod {name} is Pending: {reason}")
                said = reason
            self.states.wait(POLL_SECONDS)

    def _stream(self, name: str) -> None:
        """Print the pod's log as it is written; a broken stream is opened again, skipping what was printed."""
        lines = self.logs.setdefault(name, [])
        while name not in self.states.gone:
            try:
                response = self.cluster.core.read_namespaced_pod_log(name, self.cluster.namespace, follow=True,
                                                                     _preload_content=False)
                for number, raw in enumerate(_lines(response)):
                    if number >= len(lines):
                        lines.append(raw.decode(errors="replace"))
                        self.say(f"[{name}] {lines[-1]}")
            except Exception as err:  # noqa: BLE001 - the pod went away, or the connection broke
                self.states.wait(POLL_SECONDS)
                if name not in self.states.gone:
                    self.say(f"(log stream of {name} broke: {type(err).__name__}; opening it again)")
                continue
            self.states.wait(1)  # the stream ends with the container: its status follows
            if self._ended(name):
                break
        events = self._events(name) if name in self.states.gone else []
        self.say(f"pod {name} ended: {ending(self.states.latest[name], events, not self.cancelled)}")

    def _events(self, name: str) -> list[dict]:
        events = self.cluster.core.list_namespaced_event(self.cluster.namespace,
                                                         field_selector=f"involvedObject.name={name}",
                                                         _preload_content=False)
        return json.loads(events.data)["items"]


def _lines(response):
    """The log stream line by line, without its newlines."""
    pending = b""
    for chunk in response.stream(1024, decode_content=False):
        pending += chunk
        *complete, pending = pending.split(b"\n")
        yield from complete
    if pending:
        yield pending
