"""A run that failed keeps its checkpoints, and `make resume` continues it in the same MLflow run.

The run fails for real: its Job's activeDeadlineSeconds ends it while it trains (DeadlineExceeded),
and `make run` prints the `make resume` line. The user continues it with fewer epochs than it first
asked for (PARAMS win over the run's own parameters), and the same run finishes from its checkpoint.
"""

from __future__ import annotations

import mlflow
import pytest

from .variants import RESUMED_AFTER_DEADLINE

pytestmark = pytest.mark.e2e


@pytest.mark.runs(RESUMED_AFTER_DEADLINE)
def test_make_resume_continues_a_failed_run_from_its_last_checkpoint(e2e, failing_outcome):
    failed = failing_outcome(RESUMED_AFTER_DEADLINE)  # its 45 s of training ran beside the matrix
    run = e2e.run_of(failed)
    assert not failed.error, failed.describe()
    assert failed.exit_code not in (0, None) and failed.run.info.status == "FAILED", failed.describe()
    run_id = failed.run.info.run_id
    assert "DeadlineExceeded" in failed.output, failed.output[-2000:]
    assert f"make resume RUN_ID={run_id}" in failed.output, "make run says how to continue"
    client = mlflow.MlflowClient(e2e.tracking.uri)
    trained = max(m.step for m in client.get_metric_history(run_id, "val_rmse"))
    assert trained >= 10, "the first Job trained long enough to checkpoint"

    epochs = trained + 20
    code, output = run.make_resume(run.work_dir / failed.slug, run_id, f"-P epochs={epochs}")
    assert code == 0, output[-3000:]
    assert f"resume: continuing run {run_id}" in output
    finished = client.get_run(run_id)
    assert finished.info.status == "FINISHED"
    assert finished.data.tags["restarts"] == "1"
    resumed_from = int(finished.data.tags["resumed_from_epoch"])
    assert 0 < resumed_from <= trained + 1, "from the last checkpoint, not from the start"
    for key in ("train_loss", "val_rmse"):
        steps = sorted(m.step for m in client.get_metric_history(run_id, key))
        assert steps == list(range(epochs)), f"{key}: every epoch exactly once, across both Jobs"
    assert "test_rmse" in finished.data.metrics
