"""make cluster-build / cluster-up / cluster-down / cluster-status: python -m local_cluster build|up|down|status."""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys

from .cluster import LocalCluster
from .progress import ClusterError
from .settings import ClusterSettings


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m local_cluster", description=__doc__)
    parser.add_argument("command", choices=["build", "up", "down", "status"])
    parser.add_argument("--gpus", type=int, help="fake nvidia.com/gpu the node advertises (default 4)")
    args = parser.parse_args(argv)
    settings = ClusterSettings()
    if args.gpus is not None:
        settings = dataclasses.replace(settings, gpus=args.gpus)
    cluster = LocalCluster(settings)
    try:
        if args.command == "build":
            cluster.build()
            print("cluster binaries and root filesystem built (cached)")
        elif args.command == "up":
            cluster.up()
            print(cluster.usage())
        elif args.command == "down":
            cluster.down()
            print("cluster removed")
        else:
            status = cluster.status()
            print(json.dumps(status, indent=2))
            return 0 if cluster.healthy() else 3
    except ClusterError as err:
        print(f"local cluster: {err}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
