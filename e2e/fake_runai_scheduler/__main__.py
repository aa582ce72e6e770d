"""Run the fake Run:ai scheduler: python -m fake_runai_scheduler --kubeconfig K --config queues.yaml"""

from __future__ import annotations

import argparse
import dataclasses
import logging
import signal
import sys
import threading

from kube import KubeApi

from .config import ConfigError, load_config
from .scheduler import FakeRunaiScheduler


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m fake_runai_scheduler", description=__doc__)
    parser.add_argument("--kubeconfig", help="kubeconfig file (default: $KUBECONFIG or ~/.kube/config)")
    parser.add_argument("--context", help="kubeconfig context")
    parser.add_argument("--config", required=True, help="queues file (see config.py for the format)")
    parser.add_argument("--scheduler-name", help="schedulerName to serve (default from the config, runai-scheduler)")
    parser.add_argument("--no-priority-classes", action="store_true",
                        help="do not create Run:ai's PriorityClasses (train, build-preemptible, build, inference)")
    parser.add_argument("--update-pod-eviction-condition", action="store_true",
                        help="as KAI's flag of that name: set the DisruptionTarget condition (reason "
                             "PreemptionByScheduler) on a preempted pod before deleting it (default: delete only)")
    parser.add_argument("--log-level", default="INFO")
    args = parser.parse_args(argv)
    logging.basicConfig(level=args.log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    try:
        config = load_config(args.config)
    except (ConfigError, OSError) as err:
        print(f"fake_runai_scheduler: bad config {args.config}: {err}", file=sys.stderr)
        return 2
    if args.scheduler_name:
        config = dataclasses.replace(config, scheduler_name=args.scheduler_name)
    scheduler = FakeRunaiScheduler(KubeApi.from_kubeconfig(args.kubeconfig, args.context), config,
                                   create_priority_classes=not args.no_priority_classes,
                                   update_pod_eviction_condition=args.update_pod_eviction_condition).start()
    stopped = threading.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: stopped.set())
    stopped.wait()
    scheduler.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
