"""train.py logs metrics and a model to the tracking server it is given, and resumes after preemption."""

import os
import random
import re
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import mlflow
import numpy as np
import pytest
{%- if cookiecutter.framework == "pytorch" %}
import torch
{%- endif %}

PROJECT = Path(__file__).resolve().parents[1]
PREEMPTED = 143  # what Kubernetes' SIGTERM must turn into; the Job template retries only this exit code
TRANSIENT = 75  # the tracking server stayed unreachable: the Job template retries it, counted
{%- if cookiecutter.framework == "pytorch" %}
METRICS = ("train_loss", "val_loss", "val_accuracy")  # every epoch
TEST_METRICS = ("test_loss", "test_accuracy")  # once, at the end
GOOD_ENOUGH = ("test_accuracy", 0.8)  # what a short training on the digits must reach
TRAIN_ARGS = ("--lr", "0.01", "--batch-size", "32", "--workers", "2")
LONG = 16  # epochs of a training long enough to be stopped midway
# An epoch of hundreds of steps, DataLoader workers on: a stop inside it must cost one step, not the epoch.
LONG_EPOCH = dict(rows=4000, args=("--lr", "0.003", "--batch-size", "8", "--workers", "2"))
BAD_ARGS = [["--lr", "0"], ["--lr", "abc"], ["--batch-size", "0"], ["--workers", "-1"], ["--epochs", "0"],
            ["--checkpoint-every", "0"], ["--checkpoint-minutes", "0"], ["--seed", "-1"], ["--log-every", "-1"],
            ["--retry-seconds", "-1"], ["--procs-per-node", "0"]]


def predicts(model_uri: str) -> bool:
    images = torch.zeros((1, 1, 8, 8))
    return mlflow.pytorch.load_model(model_uri)(images).shape == (1, 10)


def sample_table(rows: int = 40) -> str:
    """A CSV the shape -P data_file takes: 64 pixel columns (0-16), then the digit; each digit's pixels
    follow a pattern of their own, with noise."""
    rng = np.random.default_rng(7)
    digits = np.arange(rows) % 10
    pixels = (digits[:, None] * 3 + np.arange(64)[None, :]) % 17 + rng.integers(-2, 3, (rows, 64))
    table = np.column_stack([np.clip(pixels, 0, 16), digits])
    header = ",".join(f"p{i}" for i in range(64)) + ",digit"
    return header + "\n" + "\n".join(",".join(map(str, row)) for row in table) + "\n"


def model_parameters(model_uri: str) -> dict[str, np.ndarray]:
    return {name: tensor.numpy() for name, tensor in mlflow.pytorch.load_model(model_uri).state_dict().items()}


def device_tags() -> dict[str, str]:
    """The device the training chose, and mixed precision on CUDA only."""
    cuda = torch.cuda.is_available()
    return {"device": "cuda" if cuda else "cpu", "amp": "on" if cuda else "off"}
{%- else %}
METRICS = ("train_loss", "val_rmse", "val_mae", "val_r2")  # every epoch
TEST_METRICS = ("test_rmse", "test_mae", "test_r2")  # once, at the end
GOOD_ENOUGH = ("test_r2", 0.2)  # what a short training on the diabetes data must reach
TRAIN_ARGS = ("--alpha", "0.01", "--l1-ratio", "0.1")
LONG = 60  # epochs of a training long enough to be stopped midway
# An epoch of thousands of steps: a stop inside it must cost one step, not the epoch.
LONG_EPOCH = dict(rows=20000, args=("--alpha", "0.01", "--l1-ratio", "0.1", "--batch-size", "4"))
BAD_ARGS = [["--l1-ratio", "2"], ["--alpha", "-1"], ["--alpha", "abc"], ["--batch-size", "0"], ["--epochs", "0"],
            ["--checkpoint-every", "0"], ["--checkpoint-minutes", "0"], ["--seed", "-1"], ["--log-every", "-1"],
            ["--retry-seconds", "-1"]]


def predicts(model_uri: str) -> bool:
    return mlflow.sklearn.load_model(model_uri).predict([[0.0] * 10]).shape == (1,)


def sample_table(rows: int = 36) -> str:
    """A CSV the shape -P data_file takes: numeric features, then the target; here y = 3a - 2b + c + noise."""
    rng = np.random.default_rng(7)
    a, b = rng.uniform(0, 6, rows), rng.uniform(0, 6, rows)
    c = (a * b) % 5
    y = 3 * a - 2 * b + c + rng.normal(0, 0.1, rows)
    return "a,b,c,y\n" + "\n".join(f"{a[i]:.4f},{b[i]:.4f},{c[i]:.4f},{y[i]:.4f}" for i in range(rows)) + "\n"


