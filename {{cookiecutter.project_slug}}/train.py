"""Train {{ "an ElasticNet-penalised linear model" if cookiecutter.framework == "sklearn" else "a small convolutional network" }} in epochs, log it to MLflow, and survive preemption.

Under `mlflow run --backend kubernetes` the pod gets MLFLOW_TRACKING_URI, MLFLOW_RUN_ID and
MLFLOW_EXPERIMENT_ID from MLflow; `mlflow.start_run()` resumes that run. MLflow already logged
the entry-point parameters, so this script must not log them again.

Run:ai may preempt the pod at any time (see README.md, "When your job is preempted"): on SIGTERM
the script finishes the current step, saves a checkpoint to the run and exits 143; the Job starts a
replacement pod with the same run id, which resumes from that step (loop.py, checkpoint.py). If
the tracking server stays unreachable longer than --retry-seconds, it exits 75 and the Job also
starts a new pod (retry.py). What is trained, and how, lives in trainer.py; this file is the run's
life cycle, the same for every framework.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import sys
from pathlib import Path

from preemption import PREEMPTED_EXIT_CODE, TRANSIENT_EXIT_CODE, Preempted, StopRequest

# Before the slow imports below: a pod preempted while it starts must still exit 143, not be killed.
STOP = StopRequest().install()

import mlflow

import trainer
from checkpoint import ResumableRun
from loop import Schedule
from retry import Retry, TrackingUnavailable

CONTINUES_TAG = "continues_run"
DESCRIPTION = {{ cookiecutter.description | py_str }}  # noqa: E501 - the description answer, as long as it is


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=DESCRIPTION)
    trainer.add_arguments(parser)
    parser.add_argument("--epochs", type=int, default=trainer.EPOCHS, help="passes over the training data, >= 1")
    parser.add_argument("--seed", type=int, default=42,
                        help="seeds the data split, the initial model and every epoch's data order, >= 0")
    parser.add_argument("--checkpoint-every", type=int, default=10,
                        help="save a checkpoint to the run every N epochs (and always on SIGTERM), >= 1")
    parser.add_argument("--checkpoint-minutes", type=float, default=10.0,
                        help="also save one inside an epoch once this many minutes passed since the last, > 0: "
                             "the most a SIGKILL (grace period overrun, lost node) can cost")
    parser.add_argument("--log-every", type=int, default=100,
                        help="print a progress line every N steps (and after every epoch), >= 0 (0: epochs only)")
    parser.add_argument("--continue-run", default="none",
                        help="the id of an earlier run to go on with from its last checkpoint, instead of the run "
                             "`mlflow run` created for this submission ('none': that one); make resume sets it")
    parser.add_argument("--retry-seconds", type=float, default=120.0,
                        help="keep retrying a failed tracking call or checkpoint upload this long before exiting "
                             f"{TRANSIENT_EXIT_CODE} for the Job to start a new pod, >= 0")
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
    if not args.checkpoint_minutes > 0:
        problems.append(f"--checkpoint-minutes must be > 0, got {args.checkpoint_minutes}")
    if args.seed < 0:
        problems.append(f"--seed must be >= 0, got {args.seed}")
    if args.log_every < 0:
        problems.append(f"--log-every must be >= 0, got {args.log_every}")
    if not args.retry_seconds >= 0:
        problems.append(f"--retry-seconds must be >= 0, got {args.retry_seconds}")
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


def start_run(continue_run: str, retry: Retry):
    """The run this pod trains in: the one `mlflow run` created (MLFLOW_RUN_ID), or with --continue-run an
    earlier one. `mlflow run --backend kubernetes` always creates a run, so `make resume` names the run to go on
    with as a parameter; the submission's own run is tagged with it and ends when the Job does."""
    if continue_run == "none":
        return mlflow.start_run()
    submission = os.environ.pop("MLFLOW_RUN_ID", None)
    if submission and submission != continue_run:
        retry("tagging the submission's run", mlflow.MlflowClient().set_tag, submission, CONTINUES_TAG, continue_run)
        retry("tagging the submission's run", mlflow.MlflowClient().set_tag, submission, "mlflow.note.content",
              f"`make resume` of run {continue_run}: the training, its metrics and its model are in that run.")
    print(f"continuing run {continue_run} (make resume)", flush=True)
    return mlflow.start_run(run_id=continue_run)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if STOP.requested:
        print("stopped while starting up; the Job's next pod starts the run", file=sys.stderr)
        return PREEMPTED_EXIT_CODE
    print(f"tracking server: {mlflow.get_tracking_uri()}", flush=True)
    retry = Retry(args.retry_seconds)
    schedule = Schedule(args.epochs, args.checkpoint_every, args.checkpoint_minutes, args.log_every)
    try:
        run = retry("starting the run", start_run, args.continue_run, retry)
        retry("tagging the run", mlflow.set_tags,
              {"mlflow.note.content": DESCRIPTION, **runtime_report(), **data_report(args.data_path)})
        progress = ResumableRun(run.info.run_id, retry)
        summary = trainer.train(args, progress, schedule, STOP)
        print(f"run {run.info.run_id}: {args.epochs} epochs, {summary}, restarts={progress.restarts} "
              f"{runtime_report()}")
        retry("ending the run", mlflow.MlflowClient().set_terminated, run.info.run_id, "FINISHED")
        retry("ending the run", mlflow.end_run)
    except Preempted as stopped:
        print(stopped, file=sys.stderr)
        # Not FAILED, not FINISHED: the run goes on in the next pod. It is RUNNING on the server already,
        # so a server that does not answer now changes nothing.
        with contextlib.suppress(Exception):
            mlflow.end_run(status="RUNNING")
        return PREEMPTED_EXIT_CODE
    except TrackingUnavailable as unreachable:
        print(f"{unreachable}\nexiting {TRANSIENT_EXIT_CODE}: the Job starts a new pod, which resumes from the last "
              "checkpoint (the retries count against backoffLimit)", file=sys.stderr, flush=True)
        sys.stdout.flush()
        # Not sys.exit: MLflow's exit hook would end the run FINISHED, or wait on the same server again.
        os._exit(TRANSIENT_EXIT_CODE)
    except Exception as err:  # noqa: BLE001 - report any failure and exit non-zero so the Job fails
        print(f"training failed: {type(err).__name__}: {err}", file=sys.stderr)
        with contextlib.suppress(Exception):  # the error above is the one to see
            mlflow.end_run(status="FAILED")
        return 1
    return 0

if __name__ == "__main__":
    sys.exit(main())
