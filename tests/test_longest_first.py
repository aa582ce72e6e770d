"""make test's scheduler (tests/longest_first.py), driven as xdist drives it, over make test's own mix of tests:
a few of a minute or more (the generated projects' suites, by their seconds markers), hundreds of under a second."""

import heapq

import pytest

from .longest_first import LongestFirst
from .test_generated_project import SECONDS

LONG = sorted((seconds for shards in SECONDS.values() for seconds in shards.values()), reverse=True)
QUICK = [0.3] * 270
WORKERS = 3


class Worker:
    """What LongestFirst sees of an xdist worker: the tests sent to it, and its shutdown."""

    def __init__(self, name: str):
        self.name, self.received, self.shutting_down = name, [], False
        self.gateway = type("Gateway", (), {"id": name})()

    def send_runtest_some(self, indices: list[int]) -> None:
        self.received.extend(indices)

    def shutdown(self) -> None:
        self.shutting_down = True


class Config:
    def getvalue(self, name):
        return {"tx": [f"{WORKERS}*popen"]}[name]

    def getoption(self, name):
        return {"maxschedchunk": None}[name]


def run(seconds: list[float]) -> tuple[dict[str, list[int]], dict[int, float], float]:
    """Each worker runs what it holds in order, a test only once it holds the next one or was shut down, as
    xdist's workers do; the tests each worker ran, when each started, and when the last one ended."""
    scheduler = LongestFirst(Config())
    workers = [Worker(f"gw{i}") for i in range(WORKERS)]
    for worker in workers:
        scheduler.add_node(worker)
        scheduler.add_node_collection(worker, [f"test_{i}" for i in range(len(seconds))])
    scheduler.schedule()
    started, running, now = {}, [], 0.0

    def start_next(worker: Worker) -> None:
        queue = scheduler.node2pending[worker]
        if queue and queue[0] not in started and (len(queue) >= 2 or worker.shutting_down):
            started[queue[0]] = now
            heapq.heappush(running, (now + seconds[queue[0]], worker.name, queue[0]))

    by_name = {worker.name: worker for worker in workers}
    for worker in workers:
        start_next(worker)
    while running:
        now, name, index = heapq.heappop(running)
        scheduler.mark_test_complete(by_name[name], index)
        for worker in workers:
            start_next(worker)
    assert scheduler.tests_finished and not scheduler.has_pending
    return {worker.name: worker.received for worker in workers}, started, now


def test_every_test_runs_once_and_every_long_one_starts_before_any_waits():
    seconds = LONG + QUICK
    received, started, end = run(seconds)
    ran = sorted(index for indices in received.values() for index in indices)
    assert ran == list(range(len(seconds))), "each test sent to exactly one worker"
    # No long test waits behind another: the first WORKERS start at once, each next one as a worker frees up.
    long_starts = [started[i] for i in range(len(LONG))]
    assert long_starts[:WORKERS] == [0.0] * WORKERS
    for worker_tests in received.values():
        for before, after in zip(worker_tests, worker_tests[1:], strict=False):
            assert not (before < len(LONG) and after < len(LONG)), \
                f"long test {after} was queued behind long test {before}"
    # The quick tests fill in around the long ones: the run ends within the shortest long test of an even share.
    assert end <= max(sum(seconds) / WORKERS, LONG[0]) + LONG[-1], f"ended at {end:.0f} s"


@pytest.mark.parametrize("tests", [1, 2, 5])
def test_fewer_tests_than_workers_can_hold_all_run(tests):
    received, started, _ = run([1.0] * tests)
    assert sorted(started) == list(range(tests))
