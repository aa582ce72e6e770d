"""Host changes the cluster makes, each with its undo: bridge, routes, iptables, sysctls, mounts.

Traffic stays on this machine: pods may talk to each other and to the host (the bridge address);
anything they send elsewhere is dropped, and the Service range is blackholed since no kube-proxy runs.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path

from kube import WaitFailed, wait_until

from .progress import ClusterError, say
from .settings import ClusterSettings

CHAIN = "RUNAI-MLFLOW-FWD"
# The kubelet rewrites these (pkg/kubelet/cm/container_manager_linux.go setupKernelTunables).
KUBELET_SYSCTLS = ("vm/overcommit_memory", "vm/panic_on_oom", "kernel/panic", "kernel/panic_on_oops",
                   "kernel/keys/root_maxkeys", "kernel/keys/root_maxbytes")
REQUIRED_COMMANDS = ("ip", "iptables", "openssl", "containerd", "containerd-shim-runc-v2", "runc", "ctr",
                     "dockerd", "docker", "docker-registry", "debootstrap")


def run(*argv: str, check: bool = True) -> subprocess.CompletedProcess:
    result = subprocess.run(argv, capture_output=True, text=True)
    if check and result.returncode != 0:
        raise ClusterError(f"{' '.join(argv)} failed: {result.stderr.strip() or result.stdout.strip()}")
    return result


PORT_RELEASE_SECONDS = 10


def check_prerequisites(settings: ClusterSettings, ours: set[int]) -> None:
    """Fail fast, naming the cause, before anything is changed."""
    if os.geteuid() != 0:
        raise ClusterError("the local cluster needs root (it runs a kubelet, containerd and iptables)")
    missing = [c for c in REQUIRED_COMMANDS if not shutil.which(c)]
    if missing:
        raise ClusterError(f"missing commands {missing}: run `make cluster-deps` (apt-get install docker.io "
                           "containerd runc containernetworking-plugins docker-registry debootstrap iptables)")
    if not Path("/usr/lib/cni/bridge").exists():
        raise ClusterError("CNI plugins are missing in /usr/lib/cni: apt-get install containernetworking-plugins")
    free = shutil.disk_usage(settings.state_dir.parent if settings.state_dir.parent.exists() else "/").free
    if free < 4 * 2**30:
        raise ClusterError(f"only {free / 2**30:.1f} GiB free disk; the cluster needs at least 4 GiB "
                           "(pods are evicted under disk pressure)")
    ports = {"kube-apiserver": settings.apiserver_port, "etcd": settings.etcd_client_port,
             "etcd peer": settings.etcd_peer_port, "kubelet": settings.kubelet_port,
             "kubelet healthz": settings.kubelet_healthz_port, "registry": settings.registry_port,
             "cluster DNS": settings.dns_port, "cluster DNS readiness": settings.dns_ready_port}
    for component, port in ports.items():
        owner = settled_port_owner(port)
        if owner is not None and owner not in ours:
            raise ClusterError(f"port {port} (for {component}) is taken by pid {owner} "
                               f"({_cmdline(owner)}); stop it or change the port in settings.py")


def _cmdline(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode().strip()[:120]
    except OSError:
        return "?"


def settled_port_owner(port: int) -> int | None:
    """port_owner, where a listening socket that no process holds gets moments to go: a process just stopped
    (the kubelet, by `up` repairing it) may still be releasing it. Seen once in CI as "taken by pid -1"."""
    owners: list[int | None] = []

    def known() -> bool:
        owners.append(port_owner(port))
        return owners[-1] != -1
    try:
        wait_until(known, PORT_RELEASE_SECONDS, f"port {port} to be released")
    except WaitFailed:
        pass  # still held by no one we can name: reported as taken by pid -1
    return owners[-1]


def port_owner(port: int) -> int | None:
    """The pid listening on a TCP port (any address), or None; -1 if taken but the owner is unknown."""
    inodes = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        try:
            lines = Path(table).read_text().splitlines()[1:]
        except OSError:
            continue
        for line in lines:
            fields = line.split()
            if fields[3] == "0A" and int(fields[1].rsplit(":", 1)[1], 16) == port:
                inodes.add(fields[9])
    if not inodes:
        return None
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        try:
            for fd in (proc / "fd").iterdir():
                target = os.readlink(fd)
                if target.startswith("socket:[") and target[8:-1] in inodes:
                    return int(proc.name)
        except OSError:
            continue
    return -1


def setup_network(settings: ClusterSettings) -> None:
    prefix = settings.pod_cidr.split("/")[1]
    if run("ip", "link", "show", settings.bridge, check=False).returncode != 0:
        run("ip", "link", "add", settings.bridge, "type", "bridge")
    addresses = run("ip", "-4", "-o", "addr", "show", "dev", settings.bridge).stdout
    if f"{settings.host_ip}/" not in addresses:
        run("ip", "addr", "add", f"{settings.host_ip}/{prefix}", "dev", settings.bridge)
    run("ip", "link", "set", settings.bridge, "address", settings.bridge_mac)
    run("ip", "link", "set", settings.bridge, "up")
    if settings.service_cidr not in run("ip", "route", "show", "type", "blackhole").stdout:
        run("ip", "route", "add", "blackhole", settings.service_cidr)
    if run("iptables", "-w", "-n", "-L", CHAIN, check=False).returncode != 0:
        run("iptables", "-w", "-N", CHAIN)
    run("iptables", "-w", "-F", CHAIN)
    run("iptables", "-w", "-A", CHAIN, "-s", settings.pod_cidr, "-d", settings.pod_cidr, "-j", "ACCEPT")
    run("iptables", "-w", "-A", CHAIN, "-s", settings.pod_cidr, "-j", "DROP")
    run("iptables", "-w", "-A", CHAIN, "-d", settings.pod_cidr, "-j", "DROP")
    if run("iptables", "-w", "-C", "FORWARD", "-j", CHAIN, check=False).returncode != 0:
        run("iptables", "-w", "-I", "FORWARD", "1", "-j", CHAIN)


def teardown_network(settings: ClusterSettings) -> None:
    links = run("ip", "-o", "link", "show", "master", settings.bridge, check=False).stdout.splitlines()
    for line in links:
        run("ip", "link", "del", line.split(":")[1].strip().split("@")[0], check=False)
    run("ip", "link", "del", settings.bridge, check=False)
    run("ip", "route", "del", "blackhole", settings.service_cidr, check=False)
    while run("iptables", "-w", "-D", "FORWARD", "-j", CHAIN, check=False).returncode == 0:
        pass
    run("iptables", "-w", "-F", CHAIN, check=False)
    run("iptables", "-w", "-X", CHAIN, check=False)
    remove_kubelet_chains()


def remove_kubelet_chains() -> None:
    """The kubelet's canary and hint chains (KUBE-*); no other Kubernetes runs on this machine."""
    for tool in ("iptables", "ip6tables"):
        for table in ("filter", "nat", "mangle"):
            listing = run(tool, "-w", "-t", table, "-S", check=False).stdout.splitlines()
            chains = [line.split()[1] for line in listing if line.startswith("-N KUBE-")]
            for rule in listing:
                if rule.startswith("-A ") and any(f"-j {chain}" in rule for chain in chains):
                    run(tool, "-w", "-t", table, *rule.replace("-A ", "-D ", 1).split(), check=False)
            for chain in chains:
                run(tool, "-w", "-t", table, "-F", chain, check=False)
            for chain in chains:
                run(tool, "-w", "-t", table, "-X", chain, check=False)


