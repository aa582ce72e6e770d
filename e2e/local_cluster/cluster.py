"""A single-node Kubernetes cluster from upstream parts, like hack/local-up-cluster.sh.

``LocalCluster().up()`` starts or reuses the cluster and repairs what is broken; ``down()``
removes every trace (processes, mounts, links, iptables rules, routes, state). It also exposes
what a test suite needs: kubeconfig, registry to push to, image prefix pods pull from, and the
address at which pods reach servers on the host.
"""

from __future__ import annotations

import json
import shutil
import ssl
import subprocess
import time
import urllib.request
from pathlib import Path

from kube import KubeApi, WaitFailed, wait_until
from kube.nodes import advertise_fake_gpus, advertised_gpus, gpu_labels
from runai.names import GPU_RESOURCE

from . import host, images
from .binaries import ensure_binaries
from .components import START_ORDER, containerd_ready, daemon, write_configs
from .node_images import bound_node_image_store
from .pki import ensure_pki
from .procs import pids_with_argument, stop_pid
from .progress import ClusterError, log_tail, say, step
from .settings import KUBERNETES_VERSION, ClusterSettings
from .steps import Step

# The kubelet exits at once when the container runtime does not answer its first call ("validate CRI v1
# runtime API"), and containerd serves its socket before its CRI plugin has recovered its state, which takes
# longer with a large image store: a CI run's last cluster start, after the e2e suite, failed so. kubeadm's and
# kind's nodes restart the kubelet through systemd; this does too while it starts, seconds apart.
RESTARTS_DURING_START_UP = {"kubelet": (1, 2, 4, 8)}


