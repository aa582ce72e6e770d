"""A run that failed keeps its checkpoints, and `make resume` continues it in the same MLflow run.

The run fails for real: its Job's activeDeadlineSeconds ends it while it trains (DeadlineExceeded),
and `make run` prints the `make resume` line. The user continues it with fewer epochs than it first
asked for (PARAMS win over the run's own parameters), and the same run finishes from its checkpoint.
Both happen in the matrix's pool, one after the other (resume_failed.py); this test asserts them.
"""

from __future__ import annotations

import mlflow
import pytest

from .resume_failed import Resumed
from .variants import RESUMED_AFTER_DEADLINE

pytestmark = pytest.mark.e2e


@pytest.mark.runs(RESUMED_AFTER_DEADLINE)
def test_make_resume_continues_a_failed_run_from_its_last_checkpoint(e2e, failing_outcome):
    failed = failing_outcome(RESUMED_AFTER_DEADLINE)  # its 45 s of training and its resume ran beside the matrix
    assert not failed.error, failed.describe()
    assert failed.exit_code not in (0, None) and failed.run.info.status == "FAILED", failed.describe()
    run_id = failed.run.info.run_id
    assert "DeadlineExceeded" in failed.output, failed.output[-2000:]
    assert f"make resume RUN_ID={run_id}" in failed.output, "make run says how to continue"
    if isinstance(failed.follow_up, BaseException):
        raise failed.follow_up
    resumed = failed.follow_up
    assert isinstance(resumed, Resumed), f"make resume did not run: {resumed!r}"
    assert resumed.trained >= 10, "the first Job trained long enough to checkpoint"

    assert resumed.exit_code == 0, resumed.output[-3000:]
    assert f"resume: continuing run {run_id}" in resumed.output
    client = mlflow.MlflowClient(e2e.tracking.uri)
    finished = client.get_run(run_id)
    assert finished.info.status == "FINISHED"
    assert finished.data.tags["restarts"] == "1"
    resumed_from = int(finished.data.tags["resumed_from_epoch"])
    assert 0 < resumed_from <= resumed.trained + 1, "from the last checkpoint, not from the start"
    for key in ("train_loss", "val_rmse"):
        steps = sorted(m.step for m in client.get_metric_history(run_id, key))
        assert steps == list(range(resumed.epochs)), f"{key}: every epoch exactly once, across both Jobs"
    assert "test_rmse" in finished.data.metrics
