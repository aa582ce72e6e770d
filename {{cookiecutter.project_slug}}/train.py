"""Train {{ "an ElasticNet-penalised linear model" if cookiecutter.framework == "sklearn" else "a small convolutional network" }}: check the arguments, then run the training's life cycle.

Under `mlflow run --backend kubernetes` the pod runs this file with the entry point's parameters.
It checks them before MLflow and the framework load (seconds on a pod's CPU): a bad `-P` fails at
once with argparse's exit 2, which the Job template fails on without retrying. What follows, the
run's life cycle (resuming the run, preemption, a tracking server that goes away), is lifecycle.py;
what is trained, and its own arguments, are trainer.py and hyperparameters.py.{% if cookiecutter.framework == "pytorch" %}
With --procs-per-node 2 or more, or on several nodes, this process launches torchrun (launch.py).{% endif %}
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

import cpus
import hyperparameters
{%- if cookiecutter.framework == "pytorch" %}
import launch
{%- endif %}
from preemption import PREEMPTED_EXIT_CODE, TRANSIENT_EXIT_CODE, StopRequest

# Before anything slow: a pod preempted while it starts must still exit 143, not be killed.
STOP = StopRequest().install()

DESCRIPTION = {{ cookiecutter.description | py_str }}  # noqa: E501 - the description answer, as long as it is


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=DESCRIPTION)
    hyperparameters.add_arguments(parser)
    parser.add_argument("--epochs", type=int, default=hyperparameters.EPOCHS,
                        help="passes over the training data, >= 1")
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
    problems = hyperparameters.check_arguments(args)
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


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if STOP.requested:
        print("stopped while starting up; the Job's next pod starts the run", file=sys.stderr)
{%- if cookiecutter.framework == "pytorch" %}
        launch.report_exit(PREEMPTED_EXIT_CODE)
{%- endif %}
        return PREEMPTED_EXIT_CODE
{%- if cookiecutter.framework == "pytorch" %}
    if not launch.in_worker():  # torchrun's processes inherit what the launcher set
        print(cpus.share_among(args.procs_per_node), flush=True)
    if launch.distributed(args.procs_per_node) and not launch.in_worker():
        return launch.torchrun(args.procs_per_node, sys.argv[1:] if argv is None else argv, STOP)
    # Loading MLflow and the framework takes seconds: only once the arguments are good. Ranks other than 0
    # never talk to the tracking server, and skip MLflow (replica.py).
    if launch.rank() != 0:
        import replica  # noqa: PLC0415

        code = replica.run(args, STOP)
    else:
        import lifecycle  # noqa: PLC0415

        code = lifecycle.run(args, STOP, DESCRIPTION)
    launch.report_exit(code)
    if launch.in_worker():
        launch.exit_now(code)
    return code
{%- else %}
    print(cpus.share_among(1), flush=True)
    import lifecycle  # noqa: PLC0415 - loads MLflow and the framework: only once the arguments are good

    return lifecycle.run(args, STOP, DESCRIPTION)
{%- endif %}


if __name__ == "__main__":
    sys.exit(main())
