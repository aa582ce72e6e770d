"""Certificates and kubeconfigs for one cluster, made with the openssl CLI.

One CA signs the API server's serving cert and every client cert; identities follow
hack/local-up-cluster.sh (users system:kube-controller-manager, system:kube-scheduler,
system:node:<node>). Kubeconfigs embed their certs so they can be copied anywhere.
"""

from __future__ import annotations

import base64
import subprocess
from pathlib import Path

import yaml

from .progress import ClusterError
from .settings import ClusterSettings

# name -> (common name, organisation)
CLIENTS = {
    "admin": ("kubernetes-admin", "system:masters"),
    "kube-controller-manager": ("system:kube-controller-manager", None),
    "kube-scheduler": ("system:kube-scheduler", None),
    "apiserver-kubelet-client": ("kube-apiserver", "system:masters"),
}


def _openssl(*args: str, cwd: Path) -> None:
    result = subprocess.run(["openssl", *args], cwd=cwd, capture_output=True, text=True)
    if result.returncode != 0:
        raise ClusterError(f"openssl {args[0]} failed: {result.stderr.strip()}")


def _sign(pki: Path, name: str, subject: str, extensions: str) -> None:
    _openssl("genrsa", "-out", f"{name}.key", "2048", cwd=pki)
    _openssl("req", "-new", "-key", f"{name}.key", "-subj", subject, "-out", f"{name}.csr", cwd=pki)
    (pki / f"{name}.ext").write_text(extensions)
    _openssl("x509", "-req", "-in", f"{name}.csr", "-CA", "ca.crt", "-CAkey", "ca.key", "-CAcreateserial",
             "-days", "365", "-sha256", "-extfile", f"{name}.ext", "-out", f"{name}.crt", cwd=pki)
    (pki / f"{name}.csr").unlink()
    (pki / f"{name}.ext").unlink()


def _b64(path: Path) -> str:
    return base64.b64encode(path.read_bytes()).decode()


def write_kubeconfig(path: Path, server: str, pki: Path, client: str) -> None:
    config = {
        "apiVersion": "v1", "kind": "Config", "current-context": "runai-mlflow-local",
        "clusters": [{"name": "runai-mlflow-local",
                      "cluster": {"server": server, "certificate-authority-data": _b64(pki / "ca.crt")}}],
        "users": [{"name": client, "user": {"client-certificate-data": _b64(pki / f"{client}.crt"),
                                            "client-key-data": _b64(pki / f"{client}.key")}}],
        "contexts": [{"name": "runai-mlflow-local", "context": {"cluster": "runai-mlflow-local", "user": client}}],
    }
    path.write_text(yaml.safe_dump(config))
    path.chmod(0o600)


def ensure_pki(settings: ClusterSettings) -> None:
    """Create what is missing; an existing CA is kept so running clients stay valid."""
    pki = settings.pki_dir
    pki.mkdir(parents=True, exist_ok=True)
    pki.chmod(0o700)
    if not (pki / "ca.crt").exists():
        _openssl("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", "ca.key", "-out", "ca.crt",
                 "-days", "365", "-subj", "/CN=runai-mlflow-local-ca", cwd=pki)
    if not (pki / "apiserver.crt").exists():
        names = ["kubernetes", "kubernetes.default", "kubernetes.default.svc",
                 "kubernetes.default.svc.cluster.local", "localhost"]
        ips = ["127.0.0.1", settings.host_ip, settings.first_service_ip]
        san = ",".join([f"DNS:{n}" for n in names] + [f"IP:{ip}" for ip in ips])
        _sign(pki, "apiserver", "/CN=kube-apiserver",
              f"subjectAltName={san}\nextendedKeyUsage=serverAuth\nkeyUsage=digitalSignature,keyEncipherment\n")
    clients = {**CLIENTS, "kubelet": (f"system:node:{settings.node_name}", "system:nodes")}
    for name, (common_name, organisation) in clients.items():
        if not (pki / f"{name}.crt").exists():
            subject = f"/CN={common_name}" + (f"/O={organisation}" if organisation else "")
            _sign(pki, name, subject, "extendedKeyUsage=clientAuth\nkeyUsage=digitalSignature,keyEncipherment\n")
        write_kubeconfig(pki / f"{name}.kubeconfig", settings.server, pki, name)
    if not (pki / "sa.key").exists():
        _openssl("genrsa", "-out", "sa.key", "2048", cwd=pki)
        _openssl("rsa", "-in", "sa.key", "-pubout", "-out", "sa.pub", cwd=pki)
