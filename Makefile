# The two commands a newcomer needs: `make run` and `make test`. Both install what they use.
PYTHON ?= python3
VENV := .venv
VLLM_VENV := .venv-vllm
PROMTOOL := .cache/prometheus/usr/bin/promtool

.PHONY: run test lint bench lock docs docs-config

# Installs exactly the versions in requirements.lock (with their hashes); `make lock` refreshes
# it from pyproject.toml's ranges after a dependency is added or should be upgraded.
$(VENV)/.installed: pyproject.toml requirements.lock
	$(PYTHON) -m venv $(VENV)
	$(VENV)/bin/pip install -q --upgrade pip
	$(VENV)/bin/pip install -q --require-hashes -r requirements.lock
	$(VENV)/bin/pip install -q --no-deps -e .
	touch $@

lock:
	$(PYTHON) -m venv .cache/lock-venv
	.cache/lock-venv/bin/pip install -q uv
	.cache/lock-venv/bin/uv pip compile pyproject.toml --extra test --extra bench --upgrade \
		--generate-hashes --python-version 3.11 --python-platform x86_64-unknown-linux-gnu \
		-o requirements.lock

$(VLLM_VENV)/.installed: vllm_server/install_cpu.sh
	bash vllm_server/install_cpu.sh $(VLLM_VENV)
	touch $@

# The console's browser tests drive Debian's Chromium (Playwright cannot download its own here).
/usr/bin/chromium:
	apt-get update -qq
	DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium fonts-dejavu-core

# Debian's Prometheus, unpacked (not installed as a service): promtool checks deploy/prometheus
# and tests/deploy scrapes a live gateway with it.
$(PROMTOOL): deploy/tools/fetch_prometheus.sh
	bash deploy/tools/fetch_prometheus.sh .cache/prometheus

run: $(VENV)/.installed
	$(VENV)/bin/vllm-gateway serve

lint: $(VENV)/.installed
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/lint-imports
	$(VENV)/bin/mypy

test: $(VENV)/.installed $(VLLM_VENV)/.installed /usr/bin/chromium $(PROMTOOL) lint docs
	$(VENV)/bin/python -m pytest

# The docs site (mkdocs.yml, docs/): --strict fails on any broken link or missing page.
docs: $(VENV)/.installed
	NO_MKDOCS_2_WARNING=1 $(VENV)/bin/mkdocs build --strict -d .cache/site

# docs/configuration.md is written from gateway/settings.py's field descriptions;
# tests/gateway/test_settings_docs.py fails while it is stale.
docs-config: $(VENV)/.installed
	$(VENV)/bin/python -m gateway.settings_docs docs/configuration.md

bench: $(VENV)/.installed
	$(VENV)/bin/python -m bench.run

# The client matrix (bench/clients): openai, openai-agents, LangChain, anthropic, LiteLLM,
# llama-index, instructor and pydantic-ai calls against real vLLM CPU direct, the gateway at
# 213829b and this tree's gateway; writes bench/results/clients.md and .json. The clients get
# a venv of their own.
CLIENTS_VENV := .venv-clients
$(CLIENTS_VENV)/.installed: bench/clients/requirements.txt bench/clients/requirements-nodeps.txt
	$(PYTHON) -m venv $(CLIENTS_VENV)
	$(CLIENTS_VENV)/bin/pip install -q -r bench/clients/requirements.txt
	$(CLIENTS_VENV)/bin/pip install -q --no-deps -r bench/clients/requirements-nodeps.txt
	touch $@

.PHONY: clients-matrix
clients-matrix: $(VENV)/.installed $(VLLM_VENV)/.installed $(CLIENTS_VENV)/.installed
	$(CLIENTS_VENV)/bin/python -m bench.clients

# A long randomized run of the admin API's property-based test (`make test` runs a short,
# fixed one): FUZZ_EXAMPLES per operation, and it passes only if no request got a 5xx.
FUZZ_EXAMPLES ?= 2000
.PHONY: fuzz-admin
fuzz-admin: $(VENV)/.installed
	ADMIN_FUZZ_EXAMPLES=$(FUZZ_EXAMPLES) $(VENV)/bin/python -m pytest -q -rP \
		tests/gateway/admin/test_schemathesis.py

# The ledger's kill -9 test at random moments (`make test` runs one fixed-seed run): KILL9_RUNS
# kills, each with a fresh random seed it prints, so a failure re-runs with
# LEDGER_KILL9_SEED=<that seed> LEDGER_KILL9_RUNS=1.
KILL9_RUNS ?= 20
.PHONY: chaos-ledger
chaos-ledger: $(VENV)/.installed
	LEDGER_KILL9_RUNS=$(KILL9_RUNS) LEDGER_KILL9_SEED=random $(VENV)/bin/python -m pytest -s \
		tests/chaos/test_ledger_kill9.py
