"""Continue a stopped run from its last checkpoint, in the same MLflow run: `make resume RUN_ID=<id>`.

A run ends FAILED or KILLED while its checkpoints stay in its artifacts (a Job that failed, a
cancelled `make run`, a deadline). `mlflow run --backend kubernetes` always creates a new run (its
--run-id is for the local backend only), so this submits a new Job with `-P continue_run=<id>`:
train.py in its pod goes on in that run, from its checkpoint, and tags the submission's own run
with `continues_run`. The entry-point parameters are the run's own: a continued run must train with
what it started with, so this passes them again as -P (those given in PARAMS, e.g. more epochs, win).
"""

from __future__ import annotations

import os
import sys

from mlflow import MlflowClient
from mlflow.exceptions import MlflowException

import submit

CONTINUABLE = ("FAILED", "KILLED")


def command(run_id: str, extra: list[str]) -> list[str]:
    """The `mlflow run` that continues the run, or SystemExit with what is wrong."""
    try:
        run = MlflowClient().get_run(run_id)
    except MlflowException as err:
        raise SystemExit(f"resume: RUN_ID={run_id}: no such run on {os.environ.get('MLFLOW_TRACKING_URI')} "
                         f"({err.message.splitlines()[0]})") from None
    if run.info.status not in CONTINUABLE:
        raise SystemExit(f"resume: run {run_id} is {run.info.status}; only a {' or '.join(CONTINUABLE)} run can be "
                         "continued (a RUNNING one still has its Job; a FINISHED one is done)")
    given = {extra[i + 1].split("=", 1)[0] for i, arg in enumerate(extra[:-1]) if arg == "-P"} | {"continue_run"}
    params = [arg for key, value in sorted(run.data.params.items()) if key not in given
              for arg in ("-P", f"{key}={value}")]
    print(f"resume: continuing run {run_id} ({run.data.tags.get('mlflow.runName', '')}) from its last checkpoint, "
          f"with its parameters: {' '.join(params[1::2])}", flush=True)
    return [*submit.MLFLOW_RUN, "--experiment-id", run.info.experiment_id, *params, "-P", f"continue_run={run_id}",
            *extra]


def main(argv: list[str]) -> int:
    if not argv:
        print("usage: make resume RUN_ID=<id of a FAILED or KILLED run>", file=sys.stderr)
        return 2
    if not submit.prepare_peers_service():  # deleted since the first submission, or another namespace
        return 2
    return submit.Submission(command(argv[0], argv[1:])).execute()


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
