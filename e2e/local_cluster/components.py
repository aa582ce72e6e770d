"""Configuration files and command lines of each cluster component, after hack/local-up-cluster.sh.

Everything binds to loopback or to the cluster's own bridge address; nothing listens on the
machine's external interface except what the kubelet needs on the bridge.
"""

from __future__ import annotations

import json
from pathlib import Path

import yaml

from . import runc_clamp
from .procs import Daemon
from .settings import CLUSTER_DOMAIN, ClusterSettings

START_ORDER = ("etcd", "kube-apiserver", "kube-controller-manager", "kube-scheduler", "coredns", "containerd",
               "kubelet")


def daemon(settings: ClusterSettings, name: str) -> Daemon:
    argv = ARGV[name](settings)
    return Daemon(name, argv, settings.state_dir / "pids" / f"{name}.pid", settings.logs_dir / f"{name}.log")


def _etcd(s: ClusterSettings) -> list[str]:
    client, peer = f"http://127.0.0.1:{s.etcd_client_port}", f"http://127.0.0.1:{s.etcd_peer_port}"
    return [str(s.etcd_bin), "--name", "runai-mlflow", "--data-dir", str(s.state_dir / "etcd"),
            "--listen-client-urls", client, "--advertise-client-urls", client,
            "--listen-peer-urls", peer, "--initial-advertise-peer-urls", peer,
            "--initial-cluster", f"runai-mlflow={peer}", "--log-level", "warn", "--unsafe-no-fsync"]


def _apiserver(s: ClusterSettings) -> list[str]:
    p = s.pki_dir
    return [str(s.kubernetes_bin("kube-apiserver")),
            f"--etcd-servers=http://127.0.0.1:{s.etcd_client_port}",
            "--bind-address=127.0.0.1", f"--secure-port={s.apiserver_port}", f"--advertise-address={s.host_ip}",
            f"--tls-cert-file={p}/apiserver.crt", f"--tls-private-key-file={p}/apiserver.key",
            f"--client-ca-file={p}/ca.crt",
            f"--kubelet-client-certificate={p}/apiserver-kubelet-client.crt",
            f"--kubelet-client-key={p}/apiserver-kubelet-client.key",
            "--kubelet-preferred-address-types=InternalIP",
            "--service-account-issuer=https://kubernetes.default.svc",
            f"--service-account-key-file={p}/sa.pub", f"--service-account-signing-key-file={p}/sa.key",
            f"--service-cluster-ip-range={s.service_cidr}", "--authorization-mode=Node,RBAC",
            "--enable-admission-plugins=NamespaceLifecycle,LimitRanger,ServiceAccount,DefaultTolerationSeconds,"
            "Priority,ResourceQuota,NodeRestriction,PodSecurity",
            "--profiling=false", "--v=1"]


def _controller_manager(s: ClusterSettings) -> list[str]:
    kubeconfig = s.pki_dir / "kube-controller-manager.kubeconfig"
    return [str(s.kubernetes_bin("kube-controller-manager")), f"--kubeconfig={kubeconfig}",
            f"--authentication-kubeconfig={kubeconfig}", f"--authorization-kubeconfig={kubeconfig}",
            f"--service-account-private-key-file={s.pki_dir}/sa.key", f"--root-ca-file={s.pki_dir}/ca.crt",
            f"--service-cluster-ip-range={s.service_cidr}", "--use-service-account-credentials",
            "--leader-elect=false", "--bind-address=127.0.0.1", "--profiling=false", "--v=1"]


def _scheduler(s: ClusterSettings) -> list[str]:
    kubeconfig = s.pki_dir / "kube-scheduler.kubeconfig"
    config = s.state_dir / "etc" / "kube-scheduler.yaml"
    return [str(s.kubernetes_bin("kube-scheduler")), f"--config={config}",
            f"--authentication-kubeconfig={kubeconfig}", f"--authorization-kubeconfig={kubeconfig}",
            "--bind-address=127.0.0.1", "--profiling=false", "--v=1"]


def _coredns(s: ClusterSettings) -> list[str]:
    return [str(s.coredns_bin), "-conf", str(s.state_dir / "etc" / "Corefile")]


def _containerd(s: ClusterSettings) -> list[str]:
    return ["containerd", "--config", str(s.state_dir / "etc" / "containerd.toml")]


def _kubelet(s: ClusterSettings) -> list[str]:
    return [str(s.kubernetes_bin("kubelet")), f"--config={s.state_dir / 'etc' / 'kubelet.yaml'}",
            f"--kubeconfig={s.pki_dir / 'kubelet.kubeconfig'}", f"--hostname-override={s.node_name}",
            f"--node-ip={s.host_ip}", f"--root-dir={s.state_dir / 'kubelet'}",
            f"--cert-dir={s.state_dir / 'kubelet' / 'pki'}", "--v=1"]


ARGV = {"etcd": _etcd, "kube-apiserver": _apiserver, "kube-controller-manager": _controller_manager,
        "kube-scheduler": _scheduler, "coredns": _coredns, "containerd": _containerd, "kubelet": _kubelet}


