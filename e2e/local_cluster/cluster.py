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

from . import host, images
from .binaries import ensure_binaries
from .components import START_ORDER, containerd_ready, daemon, write_configs
from .pki import ensure_pki
from .procs import pids_with_argument, stop_pid
from .progress import ClusterError, say, step
from .settings import KUBERNETES_VERSION, ClusterSettings

GPU_RESOURCE = "nvidia.com/gpu"


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
    def up(self) -> LocalCluster:
        s = self.settings
        started = time.monotonic()
        host.check_prerequisites(s, self._our_pids())
        ensure_binaries(s)
        images.ensure_docker(s)
        images.ensure_registry(s)
        images.ensure_pause_image(s)
        images.ensure_python_base_image(s)
        with step("certificates, configuration and host network"):
            for directory in (s.state_dir, s.logs_dir, s.run_dir):
                directory.mkdir(parents=True, exist_ok=True)
            ensure_pki(s)
            write_configs(s)
            host.save_sysctls(s)
            host.setup_network(s)
        for name in START_ORDER:
            self._ensure_component(name)
        self._advertise_gpus()
        self._wait("default ServiceAccount", lambda: self._kubectl_ok("-n", "default", "get", "sa", "default"), 60)
        say(f"cluster ready in {time.monotonic() - started:.1f}s: Kubernetes {KUBERNETES_VERSION}, "
            f"{s.gpus} fake GPUs on node {s.node_name}")
        return self

    def down(self) -> None:
        s = self.settings
        with step("stop workloads"):
            if self._apiserver_ready():
                for name in ("kube-controller-manager", "kube-scheduler"):
                    daemon(s, name).stop()
                self._kubectl("delete", "pods", "--all", "--all-namespaces", "--grace-period=2",
                              "--timeout=60s", check=False)
            daemon(s, "kubelet").stop()
            self._kill_containerd_tasks()
        with step("stop components"):
            for name in reversed(START_ORDER):
                daemon(s, name).stop()
            for pid in pids_with_argument(str(s.containerd_socket)):
                stop_pid(pid, timeout=5)  # shims of our containerd (never Docker's)
            images.registry(s).stop()
            images.dockerd(s).stop(timeout=30)
        with step("remove mounts, network, sysctls and state"):
            host.unmount_under(s.state_dir, s.run_dir)
            host.teardown_network(s)
            host.restore_sysctls(s)
            for directory in (s.state_dir.parent, s.run_dir):
                if not host.mounts_under(directory):
                    shutil.rmtree(directory, ignore_errors=True)

    def status(self) -> dict:
        s = self.settings
        components = {name: daemon(s, name).pid() for name in START_ORDER}
        components["registry"] = images.registry(s).pid()
        components["dockerd"] = images.dockerd(s).pid()
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
        s = self.settings
        pids = {daemon(s, name).pid() for name in START_ORDER}
        pids |= {images.registry(s).pid(), images.dockerd(s).pid()}
        return {pid for pid in pids if pid}

    def _ensure_component(self, name: str) -> None:
        s = self.settings
        proc = daemon(s, name)
        probe, timeout = self._probes()[name]
        if proc.alive() and probe():
            return
        with step(f"{'restart' if proc.pid_file.exists() else 'start'} {name}"):
            proc.stop()
            proc.start()
            self._wait(name, probe, timeout, proc)

    def _probes(self) -> dict:
        s = self.settings
        return {
            "etcd": (lambda: self._http_ok(f"http://127.0.0.1:{s.etcd_client_port}/health"), 30),
            "kube-apiserver": (self._apiserver_ready, 90),
            "kube-controller-manager": (lambda: self._kubectl_ok("get", "--raw", "/readyz"), 10),
            "kube-scheduler": (lambda: True, 0),
            "containerd": (lambda: containerd_ready(s), 30),
            "kubelet": (self._node_ready, 120),
        }

    def _wait(self, what: str, probe, timeout: float, proc=None) -> None:
        deadline = time.monotonic() + timeout
        while not probe():
            if proc is not None and not proc.alive():
                raise ClusterError(f"{what} exited during start-up", proc.log_file)
            if time.monotonic() > deadline:
                raise ClusterError(f"{what} not ready after {timeout}s", proc.log_file if proc else None)
            time.sleep(0.3)

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
        node = self._node() or {}
        labels = node.get("metadata", {}).get("labels", {})
        wanted = {"nvidia.com/gpu.count": str(s.gpus), "nvidia.com/gpu.memory": str(s.gpu_memory_mib),
                  "nvidia.com/gpu.present": "true"}
        if any(labels.get(key) != value for key, value in wanted.items()):
            self._kubectl("label", "node", s.node_name, "--overwrite", *[f"{k}={v}" for k, v in wanted.items()])
        if node.get("status", {}).get("allocatable", {}).get(GPU_RESOURCE) == str(s.gpus):
            return
        with step(f"advertise {s.gpus} fake GPUs"):
            patch = [{"op": "add", "path": "/status/capacity/nvidia.com~1gpu", "value": str(s.gpus)},
                     {"op": "add", "path": "/status/allocatable/nvidia.com~1gpu", "value": str(s.gpus)}]
            self._kubectl("patch", "node", s.node_name, "--subresource=status", "--type=json", "-p", json.dumps(patch))
            self._wait("GPU allocatable", lambda: (self._node() or {}).get("status", {}).get("allocatable", {})
                       .get(GPU_RESOURCE) == str(s.gpus), 60)

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
