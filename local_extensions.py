"""Jinja filters that render answers through real escaping, never string pasting.

Free-text answers may hold quotes, colons, '#', newlines or '{{'; each filter emits a
literal of the target language that parses back to exactly the answer. Cookiecutter loads local
extensions since 2.1, the oldest version this template supports; 1.x stops here, before writing.
"""

import json

import yaml
from cookiecutter.utils import simple_filter

from hooks.pre_gen_project import YES_NO_FIELDS, parse_gpu_request, parse_yes_no


@simple_filter
def yaml_str(value):
    """A double-quoted YAML scalar (safe inside flow or block context)."""
    text = yaml.safe_dump(str(value), default_style='"', width=float("inf"), allow_unicode=True)
    return text.removesuffix("\n...\n").rstrip("\n")


@simple_filter
def json_str(value):
    return json.dumps(value, ensure_ascii=False)


@simple_filter
def json_document(value):
    """An indented JSON document (cookiecutter before 2.7 has jsonify without an indent argument)."""
    return json.dumps(value, indent=2, ensure_ascii=False)


@simple_filter
def py_str(value):
    return repr(str(value))


@simple_filter
def gpu_spec(answers):
    """The GPU request the gpu, gpu_memory and gpu_devices answers make together (the hook checked them)."""
    return parse_gpu_request(answers)


@simple_filter
def as_bool(value):
    """A yes/no answer as a boolean, whichever form this cookiecutter version passed it in."""
    return parse_yes_no(value)


@simple_filter
def answers_json(context):
    """The user's answers (no private keys or local paths) as a replay file: cookiecutter --replay-file takes it."""
    answers = {key: value for key, value in context.items() if not key.startswith("_")}
    answers.update({key: parse_yes_no(answers[key]) for key in YES_NO_FIELDS if key in answers})
    return json.dumps({"cookiecutter": answers}, indent=2, ensure_ascii=False, sort_keys=True)
