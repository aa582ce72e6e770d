"""Where the e2e suite runs: a kind cluster, the local cluster, or an existing cluster.

Each target tells the suite the same things: the kubeconfig, where to push images (which pods
pull by the same name), the address at which pods reach servers on this machine, the base image
generated projects build on, and what the suite may do there: the suite asks a target what it
allows, never which target it is.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import subprocess
import textwrap
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from kube import KubeApi
from kube.nodes import advertise_fake_gpus

KIND_VERSION = "v0.33.0"
KIND_KUBECTL_VERSION = "v1.34.11"
# kind v0.33.0's release notes: node images are pinned by digest (a tag can be re-pushed for another kind).
KIND_NODE_IMAGE = "kindest/node:v1.34.11@sha256:44e222ee2132dab25ff87301682f89eb82c7880ea3a1bf543bfe9708fd08d67d"
KIND_CLUSTER_NAME = "runai-mlflow-e2e"
KIND_REGISTRY_NAME = "kind-registry"
KIND_REGISTRY_PORT = 5001
FAKE_GPUS = 4


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


def write_kind_node_files(node: str, directory: str, files: dict[str, str]) -> None:
    """A kind node is a container named after the node."""
    _docker("exec", node, "mkdir", "-p", "-m", "755", directory)
    for name, text in files.items():
        subprocess.run(["docker", "exec", "-i", node, "sh", "-c", f"cat > {directory}/{name} && chmod 644 "
                        f"{directory}/{name}"], input=text, text=True, check=True)


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


# kind, with kind's documented local registry (kind.sigs.k8s.io/docs/user/local-registry) ----------------

KIND_CONFIG = textwrap.dedent("""\
    kind: Cluster
    apiVersion: kind.x-k8s.io/v1alpha4
    containerdConfigPatches:
    - |-
      [plugins."io.containerd.grpc.v1.cri".registry]
        config_path = "/etc/containerd/certs.d"
    nodes:
    - role: control-plane
    """)


def _docker(*args: str, check: bool = True) -> str:
    return subprocess.run(["docker", *args], check=check, capture_output=True, text=True).stdout.strip()


def ensure_kind_registry() -> None:
    running = _docker("inspect", "-f", "{{.State.Running}}", KIND_REGISTRY_NAME, check=False)
    if running != "true":
        _docker("rm", "-f", KIND_REGISTRY_NAME, check=False)
        _docker("run", "-d", "--restart=always", "-p", f"127.0.0.1:{KIND_REGISTRY_PORT}:5000", "--network", "bridge",
                "--name", KIND_REGISTRY_NAME, "registry:3")


def connect_kind_registry(cluster) -> None:
    """hosts.toml per node so localhost:5001 means the registry container, and the registry on the kind network."""
    hosts_dir = f"/etc/containerd/certs.d/localhost:{KIND_REGISTRY_PORT}"
    hosts_toml = f'[host."http://{KIND_REGISTRY_NAME}:5000"]\n'
    nodes = subprocess.run([str(cluster.kind_path), "get", "nodes", "--name", cluster.name], check=True,
                           capture_output=True, text=True).stdout.split()
    for node in nodes:
        _docker("exec", node, "mkdir", "-p", hosts_dir)
        subprocess.run(["docker", "exec", "-i", node, "cp", "/dev/stdin", f"{hosts_dir}/hosts.toml"],
                       input=hosts_toml, text=True, check=True)
    networks = _docker("inspect", "-f", "{{json .NetworkSettings.Networks}}", KIND_REGISTRY_NAME)
    if "kind" not in json.loads(networks):
        _docker("network", "connect", "kind", KIND_REGISTRY_NAME)
    cluster.kubectl("apply", "-f", "-", input=textwrap.dedent(f"""\
        apiVersion: v1
        kind: ConfigMap
        metadata:
          name: local-registry-hosting
          namespace: kube-public
        data:
          localRegistryHosting.v1: |
            host: "localhost:{KIND_REGISTRY_PORT}"
            help: "https://kind.sigs.k8s.io/docs/user/local-registry/"
        """))


def kind_gateway() -> str:
    """The kind network's IPv4 gateway: this machine as pods on kind nodes see it."""
    configs = json.loads(_docker("network", "inspect", "kind", "-f", "{{json .IPAM.Config}}"))
    return next(c["Gateway"] for c in configs if c.get("Gateway") and ":" not in c["Gateway"])


class TargetSetupError(RuntimeError):
    """A cluster could not be set up: the step, the tool's own words, and the way out, as one message."""


KIND_WAY_OUT = ("kind needs Docker and images from Docker Hub (kindest/node, registry:3); where images cannot be "
                "pulled, run `make e2e CLUSTER=local` (root; builds everything on this machine), or use a cluster "
                "you have with CLUSTER=existing")


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


def kind_target(work_dir: Path) -> ClusterTarget:
    os.environ.setdefault("KIND_VERSION", KIND_VERSION)  # read by pytest-kind-ng at import
    os.environ.setdefault("KUBECTL_VERSION", KIND_KUBECTL_VERSION)
    from pytest_kind import KindCluster

    config = work_dir / "kind-config.yaml"
    config.parent.mkdir(parents=True, exist_ok=True)
    config.write_text(KIND_CONFIG)
    with setup_step(f"starting kind's local registry ({KIND_REGISTRY_NAME}, image registry:3)", KIND_WAY_OUT):
        ensure_kind_registry()
    cluster = KindCluster(KIND_CLUSTER_NAME, image=os.environ.get("KIND_NODE_IMAGE", KIND_NODE_IMAGE))
    created = KIND_CLUSTER_NAME not in subprocess.run(
        [str(cluster.kind_path), "get", "clusters"], capture_output=True, text=True).stdout.split() \
        if cluster.kind_path.exists() else True
    with setup_step(f"creating the kind cluster {KIND_CLUSTER_NAME} ({cluster.image})", KIND_WAY_OUT):
        cluster.create(config_file=config)
        cluster.kubectl("wait", "--for=condition=Ready", "nodes", "--all", "--timeout=120s")
    with setup_step("connecting the kind nodes to the local registry", KIND_WAY_OUT):
        connect_kind_registry(cluster)
        nodes = cluster.kubectl("get", "nodes", "-o", "name").split()
    names = [n.split("/", 1)[1] for n in nodes]
    api = KubeApi.from_kubeconfig(str(cluster.kubeconfig_path))
    for name in names:
        advertise_fake_gpus(api, name, FAKE_GPUS)
    keep = os.environ.get("E2E_KEEP_CLUSTER") == "1" or not created
    return ClusterTarget(
        name="kind", kubeconfig=cluster.kubeconfig_path.resolve(), registry=f"localhost:{KIND_REGISTRY_PORT}",
        host_address=kind_gateway(),
        base_image=os.environ.get("E2E_BASE_IMAGE", "python:3.11-slim"), gpu_nodes=names,
        teardown=None if keep else cluster.delete, node_files=write_kind_node_files)


def select_target(name: str, work_dir: Path) -> ClusterTarget:
    if name == "local":
        return local_target()
    if name == "kind":
        if not shutil.which("docker"):
            raise TargetSetupError(f"CLUSTER=kind needs the docker command, which is not installed\n"
                                   f"  way out: {KIND_WAY_OUT}")
        return kind_target(work_dir)
    if name == "existing":
        return existing_target()
    raise RuntimeError(f"CLUSTER must be kind, local or existing, not {name!r}")
