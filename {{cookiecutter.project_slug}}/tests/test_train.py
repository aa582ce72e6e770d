"""train.py logs metrics and a model to the tracking server it is given."""

import os
import subprocess
import sys
from pathlib import Path

import mlflow
import pytest

PROJECT = Path(__file__).resolve().parents[1]


def run_train(tmp_path, *args):
    env = {**os.environ, "MLFLOW_TRACKING_URI": f"sqlite:///{tmp_path / 'mlflow.db'}",
           "MLFLOW_ARTIFACTS_DESTINATION": str(tmp_path / "artifacts")}
    return subprocess.run([sys.executable, str(PROJECT / "train.py"), *args], cwd=tmp_path, env=env,
                          capture_output=True, text=True, timeout=300)


def test_train_logs_metrics_and_model(tmp_path):
    result = run_train(tmp_path, "--alpha", "0.01", "--l1-ratio", "0.1")
    assert result.returncode == 0, result.stderr

    mlflow.set_tracking_uri(f"sqlite:///{tmp_path / 'mlflow.db'}")
    [run] = mlflow.search_runs(search_all_experiments=True, output_format="list")
    assert run.info.status == "FINISHED"
    assert {"rmse", "mae", "r2"} <= set(run.data.metrics)
    assert run.data.metrics["r2"] > 0.2
    assert run.data.params == {}, "MLflow logs the entry-point params; train.py must not"
    [model] = mlflow.search_logged_models(experiment_ids=[run.info.experiment_id], output_format="list")
    assert model.source_run_id == run.info.run_id
    loaded = mlflow.sklearn.load_model(model.model_uri)
    assert loaded.predict([[0.0] * 10]).shape == (1,)


@pytest.mark.parametrize("args", [["--l1-ratio", "2"], ["--alpha", "-1"], ["--alpha", "abc"]])
def test_bad_parameters_exit_non_zero(tmp_path, args):
    result = run_train(tmp_path, *args)
    assert result.returncode != 0
    assert "must be" in result.stderr or "invalid" in result.stderr
