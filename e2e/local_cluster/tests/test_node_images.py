"""The node's image store is kept across clusters, and emptied at `up` once it outgrows its limit."""

import dataclasses

from local_cluster import ClusterSettings
from local_cluster.node_images import bound_node_image_store, disk_usage

MIB = 2**20


def store_with_a_layer(tmp_path, megabytes: int, limit_gib: float) -> ClusterSettings:
    settings = dataclasses.replace(ClusterSettings(), cache_dir=tmp_path, node_images_max_gib=limit_gib)
    layer = settings.containerd_root / "io.containerd.content.v1.content" / "blobs" / "sha256" / "layer"
    layer.parent.mkdir(parents=True)
    layer.write_bytes(b"x" * megabytes * MIB)
    (layer.parent / "same-layer").hardlink_to(layer)  # counted once
    return settings


def test_a_store_within_its_limit_is_kept(tmp_path, capsys):
    settings = store_with_a_layer(tmp_path, 4, limit_gib=5 / 1024)
    assert 4 * MIB <= disk_usage(settings.containerd_root) < 5 * MIB
    bound_node_image_store(settings, containerd_running=False)
    assert (settings.containerd_root / "io.containerd.content.v1.content").is_dir()
    assert "kept from the last cluster" in capsys.readouterr().err


def test_a_store_over_its_limit_is_emptied_and_says_why(tmp_path, capsys):
    settings = store_with_a_layer(tmp_path, 4, limit_gib=3 / 1024)
    bound_node_image_store(settings, containerd_running=False)
    assert settings.containerd_root.is_dir() and not any(settings.containerd_root.iterdir())
    assert "over its limit of 0.00293 GiB (RUNAI_MLFLOW_NODE_IMAGES_MAX_GIB): emptied" in capsys.readouterr().err


def test_a_store_in_use_is_never_emptied(tmp_path):
    settings = store_with_a_layer(tmp_path, 4, limit_gib=1 / 1024)
    bound_node_image_store(settings, containerd_running=True)
    assert (settings.containerd_root / "io.containerd.content.v1.content").is_dir()
