"""The kind target: a kind cluster with kind's documented local registry (kind.sigs.k8s.io/docs/user/local-registry).

Upstream images where they can be had: the pinned ``kindest/node`` and ``registry:3``, with kind and kubectl
downloaded by pytest-kind-ng. Where the node image cannot be pulled (no route to Docker Hub, as on this
project's CI machine), everything comes from upstream parts built here instead (e2e/kind_node): the node
image, kind and kubectl from their Go modules, and the generated projects' base image; where only
registry:3 cannot be pulled, the registry image is built from distribution's module.
"""

from __future__ import annotations

import json
import os
import subprocess
import textwrap
from dataclasses import dataclass
from pathlib import Path

from kube import KubeApi
from kube.nodes import advertise_fake_gpus

from .targets import ClusterTarget, TargetSetupError, setup_step

KIND_KUBECTL_VERSION = "v1.34.11"
# kind v0.33.0's release notes: node images are pinned by digest (a tag can be re-pushed for another kind).
KIND_NODE_IMAGE = "kindest/node:v1.34.11@sha256:44e222ee2132dab25ff87301682f89eb82c7880ea3a1bf543bfe9708fd08d67d"
UPSTREAM_REGISTRY_IMAGE = "registry:3"
UPSTREAM_BASE_IMAGE = "python:3.11-slim"
KIND_CLUSTER_NAME = "runai-mlflow-e2e"
KIND_REGISTRY_NAME = "kind-registry"
KIND_REGISTRY_PORT = 5001
FAKE_GPUS = 4

KIND_WAY_OUT = ("kind needs a running Docker (on a machine of its own, `make cluster-up` starts one), and builds "
                "its node image here where kindest/node cannot be pulled (Go, debootstrap, root: "
                "`make kind-node-image` shows each step); or run `make e2e CLUSTER=local`, or use a cluster you "
                "have with CLUSTER=existing")


@dataclass(frozen=True)
class KindImages:
    """What this machine runs kind with: upstream's images, or ours built from the same parts."""
    node: str
    registry: str
    built_here: bool  # the node image (then kind, kubectl and the base image too) built on this machine
    kind_path: Path | None = None  # None: pytest-kind-ng downloads kind and kubectl
    kubectl_path: Path | None = None
    base_image: str = UPSTREAM_BASE_IMAGE
    docker_build_args: str = ""

    def config(self) -> str:
        """kind's cluster config: the registry's certs.d; for our node image, its CNI and kubeadm's image tags."""
        text = textwrap.dedent("""\
            kind: Cluster
            apiVersion: kind.x-k8s.io/v1alpha4
            containerdConfigPatches:
            - |-
              [plugins."io.containerd.grpc.v1.cri".registry]
                config_path = "/etc/containerd/certs.d"
            nodes:
            - role: control-plane
            """)
        if self.built_here:
            from kind_node import KUBEADM_CONFIG_PATCH

            text += "networking:\n  disableDefaultCNI: true\nkubeadmConfigPatches:\n- |\n"
            text += textwrap.indent(KUBEADM_CONFIG_PATCH, "  ")
        return text


def _docker(*args: str, check: bool = True) -> str:
    return subprocess.run(["docker", *args], check=check, capture_output=True, text=True).stdout.strip()


def pull_failure(reference: str) -> str | None:
    """None when the image is here or could be pulled; otherwise docker pull's reason."""
    if subprocess.run(["docker", "image", "inspect", reference], capture_output=True).returncode == 0:
        return None
    pulled = subprocess.run(["docker", "pull", reference], capture_output=True, text=True)
    if pulled.returncode == 0:
        return None
    return (pulled.stderr.strip().splitlines() or ["no message"])[-1]


def choose_images() -> KindImages:
    """Upstream where it can be pulled; built here only where it cannot (and said so)."""
    from local_cluster.progress import say
    from local_cluster.settings import ClusterSettings

    info = subprocess.run(["docker", "info"], capture_output=True, text=True)
    if info.returncode != 0:
        said = (info.stderr.strip().splitlines() or ["no message"])[-1]
        raise TargetSetupError(f"Docker does not answer (`docker info`: {said}); kind runs its nodes in Docker")
    node = os.environ.get("KIND_NODE_IMAGE")
    node_missing = None if node else pull_failure(KIND_NODE_IMAGE)
    registry_missing = pull_failure(UPSTREAM_REGISTRY_IMAGE)
    missing = [f"{image} ({reason})" for image, reason in ((KIND_NODE_IMAGE, node_missing),
                                                           (UPSTREAM_REGISTRY_IMAGE, registry_missing)) if reason]
    if missing and os.geteuid() != 0:
        raise TargetSetupError(f"cannot be pulled: {'; '.join(missing)}; building them here from upstream parts "
                               "needs root (debootstrap, chroot)")
    settings = ClusterSettings()
    registry = UPSTREAM_REGISTRY_IMAGE
    if registry_missing:
        from kind_node import ensure_registry_image

        say(f"{UPSTREAM_REGISTRY_IMAGE} cannot be pulled here ({registry_missing}): kind's registry from "
            "distribution's Go module")
        registry = ensure_registry_image(settings)
    if not node_missing:
        return KindImages(node=node or KIND_NODE_IMAGE, registry=registry, built_here=False)
    from kind_node import ensure_node_image, kind_binary, kubectl_binary
    from local_cluster.images import ensure_python_base_image

    say(f"{KIND_NODE_IMAGE.split('@')[0]} cannot be pulled here ({node_missing}): a node image from upstream "
        "parts, and kind and kubectl from their Go modules (README: \"kind where kindest/node cannot be pulled\")")
    return KindImages(node=ensure_node_image(settings), registry=registry, built_here=True,
                      kind_path=kind_binary(settings), kubectl_path=kubectl_binary(settings),
                      base_image=ensure_python_base_image(settings),
                      # pip inside `docker build` reaches the package index the way this machine does
                      docker_build_args="--network host")


