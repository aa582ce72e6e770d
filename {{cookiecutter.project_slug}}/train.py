"""Train {{ "an ElasticNet-penalised linear model" if cookiecutter.framework == "sklearn" else "a small convolutional network" }} in epochs, log it to MLflow, and survive preemption.

Under `mlflow run --backend kubernetes` the pod gets MLFLOW_TRACKING_URI, MLFLOW_RUN_ID and
MLFLOW_EXPERIMENT_ID from MLflow; `mlflow.start_run()` resumes that run. MLflow already logged
the entry-point parameters, so this script must not log them again.

Run:ai may preempt the pod at any time (see README.md, "When your job is preempted"): on SIGTERM
the script saves a checkpoint to the run and exits 143; the Job starts a replacement pod with the
same run id, which resumes from the checkpoint (checkpoint.py). What is trained, and how, lives in
trainer.py; this file is the run's life cycle, the same for every framework.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

from preemption import PREEMPTED_EXIT_CODE, Preempted, StopRequest

# Before the slow imports below: a pod preempted while it starts must still exit 143, not be killed.
STOP = StopRequest().install()

import mlflow

import trainer
from checkpoint import ResumableRun

DESCRIPTION = {{ cookiecutter.description | py_str }}  # noqa: E501 - the description answer, as long as it is


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=DESCRIPTION)
    trainer.add_arguments(parser)
    parser.add_argument("--epochs", type=int, default=trainer.EPOCHS, help="passes over the training data, >= 1")
    parser.add_argument("--checkpoint-every", type=int, default=10,
                        help="save a checkpoint to the run every N epochs (and always on SIGTERM), >= 1")
    parser.add_argument("--data-file", default="none",
                        help="a CSV file to train on instead of the bundled data, relative to DATA_DIR (the data "
                             "claim) or to this folder; 'none' for the bundled data")
    args = parser.parse_args(argv)
    problems = trainer.check_arguments(args)
    args.data_path = None if args.data_file == "none" else Path(os.environ.get("DATA_DIR", ".")) / args.data_file
    if args.data_path and not args.data_path.is_file():
        problems.append(f"--data-file {args.data_file}: {args.data_path} is not a file")
    if args.epochs < 1:
        problems.append(f"--epochs must be >= 1, got {args.epochs}")
    if args.checkpoint_every < 1:
        problems.append(f"--checkpoint-every must be >= 1, got {args.checkpoint_every}")
    if problems:
        parser.error("; ".join(problems))
    return args


def runtime_report() -> dict[str, str]:
    """What the pod was given: the GPU request from the Job template, the devices the runtime exposed,
    and the user it runs as (Run:ai clusters often require non-root)."""
    return {
        "gpu.requested": os.environ.get("RUNAI_GPU_REQUEST", "0"),
        "gpu.visible_devices": os.environ.get("NVIDIA_VISIBLE_DEVICES", "none"),
        "runtime.uid": str(os.getuid()),
    }


def data_report(data_path: Path | None) -> dict[str, str]:
    """What the data claim holds (top level only: a claim may hold millions of files) and what trains."""
    report = {"data.used": str(data_path) if data_path else "bundled"}
    root = os.environ.get("DATA_DIR")
    if root:
        try:
            names = sorted(entry.name for entry in os.scandir(root))
        except OSError as err:
            names, report["data.error"] = [], f"{type(err).__name__}: {err}"
        report.update({"data.dir": root, "data.entries": str(len(names)), "data.sample": ", ".join(names[:5])})
    return report


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if STOP.requested:
        print("stopped while starting up; the Job's next pod starts the run", file=sys.stderr)
        return PREEMPTED_EXIT_CODE
    print(f"tracking server: {mlflow.get_tracking_uri()}")
    try:
        run = mlflow.start_run()
        mlflow.set_tags({"mlflow.note.content": DESCRIPTION, **runtime_report(), **data_report(args.data_path)})
        progress = ResumableRun(run.info.run_id)
        summary = trainer.train(args, progress, STOP)
        print(f"run {run.info.run_id}: {args.epochs} epochs, {summary}, restarts={progress.restarts} "
              f"{runtime_report()}")
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
