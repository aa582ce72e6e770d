"""Assemble the kind node image from its parts (parts.py), the way kind's own build does it offline.

The steps, each named in progress lines and in its error: the parts; the node's root file system
(Debian plus kind's base files, the Kubernetes binaries, systemd units enabled); the component images
kubeadm asks for; those images imported into the node's containerd inside a running node container,
which is then committed as the node image. Tagged by a digest of this recipe, so a machine builds it once.
"""

from __future__ import annotations

import hashlib
import json
import shutil
import subprocess
import tempfile
from pathlib import Path

from kube import WaitFailed, wait_until
from local_cluster import runc_clamp
from local_cluster.images import docker, docker_import_tree, ensure_docker, image_exists
from local_cluster.progress import ClusterError, say, step
from local_cluster.settings import KUBERNETES_VERSION, ClusterSettings

from . import parts

NODE_IMAGE_REPOSITORY = "runai-mlflow/kind-node"
# kind's node image is systemd in a container (kind's images/base/Dockerfile); a Dockerfile, as
# `docker import` and `docker commit` do not take STOPSIGNAL.
NODE_DOCKERFILE = """\
FROM {image}
ENV container=docker
STOPSIGNAL SIGRTMIN+3
ENTRYPOINT ["/usr/local/bin/entrypoint", "/sbin/init"]
LABEL runai-mlflow.kind-node.recipe={recipe}
"""
# One node, no kindnetd: the CNI bridge plugin gives pods addresses in kind's default pod subnet.
POD_SUBNET = "10.244.0.0/16"
CNI_CONFIG = {
    "cniVersion": "1.0.0", "name": "runai-mlflow-kind",
    "plugins": [
        {"type": "bridge", "bridge": "cni0", "isGateway": True, "isDefaultGateway": True, "ipMasq": True,
         "hairpinMode": True, "ipam": {"type": "host-local", "ranges": [[{"subnet": POD_SUBNET}]]}},
        {"type": "portmap", "capabilities": {"portMappings": True}},
    ],
}
# kube-proxy runs `iptables`; like kind's entrypoint for the node, it takes the backend that already has rules.
IPTABLES_MODE_WRAPPER = """#!/bin/sh
# Written by runai-mlflow's kind node build: use the iptables backend the node uses (kind's entrypoint rule).
legacy=$( (iptables-legacy-save; ip6tables-legacy-save) 2>/dev/null | grep -c '^-')
nft=$( (iptables-nft-save; ip6tables-nft-save) 2>/dev/null | grep -c '^-')
if [ "$legacy" -ge "$nft" ]; then mode=legacy; else mode=nft; fi
for tool in iptables ip6tables; do update-alternatives --set "$tool" "/usr/sbin/$tool-$mode" >/dev/null; done
exec /usr/local/bin/kube-proxy-binary "$@"
"""
STATIC_ENTRYPOINTS = {"coredns": '["/coredns"]', "pause": '["/pause"]'}  # as in the upstream images


def recipe_digest() -> str:
    """What the image is made of: this package's code, the versions it names, and what root lacks here
    (containerd's OOM setting depends on it)."""
    digest = hashlib.sha256(" ".join([*parts.VERSIONS, *runc_clamp.withheld_capabilities()]).encode())
    for source in sorted(Path(__file__).parent.glob("*.py")):
        digest.update(source.read_bytes())
    for path in sorted((parts.GOMOD_DIR / "coredns" / "kubeadm").rglob("*.go")):
        digest.update(path.read_bytes())
    return digest.hexdigest()[:12]


def node_image_tag() -> str:
    return f"{NODE_IMAGE_REPOSITORY}:{KUBERNETES_VERSION}-{recipe_digest()}"


