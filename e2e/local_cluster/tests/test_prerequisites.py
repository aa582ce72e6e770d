"""Missing prerequisites fail fast, naming the cause (and the log to read), before anything is changed."""

import dataclasses
import os
import socket

import pytest

from local_cluster import ClusterSettings
from local_cluster.binaries import _go_build
from local_cluster.host import check_prerequisites
from local_cluster.progress import ClusterError

PORTS = ("apiserver_port", "etcd_client_port", "etcd_peer_port", "kubelet_port", "kubelet_healthz_port",
         "registry_port", "dns_port", "dns_ready_port")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def isolated_settings(tmp_path, **ports) -> ClusterSettings:
    """Settings whose ports are all free, except those given: a running cluster must not interfere."""
    chosen = {name: ports.get(name) or free_port() for name in PORTS}
    return dataclasses.replace(ClusterSettings(), state_dir=tmp_path / "state", **chosen)


def test_a_taken_port_names_the_port_the_component_and_the_owner(tmp_path):
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen()
        port = sock.getsockname()[1]
        settings = isolated_settings(tmp_path, etcd_client_port=port)
        with pytest.raises(ClusterError) as error:
            check_prerequisites(settings, ours=set())
    assert f"port {port} (for etcd) is taken by pid {os.getpid()}" in str(error.value)


def test_ports_held_by_our_own_components_are_fine(tmp_path):
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen()
        check_prerequisites(isolated_settings(tmp_path, etcd_client_port=sock.getsockname()[1]), ours={os.getpid()})


def test_a_go_build_failure_names_the_module_and_the_log(tmp_path):
    module = tmp_path / "broken"
    module.mkdir()
    (module / "go.mod").write_text("module example.com/broken\n\ngo 1.24.0\n")
    (module / "main.go").write_text("package main\n\nfunc main() { undefined() }\n")
    log = tmp_path / "build.log"
    with pytest.raises(ClusterError) as error:
        _go_build(module, tmp_path / "out", ["."], "", log)
    assert "go build failed" in str(error.value) and str(log) in str(error.value)
    assert "undefined" in log.read_text()
    assert not (tmp_path / "out").exists(), "a failed build leaves no binaries behind"
