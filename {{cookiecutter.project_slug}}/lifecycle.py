"""The run's life cycle, the same for every framework: resume the run, train, end it, and say what the Job does next.

MLflow gave the pod MLFLOW_TRACKING_URI, MLFLOW_RUN_ID and MLFLOW_EXPERIMENT_ID; `mlflow.start_run()`
resumes that run. MLflow already logged the entry-point parameters, so nothing here logs them again.

Run:ai may preempt the pod at any time (see README.md, "When your job is preempted"): on SIGTERM the
training finishes the current step, saves a checkpoint to the run and this exits 143; the Job starts
a replacement pod with the same run id, which resumes from that step (loop.py, checkpoint.py). If
the tracking server stays unreachable longer than --retry-seconds, it exits 75 and the Job also
starts a new pod (retry.py). What is trained, and how, lives in trainer.py.
{%- if cookiecutter.framework == "pytorch" %}

With several training processes (launch.py), this is rank 0's life cycle; the other ranks only
train (replica.py), from the checkpoint rank 0 shares with them.
{%- endif %}
"""

from __future__ import annotations

import argparse
import contextlib
import os
import sys
from pathlib import Path

import mlflow

import cpus
{% if cookiecutter.framework == "pytorch" %}import launch
{% endif %}import trainer
from checkpoint import ResumableRun
from loop import Schedule
from preemption import PREEMPTED_EXIT_CODE, TRANSIENT_EXIT_CODE, Preempted, StopRequest
from retry import Retry, TrackingUnavailable

CONTINUES_TAG = "continues_run"


def runtime_report() -> dict[str, str]:
    """What the pod was given: the GPU request from the Job template, the devices the runtime exposed, the
    CPU limit and the threads each process uses under it (cpus.py), and the user it runs as (Run:ai
    clusters often require non-root)."""
    quota = cpus.limit()
    return {
        "gpu.requested": os.environ.get("RUNAI_GPU_REQUEST", "0"),
        "gpu.visible_devices": os.environ.get("NVIDIA_VISIBLE_DEVICES", "none"),
        "cpu.limit": "none" if quota is None else f"{quota:g}",
        "cpu.threads": os.environ.get(cpus.THREADS, "default"),
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


def run(args: argparse.Namespace, stop: StopRequest, description: str) -> int:
    """Train in the run from its last checkpoint to the end; the exit code says what the Job does next."""
    print(f"tracking server: {mlflow.get_tracking_uri()}", flush=True)
    retry = Retry(args.retry_seconds)
    schedule = Schedule.of(args)
    try:
        run = retry("starting the run", start_run, args.continue_run, retry)
        retry("tagging the run", mlflow.set_tags,
              {"mlflow.note.content": description, **runtime_report(), **data_report(args.data_path)})
        progress = ResumableRun(run.info.run_id, retry)
        summary = trainer.train(args, progress, schedule, stop)
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
{%- if cookiecutter.framework == "pytorch" %}
        launch.report_exit(TRANSIENT_EXIT_CODE)
{%- endif %}
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
