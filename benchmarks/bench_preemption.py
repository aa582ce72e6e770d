"""Print what a preemption costs a generated project (figures, not a test).

For each setting, one project trains on the cluster (the real `make run`) and is preempted midway by
an interactive pod of its project, which leaves once the replacement pod waits in the queue:
- lost work: epochs the replacement trained again (the run's `epochs_redone` metric), against the
  checkpoint interval, which bounds it when SIGTERM cannot be handled;
- resume latency: from the GPU freed (holder deleted) to the replacement pod Running, and from
  there to `mlflow run` ending, which includes MLflow's 5-second status poll.
Settings the last `make e2e` already preempted (its report, E2E_REPORT_DIR) are printed from there.
Needs CLUSTER=local (or kind/existing with the fake scheduler): make bench-preemption CLUSTER=local
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

import mlflow
from kube.paths import REPO_ROOT
from suite.preemption import Holder, preempt_midway, recorded_figures
from suite.session import E2ESession
from suite.variants import Variant

EPOCHS = 1000
SETTINGS = [("condition", True, 25), ("delete-only", False, 25), ("condition-every-100", True, 100)]


def measure(settings: list[tuple[str, bool, int]]) -> tuple[dict, str]:
    """Preempt one run per setting on the cluster; the figures per setting, and the cluster's name."""
    rows = {}
    with tempfile.TemporaryDirectory() as work:
        session = E2ESession(Path(work) / "report", Path(work))
        (Path(work) / "report").mkdir()
        session.start()
        try:
            if not session.scheduler:
                raise SystemExit("needs the fake scheduler (its queues and eviction condition)")
            for name, condition, every in settings:
                session.scheduler.update_pod_eviction_condition = condition
                variant = Variant(f"bench-preempt-{name}"[:24], {"gpu": "1", "cpu_request": "250m"},
                                  params={"epochs": str(EPOCHS), "checkpoint_every": str(every)},
                                  gpu_quota=1, gpu_limit=1)
                p = preempt_midway(session.project_run(variant), Holder("build"))
                o = p.outcome
                if o.exit_code != 0 or not o.run:
                    raise SystemExit(f"{name}: the preempted run failed: {o.error or o.output[-1500:]}")
                run = mlflow.MlflowClient(session.tracking.uri).get_run(o.run.info.run_id)
                rows[name] = p.figures(run.data.metrics.get("epochs_redone", -1))
        finally:
            leftovers = session.close()
    if leftovers:
        raise SystemExit(f"benchmark left things behind: {leftovers}")
    return rows, session.target.name


def main() -> None:
    # The e2e suite preempts runs of these settings itself (test_preemption.py) and records their figures;
    # only the settings it did not run are preempted here.
    report = Path(os.environ.get("E2E_REPORT_DIR", REPO_ROOT / "e2e-report"))
    recorded = recorded_figures(report)
    missing = [setting for setting in SETTINGS if setting[0] not in recorded]
    measured, cluster = measure(missing) if missing else ({}, os.environ.get("CLUSTER", "kind"))
    print(f"preemption cost ({EPOCHS} epochs, preempted once after epoch 20, on the {cluster} cluster)")
    print(f"  {'setting':22s}{'checkpoint every':>17s}{'stopped at':>11s}{'epochs redone':>14s}"
          f"{'freed->running':>16s}{'running->done':>15s}{'mlflow run':>12s}  measured by")
    for name, _, _ in SETTINGS:
        row, source = (measured[name], "this benchmark") if name in measured else (recorded[name], "make e2e")
        print(f"  {name:22s}{row['checkpoint_every']:>17d}{row['stopped_at']:>11d}{row['epochs_redone']:>14.0f}"
              f"{row['freed_to_running']:>15.1f}s{row['running_to_done']:>14.1f}s{row['mlflow_run']:>11.1f}s  {source}")
    print("  epochs redone stays 0 whatever the interval when SIGTERM is handled; a SIGKILL would lose up to "
          "checkpoint_every - 1 epochs (the Job fails on 137 instead of retrying).")


if __name__ == "__main__":
    main()