def ensure_node_image(settings: ClusterSettings) -> str:
    """The node image for `kind create cluster --image`; built once per recipe (a few minutes cold)."""
    tag = node_image_tag()
    ensure_docker(settings)
    if image_exists(tag):
        return tag
    say(f"building the kind node image {tag} from upstream parts (cold: several minutes; cached afterwards)")
    with step("kind node image: parts (kind's base files, kubeadm, kube-proxy, CoreDNS, Debian root)"):
        base_files = parts.kind_base_files()
        node_bin = parts.node_binaries(settings)
        coredns = parts.coredns_for_kubeadm(settings)
        rootfs = parts.node_rootfs(settings)
    root_image = f"{NODE_IMAGE_REPOSITORY}-root:{tag.split(':', 1)[1]}"
    work = settings.cache_dir / "kind-node-build"
    shutil.rmtree(work, ignore_errors=True)
    work.mkdir(parents=True)
    try:
        root = work / "root"
        with step("kind node image: root file system"):
            _copy_tree(rootfs, root)
            _add_kind_base_files(base_files, root)
            _add_kubernetes(settings, node_bin, root)
            _configure_containerd(root)
            _configure_systemd(root)
        with step(f"kind node image: docker import {root_image}"):
            docker_import_tree(root, root_image, [])
        images_tar = work / "images.tar"
        with step(f"kind node image: {len(parts.node_images())} component images"):
            built = _build_component_images(settings, node_bin, coredns, root_image, work)
            docker("save", "-o", str(images_tar), *built)
        with step("kind node image: images into the node's containerd, committed"):
            _import_and_commit(root_image, images_tar, tag, work)
    finally:  # what the build made on the way, also when it failed (`docker rmi` goes on past missing names)
        shutil.rmtree(work, ignore_errors=True)
        subprocess.run(["docker", "rmi", root_image, imports_image(tag), *map(part_image, parts.node_images())],
                       capture_output=True)
    say(f"kind node image {tag} built")
    _remove_older_node_images(tag)
    return tag


def _remove_older_node_images(current: str) -> None:
    """Each recipe's image is 1.5 GB; the ones before it go (not those a container still uses: Docker refuses)."""
    listed = docker("images", NODE_IMAGE_REPOSITORY, "--format", "{{.Repository}}:{{.Tag}}").split()
    for old in (image for image in listed if image != current):
        subprocess.run(["docker", "rmi", old], capture_output=True)


def _copy_tree(source: Path, target: Path) -> None:
    target.mkdir(parents=True)
    result = subprocess.run(["cp", "-a", f"{source}/.", f"{target}/"], capture_output=True, text=True)
    if result.returncode != 0:
        raise ClusterError(f"copying {source} failed: {result.stderr}")


def _install(source: Path, target: Path, mode: int) -> None:
    target.parent.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(source, target)
    target.chmod(mode)


def _add_kind_base_files(files: Path, root: Path) -> None:
    """As kind's base Dockerfile copies them: scripts executable, the rest 0644."""
    for source in files.rglob("*"):
        if source.is_dir() or source.parent.name == "LICENSES":
            continue
        relative = source.relative_to(files)
        executable = relative.parts[0] == "usr" or relative.parts[:2] == ("kind", "bin")
        _install(source, root / relative, 0o755 if executable else 0o644)
    # kind's units and entrypoint call its own builds in /usr/local; these are Debian's.
    for name, debian in {"containerd": "/usr/bin/containerd", "ctr": "/usr/bin/ctr",
                         "containerd-shim-runc-v2": "/usr/bin/containerd-shim-runc-v2"}.items():
        (root / "usr/local/bin" / name).symlink_to(debian)
    (root / "opt/cni").mkdir(parents=True, exist_ok=True)
    (root / "opt/cni/bin").symlink_to("/usr/lib/cni")
    (root / "etc/cni/net.d").mkdir(parents=True, exist_ok=True)
    (root / "etc/cni/net.d/10-runai-mlflow-bridge.conflist").write_text(json.dumps(CNI_CONFIG, indent=2) + "\n")


