"""The node's image store (containerd's root): a cache kept across clusters, emptied when it grows too big.

A pod's image is pulled from the registry and unpacked by the node's containerd; for the PyTorch
environment that is 6 GB, about two minutes here. Kept by `down`, a warm `make e2e` pulls only the layers
it has not seen (each run's project layer). Images the suite pushes under new names pile up, so `up`
empties the store once it holds more than ``ClusterSettings.node_images_max_gib``.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

from .host import mounts_under
from .progress import say
from .settings import ClusterSettings


def disk_usage(root: Path) -> int:
    """Bytes on disk under root (allocated blocks, each inode once, symlinks not followed)."""
    seen: set[tuple[int, int]] = set()
    total = 0
    for directory, subdirectories, files in os.walk(root):
        for name in subdirectories + files:
            try:
                info = os.lstat(os.path.join(directory, name))
            except OSError:  # removed while walking
                continue
            if (info.st_dev, info.st_ino) not in seen:
                seen.add((info.st_dev, info.st_ino))
                total += info.st_blocks * 512
    return total


def bound_node_image_store(settings: ClusterSettings, containerd_running: bool) -> None:
    """Before containerd starts: keep the store, or empty it when it is over its size limit.

    A store in use (containerd running, or anything mounted in it) is left as it is."""
    root = settings.containerd_root
    if containerd_running or mounts_under(root):
        return
    limit = settings.node_images_max_gib * 2**30
    used = disk_usage(root) if root.exists() else 0
    if used > limit:
        say(f"node image store {root}: {used / 2**30:.3g} GiB, over its limit of "
            f"{settings.node_images_max_gib:.3g} GiB (RUNAI_MLFLOW_NODE_IMAGES_MAX_GIB): emptied, pods pull again")
        shutil.rmtree(root)
    elif used:
        say(f"node image store {root}: {used / 2**30:.3g} GiB kept from the last cluster")
    root.mkdir(parents=True, exist_ok=True)
