"""make test's order across its workers: the costliest tests start first, the quick ones fill in around them.

A handful of tests (the generated projects' own suites, a minute or more of CPU each) hold most of make test's
time. xdist's own schedulers hand out the collection in order, in chunks: a long test could start late and run
alone at the end while the other workers idle, and one queued behind another long one waited for it.

Here the workers sort the collection (`order`), costliest first; the controller's scheduler (`LongestFirst`)
hands each worker one test from the front of what is left, then one from the back. A worker always holds two
(it runs a test only once it knows the next one), so the test waiting behind a long one is a quick one, and every
long test starts as soon as a worker is free.
"""

from __future__ import annotations

import pytest
from xdist.scheduler import LoadScheduling

QUEUED = 2  # what a worker holds: the test it runs and the next one


def cost(item: pytest.Item) -> tuple[bool, float]:
    """Sort key: slow tests first, longest first (the seconds they took alone: the seconds marker)."""
    measured = item.get_closest_marker("seconds")
    return (item.get_closest_marker("slow") is None, -(measured.args[0] if measured else 0))


def order(items: list[pytest.Item]) -> None:
    """Costliest first; the rest keep pytest's order (stable), so their fixtures are shared as before."""
    items.sort(key=cost)


class LongestFirst(LoadScheduling):
    """Deal from both ends of the sorted collection: a worker's queued test comes from the front (the costliest
    left) when the test before it came from the back, and from the back (the quickest) when it came from the front."""

    def __init__(self, config: pytest.Config, log=None) -> None:
        super().__init__(config, log)
        self.from_front: set[int] = set()

    def schedule(self) -> None:
        assert self.collection_is_completed
        if self.collection is None:
            if not self._check_nodes_have_same_collection():
                self.log("**Different tests collected, aborting run**")
                return
            self.collection = next(iter(self.node2collection.values()))
            self.pending[:] = range(len(self.collection))
        for node in self.nodes:
            self.check_schedule(node)

    def check_schedule(self, node, duration: float = 0) -> None:
        if node.shutting_down:
            return
        queue = self.node2pending[node]
        while len(queue) < QUEUED and self.pending:
            front = not queue or queue[-1] not in self.from_front
            index = self.pending.pop(0 if front else -1)
            if front:
                self.from_front.add(index)
            queue.append(index)
            node.send_runtest_some([index])
        if not self.pending:
            node.shutdown()  # it runs what it holds, then ends