def _add_kubernetes(settings: ClusterSettings, node_bin: Path, root: Path) -> None:
    for name in ("kubelet", "kubectl"):
        _install(settings.kubernetes_bin(name), root / "usr/bin" / name, 0o755)
    _install(node_bin / "kubeadm", root / "usr/bin/kubeadm", 0o755)
    (root / "kind/version").write_text(f"{KUBERNETES_VERSION}\n")
    (root / "etc/kubernetes/manifests").mkdir(parents=True, exist_ok=True)


def _configure_containerd(root: Path) -> None:
    """kind's cri-base.json (the default OCI spec with its product-files hook), and the OOM rule for this host."""
    spec = subprocess.run(["chroot", str(root), "/usr/bin/ctr", "oci", "spec"], capture_output=True, text=True)
    if spec.returncode != 0:
        raise ClusterError(f"`ctr oci spec` in the node root failed: {spec.stderr}")
    base = json.loads(spec.stdout)
    base.setdefault("hooks", {}).setdefault("createContainer", []).append({"path": "/kind/bin/mount-product-files.sh"})
    base["process"].pop("rlimits", None)
    (root / "etc/containerd/cri-base.json").write_text(json.dumps(base, indent=2) + "\n")
    if "CAP_SYS_RESOURCE" in runc_clamp.withheld_capabilities():
        # Pods' negative oom_score_adj needs CAP_SYS_RESOURCE; containerd then keeps its own (as kind does rootless).
        config = root / "etc/containerd/config.toml"
        config.write_text(config.read_text().replace("restrict_oom_score_adj = false", "restrict_oom_score_adj = true"))


def _configure_systemd(root: Path) -> None:
    """kind's base Dockerfile: only the node's own services start, the kernel log is left alone."""
    for pattern in ("lib/systemd/system/sysinit.target.wants/systemd-tmpfiles-setup.service",
                    "lib/systemd/system/multi-user.target.wants/*", "etc/systemd/system/*.wants/*",
                    "lib/systemd/system/local-fs.target.wants/*", "lib/systemd/system/sockets.target.wants/*udev*",
                    "lib/systemd/system/sockets.target.wants/*initctl*", "lib/systemd/system/basic.target.wants/*"):
        for path in root.glob(pattern):
            path.unlink()
    with open(root / "etc/systemd/journald.conf", "a") as journald:
        journald.write("ReadKMsg=no\n")
    init = root / "sbin/init"
    if not init.exists() and not init.is_symlink():
        init.symlink_to("/usr/lib/systemd/systemd")
    for args in (["enable", "kubelet.service", "containerd.service", "undo-mount-hacks.service"],
                 ["mask", "systemd-binfmt.service"]):
        result = subprocess.run(["systemctl", f"--root={root}", *args], capture_output=True, text=True)
        if result.returncode != 0:
            raise ClusterError(f"`systemctl {' '.join(args)}` in the node root failed: {result.stderr}")


def imports_image(tag: str) -> str:
    """The committed build container, before the node's entrypoint and stop signal are set on it."""
    return f"{tag}-imports"


def part_image(upstream: str) -> str:
    """The name a component image has in this machine's Docker: upstream's name is given it in the node only,
    so an image of that name a user has here is never replaced."""
    return f"{NODE_IMAGE_REPOSITORY}-part/{upstream.split('/', 1)[1]}"