def save_sysctls(settings: ClusterSettings) -> None:
    saved = settings.state_dir / "sysctls.json"
    if not saved.exists():
        values = {key: Path("/proc/sys", key).read_text().strip() for key in KUBELET_SYSCTLS
                  if Path("/proc/sys", key).exists()}
        saved.write_text(json.dumps(values, indent=2))


def restore_sysctls(settings: ClusterSettings) -> None:
    saved = settings.state_dir / "sysctls.json"
    if saved.exists():
        for key, value in json.loads(saved.read_text()).items():
            try:
                Path("/proc/sys", key).write_text(value)
            except OSError as err:
                say(f"could not restore sysctl {key}={value}: {err}")
        saved.unlink()


def mounts_under(*roots: Path) -> list[str]:
    points = []
    for line in Path("/proc/self/mountinfo").read_text().splitlines():
        point = line.split()[4].replace("\\040", " ")
        if any(point == str(root) or point.startswith(f"{root}/") for root in roots):
            points.append(point)
    return points


def unmount_under(*roots: Path) -> None:
    for _ in range(3):
        points = sorted(set(mounts_under(*roots)), key=len, reverse=True)
        if not points:
            return
        for point in points:
            if run("umount", point, check=False).returncode != 0:
                run("umount", "-l", point, check=False)
