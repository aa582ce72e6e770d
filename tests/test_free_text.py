"""Free-text answers survive generation exactly: quotes, colons, '#', newlines, unicode, '{{'.

Typed answers and replay files reach the templates unrendered (only --no-input command-line
values are themselves treated as Jinja), so these tests feed values the same way the replay
path does: into the context after prompting, then through cookiecutter's own Jinja environment for
the template (the one generate_files builds). The thousand property examples render only the four
files that carry free text, with templates compiled once; the nasty texts go through the whole
`cookiecutter` run, hooks included.
"""

import ast
import json
from pathlib import Path

import pytest
import yaml
from cookiecutter.environment import StrictEnvironment
from cookiecutter.generate import generate_context
from cookiecutter.main import cookiecutter
from cookiecutter.prompt import prompt_for_config
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from jinja2 import FileSystemLoader

from hooks.pre_gen_project import validate

from .conftest import ROOT

NASTY = [
    'He said "hi": # not a comment',
    "line one\nline two\n\n  indented: yes",
    "{{ cookiecutter.project_slug }} and {% raw %} and {# x #}",
    "emoji 🚀, accents éàü, CJK 漢字, RTL שלום",
    "'single' \"double\" `back` \\back\\slash",
    "- list: [a, b]\n? key\n: value\n---\n...",
    "yes", "null", "~", "0x1F", "1e3", "@at", "%percent", "&anchor *alias !tag |pipe >fold",
    "\ttab\rcarriage\u2028sep\u0085nel\ufeffbom",
    "",
]
free_text = st.one_of(
    st.sampled_from(NASTY),
    st.text(alphabet=st.characters(blacklist_categories=("Cs",), blacklist_characters="\x00"), max_size=120),
)


def base_context():
    context = generate_context(str(ROOT / "cookiecutter.json"), default_context={}, extra_context={})
    context["cookiecutter"] = prompt_for_config(context, no_input=True)
    context["cookiecutter"]["_template"] = str(ROOT)
    context["cookiecutter"]["_repo_dir"] = str(ROOT)
    return context


BASE = base_context()
# The generated files that carry the free text, by what parse() calls them.
FREE_TEXT_FILES = {"job": "kubernetes_job_template.yaml", "train": "train.py", "answers": ".runai-mlflow-answers.json",
                   "readme": "README.md"}


def template_environment() -> StrictEnvironment:
    """generate_files' environment: the template's extensions, templates loaded from the template folder."""
    env = StrictEnvironment(context=BASE, keep_trailing_newline=True)
    env.loader = FileSystemLoader(str(ROOT))
    return env


ENV = template_environment()


def parse(texts: dict[str, str]) -> dict:
    """The free text as each generated format parses it back."""
    job = yaml.safe_load(texts["job"])
    tree = ast.parse(texts["train"])
    [description] = [node.value.value for node in tree.body
                     if isinstance(node, ast.Assign) and node.targets[0].id == "DESCRIPTION"]
    answers = json.loads(texts["answers"])["cookiecutter"]
    return {"job": job["metadata"]["annotations"], "train": description, "answers": answers, "readme": texts["readme"]}


def read_back(project: Path) -> dict:
    return parse({key: (project / name).read_bytes().decode("utf-8") for key, name in FREE_TEXT_FILES.items()})


def render(description: str, author: str) -> dict[str, str]:
    context = {"cookiecutter": {**BASE["cookiecutter"], "description": description, "author": author}}
    return {key: ENV.get_template(f"{{{{cookiecutter.project_slug}}}}/{name}").render(**context)
            for key, name in FREE_TEXT_FILES.items()}


@pytest.mark.slow
@pytest.mark.parametrize("half", [1, 2])  # 1000 texts in two halves, which `make test`'s workers share
@settings(max_examples=500, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(description=free_text, author=free_text)
def test_free_text_round_trips(half, description, author):
    assert validate({**BASE["cookiecutter"], "description": description, "author": author}) == []
    parsed = parse(render(description, author))
    assert parsed["job"] == {"runai-mlflow/author": author, "runai-mlflow/description": description}
    assert parsed["train"] == description
    assert (parsed["answers"]["description"], parsed["answers"]["author"]) == (description, author)
    assert description in parsed["readme"] and author in parsed["readme"]


@pytest.mark.parametrize("text", NASTY[:6], ids=range(6))
def test_replay_file_with_nasty_text_generates_with_hooks(tmp_path, text, cookiecutter_config):
    """The full cookiecutter run, pre-generation hook included, from a replay file."""
    replay = tmp_path / "replay.json"
    replay.write_text(json.dumps({"cookiecutter": {**BASE["cookiecutter"], "description": text, "author": text}}))
    out = tmp_path / "out"
    project = Path(cookiecutter(str(ROOT), replay=str(replay), output_dir=str(out), config_file=cookiecutter_config))
    parsed = read_back(project)
    assert parsed["train"] == text and parsed["job"]["runai-mlflow/author"] == text
