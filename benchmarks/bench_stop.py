"""Print what a preemption costs a generated project's training: stop latency and work lost, in steps and seconds.

For each framework, a short epoch (the bundled data, the default batch size) and a long one (a larger
CSV through --data-file, small batches): train.py gets SIGTERM a third of the way into its second
epoch, as a pod that Run:ai preempts does, and a second process resumes the run as the replacement pod
would. Figures from one run each on this machine (noisy: compare the rows of one run, not runs):
- latency: SIGTERM to exit (one step, the checkpoint save, Python's exit);
- steps after: steps trained between the progress line this script answered and the stop (this
  script's reaction time included: SIGTERM itself is checked after every step);
- lost: steps the replacement trains again (its resume position against the stop position);
- an epoch-end stop: how long the stop would have waited for the end of the epoch instead.
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from cookiecutter.main import cookiecutter

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "e2e"))
from kube.venvs import project_venv  # noqa: E402

# train.py arguments per framework and epoch shape; a long epoch also trains on a larger CSV (table()).
SHAPES = {
    "sklearn": {"short": ("--batch-size", "32"), "long": ("--batch-size", "1")},
    "pytorch": {"short": ("--batch-size", "64", "--workers", "2"), "long": ("--batch-size", "4", "--workers", "2")},
}


def table(framework: str, rows: int) -> str:
    """A CSV of the shape each project's --data-file takes (see its README, "Training data")."""
    rng = np.random.default_rng(3)
    if framework == "pytorch":
        digits = np.arange(rows) % 10
        pixels = np.clip((digits[:, None] * 3 + np.arange(64)) % 17 + rng.integers(-2, 3, (rows, 64)), 0, 16)
        data, header = np.column_stack([pixels, digits]), ",".join(f"p{i}" for i in range(64)) + ",digit"
    else:
        x = rng.uniform(0, 10, (rows, 3))
        data, header = np.column_stack([x, x @ [3.0, -2.0, 1.0]]), "a,b,c,y"
    return header + "\n" + "\n".join(",".join(f"{v:g}" for v in row) for row in data) + "\n"


def measure(python: Path, project: Path, work: Path, args: tuple[str, ...]) -> dict:
    env = {**os.environ, "MLFLOW_TRACKING_URI": f"sqlite:///{work / 'mlflow.db'}", "DATA_DIR": str(work)}
    env.pop("MLFLOW_RUN_ID", None)
    command = [str(python), str(project / "train.py"), *args, "--epochs", "2", "--checkpoint-every", "100",
               "--log-every", "1"]
    process = subprocess.Popen(command, cwd=work, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    lines, signalled_at, sent = [], None, 0.0
    for line in process.stdout:
        lines.append(line)
        step = re.match(r"epoch 2/2 step (\d+)/(\d+):", line)
        if step and signalled_at is None and int(step[1]) >= max(1, int(step[2]) // 3):
            signalled_at, sent = int(step[1]), time.monotonic()
            process.send_signal(signal.SIGTERM)
    process.wait()
    latency = time.monotonic() - sent
    output = "".join(lines)
    stop = re.search(r"stopped at epoch 1 step (\d+) of", output)
    rate = re.search(r"^epoch 1/2: .*; ([\d,]+) samples/s$", output, re.M)
    per_step = re.search(r"epoch 1/2 step 1/(\d+):", output)
    if process.returncode != 143 or not (stop and rate and per_step):
        raise SystemExit(f"{project.name} {args}: exit {process.returncode}\n{output[-2000:]}")
    steps, samples_per_second = int(per_step[1]), int(rate[1].replace(",", ""))
    batch = int(args[args.index("--batch-size") + 1])
    run_id = re.search(r"resumes run (\w+)", output)[1]
    resumed = subprocess.run(command, cwd=work, env={**env, "MLFLOW_RUN_ID": run_id}, capture_output=True, text=True)
    at = re.search(r"resuming from the checkpoint at epoch 1 step (\d+)", resumed.stdout)
    if resumed.returncode != 0 or not at:
        raise SystemExit(f"{project.name}: the resume failed\n{resumed.stdout[-2000:]}{resumed.stderr[-2000:]}")
    epoch_seconds = steps * batch / max(samples_per_second, 1)
    return {"steps": steps, "signalled": signalled_at, "stopped": int(stop[1]), "latency": latency,
            "lost": int(stop[1]) - int(at[1]), "epoch_seconds": epoch_seconds, "step_seconds": epoch_seconds / steps}


def main() -> None:
    print("stop latency and work lost per preemption (SIGTERM a third into epoch 2 of 2, then a resume)")
    print(f"  {'project':9s}{'epoch':>7s}{'steps':>8s}{'epoch s':>9s}{'stop latency':>14s}{'steps after':>13s}"
          f"{'steps lost':>12s}{'epoch-end stop':>16s}")
    with tempfile.TemporaryDirectory(prefix="bench-stop-") as tmp:
        for framework, shapes in SHAPES.items():
            project = Path(cookiecutter(str(ROOT), no_input=True, output_dir=tmp, default_config=True,
                                        extra_context={"framework": framework}))
            python = project_venv(project, print) / "bin" / "python"
            for shape, args in shapes.items():
                work = Path(tmp) / f"{framework}-{shape}"
                work.mkdir()
                if shape == "long":
                    (work / "table.csv").write_text(table(framework, 20000 if framework == "sklearn" else 8000))
                    args = (*args, "--data-file", "table.csv")
                row = measure(python, project, work, args)
                waited = (row["steps"] - row["signalled"]) * row["step_seconds"]
                print(f"  {framework:9s}{shape:>7s}{row['steps']:>8d}{row['epoch_seconds']:>9.2f}"
                      f"{row['latency']:>12.2f} s{row['stopped'] - row['signalled']:>13d}{row['lost']:>12d}"
                      f"{waited:>14.2f} s", flush=True)
    print("  latency is one step plus the checkpoint save (and Python's exit), whatever the epoch's length; "
          "0 steps lost: the replacement resumes at the stop's step.")


if __name__ == "__main__":
    main()