def _build_component_images(settings: ClusterSettings, node_bin: Path, coredns: Path, root_image: str,
                            work: Path) -> list[str]:
    binaries = {"kube-apiserver": settings.kubernetes_bin("kube-apiserver"),
                "kube-controller-manager": settings.kubernetes_bin("kube-controller-manager"),
                "kube-scheduler": settings.kubernetes_bin("kube-scheduler"), "etcd": settings.etcd_bin,
                "coredns": coredns, "pause": settings.pause_bin, "kube-proxy": node_bin / "kube-proxy"}
    for image, name in parts.node_images().items():
        context = Path(tempfile.mkdtemp(dir=work))
        shutil.copy2(binaries[name], context / name)
        if name == "kube-proxy":  # runs iptables: Debian's, from the node's own root
            (context / "wrapper").write_text(IPTABLES_MODE_WRAPPER)
            (context / "wrapper").chmod(0o755)
            dockerfile = (f"FROM {root_image}\nCOPY {name} /usr/local/bin/kube-proxy-binary\n"
                          f"COPY wrapper /usr/local/bin/kube-proxy\nENTRYPOINT []\n")
        elif name in STATIC_ENTRYPOINTS:
            dockerfile = f"FROM scratch\nCOPY {name} /{name}\nENTRYPOINT {STATIC_ENTRYPOINTS[name]}\n"
        else:  # kubeadm's static pods name the command; upstream keeps it in /usr/local/bin
            dockerfile = f"FROM scratch\nCOPY {name} /usr/local/bin/{name}\nENV PATH=/usr/local/bin\n"
        (context / "Dockerfile").write_text(dockerfile)
        docker("build", "-q", "-t", part_image(image), str(context))
    return [part_image(image) for image in parts.node_images()]


def _import_and_commit(root_image: str, images_tar: Path, tag: str, work: Path) -> None:
    """kind's buildImage: containerd runs in a container of the node root, imports, and the container is committed."""
    container = f"runai-mlflow-kind-node-build-{tag.rsplit('-', 1)[1]}"
    subprocess.run(["docker", "rm", "-f", container], capture_output=True)
    docker("run", "-d", "--pull", "never", "--privileged", "--name", container, "--entrypoint", "sleep",
            root_image, "infinity")
    try:
        docker("exec", container, "sh", "-c", "containerd > /var/log/kind-node-build-containerd.log 2>&1 &")
        try:
            wait_until(lambda: subprocess.run(["docker", "exec", container, "ctr", "version"],
                                              capture_output=True).returncode == 0, 60, "containerd in the build")
        except WaitFailed as err:
            log = subprocess.run(["docker", "exec", container, "cat", "/var/log/kind-node-build-containerd.log"],
                                 capture_output=True, text=True).stdout[-1500:]
            raise ClusterError(f"{err}; its log:\n{log}") from None
        docker("exec", "-i", container, "ctr", "--namespace=k8s.io", "images", "import", "--all-platforms",
                "--no-unpack", "--digests", "-", stdin=images_tar)
        for image in parts.node_images():  # upstream's names, as kubeadm asks for them (ctr's names are qualified)
            part = f"docker.io/{part_image(image)}"
            docker("exec", container, "ctr", "--namespace=k8s.io", "images", "tag", part, image)
            docker("exec", container, "ctr", "--namespace=k8s.io", "images", "rm", part)
        listed = docker("exec", container, "ctr", "--namespace=k8s.io", "images", "list", "-q")
        missing = [image for image in parts.node_images() if image not in listed.split()]
        if missing:
            raise ClusterError(f"the node's containerd lacks {', '.join(missing)} after the import")
        # PID 1 is sleep, which reaps nothing: containerd is gone once only its zombie is left.
        stop = ("pkill containerd; while ps -C containerd -o stat= | grep -qv Z; do sleep 0.2; done; "
                "rm -f /var/log/kind-node-build-containerd.log")
        docker("exec", container, "timeout", "60", "sh", "-c", stop)
        committed = imports_image(tag)
        docker("commit", container, committed)
    finally:
        subprocess.run(["docker", "rm", "-f", container], capture_output=True)
    context = Path(tempfile.mkdtemp(dir=work))
    (context / "Dockerfile").write_text(NODE_DOCKERFILE.format(image=committed, recipe=recipe_digest()))
    docker("build", "-q", "-t", tag, str(context))