def model_parameters(model_uri: str) -> dict[str, np.ndarray]:
    regressor = mlflow.sklearn.load_model(model_uri).named_steps["regressor"]
    return {"coef_": regressor.coef_, "intercept_": regressor.intercept_, "t_": np.array(regressor.t_)}


def device_tags() -> dict[str, str]:
    return {}
{%- endif %}


def train_env(tmp_path, run_id=None, tracking_uri=None):
    env = {**os.environ, "MLFLOW_TRACKING_URI": tracking_uri or f"sqlite:///{tmp_path / 'mlflow.db'}"}
    env.pop("MLFLOW_RUN_ID", None)
    return {**env, "MLFLOW_RUN_ID": run_id} if run_id else env


def run_train(tmp_path, *args, run_id=None, tracking_uri=None, **env):
    return subprocess.run([sys.executable, str(PROJECT / "train.py"), *args], cwd=tmp_path,
                          env={**train_env(tmp_path, run_id, tracking_uri), **env}, capture_output=True, text=True,
                          timeout=300)


def start_train(tmp_path, *args, tracking_uri=None, **env) -> subprocess.Popen:
    """train.py as the pod runs it, its output read line by line as it comes."""
    return subprocess.Popen([sys.executable, str(PROJECT / "train.py"), *args], cwd=tmp_path,
                            env={**train_env(tmp_path, tracking_uri=tracking_uri), **env}, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True, bufsize=1)


def read_until(process: subprocess.Popen, pattern: str, seen: list[str]) -> re.Match:
    """The first line of the process's output that matches; every line read lands in `seen`."""
    for line in process.stdout:
        seen.append(line)
        if match := re.search(pattern, line):
            return match
    raise AssertionError(f"train.py ended ({process.wait()}) before printing /{pattern}/:\n" + "".join(seen[-30:]))


def steps(run_id, key=METRICS[0]):
    return sorted(m.step for m in mlflow.MlflowClient().get_metric_history(run_id, key))


def history(run_id) -> dict[str, list[tuple[int, float]]]:
    client = mlflow.MlflowClient()
    return {key: sorted((m.step, m.value) for m in client.get_metric_history(run_id, key))
            for key in (*METRICS, *TEST_METRICS)}


def the_model(run) -> str:
    models = mlflow.search_logged_models(experiment_ids=[run.info.experiment_id], output_format="list")
    [model] = [m for m in models if m.source_run_id == run.info.run_id]
    return model.model_uri


def stop_when(tmp_path, args, pattern: str, deliver=None) -> tuple[int, str]:
    """Start a training, wait for its first output line that matches, then SIGTERM it as Kubernetes would
    (or `deliver` a signal some other way); its exit code and output."""
    process = start_train(tmp_path, *args)
    seen: list[str] = []
    read_until(process, pattern, seen)
    (deliver or (lambda launcher: launcher.send_signal(signal.SIGTERM)))(process)
    seen.append(process.communicate(timeout=120)[0])
    return process.returncode, "".join(seen)


def start_and_stop_midway(tmp_path, sig, *args, after_epoch=4):
    """Start a training, wait until it finished epoch `after_epoch`, and send it `sig` as Kubernetes would."""
    process = start_train(tmp_path, *args, "--log-every", "0")
    seen: list[str] = []
    read_until(process, rf"^epoch {after_epoch + 1}/", seen)
    process.send_signal(sig)
    seen.append(process.communicate(timeout=60)[0])
    [run] = mlflow.search_runs(search_all_experiments=True, output_format="list")
    return run.info.run_id, process.returncode, "".join(seen)


def write_table(tmp_path, rows: int) -> str:
    (tmp_path / "table.csv").write_text(sample_table(rows))
    return "table.csv"


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


