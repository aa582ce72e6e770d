"""Start components as daemons with a pid file each, and stop them by that pid, never by name.

Docker runs its own containerd and shims under the same names, so matching by name could kill
them. A pid is trusted only while /proc/<pid>/exe is still the binary we started.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class Daemon:
    name: str
    argv: list[str]
    pid_file: Path
    log_file: Path

    def start(self, env: dict | None = None) -> int:
        self.log_file.parent.mkdir(parents=True, exist_ok=True)
        self.pid_file.parent.mkdir(parents=True, exist_ok=True)
        with open(self.log_file, "ab") as log:
            proc = subprocess.Popen(self.argv, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                    start_new_session=True, env=env, close_fds=True)
        exe = shutil.which(self.argv[0]) or self.argv[0]
        self.pid_file.write_text(f"{proc.pid}\n{os.path.realpath(exe)}\n")
        return proc.pid

    def pid(self) -> int | None:
        """The recorded pid if that process is still the binary we started."""
        try:
            pid_text, exe = self.pid_file.read_text().split("\n")[:2]
            pid = int(pid_text)
            running_exe = os.path.realpath(f"/proc/{pid}/exe")
        except (FileNotFoundError, ValueError, OSError):
            return None
        state = _proc_state(pid)
        if running_exe.removesuffix(" (deleted)") != exe or state in (None, "Z"):
            return None
        return pid

    def alive(self) -> bool:
        return self.pid() is not None

    def stop(self, timeout: float = 20) -> bool:
        """SIGTERM, then SIGKILL after ``timeout``; True if it was running."""
        pid = self.pid()
        if pid is None:
            self.pid_file.unlink(missing_ok=True)
            return False
        stop_pid(pid, timeout)
        self.pid_file.unlink(missing_ok=True)
        return True


def _proc_state(pid: int) -> str | None:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (FileNotFoundError, IndexError, OSError):
        return None


def stop_pid(pid: int, timeout: float = 20) -> None:
    for sig, wait in ((signal.SIGTERM, timeout), (signal.SIGKILL, 10)):
        try:
            os.kill(pid, sig)
        except ProcessLookupError:
            return
        deadline = time.monotonic() + wait
        while time.monotonic() < deadline:
            if _proc_state(pid) in (None, "Z"):
                try:
                    os.waitpid(pid, os.WNOHANG)
                except ChildProcessError:
                    pass
                return
            time.sleep(0.1)


def pids_with_argument(argument: str) -> list[int]:
    """Processes whose command line contains ``argument`` (e.g. our containerd socket path)."""
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                cmdline = (entry / "cmdline").read_bytes().split(b"\0")
            except OSError:
                continue
            if argument.encode() in cmdline:
                found.append(int(entry.name))
    return found
