"""Train an ElasticNet-penalised linear model in epochs, log it to MLflow, and survive preemption.

Under `mlflow run --backend kubernetes` the pod gets MLFLOW_TRACKING_URI, MLFLOW_RUN_ID and
MLFLOW_EXPERIMENT_ID from MLflow; `mlflow.start_run()` resumes that run. MLflow already logged
the entry-point parameters, so this script must not log them again.

Run:ai may preempt the pod at any time (see README.md, "When your job is preempted"): on SIGTERM
the script saves a checkpoint to the run and exits 143; the Job starts a replacement pod with the
same run id, which resumes from the checkpoint (checkpoint.py). The data set ships with
scikit-learn: GPU nodes often have no internet access.
"""

from __future__ import annotations

import argparse
import os
import pickle
import sys

from preemption import PREEMPTED_EXIT_CODE, Preempted, StopRequest

# Before the slow imports below: a pod preempted while it starts must still exit 143, not be killed.
STOP = StopRequest().install()

import mlflow
import numpy as np
from mlflow.models import infer_signature
from sklearn.datasets import load_diabetes
from sklearn.linear_model import SGDRegressor
from sklearn.metrics import mean_absolute_error, mean_squared_error, r2_score
from sklearn.model_selection import train_test_split
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import StandardScaler

from checkpoint import ResumableRun, train_epochs

DESCRIPTION = {{ cookiecutter.description | py_str }}  # noqa: E501 - the description answer, as long as it is
SEED = 42


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=DESCRIPTION)
    parser.add_argument("--alpha", type=float, default=0.05, help="regularisation strength, >= 0")
    parser.add_argument("--l1-ratio", type=float, default=0.5, help="L1 share of the penalty, 0..1")
    parser.add_argument("--epochs", type=int, default=100, help="passes over the training data, >= 1")
    parser.add_argument("--checkpoint-every", type=int, default=10,
                        help="save a checkpoint to the run every N epochs (and always on SIGTERM), >= 1")
    args = parser.parse_args(argv)
    if not args.alpha >= 0:
        parser.error(f"--alpha must be >= 0, got {args.alpha}")
    if not 0 <= args.l1_ratio <= 1:
        parser.error(f"--l1-ratio must be between 0 and 1, got {args.l1_ratio}")
    if args.epochs < 1:
        parser.error(f"--epochs must be >= 1, got {args.epochs}")
    if args.checkpoint_every < 1:
        parser.error(f"--checkpoint-every must be >= 1, got {args.checkpoint_every}")
    return args


def runtime_report() -> dict[str, str]:
    """What the pod was given: the GPU request from the Job template, the devices the runtime exposed,
    and the user it runs as (Run:ai clusters often require non-root)."""
    return {
        "gpu.requested": os.environ.get("RUNAI_GPU_REQUEST", "0"),
        "gpu.visible_devices": os.environ.get("NVIDIA_VISIBLE_DEVICES", "none"),
        "runtime.uid": str(os.getuid()),
    }


def train(args: argparse.Namespace, run_id: str) -> None:
    features, target = load_diabetes(return_X_y=True, as_frame=True)
    x_train, x_test, y_train, y_test = train_test_split(features, target, test_size=0.25, random_state=SEED)
    scaler = StandardScaler().fit(x_train)
    train_x, test_x, train_y = scaler.transform(x_train), scaler.transform(x_test), y_train.to_numpy()

    progress = ResumableRun(run_id)
    if progress.checkpoint:
        model = pickle.loads(progress.checkpoint.payload)
    else:
        model = SGDRegressor(penalty="elasticnet", alpha=args.alpha, l1_ratio=args.l1_ratio,
                             learning_rate="invscaling", eta0=0.01, random_state=SEED)

    def train_epoch(epoch: int) -> dict[str, float]:
        # The order depends only on the epoch, so a resumed run sees the same data as an uninterrupted one.
        order = np.random.default_rng(SEED + epoch).permutation(len(train_x))
        model.partial_fit(train_x[order], train_y[order])
        predicted = model.predict(test_x)
        return {"rmse": float(np.sqrt(mean_squared_error(y_test, predicted))),
                "mae": float(mean_absolute_error(y_test, predicted)),
                "r2": float(r2_score(y_test, predicted))}

    train_epochs(progress, args.epochs, args.checkpoint_every, STOP, train_epoch, lambda: pickle.dumps(model))

    pipeline = Pipeline([("scale", scaler), ("regressor", model)])
    predicted = pipeline.predict(x_test)
    mlflow.sklearn.log_model(pipeline, name="model", signature=infer_signature(x_test, predicted),
                             input_example=x_test.head(3))
    print(f"run {run_id}: {args.epochs} epochs, rmse={mean_squared_error(y_test, predicted) ** 0.5:.2f} "
          f"r2={r2_score(y_test, predicted):.3f}, restarts={progress.restarts} {runtime_report()}")


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if STOP.requested:
        print("stopped while starting up; the Job's next pod starts the run", file=sys.stderr)
        return PREEMPTED_EXIT_CODE
    print(f"tracking server: {mlflow.get_tracking_uri()}")
    try:
        run = mlflow.start_run()
        mlflow.set_tags({"mlflow.note.content": DESCRIPTION, **runtime_report()})
        train(args, run.info.run_id)
    except Preempted as stopped:
        print(stopped, file=sys.stderr)
        mlflow.end_run(status="RUNNING")  # not FAILED, not FINISHED: the run goes on in the next pod
        return PREEMPTED_EXIT_CODE
    except Exception as err:  # noqa: BLE001 - report any failure and exit non-zero so the Job fails
        print(f"training failed: {type(err).__name__}: {err}", file=sys.stderr)
        mlflow.end_run(status="FAILED")
        return 1
    mlflow.end_run()
    return 0


if __name__ == "__main__":
    sys.exit(main())