def write_configs(s: ClusterSettings) -> None:
    etc = s.state_dir / "etc"
    etc.mkdir(parents=True, exist_ok=True)
    (etc / "kube-scheduler.yaml").write_text(yaml.safe_dump({
        "apiVersion": "kubescheduler.config.k8s.io/v1", "kind": "KubeSchedulerConfiguration",
        "clientConnection": {"kubeconfig": str(s.pki_dir / "kube-scheduler.kubeconfig")},
        "leaderElection": {"leaderElect": False},
    }))
    cni_conf, cni_state = s.state_dir / "cni" / "net.d", s.state_dir / "cni" / "ipam"
    cni_conf.mkdir(parents=True, exist_ok=True)
    (cni_conf / "10-runai-mlflow.conflist").write_text(json.dumps({
        "cniVersion": "1.0.0", "name": "runai-mlflow",
        "plugins": [{
            "type": "bridge", "bridge": s.bridge, "isGateway": True, "ipMasq": False, "hairpinMode": True,
            "ipam": {"type": "host-local", "dataDir": str(cni_state),
                     "ranges": [[{"subnet": s.pod_cidr, "gateway": s.host_ip}]],
                     "routes": [{"dst": "0.0.0.0/0"}]},
        }],
    }, indent=2))
    cri = 'plugins."io.containerd.grpc.v1.cri"'
    runtime_binary = ""
    if runc_clamp.withheld_capabilities():
        wrapper = runc_clamp.install(s.state_dir / "bin" / "runc-clamp")
        runtime_binary = f'\n        BinaryName = "{wrapper}"'
    (etc / "containerd.toml").write_text(f"""version = 2
root = "{s.containerd_root}"
state = "{s.containerd_socket.parent}"

[grpc]
  address = "{s.containerd_socket}"

[plugins."io.containerd.internal.v1.opt"]
  path = "{s.state_dir / 'containerd-opt'}"

[{cri}]
  sandbox_image = "{s.pause_image}"
  stream_server_address = "127.0.0.1"
  netns_mounts_under_state_dir = true
  [{cri}.containerd]
    snapshotter = "overlayfs"
    default_runtime_name = "runc"
    [{cri}.containerd.runtimes.runc]
      runtime_type = "io.containerd.runc.v2"
      [{cri}.containerd.runtimes.runc.options]
        SystemdCgroup = false{runtime_binary}
  [{cri}.cni]
    bin_dir = "/usr/lib/cni"
    conf_dir = "{cni_conf}"
""")
    # Cluster DNS, as a real cluster's: Services and the pods of headless Services (an Indexed Job's pods by
    # hostname.subdomain) by name, and their addresses back to names. Only the cluster's zones: any other
    # name is refused at once, never forwarded (the machine's resolver is not the pods' to use).
    (etc / "Corefile").write_text(f"""{CLUSTER_DOMAIN}:{s.dns_port} in-addr.arpa:{s.dns_port} ip6.arpa:{s.dns_port} {{
    bind {s.host_ip}
    errors
    ready 127.0.0.1:{s.dns_ready_port}
    kubernetes {CLUSTER_DOMAIN} in-addr.arpa ip6.arpa {{
        kubeconfig {s.kubeconfig}
    }}
}}
""")
    # What pods with dnsPolicy Default get; ClusterFirst pods (the default) get the cluster DNS above.
    (etc / "resolv.conf").write_text("nameserver 127.0.0.1\noptions ndots:1 timeout:1 attempts:1\n")
    (etc / "kubelet.yaml").write_text(yaml.safe_dump({
        "apiVersion": "kubelet.config.k8s.io/v1beta1", "kind": "KubeletConfiguration",
        "address": s.host_ip, "port": s.kubelet_port, "readOnlyPort": 0,
        "healthzBindAddress": "127.0.0.1", "healthzPort": s.kubelet_healthz_port,
        "cgroupDriver": "cgroupfs", "failCgroupV1": False, "failSwapOn": False,
        "containerRuntimeEndpoint": f"unix://{s.containerd_socket}",
        "authentication": {"anonymous": {"enabled": False}, "webhook": {"enabled": True},
                           "x509": {"clientCAFile": str(s.pki_dir / "ca.crt")}},
        "authorization": {"mode": "Webhook"},
        "rotateCertificates": False,
        # No image GC: containerd 1.6.20 does not pin the pause image.
        "imageGCHighThresholdPercent": 100, "imageGCLowThresholdPercent": 99,
        "evictionHard": {"memory.available": "100Mi", "nodefs.available": "2%", "imagefs.available": "2%",
                         "nodefs.inodesFree": "2%"},
        "resolvConf": str(etc / "resolv.conf"), "clusterDomain": CLUSTER_DOMAIN, "clusterDNS": [s.host_ip],
        "serializeImagePulls": False, "staticPodPath": "",
    }))


def containerd_ready(s: ClusterSettings) -> bool:
    return Path(s.containerd_socket).is_socket()