class TrackingServer:
    """A real `mlflow server` on this machine's loopback, over the test's store, that a test can stop and restart."""

    def __init__(self, tmp_path: Path):
        self.tmp_path, self.process = tmp_path, None
        with socket.socket() as sock:
            sock.bind(("127.0.0.1", 0))
            self.port = sock.getsockname()[1]
        self.uri = f"http://127.0.0.1:{self.port}"

    def start(self) -> "TrackingServer":
        log = open(self.tmp_path / "server.log", "ab")  # noqa: SIM115 - the server writes it until stop()
        self.process = subprocess.Popen(
            [sys.executable, "-m", "mlflow", "server", "--host", "127.0.0.1", "--port", str(self.port),
             "--workers", "1", "--backend-store-uri", f"sqlite:///{self.tmp_path / 'mlflow.db'}",
             "--artifacts-destination", str(self.tmp_path / "served-artifacts")],
            # MLflow's job runner (Huey consumers for GenAI jobs, polling) would cost a third of a core here.
            env={**os.environ, "MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false"},
            cwd=self.tmp_path, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
        deadline = time.monotonic() + 120
        while not self.answers():
            assert self.process.poll() is None, (self.tmp_path / "server.log").read_text()[-2000:]
            assert time.monotonic() < deadline, "the mlflow server did not answer within 120 s"
            time.sleep(0.2)
        return self

    def answers(self) -> bool:
        try:
            with urllib.request.urlopen(f"{self.uri}/health", timeout=2) as response:
                return response.status == 200
        except OSError:
            return False

    def stop(self) -> None:
        if self.process and self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGKILL)  # as a crash or a rescheduled server pod would
            self.process.wait(30)


@pytest.fixture
def server(tmp_path):
    server = TrackingServer(tmp_path).start()
    yield server
    server.stop()


def test_train_logs_metrics_and_model(tmp_path):
    result = run_train(tmp_path, *TRAIN_ARGS, "--epochs", "20")
    assert result.returncode == 0, result.stderr

    [run] = mlflow.search_runs(search_all_experiments=True, output_format="list")
    assert run.info.status == "FINISHED"
    assert set(METRICS) | set(TEST_METRICS) <= set(run.data.metrics)
    metric, least = GOOD_ENOUGH
    assert run.data.metrics[metric] > least
    for key in METRICS:
        assert steps(run.info.run_id, key) == list(range(20)), f"{key}: every epoch once"
    for key in TEST_METRICS:
        assert len(steps(run.info.run_id, key)) == 1, f"{key}: the test split is scored once, at the end"
    assert run.data.tags["restarts"] == "0"
    assert device_tags().items() <= run.data.tags.items()
    assert run.data.params == {}, "MLflow logs the entry-point params; train.py must not"
    assert re.search(r"^epoch 20/20: train_loss [\d.]+, .*samples/s$", result.stdout, re.M), result.stdout[-500:]
    assert predicts(the_model(run))


def test_sigterm_saves_a_checkpoint_and_a_restart_resumes_the_same_run(tmp_path):
    args = (*TRAIN_ARGS, "--epochs", str(LONG), "--checkpoint-every", "50")
    run_id, code, output = start_and_stop_midway(tmp_path, signal.SIGTERM, *args)
    assert code == PREEMPTED, output
    stopped = mlflow.get_run(run_id)
    assert stopped.info.status == "RUNNING", "a preempted run goes on in the next pod: never FAILED"
    stop = re.search(r"stopped at epoch (\d+) step (\d+) of", output)
    assert stop, output[-2000:]
    assert 4 < int(stop[1]) < LONG - 1, "SIGTERM stops the training where it is, not at a checkpoint epoch"

    result = run_train(tmp_path, *args, run_id=run_id)  # the replacement pod: same MLFLOW_RUN_ID
    assert result.returncode == 0, result.stderr
    run = mlflow.get_run(run_id)
    assert run.info.status == "FINISHED"
    for key in METRICS:
        assert steps(run_id, key) == list(range(LONG)), f"{key}: every epoch exactly once"
    assert run.data.tags["restarts"] == "1"
    assert (run.data.tags["resumed_from_epoch"], run.data.tags["resumed_from_step"]) == stop.groups(), \
        "the replacement resumes at the step the SIGTERM saved"
    assert run.data.metrics["epochs_redone"] == 0
    metric, least = GOOD_ENOUGH
    assert run.data.metrics[metric] > least
    assert predicts(the_model(run))


