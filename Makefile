# runai-mlflow: `make generate` writes a project with default answers; `make test` runs the template tests.
SHELL := /bin/bash
VENV ?= .venv
PY := $(VENV)/bin/python
OUT ?= generated
CLUSTER ?= kind
E2E_REPORT_DIR ?= e2e-report
export PATH := $(CURDIR)/$(VENV)/bin:$(PATH)
# e2e/ holds the local_cluster, fake_runai_scheduler and suite packages
E2E_PY := PYTHONPATH=$(CURDIR)/e2e $(CURDIR)/$(PY)
# pigz: containerd unpacks pulled layers with unpigz when it is there (a pytorch image is 6 GB of gzip)
CLUSTER_PACKAGES := docker.io containerd runc containernetworking-plugins docker-registry debootstrap iptables openssl pigz

.PHONY: help setup setup-test generate test test-fast lint bench clean cluster-deps cluster-build cluster-up cluster-down cluster-status \
	cluster-test cluster-teardown-test kind-node-image e2e e2e-researcher bench-cluster bench-scheduler bench-e2e \
	bench-preemption

help:  ## List the targets
	@grep -E '^[a-z0-9-]+:.*## ' $(MAKEFILE_LIST) | sed 's/:.*## /\t/'

# .venv grows with the step: generating needs cookiecutter only; tests, the cluster and e2e add theirs.
setup: $(VENV)/.installed-e2e  ## Create .venv with every pinned dependency (template tests, cluster, e2e)
setup-test: $(VENV)/.installed-test

# uv installs the pins (parallel downloads, files linked from its cache); pip only bootstraps it.
# --compile-bytecode as pip does: with PYTHONDONTWRITEBYTECODE set, imports would compile every time.
UV_VERSION := 0.13.9
$(VENV)/.created:
	python3 -m venv $(VENV)
	$(PY) -m pip install -q uv==$(UV_VERSION)
	touch $@

$(VENV)/.installed-%: pyproject.toml | $(VENV)/.created
	$(VENV)/bin/uv pip install -q --compile-bytecode --python $(PY) -e ".[$*]"
	touch $@

generate: $(VENV)/.installed-generate  ## Generate a project with default answers into ./generated (OUT=dir to change)
	$(VENV)/bin/cookiecutter . --no-input --overwrite-if-exists -o $(OUT)
	@echo "Generated $(OUT)/diabetes-elasticnet; see its README.md to submit it."

# Three workers on 2 cores (pytest-xdist): the generated projects' suites wait on their subprocesses (servers,
# torchrun, stops) part of the time. The longest tests start first (tests/longest_first.py). Measured warm on
# 2 cores: 229 s with 3 workers, 237 s with 4.
TEST_WORKERS ?= 3
test: setup-test  ## Template tests: generation matrix, MLflow contract, bad answers, free-text round trip
	$(PY) -m pytest tests -n $(TEST_WORKERS) --durations=10

test-fast: setup-test  ## The template tests without the slow ones
	$(PY) -m pytest tests -m "not slow" -n $(TEST_WORKERS)

lint: setup-test  ## ruff over the repository (the template folder has its own ruff.toml)
	$(PY) -m ruff check .

bench: setup-test  ## Print generation time per project
	$(PY) benchmarks/bench_generation.py

clean:  ## Remove generated projects and reports in the repository
	rm -rf $(OUT) .pytest_cache .pytest-kind $(E2E_REPORT_DIR) e2e-report-kind

# The local cluster (root; Debian packages; Kubernetes and etcd built from Go modules) ---------------

cluster-deps:  ## Install the Debian packages the local cluster needs (root)
	@missing=""; for c in dockerd containerd runc ctr docker-registry debootstrap iptables openssl unpigz; do \
		command -v $$c >/dev/null || missing=1; done; test -x /usr/lib/cni/bridge || missing=1; \
	if [ -n "$$missing" ]; then apt-get update -qq && DEBIAN_FRONTEND=noninteractive \
		apt-get install -y -qq --no-install-recommends $(CLUSTER_PACKAGES) >/dev/null; fi
	@echo "cluster packages present"

cluster-build: setup cluster-deps  ## Build the cluster's cached parts only (Go binaries, root filesystem); starts nothing
	$(E2E_PY) -m local_cluster build

cluster-up: setup cluster-deps  ## Start (or reuse and repair) the local cluster; prints how to use it
	$(E2E_PY) -m local_cluster up

cluster-down: setup  ## Remove the local cluster: processes, mounts, links, rules, routes, state
	$(E2E_PY) -m local_cluster down

cluster-status: setup  ## Show what runs (exit 3 if the cluster is not healthy)
	$(E2E_PY) -m local_cluster status

cluster-test: setup  ## Local cluster smoke tests, fake Run:ai scheduler tests (cluster up), kind node image parts
	$(PY) -m pytest e2e/local_cluster/tests e2e/fake_runai_scheduler/tests e2e/kind_node/tests

cluster-teardown-test: setup  ## Take the cluster down and assert nothing of it is left
	$(PY) -m pytest e2e/teardown_tests e2e/local_cluster/teardown_tests

kind-node-image: setup cluster-deps  ## Build kind's node image and registry image from upstream parts (root; cached)
	$(E2E_PY) -m kind_node

# End to end --------------------------------------------------------------------------------------

# E2E_ARGS: more pytest arguments, e.g. E2E_ARGS="-k 'data-pvc or whole-gpu-train'" for some variants only.
E2E_ARGS ?=
e2e: setup  ## Run generated projects with mlflow run on a cluster: CLUSTER=kind|local|existing
	mkdir -p $(E2E_REPORT_DIR)
	CLUSTER=$(CLUSTER) E2E_REPORT_DIR=$(CURDIR)/$(E2E_REPORT_DIR) $(E2E_PY) -m pytest -p suite.live_progress \
		e2e/suite --junitxml=$(CURDIR)/$(E2E_REPORT_DIR)-junit.xml $(E2E_ARGS)

e2e-researcher: setup  ## On the local cluster: the suite as a Run:ai researcher (one namespace, a Role), nothing else changed
	mkdir -p $(E2E_REPORT_DIR)
	E2E_REPORT_DIR=$(CURDIR)/$(E2E_REPORT_DIR) $(E2E_PY) -m suite.researcher

bench-stop: setup-test  ## Print stop latency and steps lost per preemption, short and long epochs, both frameworks
	$(PY) benchmarks/bench_stop.py

bench-cluster: setup  ## Print cold build, warm cluster-up and pod start figures (restarts the cluster)
	$(E2E_PY) benchmarks/bench_cluster.py

bench-scheduler: setup  ## Print fake scheduler vs kube-scheduler throughput and latency (cluster up)
	$(E2E_PY) benchmarks/bench_scheduler.py

bench-e2e: setup  ## Print the e2e harness overhead against the floor (CLUSTER as for e2e)
	CLUSTER=$(CLUSTER) E2E_REPORT_DIR=$(CURDIR)/$(E2E_REPORT_DIR) $(E2E_PY) benchmarks/bench_e2e.py

bench-preemption: setup  ## Print epochs redone per preemption and the time from GPU freed to resumed (CLUSTER as for e2e)
	CLUSTER=$(CLUSTER) E2E_REPORT_DIR=$(CURDIR)/$(E2E_REPORT_DIR) $(E2E_PY) benchmarks/bench_preemption.py
