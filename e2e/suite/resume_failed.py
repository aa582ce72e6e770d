"""`make resume` of the run that failed at its Job's deadline, as its user would go on with it.

It runs in the failed run's own slot of the matrix's pool, right after the failure (E2ESession.run_all's
follow-ups), so its minute of training overlaps the rest of the matrix instead of following every
other test; test_resume.py asserts what the failure and the resume did.
"""

from __future__ import annotations

from dataclasses import dataclass

import mlflow

from .progress import progress
from .runner import ProjectRun

MORE_EPOCHS = 20  # the resume asks for fewer epochs than the failed run did: PARAMS win over the run's own


@dataclass
class Resumed:
    trained: int  # the last epoch the failed run logged
    epochs: int  # what `make resume` asked for
    exit_code: int | None
    output: str


def resume_failed_run(run: ProjectRun) -> Resumed | None:
    """None when the run did not fail as expected (its test says how); else what `make resume` did."""
    failed = run.outcome
    if failed.error or failed.run is None or failed.run.info.status != "FAILED":
        return None
    run_id = failed.run.info.run_id
    history = mlflow.MlflowClient(run.tracking_uri).get_metric_history(run_id, "val_rmse")
    trained = max((m.step for m in history), default=-1)
    epochs = trained + MORE_EPOCHS
    progress(f"{run.variant.id}: make resume RUN_ID={run_id} PARAMS='-P epochs={epochs}'")
    code, output = run.make_resume(run.work_dir / failed.slug, run_id, f"-P epochs={epochs}")
    progress(f"{run.variant.id}: make resume exited {code}")
    return Resumed(trained, epochs, code, output)
