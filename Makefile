# runai-mlflow: `make generate` writes a project with default answers; `make test` runs the template tests.
SHELL := /bin/bash
VENV ?= .venv
PY := $(VENV)/bin/python
OUT ?= generated
CLUSTER ?= kind
export PATH := $(CURDIR)/$(VENV)/bin:$(PATH)

.PHONY: help setup generate test test-fast lint bench cluster-up cluster-down cluster-status e2e bench-e2e clean

help:  ## List the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | sed 's/:.*## /\t/'

setup: $(VENV)/.installed  ## Create .venv with the pinned dev dependencies

$(VENV)/.installed: pyproject.toml
	python3 -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e ".[dev]"
	touch $@

generate: setup  ## Generate a project with default answers into ./generated (OUT=dir to change)
	$(VENV)/bin/cookiecutter . --no-input --overwrite-if-exists -o $(OUT)
	@echo "Generated $(OUT)/wine-quality-elasticnet; see its README.md to submit it."

test: setup  ## Template tests: generation matrix, MLflow contract, bad answers, free-text round trip
	$(PY) -m pytest tests

test-fast: setup  ## The template tests without the slow ones
	$(PY) -m pytest tests -m "not slow"

lint: setup  ## ruff over the repository (the template folder has its own ruff.toml)
	$(PY) -m ruff check .

bench: setup  ## Print generation time per project
	$(PY) benchmarks/bench_generation.py

clean:  ## Remove generated projects and caches in the repository
	rm -rf $(OUT) .pytest_cache .pytest-kind e2e-report
