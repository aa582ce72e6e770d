"""train.py logs metrics and a model to the tracking server it is given, and resumes after preemption."""

import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import mlflow
import pytest
{%- if cookiecutter.framework == "pytorch" %}
import torch
{%- endif %}

PROJECT = Path(__file__).resolve().parents[1]
PREEMPTED = 143  # what Kubernetes' SIGTERM must turn into; the Job template retries only this exit code
{%- if cookiecutter.framework == "pytorch" %}
METRICS = ("train_loss", "test_loss", "accuracy")
GOOD_ENOUGH = ("accuracy", 0.8)  # what a short training on the digits must reach
TRAIN_ARGS = ("--lr", "0.01", "--batch-size", "32", "--workers", "2")
LONG = 80  # epochs of a training long enough to be stopped midway
BAD_ARGS = [["--lr", "0"], ["--lr", "abc"], ["--batch-size", "0"], ["--workers", "-1"], ["--epochs", "0"],
            ["--checkpoint-every", "0"]]


def predicts(model_uri: str) -> bool:
    images = torch.zeros((1, 1, 8, 8))
    return mlflow.pytorch.load_model(model_uri)(images).shape == (1, 10)


def sample_table() -> str:
    """A CSV the shape -P data_file takes: 64 pixel columns (0-16), then the digit; four images per digit."""
    header = ",".join(f"p{i}" for i in range(64)) + ",digit"
    rows = [",".join(str((digit * 3 + i + k) % 17) for i in range(64)) + f",{digit}" for digit in range(10)
            for k in range(4)]
    return "\n".join([header, *rows]) + "\n"


def device_tags() -> dict[str, str]:
    """The device the training chose, and mixed precision on CUDA only."""
    cuda = torch.cuda.is_available()
    return {"device": "cuda" if cuda else "cpu", "amp": "on" if cuda else "off"}
{%- else %}
METRICS = ("rmse", "mae", "r2")
GOOD_ENOUGH = ("r2", 0.2)  # what a short training on the diabetes data must reach
TRAIN_ARGS = ("--alpha", "0.01", "--l1-ratio", "0.1")
LONG = 400  # epochs of a training long enough to be stopped midway
BAD_ARGS = [["--l1-ratio", "2"], ["--alpha", "-1"], ["--alpha", "abc"], ["--epochs", "0"], ["--checkpoint-every", "0"]]


def predicts(model_uri: str) -> bool:
    return mlflow.sklearn.load_model(model_uri).predict([[0.0] * 10]).shape == (1,)


def sample_table() -> str:
    """A CSV the shape -P data_file takes: numeric features, then the target; here y = 3a - 2b + c."""
    rows = [f"{a},{b},{(a * b) % 5},{3 * a - 2 * b + (a * b) % 5}" for a in range(6) for b in range(6)]
    return "\n".join(["a,b,c,y", *rows]) + "\n"


def device_tags() -> dict[str, str]:
    return {}
{%- endif %}


def train_env(tmp_path, run_id=None):
    env = {**os.environ, "MLFLOW_TRACKING_URI": f"sqlite:///{tmp_path / 'mlflow.db'}"}
    env.pop("MLFLOW_RUN_ID", None)
    return {**env, "MLFLOW_RUN_ID": run_id} if run_id else env


def run_train(tmp_path, *args, run_id=None, **env):
    return subprocess.run([sys.executable, str(PROJECT / "train.py"), *args], cwd=tmp_path,
                          env={**train_env(tmp_path, run_id), **env}, capture_output=True, text=True, timeout=300)


def steps(run_id, key=METRICS[0]):
    return sorted(m.step for m in mlflow.MlflowClient().get_metric_history(run_id, key))


