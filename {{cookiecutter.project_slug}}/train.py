"""Train an ElasticNet regressor and log it to the MLflow tracking server.

Under `mlflow run --backend kubernetes` the pod gets MLFLOW_TRACKING_URI, MLFLOW_RUN_ID and
MLFLOW_EXPERIMENT_ID from MLflow; `mlflow.start_run()` resumes that run. MLflow already
logged the entry-point parameters (alpha, l1_ratio), so this script must not log them again.
The data set ships with scikit-learn: GPU nodes often have no internet access.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

import mlflow
import numpy as np
from mlflow.models import infer_signature
from sklearn.datasets import load_diabetes
from sklearn.linear_model import ElasticNet
from sklearn.metrics import mean_absolute_error, mean_squared_error, r2_score
from sklearn.model_selection import train_test_split

DESCRIPTION = {{ cookiecutter.description | py_str }}


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=DESCRIPTION)
    parser.add_argument("--alpha", type=float, default=0.05, help="regularisation strength, >= 0")
    parser.add_argument("--l1-ratio", type=float, default=0.5, help="L1 share of the penalty, 0..1")
    args = parser.parse_args(argv)
    if not args.alpha >= 0:
        parser.error(f"--alpha must be >= 0, got {args.alpha}")
    if not 0 <= args.l1_ratio <= 1:
        parser.error(f"--l1-ratio must be between 0 and 1, got {args.l1_ratio}")
    return args


def runtime_report() -> dict[str, str]:
    """What the pod was given: the GPU request from the Job template, the devices the runtime exposed,
    and the user it runs as (Run:ai clusters often require non-root)."""
    return {
        "gpu.requested": os.environ.get("RUNAI_GPU_REQUEST", "0"),
        "gpu.visible_devices": os.environ.get("NVIDIA_VISIBLE_DEVICES", "none"),
        "runtime.uid": str(os.getuid()),
    }


def train(alpha: float, l1_ratio: float) -> str:
    features, target = load_diabetes(return_X_y=True, as_frame=True)
    x_train, x_test, y_train, y_test = train_test_split(features, target, test_size=0.25, random_state=42)

    with mlflow.start_run() as run:
        mlflow.set_tag("mlflow.note.content", DESCRIPTION)
        mlflow.set_tags(runtime_report())

        started = time.monotonic()
        model = ElasticNet(alpha=alpha, l1_ratio=l1_ratio, random_state=42)
        model.fit(x_train, y_train)
        predicted = model.predict(x_test)

        mlflow.log_metrics({
            "rmse": float(np.sqrt(mean_squared_error(y_test, predicted))),
            "mae": float(mean_absolute_error(y_test, predicted)),
            "r2": float(r2_score(y_test, predicted)),
            "train_seconds": time.monotonic() - started,
        })

        # Pods may run as a user with a read-only HOME and code folder: write under a temp dir.
        workdir = Path(tempfile.mkdtemp(prefix="train-"))
        try:
            coefficients = workdir / "coefficients.json"
            weights = dict(zip(features.columns, model.coef_.tolist(), strict=True))
            coefficients.write_text(json.dumps(weights, indent=2))
            mlflow.log_artifact(str(coefficients))
        finally:
            shutil.rmtree(workdir, ignore_errors=True)

        mlflow.sklearn.log_model(
            model,
            name="model",
            signature=infer_signature(x_test, predicted),
            input_example=x_test.head(3),
        )
        print(f"run {run.info.run_id}: rmse={mean_squared_error(y_test, predicted) ** 0.5:.2f} "
              f"r2={r2_score(y_test, predicted):.3f} {runtime_report()}")
        return run.info.run_id


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    print(f"tracking server: {mlflow.get_tracking_uri()}")
    try:
        train(args.alpha, args.l1_ratio)
    except Exception as err:  # noqa: BLE001 - report any failure and exit non-zero so the Job fails
        print(f"training failed: {type(err).__name__}: {err}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
