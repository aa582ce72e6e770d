"""A data claim for the data-pvc variant: files on the GPU node, a local PersistentVolume, and its claim.

MLflow passes no docker_env volumes to the Job, so the generated template mounts a claim the user
names (data_pvc). The suite makes one the way an admin would for node-local data: a `local`
PersistentVolume pinned to the node, pre-bound to the claim in the variant's namespace. Cluster-
scoped, so the suite deletes the volume itself; the files go with the work directory.
"""

from __future__ import annotations

import time

from kube import KubeApi, wait_until

from .progress import progress
from .targets import ClusterTarget


def long_epoch_table(rows: int = 64000) -> str:
    """The sklearn project's shape, large enough that one epoch at batch_size=1 outlasts a 10 s grace period
    with room: 38,400 steps of training split. A pod alone on this machine ran about 2,900 steps/s (13 s an
    epoch); with 50,000 rows its epoch took 10.3 s, which a faster machine would bring under the grace period."""
    lines = ["a,b,c,y"]
    for i in range(rows):
        a, b = (i * 7919) % 1000 / 100, (i * 104729) % 1000 / 100
        c = (a * b) % 5
        lines.append(f"{a:.2f},{b:.2f},{c:.4f},{3 * a - 2 * b + c:.4f}")
    return "\n".join(lines) + "\n"


# What the claim holds: a CSV of the sklearn project's shape (features, target last), a large one for long
# epochs, and a file that is not data, so the run's tags show the pod listed the claim and trained on the
# file it was pointed at.
LONG_EPOCH_FILE = "long-epoch.csv"
DATA_FILES = {
    "train.csv": "a,b,c,y\n" + "".join(f"{a},{b},{(a * b) % 5},{3 * a - 2 * b + (a * b) % 5}\n"
                                       for a in range(8) for b in range(8)),
    LONG_EPOCH_FILE: long_epoch_table(),
    "README.txt": "Training data for the runai-mlflow e2e data-pvc variant.\n",
}
PART_OF = {"app.kubernetes.io/part-of": "runai-mlflow-e2e"}


def volume_name(namespace: str) -> str:
    return f"{namespace}-data"


def create_data_claim(api: KubeApi, target: ClusterTarget, namespace: str, claim: str, directory: str) -> None:
    node = target.gpu_nodes[0]
    target.write_node_files(node, directory, DATA_FILES)
    volume = volume_name(namespace)
    started = time.monotonic()
    api.request("POST", "/api/v1/persistentvolumes", body={
        "metadata": {"name": volume, "labels": PART_OF},
        "spec": {"capacity": {"storage": "16Mi"}, "accessModes": ["ReadOnlyMany"],
                 "persistentVolumeReclaimPolicy": "Retain", "storageClassName": "", "local": {"path": directory},
                 "claimRef": {"namespace": namespace, "name": claim},
                 "nodeAffinity": {"required": {"nodeSelectorTerms": [{"matchExpressions": [
                     {"key": "kubernetes.io/hostname", "operator": "In", "values": [node]}]}]}}}})
    api.request("POST", f"/api/v1/namespaces/{namespace}/persistentvolumeclaims", body={
        "metadata": {"name": claim, "labels": PART_OF},
        "spec": {"accessModes": ["ReadOnlyMany"], "storageClassName": "", "volumeName": volume,
                 "resources": {"requests": {"storage": "16Mi"}}}})
    # An admin hands over a claim that is bound. A pod that mounts one still binding is skipped by the kubelet,
    # which tries again only after its back-off: measured 26 s of ContainerCreating for a claim bound in 7 s.
    # (The binding itself takes 0.1 s to 24 s here: the controller sometimes binds only at its next resync.)
    wait_until(lambda: api.get(f"/api/v1/namespaces/{namespace}/persistentvolumeclaims/{claim}")
               .get("status", {}).get("phase") == "Bound", 60, f"claim {claim} to be bound to {volume}", interval=0.2)
    progress(f"data claim {namespace}/{claim} and its volume made and bound in {time.monotonic() - started:.1f}s")


def delete_data_volume(api: KubeApi, namespace: str) -> None:
    api.delete(f"/api/v1/persistentvolumes/{volume_name(namespace)}")


def leftover_volumes(api: KubeApi, namespaces: set[str]) -> list[str]:
    names = {volume_name(n) for n in namespaces}
    return [f"persistentvolume {v['metadata']['name']}" for v in api.get("/api/v1/persistentvolumes")["items"]
            if v["metadata"]["name"] in names]