def start_and_stop_midway(tmp_path, sig, *args, after_epoch=10):
    """Start a training, wait until it logged `after_epoch`, and send it `sig` as Kubernetes would."""
    process = subprocess.Popen([sys.executable, str(PROJECT / "train.py"), *args], cwd=tmp_path,
                               env=train_env(tmp_path), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 240
    run_id = None
    while True:
        assert process.poll() is None, "training ended before it could be stopped: " + process.communicate()[1]
        assert time.monotonic() < deadline, f"training never reached epoch {after_epoch}"
        runs = mlflow.search_runs(search_all_experiments=True, output_format="list")
        if runs and (run_id := runs[0].info.run_id) and max(steps(run_id), default=-1) >= after_epoch:
            break
        time.sleep(0.2)
    process.send_signal(sig)
    out, err = process.communicate(timeout=60)
    return run_id, process.returncode, out + err


@pytest.fixture(scope="session")
def blank_store(tmp_path_factory) -> Path:
    """An empty tracking database, its tables created once: that runs MLflow's migrations, seconds each time.

    Its artifacts go to ./mlruns of the process that creates it: this folder, for every copy of it.
    """
    folder = tmp_path_factory.mktemp("tracking")
    here = os.getcwd()
    os.chdir(folder)
    try:
        mlflow.set_tracking_uri(f"sqlite:///{folder / 'mlflow.db'}")
        mlflow.search_experiments()
    finally:
        os.chdir(here)
    return folder / "mlflow.db"


@pytest.fixture(autouse=True)
def tracking(tmp_path, monkeypatch, blank_store):
    """A throw-away store per test (a copy of the blank one), created here first: two processes must not
    create its tables at once."""
    monkeypatch.chdir(tmp_path)
    shutil.copyfile(blank_store, tmp_path / "mlflow.db")
    mlflow.set_tracking_uri(f"sqlite:///{tmp_path / 'mlflow.db'}")


def test_train_logs_metrics_and_model(tmp_path):
    result = run_train(tmp_path, *TRAIN_ARGS, "--epochs", "20")
    assert result.returncode == 0, result.stderr

    [run] = mlflow.search_runs(search_all_experiments=True, output_format="list")
    assert run.info.status == "FINISHED"
    assert set(METRICS) <= set(run.data.metrics)
    metric, least = GOOD_ENOUGH
    assert run.data.metrics[metric] > least
    assert steps(run.info.run_id) == list(range(20))
    assert run.data.tags["restarts"] == "0"
    assert device_tags().items() <= run.data.tags.items()
    assert run.data.params == {}, "MLflow logs the entry-point params; train.py must not"
    [model] = mlflow.search_logged_models(experiment_ids=[run.info.experiment_id], output_format="list")
    assert model.source_run_id == run.info.run_id
    assert predicts(model.model_uri)


def test_sigterm_saves_a_checkpoint_and_a_restart_resumes_the_same_run(tmp_path):
    args = (*TRAIN_ARGS, "--epochs", str(LONG), "--checkpoint-every", "50")
    run_id, code, output = start_and_stop_midway(tmp_path, signal.SIGTERM, *args)
    assert code == PREEMPTED, output
    stopped = mlflow.get_run(run_id)
    assert stopped.info.status == "RUNNING", "a preempted run goes on in the next pod: never FAILED"
    done = max(steps(run_id))
    assert done < LONG - 1 and "checkpoint saved" in output

    result = run_train(tmp_path, *args, run_id=run_id)  # the replacement pod: same MLFLOW_RUN_ID
    assert result.returncode == 0, result.stderr
    run = mlflow.get_run(run_id)
    assert run.info.status == "FINISHED"
    for key in METRICS:
        assert steps(run_id, key) == list(range(LONG)), f"{key}: every epoch exactly once"
    assert run.data.tags["restarts"] == "1"
    assert run.data.tags["resumed_from_epoch"] == str(done + 1), "SIGTERM saved the last finished epoch"
    assert run.data.metrics["epochs_redone"] == 0
    metric, least = GOOD_ENOUGH
    assert run.data.metrics[metric] > least
    [model] = mlflow.search_logged_models(experiment_ids=[run.info.experiment_id], output_format="list")
    assert model.source_run_id == run_id


def test_a_damaged_checkpoint_falls_back_to_the_other_slot(tmp_path):
    """SIGKILL during an upload can damage the slot being written; the other one still holds a checkpoint."""
    args = (*TRAIN_ARGS, "--epochs", str(LONG), "--checkpoint-every", "5")
    run_id, code, output = start_and_stop_midway(tmp_path, signal.SIGTERM, *args, after_epoch=12)
    assert code == PREEMPTED, output
    artifacts = Path(mlflow.get_run(run_id).info.artifact_uri.removeprefix("file://"))
    slots = sorted(artifacts.glob("checkpoints/slot-*.ckpt"))
    assert len(slots) == 2
    newest = max(slots, key=lambda path: int(path.read_bytes().split(b'"epoch": ')[1].split(b",")[0]))
    newest.write_bytes(newest.read_bytes()[:-7])  # a cut-short save

    result = run_train(tmp_path, *args, run_id=run_id)
    assert result.returncode == 0, result.stderr
    assert "damaged" in result.stderr
    run = mlflow.get_run(run_id)
    assert steps(run_id) == list(range(LONG)), "redone epochs are not logged twice"
    assert run.data.metrics["epochs_redone"] >= 1


def test_trains_on_a_file_from_the_data_claim(tmp_path):
    """The Job mounts the data claim at DATA_DIR; -P data_file names a CSV in it, and the run says what it used."""
    claim = tmp_path / "claim"
    (claim / "raw").mkdir(parents=True)
    (claim / "train.csv").write_text(sample_table())
    result = run_train(tmp_path, *TRAIN_ARGS, "--epochs", "3", "--data-file", "train.csv", DATA_DIR=str(claim))
    assert result.returncode == 0, result.stderr
    [run] = mlflow.search_runs(search_all_experiments=True, output_format="list")
    assert run.info.status == "FINISHED"
    assert run.data.tags["data.used"] == str(claim / "train.csv")
    assert run.data.tags["data.dir"] == str(claim)
    assert run.data.tags["data.entries"] == "2" and run.data.tags["data.sample"] == "raw, train.csv"


def test_a_missing_or_malformed_data_file_is_refused(tmp_path):
    claim = tmp_path / "claim"
    claim.mkdir()
    (claim / "bad.csv").write_text("just,text\nno,numbers\n")
    missing = run_train(tmp_path, "--data-file", "nope.csv", DATA_DIR=str(claim))
    assert missing.returncode not in (0, PREEMPTED) and "is not a file" in missing.stderr
    malformed = run_train(tmp_path, *TRAIN_ARGS, "--data-file", "bad.csv", DATA_DIR=str(claim))
    assert malformed.returncode == 1 and "bad.csv: needs a header" in malformed.stderr


@pytest.mark.parametrize("args", BAD_ARGS)
def test_bad_parameters_exit_non_zero(tmp_path, args):
    result = run_train(tmp_path, *args)
    assert result.returncode not in (0, PREEMPTED)
    assert "must be" in result.stderr or "invalid" in result.stderr
