"""Where the e2e suite runs: a kind cluster, the local cluster, or an existing cluster.

Each target tells the suite the same things: the kubeconfig, where to push images (which pods
pull by the same name), the address at which pods reach servers on this machine, the base image
generated projects build on, and what the suite may do there: the suite asks a target what it
allows, never which target it is.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import subprocess
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path


@dataclass
class ClusterTarget:
    name: str  # for messages only
    kubeconfig: Path
    registry: str  # docker push <registry>/<repo>:<tag>; pods pull the same reference
    host_address: str  # pods reach servers on this machine here
    base_image: str
    docker_build_args: str = ""
    gpu_nodes: list[str] = field(default_factory=list)
    teardown: object = None  # callable, or None to leave the cluster running
    # What the suite may do on this target.
    runs_fake_scheduler: bool = True  # else the cluster's own Run:ai scheduler serves runai-scheduler
    owns_registry: bool = True  # may delete repositories it pushed (registries of one's own only)
    may_label_nodes: bool = True  # may label gpu_nodes with the node type of the node-type variant
    may_resize_gpus: bool = True  # may change how many fake GPUs a node advertises
    # Writes files into a directory on a node (for a local PersistentVolume); None: the suite may not.
    node_files: Callable[[str, str, dict[str, str]], None] | None = None
    # A Run:ai researcher's cluster: every run goes into this existing project's namespace, and the
    # suite creates no namespace and changes no node there.
    runai_project: str | None = None
    node_type: str = ""  # an existing node type for the node-type variant (the suite never labels it)

    @property
    def may_create_namespaces(self) -> bool:
        return self.runai_project is None

    def env(self) -> dict[str, str]:
        return {**os.environ, "KUBECONFIG": str(self.kubeconfig)}

    def write_node_files(self, node: str, directory: str, files: dict[str, str]) -> None:
        if self.node_files is None:
            raise RuntimeError(f"the {self.name} target does not let the suite write files on its nodes")
        self.node_files(node, directory, files)


def write_host_files(_node: str, directory: str, files: dict[str, str]) -> None:
    """The local cluster's node is this machine: its kubelet mounts host paths."""
    root = Path(directory)
    root.mkdir(parents=True, exist_ok=True)
    root.chmod(0o755)  # the pod runs as uid 1000
    for name, text in files.items():
        (root / name).write_text(text)
        (root / name).chmod(0o644)


def local_target() -> ClusterTarget:
    from local_cluster import LocalCluster
    from local_cluster.images import PYTHON_BASE_IMAGE

    cluster = LocalCluster().up()
    return ClusterTarget(
        name="local", kubeconfig=cluster.kubeconfig, registry=cluster.registry,
        host_address=cluster.host_address, base_image=PYTHON_BASE_IMAGE,
        # pip inside `docker build` reaches the package index the way this machine does
        docker_build_args="--network host", gpu_nodes=[cluster.settings.node_name], node_files=write_host_files)


def existing_target() -> ClusterTarget:
    """Any cluster: KUBECONFIG, E2E_REGISTRY and E2E_HOST_ADDRESS; SCHEDULER=runai for a real Run:ai cluster.

    E2E_RUNAI_PROJECT=<project> is a researcher's view: every run in the existing namespace runai-<project>,
    with only the rights a project member has there (README: "A real Run:ai cluster").
    """
    missing = [name for name in ("KUBECONFIG", "E2E_REGISTRY", "E2E_HOST_ADDRESS") if not os.environ.get(name)]
    if missing:
        raise RuntimeError(f"CLUSTER=existing needs {', '.join(missing)}: the kubeconfig, a registry this machine "
                           "pushes to and the cluster pulls from, and this machine's address as pods see it")
    registry = os.environ["E2E_REGISTRY"]
    project = os.environ.get("E2E_RUNAI_PROJECT") or None
    return ClusterTarget(
        name=f"existing (Run:ai project {project})" if project else "existing",
        kubeconfig=Path(os.environ["KUBECONFIG"]), registry=registry,
        host_address=os.environ["E2E_HOST_ADDRESS"], base_image=os.environ.get("E2E_BASE_IMAGE", "python:3.11-slim"),
        runs_fake_scheduler=os.environ.get("SCHEDULER", "fake") != "runai",
        gpu_nodes=[n for n in os.environ.get("E2E_GPU_NODES", "").split(",") if n],
        owns_registry=False, may_resize_gpus=False, runai_project=project,
        may_label_nodes=project is None, node_type=os.environ.get("E2E_NODE_TYPE", ""))


class TargetSetupError(RuntimeError):
    """A cluster could not be set up: the step, the tool's own words, and the way out, as one message."""


@contextlib.contextmanager
def setup_step(step: str, way_out: str):
    try:
        yield
    except subprocess.CalledProcessError as err:
        said = (err.stderr or err.output or "").strip() if isinstance(err.stderr or err.output, str) else ""
        command = " ".join(str(a) for a in err.cmd) if isinstance(err.cmd, list | tuple) else str(err.cmd)
        raise TargetSetupError(f"{step} failed: `{command}` exited {err.returncode}: {said or 'no message'}\n"
                               f"  way out: {way_out}") from None
    except (OSError, RuntimeError) as err:
        raise TargetSetupError(f"{step} failed: {err}\n  way out: {way_out}") from None


def select_target(name: str, work_dir: Path) -> ClusterTarget:
    if name == "local":
        return local_target()
    if name == "kind":
        from .kind_target import KIND_WAY_OUT, kind_target

        if not shutil.which("docker"):
            raise TargetSetupError(f"CLUSTER=kind needs the docker command, which is not installed\n"
                                   f"  way out: {KIND_WAY_OUT}")

        return kind_target(work_dir)
    if name == "existing":
        return existing_target()
    raise RuntimeError(f"CLUSTER must be kind, local or existing, not {name!r}")