class LocalCluster:
    def __init__(self, settings: ClusterSettings | None = None):
        self.settings = settings or ClusterSettings()

    # What clients need -------------------------------------------------------------------------
    @property
    def kubeconfig(self) -> Path:
        return self.settings.kubeconfig

    @property
    def registry(self) -> str:
        """Push here from this machine (docker push <registry>/<name>:<tag>)."""
        return self.settings.registry

    @property
    def image_prefix(self) -> str:
        """Pods pull images named <image_prefix>/<name>:<tag> (containerd runs on this host)."""
        return self.settings.registry

    @property
    def host_address(self) -> str:
        """Servers on this machine that listen here are reachable from pods."""
        return self.settings.host_ip

    # Lifecycle ---------------------------------------------------------------------------------
    def steps(self) -> list[Step]:
        """The cluster, part by part: `up` runs them in order, `down` undoes them in reverse.

        The state directory comes first because the services' pid files live beside it; the
        node's workloads come last, so `down` removes them before anything they run on.
        """
        s = self.settings
        return [
            Step("prerequisites", up=lambda: host.check_prerequisites(s, self._our_pids())),
            Step("binaries", up=lambda: ensure_binaries(s)),  # a cache: kept by down
            Step("state", up=self._create_state, down=self._remove_state),
            Step("dockerd", up=lambda: images.ensure_docker(s), down=lambda: images.dockerd(s).stop(timeout=30),
                 daemon=images.dockerd(s)),
            Step("registry", up=lambda: images.ensure_registry(s), down=lambda: images.registry(s).stop(),
                 daemon=images.registry(s)),
            Step("images", up=self._ensure_images),  # a cache: kept by down
            Step("node image store", up=lambda: bound_node_image_store(s, containerd_ready(s))),  # a cache too
            Step("sysctls", up=lambda: host.save_sysctls(s), down=lambda: host.restore_sysctls(s)),
            Step("network", up=lambda: host.setup_network(s), down=lambda: host.teardown_network(s)),
            *[Step(name, up=lambda name=name: self._ensure_component(name),
                   down=lambda name=name: self._stop_component(name), daemon=daemon(s, name))
              for name in START_ORDER],
            Step("workloads", up=self._ready_for_workloads, down=self._remove_workloads),
        ]

    def up(self) -> LocalCluster:
        """Start or repair every step; a failed step leaves what ran for inspection (its logs), and down removes it."""
        s = self.settings
        started = time.monotonic()
        for part in self.steps():
            part.up()
        say(f"cluster ready in {time.monotonic() - started:.1f}s: Kubernetes {KUBERNETES_VERSION}, "
            f"{s.gpus} fake GPUs on node {s.node_name}")
        return self

    def build(self) -> None:
        """Only the caches `up` would build (Go binaries, the root filesystem): no service started, nothing to undo.

        Lets a cold machine build them beside other work (CI runs it beside the template tests)."""
        ensure_binaries(self.settings)
        images.ensure_python_rootfs(self.settings)

    def down(self) -> None:
        for part in reversed(self.steps()):
            if part.down:
                with step(f"remove {part.name}"):
                    part.down()

    def _create_state(self) -> None:
        s = self.settings
        with step("certificates and configuration"):
            for directory in (s.state_dir, s.logs_dir, s.run_dir):
                directory.mkdir(parents=True, exist_ok=True)
            ensure_pki(s)
            write_configs(s)

    def _remove_state(self) -> None:
        s = self.settings
        host.unmount_under(s.state_dir, s.run_dir)
        for directory in (s.state_dir.parent, s.run_dir):
            if not host.mounts_under(directory):
                shutil.rmtree(directory, ignore_errors=True)

    def _ensure_images(self) -> None:
        images.ensure_pause_image(self.settings)
        images.ensure_python_base_image(self.settings)

    def _ready_for_workloads(self) -> None:
        self._advertise_gpus()
        self._wait("default ServiceAccount", lambda: self._kubectl_ok("-n", "default", "get", "sa", "default"), 60)

    def _remove_workloads(self) -> None:
        s = self.settings
        if self._apiserver_ready():
            for name in ("kube-controller-manager", "kube-scheduler"):
                daemon(s, name).stop()
            self._kubectl("delete", "pods", "--all", "--all-namespaces", "--grace-period=2", "--timeout=60s",
                          check=False)
        daemon(s, "kubelet").stop()
        self._kill_containerd_tasks()

    def _stop_component(self, name: str) -> None:
        s = self.settings
        daemon(s, name).stop()
        if name == "containerd":
            for pid in pids_with_argument(str(s.containerd_socket)):
                stop_pid(pid, timeout=5)  # shims of our containerd (never Docker's)

    def status(self) -> dict:
        s = self.settings
        components = {part.name: part.daemon.pid() for part in self.steps() if part.daemon}
        node = self._node() if self._apiserver_ready() else None
        ready = bool(node) and any(c["type"] == "Ready" and c["status"] == "True"
                                   for c in node["status"].get("conditions", []))
        return {
            "components": components,
            "apiserver_ready": node is not None,
            "node_ready": ready,
            "gpus": node["status"].get("allocatable", {}).get(GPU_RESOURCE) if node else None,
            "registry": images.registry_ready(s) and self.registry,
            "kubeconfig": str(self.kubeconfig),
            "host_address": self.host_address,
            "logs": str(s.logs_dir),
        }

    def healthy(self) -> bool:
        status = self.status()
        return all(status["components"][name] for name in START_ORDER) and status["node_ready"] \
            and status["gpus"] == str(self.settings.gpus) and bool(status["registry"])

    def usage(self) -> str:
        return (f"export KUBECONFIG={self.kubeconfig}\n"
                f"# push images to {self.registry}/<name>:<tag>; pods pull {self.image_prefix}/<name>:<tag>\n"
                f"# pods reach servers on this machine at {self.host_address}\n"
                f"# offline base image: {images.PYTHON_BASE_IMAGE}\n"
                f"kubectl get nodes")

    # Internals ---------------------------------------------------------------------------------
    def _our_pids(self) -> set[int]:
        return {pid for pid in (part.daemon.pid() for part in self.steps() if part.daemon) if pid}

    def _ensure_component(self, name: str) -> None:
        s = self.settings
        proc = daemon(s, name)
        probe, timeout = self._probes()[name]
        if proc.alive() and probe():
            return
        with step(f"{'restart' if proc.pid_file.exists() else 'start'} {name}"):
            proc.stop()
            for restart_in in (*RESTARTS_DURING_START_UP.get(name, ()), None):
                proc.start()
                try:
                    self._wait(name, probe, timeout, proc)
                    return
                except ClusterError:
                    if proc.alive() or restart_in is None:
                        raise
                    say(f"{name} exited during start-up: {log_tail(proc.log_file, 1).strip()}; starting it again "
                        f"in {restart_in} s")
                    time.sleep(restart_in)  # a restart policy's back-off, as systemd's RestartSec

    def _probes(self) -> dict:
        s = self.settings
        return {
            "etcd": (lambda: self._http_ok(f"http://127.0.0.1:{s.etcd_client_port}/health"), 30),
            "kube-apiserver": (self._apiserver_ready, 90),
            "kube-controller-manager": (lambda: self._kubectl_ok("get", "--raw", "/readyz"), 10),
            "kube-scheduler": (lambda: True, 0),
            "coredns": (lambda: self._http_ok(f"http://127.0.0.1:{s.dns_ready_port}/ready"), 60),
            "containerd": (lambda: containerd_ready(s), 30),
            "kubelet": (self._node_ready, 120),
        }

    def _wait(self, what: str, probe, timeout: float, proc=None) -> None:
        try:
            wait_until(probe, timeout, f"{what} to be ready", interval=0.3,
                       give_up=lambda: proc is not None and not proc.alive() and f"{what} exited during start-up")
        except WaitFailed as err:
            raise ClusterError(str(err), proc.log_file if proc else None) from None

    def _http_ok(self, url: str) -> bool:
        try:
            with urllib.request.urlopen(url, timeout=2) as response:
                return response.status == 200
        except OSError:
            return False

    def _apiserver_ready(self) -> bool:
        pki = self.settings.pki_dir
        if not (pki / "admin.crt").exists():
            return False
        context = ssl.create_default_context(cafile=str(pki / "ca.crt"))
        context.load_cert_chain(str(pki / "admin.crt"), str(pki / "admin.key"))
        try:
            with urllib.request.urlopen(f"{self.settings.server}/readyz", timeout=3, context=context) as response:
                return response.status == 200
        except OSError:
            return False

    def _kubectl(self, *args: str, check: bool = True, input: str | None = None) -> subprocess.CompletedProcess:
        command = [str(self.settings.kubernetes_bin("kubectl")), f"--kubeconfig={self.kubeconfig}", *args]
        result = subprocess.run(command, capture_output=True, text=True, input=input, timeout=120)
        if check and result.returncode != 0:
            raise ClusterError(f"kubectl {' '.join(args)} failed: {result.stderr.strip()}")
        return result

    def _kubectl_ok(self, *args: str) -> bool:
        return self._kubectl(*args, check=False).returncode == 0

    def _node(self) -> dict | None:
        result = self._kubectl("get", "node", self.settings.node_name, "-o", "json", check=False)
        return json.loads(result.stdout) if result.returncode == 0 else None

    def _node_ready(self) -> bool:
        node = self._node()
        return bool(node) and any(c["type"] == "Ready" and c["status"] == "True"
                                  for c in node["status"].get("conditions", []))

    def _advertise_gpus(self) -> None:
        """Fake GPUs as a node status patch (no device plugin); the kubelet may reset them on re-registration."""
        s = self.settings
        api = KubeApi.from_kubeconfig(str(self.kubeconfig))
        labels = api.get(f"/api/v1/nodes/{s.node_name}")["metadata"].get("labels", {})
        wanted = gpu_labels(s.gpus, s.gpu_memory_mib)
        if advertised_gpus(api, s.node_name) == s.gpus and all(labels.get(k) == v for k, v in wanted.items()):
            return
        with step(f"advertise {s.gpus} fake GPUs"):
            advertise_fake_gpus(api, s.node_name, s.gpus, s.gpu_memory_mib)
            self._wait("GPU allocatable", lambda: advertised_gpus(api, s.node_name) == s.gpus, 60)

    def _kill_containerd_tasks(self) -> None:
        s = self.settings
        if not containerd_ready(s):
            return
        ctr = ["ctr", "--address", str(s.containerd_socket), "--namespace", "k8s.io"]
        tasks = subprocess.run([*ctr, "tasks", "ls", "-q"], capture_output=True, text=True).stdout.split()
        for task in tasks:
            subprocess.run([*ctr, "tasks", "kill", "-s", "SIGKILL", task], capture_output=True)
        for task in tasks:
            subprocess.run([*ctr, "tasks", "rm", "-f", task], capture_output=True)
        containers = subprocess.run([*ctr, "containers", "ls", "-q"], capture_output=True, text=True).stdout.split()
        for container in containers:
            subprocess.run([*ctr, "containers", "rm", container], capture_output=True)
