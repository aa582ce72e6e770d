"""Print what a preemption costs a generated project (figures, not a test).

For each setting, one project trains on the cluster (the real `make run`) and is preempted midway by
an interactive pod of its project, which leaves once the replacement pod waits in the queue:
- lost work: epochs the replacement trained again (the run's `epochs_redone` metric), against the
  checkpoint interval, which bounds it when SIGTERM cannot be handled;
- resume latency: from the GPU freed (holder deleted) to the replacement pod Running, and from
  there to `mlflow run` ending, which includes MLflow's 5-second status poll.
Needs CLUSTER=local (or kind/existing with the fake scheduler): make bench-preemption CLUSTER=local
"""

from __future__ import annotations

import tempfile
from pathlib import Path

import mlflow
from suite.preemption import Holder, preempt_midway
from suite.session import E2ESession
from suite.variants import Variant

EPOCHS = 1000
SETTINGS = [("condition", True, 25), ("delete-only", False, 25), ("condition-every-100", True, 100)]


def main() -> None:
    rows = []
    with tempfile.TemporaryDirectory() as work:
        session = E2ESession(Path(work) / "report", Path(work))
        (Path(work) / "report").mkdir()
        session.start()
        try:
            if not session.scheduler:
                raise SystemExit("needs the fake scheduler (its queues and eviction condition)")
            for name, condition, every in SETTINGS:
                session.scheduler.update_pod_eviction_condition = condition
                variant = Variant(f"bench-preempt-{name}"[:24], {"gpu": "1", "cpu_request": "250m"},
                                  params={"epochs": str(EPOCHS), "checkpoint_every": str(every)},
                                  gpu_quota=1, gpu_limit=1)
                p = preempt_midway(session.project_run(variant), Holder("build"))
                o = p.outcome
                if o.exit_code != 0 or not o.run:
                    raise SystemExit(f"{name}: the preempted run failed: {o.error or o.output[-1500:]}")
                run = mlflow.MlflowClient(session.tracking.uri).get_run(o.run.info.run_id)
                ended = o.phases["_run_started"] + o.phases["mlflow run"]
                rows.append((name, every, p.epoch_at_preemption, run.data.metrics.get("epochs_redone", -1),
                             p.resume_seconds, ended - p.resumed_at, o.phases["mlflow run"]))
        finally:
            leftovers = session.close()
    print(f"preemption cost ({EPOCHS} epochs, preempted once after epoch 20, on the {session.target.name} cluster)")
    print(f"  {'setting':22s}{'checkpoint every':>17s}{'stopped at':>11s}{'epochs redone':>14s}"
          f"{'freed->running':>16s}{'running->done':>15s}{'mlflow run':>12s}")
    for name, every, stopped, redone, resume, rest, total in rows:
        print(f"  {name:22s}{every:>17d}{stopped:>11d}{redone:>14.0f}{resume:>15.1f}s{rest:>14.1f}s{total:>11.1f}s")
    print("  epochs redone stays 0 whatever the interval when SIGTERM is handled; a SIGKILL would lose up to "
          "checkpoint_every - 1 epochs (the Job fails on 137 instead of retrying).")
    if leftovers:
        raise SystemExit(f"benchmark left things behind: {leftovers}")


if __name__ == "__main__":
    main()
