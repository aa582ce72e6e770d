"""A generated project takes later template changes with cruft (README: "Regenerate or update a project").

A real round trip on a local git copy of the template: cruft create, a template change committed,
then cruft update in the project applies it and keeps the team's own edits.
"""

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from .conftest import ROOT

GIT_ENV = {"GIT_AUTHOR_NAME": "test", "GIT_AUTHOR_EMAIL": "test@example.com",
           "GIT_COMMITTER_NAME": "test", "GIT_COMMITTER_EMAIL": "test@example.com"}
CRUFT = str(Path(sys.executable).with_name("cruft"))


def git(cwd: Path, *args: str) -> None:
    subprocess.run(["git", *args], cwd=cwd, check=True, capture_output=True, env={**os.environ, **GIT_ENV})


def template_copy(tmp_path: Path) -> Path:
    """The template as it is in this checkout (tracked files, current contents), as a git repository."""
    copy = tmp_path / "template"
    # -z: names as they are (the per-framework trainer files have quotes in their names, which git would escape)
    tracked = subprocess.run(["git", "ls-files", "-z"], cwd=ROOT, capture_output=True, text=True, check=True).stdout
    for name in filter(None, tracked.split("\0")):
        if (ROOT / name).is_file():
            (copy / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(ROOT / name, copy / name)
    git(copy, "init", "-q")
    git(copy, "add", "-A")
    git(copy, "commit", "-qm", "template v1")
    return copy


@pytest.mark.slow
def test_cruft_update_applies_a_template_change_and_keeps_local_edits(tmp_path):
    template = template_copy(tmp_path)
    subprocess.run([CRUFT, "create", str(template), "--no-input", "--output-dir", str(tmp_path / "out"),
                    "--extra-context", '{"gpu": "0.5"}'], check=True, capture_output=True)
    project = tmp_path / "out" / "diabetes-elasticnet"
    assert (project / ".cruft.json").is_file()
    git(project, "init", "-q")
    git(project, "add", "-A")
    git(project, "commit", "-qm", "generated")
    ours = project / "hyperparameters.py"
    ours.write_text(ours.read_text().replace("EPOCHS = 100", "EPOCHS = 150  # our own choice"))
    git(project, "commit", "-qam", "our edit")

    makefile = template / "{{cookiecutter.project_slug}}" / "Makefile"
    makefile.write_text(makefile.read_text() + "\nversion:  ## Print the template version\n\t@echo v2\n")
    git(template, "commit", "-qam", "template v2: make version")

    update = subprocess.run([CRUFT, "update", "--skip-apply-ask", "--allow-untracked-files"], cwd=project,
                            capture_output=True, text=True)
    assert update.returncode == 0, update.stdout + update.stderr
    assert "version:  ## Print the template version" in (project / "Makefile").read_text()
    assert "EPOCHS = 150  # our own choice" in ours.read_text(), "a team's own edit survives the update"
    assert 'gpu-fraction: "0.5"' in (project / "kubernetes_job_template.yaml").read_text(), "answers are kept"
