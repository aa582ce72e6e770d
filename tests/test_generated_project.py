"""The generated project's own tests pass: train.py logs metrics and a model to a local store, and resumes.

They run in a venv with the project's requirements-dev.txt (kube.venvs, cached), as a user runs
`make test`: for pytorch that is torch itself, on this machine's CPU. Each project's suite runs in four
(pytorch: five) shards, selected with pytest's own -k through PYTEST_ADDOPTS, so that `make test`'s workers
run them side by side; each shard's passed and deselected counts together prove that they cover the whole suite.
"""

import os
import subprocess

import pytest
from kube.venvs import project_venv

VARIANTS = {"defaults": {}, "fraction": {"gpu": "0.5", "description": 'quotes "and" colons: # hash'},
            "pytorch": {"framework": "pytorch", "gpu": "0.5"}}
# The tests that train, stop and resume, or restart a tracking server, are the longest: shards of their own.
SHARDS = {"sigterm": "(sigterm or damaged) and not distributed", "long_epoch": "long_epoch and not distributed",
          "tracking_server": "tracking_server and not distributed",
          "distributed": "distributed",
          "rest": "not (sigterm or damaged or long_epoch or tracking_server or distributed)"}
SHARD_SIZES = {"sigterm": 2, "long_epoch": 1, "tracking_server": 2}
# The project's tests, bad-parameter cases and those of its CPU threads (tests/test_cpus.py) included; pytorch's
# adds --procs-per-node, the distributed ones, the check of its CUDA pins (tests/test_requirements.py) and a
# checkpoint resumed on another device, the bundled data and what each rank loads (tests/test_trainer.py).
SUITE_SIZES = {"sklearn": 34, "pytorch": 45}
DISTRIBUTED = {"sklearn": 0, "pytorch": 6}


def framework(name: str) -> str:
    return VARIANTS[name].get("framework", "sklearn")


# The fraction variant differs from the defaults in answers the training never reads (the GPU request, the
# description): its suite is the defaults' suite, so it runs only the quick shard, as a check of the rendering.
# Only pytorch trains in several processes: sklearn has no distributed shard.
RUNS = [(name, shard) for name in VARIANTS for shard in SHARDS
        if (name != "fraction" or shard == "rest") and (shard != "distributed" or DISTRIBUTED[framework(name)])]
# Seconds each run takes alone on the 2-core CI machine (one thread per training): make test starts the longest
# first (tests/longest_first.py). Only the order depends on them: a figure gone stale costs time, never a result.
SECONDS = {"sklearn": {"sigterm": 23, "long_epoch": 25, "tracking_server": 38, "rest": 27},
           "pytorch": {"sigterm": 40, "long_epoch": 32, "tracking_server": 53, "distributed": 87, "rest": 50}}


def threads_per_training() -> dict[str, str]:
    """The project's trainings share the cores with make test's other workers: each gets its share of them, as
    its cpus.py would give it under a pod's CPU limit (OMP_NUM_THREADS, which it respects). With a thread per
    core each, four on two cores spent most of their CPU time spinning: one 20-epoch training, 78 s against 15 s."""
    if "OMP_NUM_THREADS" in os.environ:
        return {}
    workers = int(os.environ.get("PYTEST_XDIST_WORKER_COUNT", "1"))
    return {"OMP_NUM_THREADS": str(max(1, len(os.sched_getaffinity(0)) // workers))}


@pytest.mark.slow
@pytest.mark.parametrize(("name", "shard"), [
    pytest.param(name, shard, id=f"{name}-{shard}", marks=pytest.mark.seconds(SECONDS[framework(name)][shard]))
    for name, shard in RUNS])
def test_generated_project_tests_pass(bake, name, shard):
    variant = VARIANTS[name]
    result = bake(**variant)
    assert result.exception is None, result.exception  # never run pytest with cwd=None (the repo itself)
    project = result.project_path
    assert (project / "tests" / "test_train.py").is_file()
    python = project_venv(project) / "bin" / "python"
    env = {**os.environ, "PYTEST_ADDOPTS": f"-k '{SHARDS[shard]}'", **threads_per_training()}
    run = subprocess.run(["make", "--no-print-directory", "test", f"PYTHON={python}"],
                         cwd=project, capture_output=True, text=True, timeout=900, env=env)
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:]
    sizes = {**SHARD_SIZES, "distributed": DISTRIBUTED[framework(name)]}
    suite = SUITE_SIZES[framework(name)]
    selected = sizes.get(shard, suite - sum(sizes.values()))
    assert f"{selected} passed, {suite - selected} deselected" in run.stdout, run.stdout[-500:]
