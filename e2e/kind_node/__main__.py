"""make kind-node-image: python -m kind_node, builds (or finds) the kind node image and kind's registry image."""

from __future__ import annotations

import sys

from local_cluster.progress import ClusterError
from local_cluster.settings import ClusterSettings

from . import ensure_node_image, ensure_registry_image


def main() -> int:
    settings = ClusterSettings()
    try:
        print(ensure_node_image(settings))
        print(ensure_registry_image(settings))
    except ClusterError as err:
        print(f"kind node image: {err}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