def kind_registry_storage() -> Path:
    """Where built here, the registry's blobs outlive the container, as the local cluster's do: a warm run
    pushes only new layers (upstream's path keeps kind's documented container, storage inside it)."""
    from kube.paths import cache_root

    return cache_root() / "kind-registry"


def ensure_kind_registry(images: KindImages) -> bool:
    """Start kind's registry container unless it runs; True when this call started it."""
    running = _docker("inspect", "-f", "{{.State.Running}}", KIND_REGISTRY_NAME, check=False)
    if running == "true":
        return False
    _docker("rm", "-f", KIND_REGISTRY_NAME, check=False)
    storage = []
    if images.built_here:
        kind_registry_storage().mkdir(parents=True, exist_ok=True)
        storage = ["-v", f"{kind_registry_storage()}:/var/lib/registry"]
    _docker("run", "-d", "--pull", "never", "--restart=always", "-p", f"127.0.0.1:{KIND_REGISTRY_PORT}:5000",
            "--network", "bridge", *storage, "--name", KIND_REGISTRY_NAME, images.registry)
    return True


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


def write_kind_node_files(node: str, directory: str, files: dict[str, str]) -> None:
    """A kind node is a container named after the node."""
    _docker("exec", node, "mkdir", "-p", "-m", "755", directory)
    for name, text in files.items():
        subprocess.run(["docker", "exec", "-i", node, "sh", "-c", f"cat > {directory}/{name} && chmod 644 "
                        f"{directory}/{name}"], input=text, text=True, check=True)


def kind_target(work_dir: Path) -> ClusterTarget:
    from kind_node import KIND_VERSION

    os.environ.setdefault("KIND_VERSION", KIND_VERSION)  # read by pytest-kind-ng at import
    os.environ.setdefault("KUBECTL_VERSION", KIND_KUBECTL_VERSION)
    from pytest_kind import KindCluster

    with setup_step("choosing kind's images (upstream, or built here from upstream parts)", KIND_WAY_OUT):
        images = choose_images()
    config = work_dir / "kind-config.yaml"
    config.parent.mkdir(parents=True, exist_ok=True)
    config.write_text(images.config())
    with setup_step(f"starting kind's local registry ({KIND_REGISTRY_NAME}, image {images.registry})", KIND_WAY_OUT):
        started_registry = ensure_kind_registry(images)
    cluster = KindCluster(KIND_CLUSTER_NAME, image=images.node, kind_path=images.kind_path,
                          kubectl_path=images.kubectl_path)
    created = KIND_CLUSTER_NAME not in subprocess.run(
        [str(cluster.kind_path), "get", "clusters"], capture_output=True, text=True).stdout.split() \
        if cluster.kind_path.exists() else True

    def teardown() -> None:
        """What this session made: the cluster if it created it, the registry container if it started it."""
        try:
            if created:
                cluster.delete()
        finally:
            if started_registry:
                _docker("rm", "-f", KIND_REGISTRY_NAME, check=False)

    try:
        with setup_step(f"creating the kind cluster {KIND_CLUSTER_NAME} ({images.node})", KIND_WAY_OUT):
            cluster.create(config_file=config)
            cluster.kubectl("wait", "--for=condition=Ready", "nodes", "--all", "--timeout=120s")
        with setup_step("connecting the kind nodes to the local registry", KIND_WAY_OUT):
            connect_kind_registry(cluster)
            nodes = cluster.kubectl("get", "nodes", "-o", "name").split()
        names = [n.split("/", 1)[1] for n in nodes]
        api = KubeApi.from_kubeconfig(str(cluster.kubeconfig_path))
        for name in names:
            advertise_fake_gpus(api, name, FAKE_GPUS)
        host_address = kind_gateway()
    except BaseException:
        if os.environ.get("E2E_KEEP_CLUSTER") != "1":
            teardown()  # a failed setup leaves nothing running (--restart=always would bring it back)
        raise
    keep = os.environ.get("E2E_KEEP_CLUSTER") == "1" or not created
    return ClusterTarget(
        name=f"kind ({'node image built here' if images.built_here else 'upstream images'})",
        kubeconfig=cluster.kubeconfig_path.resolve(), registry=f"localhost:{KIND_REGISTRY_PORT}",
        host_address=host_address, base_image=os.environ.get("E2E_BASE_IMAGE", images.base_image),
        docker_build_args=images.docker_build_args, gpu_nodes=names,
        teardown=None if keep else teardown, node_files=write_kind_node_files)


__all__ = ["KIND_NODE_IMAGE", "KindImages", "TargetSetupError", "kind_target"]
