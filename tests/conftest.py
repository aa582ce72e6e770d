import json
from pathlib import Path

import pytest
import yaml

from . import longest_first

ROOT = Path(__file__).resolve().parents[1]
DEFAULTS = json.loads((ROOT / "cookiecutter.json").read_text())
ANSWER_KEYS = {key for key in DEFAULTS if not key.startswith("_")}


def pytest_collection_modifyitems(items):
    longest_first.order(items)


@pytest.hookimpl(optionalhook=True)  # a hook of pytest-xdist's, which -p no:xdist leaves out
def pytest_xdist_make_scheduler(config, log):
    """-n's default distribution (load) deals the longest tests first: make test's time is bound by them."""
    return longest_first.LongestFirst(config, log) if config.getvalue("dist") == "load" else None


def bake_project(cookies, **answers):
    """Bake with cookiecutter through pytest-cookies; unknown keys fail instead of silently using defaults."""
    unknown = set(answers) - ANSWER_KEYS
    assert not unknown, f"not questions in cookiecutter.json: {sorted(unknown)}"
    return cookies.bake(extra_context=answers, template=str(ROOT))


@pytest.fixture
def bake(cookies):
    return lambda **answers: bake_project(cookies, **answers)


@pytest.fixture(autouse=True)
def cookiecutter_config(tmp_path_factory, monkeypatch) -> str:
    """A cookiecutter config of the test's own: replays and clones go to a temporary folder, never to ~.

    Pass it as config_file= in process; COOKIECUTTER_CONFIG carries it to the cookiecutter command line.
    """
    home = tmp_path_factory.mktemp("cookiecutter-home")
    config = home / "config.yaml"
    config.write_text(yaml.safe_dump({"replay_dir": str(home / "replay"), "cookiecutters_dir": str(home / "clones")}))
    monkeypatch.setenv("COOKIECUTTER_CONFIG", str(config))
    (home / "tmp").mkdir()
    monkeypatch.setenv("TMPDIR", str(home / "tmp"))  # where the hook saves rejected answers
    return str(config)
