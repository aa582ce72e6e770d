"""The e2e suite's tracking server runs without MLflow's job runner, which would cost a third of a core for the
whole e2e run on a 2-core machine (the CI budget, README "CI")."""

from pathlib import Path

import pytest
from suite.tracking import TrackingServer


def session_commands(session_id: int) -> list[str]:
    """The command lines of every process in one session (the server starts its own)."""
    commands = []
    for proc in Path("/proc").iterdir():
        try:
            stat = (proc / "stat").read_text()
            if int(stat.rsplit(")", 1)[1].split()[3]) == session_id:
                commands.append((proc / "cmdline").read_bytes().replace(b"\0", b" ").decode())
        except (OSError, ValueError, IndexError):
            continue  # exited while read, or not a process
    return commands


@pytest.mark.slow
def test_the_suites_tracking_server_starts_no_job_runner(tmp_path):
    server = TrackingServer("127.0.0.1", tmp_path / "mlflow", tmp_path / "server.log").start()
    try:
        commands = session_commands(server.process.pid)
        assert any(" server " in command for command in commands), commands
        runners = [command for command in commands if "mlflow.server.jobs" in command]
        assert not runners, f"MLflow's job runner started beside the tracking server: {runners}"
    finally:
        server.stop()
