"""A throw-away MLflow tracking server that pods can use.

It listens on the address pods reach this machine at, with a sqlite store and proxied artifacts
(so pods need no storage credentials). MLflow >= 3.5 rejects unknown Host headers, so readiness
is proven with a real API call carrying the pods' Host header, not just /health (which is exempt).
MLflow >= 3.5 also starts a job runner beside the server by default (Huey consumers for GenAI jobs, eight
more processes that poll): about a third of a core while idle, on a 2-core machine, for jobs no training
run submits, so it is switched off (NO_JOB_RUNNER).
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import urllib.request
from pathlib import Path

from kube import wait_until


def free_port(host: str) -> int:
    with socket.socket() as sock:
        sock.bind((host, 0))
        return sock.getsockname()[1]


# The server's environment: no job runner (see the module's docstring).
NO_JOB_RUNNER = {"MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false"}


class TrackingServer:
    def __init__(self, host: str, work_dir: Path, log_file: Path):
        self.host, self.work_dir, self.log_file = host, work_dir, log_file
        self.port = free_port(host)
        self.process: subprocess.Popen | None = None

    @property
    def uri(self) -> str:
        return f"http://{self.host}:{self.port}"

    def start(self, timeout: float = 120) -> TrackingServer:
        self.work_dir.mkdir(parents=True, exist_ok=True)
        mlflow = shutil.which("mlflow") or str(Path(sys.executable).with_name("mlflow"))
        command = [mlflow, "server", "--backend-store-uri", f"sqlite:///{self.work_dir / 'mlflow.db'}",
                   "--artifacts-destination", str(self.work_dir / "artifacts"),
                   "--host", self.host, "--port", str(self.port), "--workers", "1",
                   "--allowed-hosts", f"{self.host}:*,localhost:*,127.0.0.1:*"]
        self.log_file.parent.mkdir(parents=True, exist_ok=True)
        with open(self.log_file, "ab") as log:  # a restart appends
            self.process = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT, cwd=self.work_dir,
                                            env={**os.environ, **NO_JOB_RUNNER}, start_new_session=True)
        wait_until(self._api_answers, timeout, f"the mlflow server (log: {self.log_file})", interval=0.5,
                   give_up=lambda: self.process.poll() is not None and f"it exited with {self.process.returncode}")
        return self

    def _api_answers(self) -> bool:
        request = urllib.request.Request(
            f"http://{self.host}:{self.port}/api/2.0/mlflow/experiments/search?max_results=1",
            headers={"Host": f"{self.host}:{self.port}"})
        try:
            with urllib.request.urlopen(request, timeout=3) as response:
                return response.status == 200 and "experiments" in json.loads(response.read() or b"{}")
        except OSError:
            return False

    def stop(self) -> None:
        """Stop the server and its uvicorn workers (its own process group)."""
        if self.process and self.process.poll() is None:
            try:
                os.killpg(self.process.pid, signal.SIGTERM)
                self.process.wait(15)
            except (ProcessLookupError, subprocess.TimeoutExpired):
                try:
                    os.killpg(self.process.pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
                self.process.wait(5)