def test_a_stop_inside_a_long_epoch_costs_one_step_and_resumes_to_the_identical_state(tmp_path):
    """SIGTERM at a random step of a long epoch: the pod stops at the next step, and the resumed run ends
    bit-identical to an uninterrupted run with the same seed (parameters and every metric)."""
    data = ("--data-file", write_table(tmp_path, LONG_EPOCH["rows"]))
    args = (*LONG_EPOCH["args"], *data, "--epochs", "2", "--seed", "11", "--log-every", "1")
    whole = run_train(tmp_path, *args)
    assert whole.returncode == 0, whole.stdout[-2000:] + whole.stderr[-2000:]
    [uninterrupted] = mlflow.search_runs(search_all_experiments=True, output_format="list")
    steps_per_epoch = int(re.search(r"^epoch 1/2 step 1/(\d+):", whole.stdout, re.M)[1])
    assert steps_per_epoch >= 250, "an epoch of many steps"

    signal_at = random.Random().randrange(steps_per_epoch // 8, steps_per_epoch // 4)
    code, output = stop_when(tmp_path, args, rf"^epoch 2/2 step {signal_at}/")
    assert code == PREEMPTED, output[-2000:]
    stop = re.search(r"stopped at epoch 1 step (\d+) of 2 epochs, ([\d.]+) s after SIGTERM", output)
    assert stop, f"SIGTERM at epoch 1 step {signal_at}: " + output[-2000:]
    assert signal_at < int(stop[1]) < steps_per_epoch // 2, \
        f"SIGTERM after step {signal_at} of {steps_per_epoch}: stopped at step {stop[1]}, not at the epoch's end"
    [interrupted] = [r for r in mlflow.search_runs(search_all_experiments=True, output_format="list")
                     if r.info.run_id != uninterrupted.info.run_id]
    assert "epoch 2/2:" not in output, "the epoch was cut short"

    resumed = run_train(tmp_path, *args, run_id=interrupted.info.run_id)
    assert resumed.returncode == 0, resumed.stdout[-2000:] + resumed.stderr[-2000:]
    assert f"resuming from the checkpoint at epoch 1 step {stop[1]}" in resumed.stdout
    assert history(interrupted.info.run_id) == history(uninterrupted.info.run_id), "every metric value equal"
    finished = mlflow.get_run(interrupted.info.run_id)
    assert finished.info.status == "FINISHED"
    ours, theirs = model_parameters(the_model(finished)), model_parameters(the_model(uninterrupted))
    assert ours.keys() == theirs.keys()
    for name in ours:
        assert np.array_equal(ours[name], theirs[name]), f"{name} differs from the uninterrupted run's"


# A process whose stop's checkpoint is saved, signalled on its way out.
SIGNAL_AFTER_THE_CHECKPOINT = """
import os, signal
from preemption import StopRequest

stop = StopRequest().install()
stop.stopped_with_a_checkpoint()
os.kill(os.getpid(), signal.SIGTERM)
print("a stop requested" if stop.requested else "no stop requested", flush=True)
"""


def test_a_signal_after_the_stops_checkpoint_is_saved_changes_nothing(tmp_path):
    """torchrun sends SIGTERM to the ranks still exiting as soon as one has exited: a rank whose checkpoint is
    saved must neither start another stop nor tell the user it will save one."""
    result = subprocess.run([sys.executable, "-c", SIGNAL_AFTER_THE_CHECKPOINT], cwd=PROJECT, env=train_env(tmp_path),
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr[-2000:]
    assert result.stdout.strip() == "no stop requested"
    assert "SIGTERM while exiting: the checkpoint is saved already" in result.stderr
    assert "saving a checkpoint" not in result.stderr


def test_a_damaged_checkpoint_falls_back_to_the_other_slot(tmp_path):
    """SIGKILL during an upload can damage the slot being written; the other one still holds a checkpoint."""
    args = (*TRAIN_ARGS, "--epochs", str(LONG), "--checkpoint-every", "3")
    run_id, code, output = start_and_stop_midway(tmp_path, signal.SIGTERM, *args, after_epoch=7)
    assert code == PREEMPTED, output
    artifacts = Path(mlflow.get_run(run_id).info.artifact_uri.removeprefix("file://"))
    slots = sorted(artifacts.glob("checkpoints/slot-*.ckpt"))
    assert len(slots) == 2
    positions = {slot: tuple(int(re.search(rf'"{key}": (\d+)', slot.read_bytes().split(b"\n")[0].decode())[1])
                             for key in ("epoch", "step")) for slot in slots}
    newest = max(slots, key=positions.get)
    newest.write_bytes(newest.read_bytes()[:-7])  # a cut-short save
    logged_through = steps(run_id)[-1]  # the last epoch the stopped pod finished and logged

    result = run_train(tmp_path, *args, run_id=run_id)
    assert result.returncode == 0, result.stderr
    assert "damaged" in result.stderr
    older = min(positions.values())
    assert f"resuming from the checkpoint at epoch {older[0]} step {older[1]}" in result.stdout
    run = mlflow.get_run(run_id)
    assert steps(run_id) == list(range(LONG)), "redone epochs are not logged twice"
    # Trained again: the epochs logged after the older slot's position (none when a late stop came in the epoch
    # right after a periodic checkpoint; usually the epochs since it).
    assert run.data.metrics["epochs_redone"] == logged_through - older[0] + 1


def test_a_tracking_server_restart_during_training_is_ridden_out(tmp_path, server):
    """The server goes away while the run trains and saves checkpoints, and comes back: the run finishes."""
    args = (*TRAIN_ARGS, "--epochs", "20", "--checkpoint-every", "1", "--log-every", "0")
    # MLflow's own retries off: train.py's are the ones under test.
    process = start_train(tmp_path, *args, tracking_uri=server.uri, MLFLOW_HTTP_REQUEST_MAX_RETRIES="0")
    seen: list[str] = []
    read_until(process, r"^epoch 5/", seen)
    server.stop()
    read_until(process, r"failed \(.*\); trying again in", seen)
    server.start()
    seen.append(process.communicate(timeout=240)[0])
    assert process.returncode == 0, "".join(seen)[-3000:]
    [run] = mlflow.search_runs(search_all_experiments=True, output_format="list")
    assert run.info.status == "FINISHED"
    for key in METRICS:
        assert steps(run.info.run_id, key) == list(range(20)), f"{key}: every epoch exactly once"
    assert run.data.tags["restarts"] == "0", "ridden out in the same process"


def test_a_tracking_server_that_stays_away_exits_with_the_retry_code_and_the_next_pod_resumes(tmp_path, server):
    args = (*TRAIN_ARGS, "--epochs", "20", "--checkpoint-every", "2", "--log-every", "0", "--retry-seconds", "3")
    process = start_train(tmp_path, *args, tracking_uri=server.uri, MLFLOW_HTTP_REQUEST_MAX_RETRIES="0")
    seen: list[str] = []
    read_until(process, r"^epoch 7/", seen)
    server.stop()
    seen.append(process.communicate(timeout=120)[0])
    output = "".join(seen)
    assert process.returncode == TRANSIENT, output[-3000:]
    assert "the tracking server did not answer for 3 s" in output
    [run] = mlflow.search_runs(search_all_experiments=True, output_format="list")
    assert run.info.status == "RUNNING", "not FAILED: the Job's next pod goes on with it"

    server.start()
    result = run_train(tmp_path, *args, run_id=run.info.run_id, tracking_uri=server.uri)
    assert result.returncode == 0, result.stderr[-3000:]
    assert re.search(r"resuming from the checkpoint at epoch [1-9]\d* step 0", result.stdout), result.stdout
    finished = mlflow.get_run(run.info.run_id)
    assert finished.info.status == "FINISHED" and finished.data.tags["restarts"] == "1"
    assert steps(run.info.run_id) == list(range(20))


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


def test_resume_continues_a_stopped_run_with_its_own_parameters(tmp_path):
    """`make resume RUN_ID=...` submits the run again, with the parameters it started with (PARAMS win), and the
    pod trains in that run from its checkpoint; a run that is still going or done is refused, with the reason."""
    sys.path.insert(0, str(PROJECT))
    import resume

    args = (*TRAIN_ARGS, "--epochs", str(LONG), "--checkpoint-every", "2")
    run_id, code, output = start_and_stop_midway(tmp_path, signal.SIGTERM, *args)
    assert code == PREEMPTED, output
    client = mlflow.MlflowClient()
    client.log_param(run_id, "epochs", str(LONG))  # as `mlflow run` logs the entry point's parameters
    client.log_param(run_id, "continue_run", "none")
    client.set_terminated(run_id, "FAILED")
    command = resume.command(run_id, ["-P", "epochs=30"])
    assert command[:3] == ["mlflow", "run", "."] and "--build-image" in command
    given = [command[i + 1] for i, arg in enumerate(command) if arg == "-P"]
    assert sorted(given) == [f"continue_run={run_id}", "epochs=30"], "PARAMS win; the run to go on with"

    # The pod of that submission: `mlflow run` made it a run of its own, --continue-run names the one to train in.
    submission = client.create_run(mlflow.get_run(run_id).info.experiment_id).info.run_id
    result = run_train(tmp_path, *args, "--continue-run", run_id, run_id=submission)
    assert result.returncode == 0, result.stderr[-2000:]
    continued = mlflow.get_run(run_id)
    assert continued.info.status == "FINISHED" and continued.data.tags["restarts"] == "1"
    assert steps(run_id) == list(range(LONG)), "every epoch once, in the run that was continued"
    assert int(continued.data.tags["resumed_from_epoch"]) > 0, "from its checkpoint"
    assert mlflow.get_run(submission).data.tags["continues_run"] == run_id
    assert not mlflow.MlflowClient().get_metric_history(submission, METRICS[0]), "nothing trained in the submission"

    with pytest.raises(SystemExit, match="is FINISHED; only a FAILED or KILLED run can be continued"):
        resume.command(run_id, [])
    with pytest.raises(SystemExit, match="RUN_ID=0123: no such run"):
        resume.command("0123", [])

{%- if cookiecutter.framework == "pytorch" %}


@pytest.fixture
def on_the_cpu(monkeypatch):
    """The two-process trainings run gloo on the CPU wherever the tests run: two processes cannot share one GPU
    (a pod has one per process), and the two-node test starts both of its nodes on this one machine."""
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "")


def test_distributed_two_processes_stop_at_one_step_and_resume_identically(tmp_path, on_the_cpu):
    """--procs-per-node 2 on the CPU (torchrun, DistributedDataParallel over gloo) trains one MLflow run that
    rank 0 alone logs. SIGTERM to the launcher (the pod's PID 1) inside a long epoch: both ranks stop after
    one agreed step, rank 0 saves, the pod exits 143; the resumed run ends bit-identical to an uninterrupted one."""
    data = ("--data-file", write_table(tmp_path, LONG_EPOCH["rows"]))
    args = (*LONG_EPOCH["args"], *data, "--epochs", "2", "--seed", "5", "--log-every", "1", "--procs-per-node", "2")
    whole = run_train(tmp_path, *args)
    assert whole.returncode == 0, whole.stdout[-2000:] + whole.stderr[-2000:]
    assert "launching 2 training processes" in whole.stdout
    [uninterrupted] = mlflow.search_runs(search_all_experiments=True, output_format="list")
    assert {"world_size": "2", "nodes": "1", "procs_per_node": "2"}.items() <= uninterrupted.data.tags.items()
    assert uninterrupted.data.tags["restarts"] == "0", "rank 1 never opened the run"
    for key in METRICS:
        assert steps(uninterrupted.info.run_id, key) == [0, 1], f"{key}: every epoch once, from rank 0 alone"
    assert len(re.findall(r"^epoch 2/2: ", whole.stdout, re.M)) == 1, "rank 0 alone prints the progress"
    steps_per_epoch = int(re.search(r"^epoch 1/2 step 1/(\d+):", whole.stdout, re.M)[1])
    assert steps_per_epoch >= 100, "an epoch of many steps on each rank"

    code, output = stop_when(tmp_path, args, rf"^epoch 1/2 step {steps_per_epoch // 4}/")
    assert code == PREEMPTED, output[-3000:]
    stops = dict(re.findall(r"rank (\d): stopped at epoch 0 step (\d+) of 2 epochs", output))
    assert stops.keys() == {"0", "1"}, output[-3000:]
    assert stops["0"] == stops["1"], f"the ranks stopped at different steps: {stops}"
    assert steps_per_epoch // 4 <= int(stops["0"]) < steps_per_epoch, "inside the epoch, not at its end"
    [interrupted] = [r for r in mlflow.search_runs(search_all_experiments=True, output_format="list")
                     if r.info.run_id != uninterrupted.info.run_id]
    assert interrupted.info.status == "RUNNING"

    resumed = run_train(tmp_path, *args, run_id=interrupted.info.run_id)
    assert resumed.returncode == 0, resumed.stdout[-2000:] + resumed.stderr[-2000:]
    assert f"resuming from the checkpoint at epoch 0 step {stops['0']}" in resumed.stdout
    finished = mlflow.get_run(interrupted.info.run_id)
    assert finished.info.status == "FINISHED" and finished.data.tags["restarts"] == "1"
    assert history(interrupted.info.run_id) == history(uninterrupted.info.run_id), "every epoch once, equal values"
    ours, theirs = model_parameters(the_model(finished)), model_parameters(the_model(uninterrupted))
    for name in ours:
        assert np.array_equal(ours[name], theirs[name]), f"{name} differs from the uninterrupted run's"


def rank_pid(launcher: subprocess.Popen, rank: int) -> int:
    """One rank's process: a child of torchrun, which is the launcher's child."""
    def children(pid: int) -> list[int]:
        return [int(child) for child in Path(f"/proc/{pid}/task/{pid}/children").read_text().split()]

    [torchrun] = children(launcher.pid)
    for pid in children(torchrun):
        if f"RANK={rank}".encode() in Path(f"/proc/{pid}/environ").read_bytes().split(b"\0"):
            return pid
    raise AssertionError(f"no rank {rank} under torchrun {torchrun}")


def test_distributed_a_stop_sent_to_one_rank_alone_stops_every_rank_at_one_step(tmp_path, on_the_cpu):
    """On several nodes each pod's SIGTERM comes at its own time: the rank that got it tells the others, all
    stop after the same step (else the next gradient exchange would hang), rank 0 saves, and the pod exits 143."""
    data = ("--data-file", write_table(tmp_path, LONG_EPOCH["rows"]))
    args = (*LONG_EPOCH["args"], *data, "--epochs", "2", "--log-every", "1", "--procs-per-node", "2")
    code, output = stop_when(tmp_path, args, r"^epoch 1/2 step 20/",
                             lambda launcher: os.kill(rank_pid(launcher, 1), signal.SIGTERM))
    assert code == PREEMPTED, output[-3000:]
    assert "rank 0: received" not in output, "rank 0 learned of the stop from rank 1, not from a signal"
    stops = dict(re.findall(r"rank (\d): stopped at epoch 0 step (\d+) of 2 epochs", output))
    assert stops.keys() == {"0", "1"} and stops["0"] == stops["1"], output[-3000:]
    [run] = mlflow.search_runs(search_all_experiments=True, output_format="list")
    assert run.info.status == "RUNNING", "preempted, not failed: the Job's next pod resumes it"
    alone = run_train(tmp_path, *args[:-1], "1", run_id=run.info.run_id)
    assert alone.returncode == 1 and "(nodes x procs_per_node = 2)" in alone.stderr, \
        "a step inside an epoch counts each rank's share: one process cannot go on from it"
    resumed = run_train(tmp_path, *args, "--epochs", "1", run_id=run.info.run_id)
    assert f"resuming from the checkpoint at epoch 0 step {stops['0']}" in resumed.stdout, resumed.stdout[-2000:]


def test_distributed_two_nodes_meet_at_index_zero_stop_at_one_step_and_resume(tmp_path, on_the_cpu):
    """nodes=2 as the Indexed Job runs it: two pods, each train.py with the environment the Job template gives
    (TRAIN_NODES, its JOB_COMPLETION_INDEX, index 0's address), meet there and train one run that rank 0 (index
    0) alone logs. One pod of the gang is evicted inside an epoch (a node drain): only index 0 gets SIGTERM, yet
    both ranks stop after the same step and both pods exit 143, the code the Job replaces a pod on (any other
    fails the Job); started again, they resume from rank 0's checkpoint and log every epoch once."""
    data = ("--data-file", write_table(tmp_path, LONG_EPOCH["rows"]))
    args = (*LONG_EPOCH["args"], *data, "--epochs", "2", "--log-every", "1", "--procs-per-node", "1")

    def gang(run_id=None) -> list[subprocess.Popen]:
        return [subprocess.Popen([sys.executable, str(PROJECT / "train.py"), *args], cwd=tmp_path,
                                 env={**train_env(tmp_path, run_id), "TRAIN_NODES": "2", "JOB_COMPLETION_INDEX": str(i),
                                      "TRAIN_RENDEZVOUS_HOST": "127.0.0.1"},
                                 stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, bufsize=1)
                for i in (0, 1)]

    first = gang()
    seen: list[str] = []
    read_until(first[0], r"^epoch 1/2 step 30/", seen)
    first[0].send_signal(signal.SIGTERM)
    outputs = ["".join(seen) + first[0].communicate(timeout=120)[0], first[1].communicate(timeout=120)[0]]
    assert [pod.returncode for pod in first] == [PREEMPTED, PREEMPTED], outputs[0][-2000:] + outputs[1][-2000:]
    assert "launching 1 training processes on node 0 of 2" in outputs[0]
    assert "launching 1 training processes on node 1 of 2" in outputs[1]
    stops = dict(re.findall(r"rank (\d): stopped at epoch 0 step (\d+) of 2 epochs", "".join(outputs)))
    assert stops.keys() == {"0", "1"} and stops["0"] == stops["1"], outputs
    [run] = mlflow.search_runs(search_all_experiments=True, output_format="list")
    assert run.info.status == "RUNNING", "preempted, not failed: the Job starts the gang again"

    again = gang(run.info.run_id)
    outputs = [pod.communicate(timeout=300)[0] for pod in again]
    assert [pod.returncode for pod in again] == [0, 0], outputs[0][-2000:] + outputs[1][-2000:]
    assert f"resuming from the checkpoint at epoch 0 step {stops['0']}" in outputs[0]
    finished = mlflow.get_run(run.info.run_id)
    assert finished.info.status == "FINISHED" and finished.data.tags["restarts"] == "1"
    assert {"world_size": "2", "nodes": "2", "procs_per_node": "1"}.items() <= finished.data.tags.items()
    for key in METRICS:
        assert steps(run.info.run_id, key) == [0, 1], f"{key}: every epoch once, from rank 0 alone"
    assert predicts(the_model(finished))


# A rank's training with its DataLoader workers running, and still holding them when the interpreter exits.
RANK_WITH_WORKERS = """
import argparse, time
import torch
import trainer
from preemption import StopRequest
from team import Team

stop = StopRequest().install()
args = argparse.Namespace(batch_size=8, seed=1, workers=2, lr=0.01)
train_set, val_set, _ = trainer.digits(None, args.seed)
steps = trainer.DigitsSteps(args, Team(0, 1, 1, torch.device("cpu")), train_set, val_set, None)
steps.train_step(0, 0)
print("workers started", flush=True)
while not stop.requested:
    time.sleep(0.05)
for step in range(1, 40):
    steps.train_step(0, step)
print("trained on after the SIGTERM", flush=True)
"""


def test_distributed_dataloader_workers_outlive_torchruns_group_stop_and_end_with_their_rank(tmp_path, on_the_cpu):
    """torchrun stops a rank by signalling its whole process group: the rank's DataLoader workers must go on
    loading until it has saved (else its next step fails, and the preemption with it), and still end when the
    rank exits, even with the loader alive then (else the pod would hang and hold its GPUs)."""
    rank = subprocess.Popen([sys.executable, "-c", RANK_WITH_WORKERS], cwd=PROJECT, env=train_env(tmp_path),
                            start_new_session=True, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    seen = []
    try:
        read_until(rank, "^workers started", seen)
        os.killpg(rank.pid, signal.SIGTERM)  # as torchrun does
        output, _ = rank.communicate(timeout=90)
    finally:
        rank.kill()
    output = "".join(seen) + output
    assert rank.returncode == 0 and "trained on after the SIGTERM" in output, output[-3000:]


def test_distributed_ranks_whose_exit_handlers_hang_do_not_hold_the_pod(tmp_path, on_the_cpu):
    """A hang in a training process's teardown (NCCL's, a library's exit handler) once the run has ended would
    keep torchrun, and the pod with its GPUs, until the Job's deadline: the pod must end with the run."""
    hooks = tmp_path / "hooks"
    hooks.mkdir()
    # Python runs sitecustomize in every process: in each rank, an exit handler that never returns.
    (hooks / "sitecustomize.py").write_text(
        "import atexit, os, time\n"
        "if 'RANK' in os.environ:\n"
        "    atexit.register(time.sleep, 3600)\n")
    result = subprocess.run([sys.executable, str(PROJECT / "train.py"), *TRAIN_ARGS, "--epochs", "2",
                             "--procs-per-node", "2"], cwd=tmp_path, capture_output=True, text=True, timeout=150,
                            env={**train_env(tmp_path), "PYTHONPATH": str(hooks)})
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-2000:]
    [run] = mlflow.search_runs(search_all_experiments=True, output_format="list")
    assert run.info.status == "FINISHED"


def test_distributed_a_rank_that_dies_fails_the_run_at_once(tmp_path, on_the_cpu):
    """A rank killed (the OOM killer picks one process) leaves the other in a gradient exchange: it must fail
    the pod and the run at once, not hold the GPUs until a timeout."""
    args = (*TRAIN_ARGS, "--epochs", "50", "--log-every", "5", "--procs-per-node", "2")
    code, output = stop_when(tmp_path, args, r"^epoch 2/50 step ",
                             lambda launcher: os.kill(rank_pid(launcher, 1), signal.SIGKILL))
    assert code not in (0, PREEMPTED, TRANSIENT), "a failure: the Job must not start a replacement"
    assert "training failed" in output, output[-3000:]
    [run] = mlflow.search_runs(search_all_experiments=True, output_format="list")
    assert run.info.status == "FAILED"
{%- endif %}


@pytest.mark.parametrize("args", BAD_ARGS)
def test_bad_parameters_exit_non_zero(tmp_path, args):
    result = run_train(tmp_path, *args)
    assert result.returncode not in (0, PREEMPTED, TRANSIENT)
    assert "must be" in result.stderr or "invalid" in result.stderr
