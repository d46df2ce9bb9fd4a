# The two commands a newcomer needs: `make run` and `make test`. Both install what they use.
PYTHON ?= python3
VENV := .venv
VLLM_VENV := .venv-vllm
PROMTOOL := .cache/prometheus/usr/bin/promtool

.PHONY: run test lint bench

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(VENV)/bin/pip install -q --upgrade pip
	$(VENV)/bin/pip install -q -e '.[test,bench]'
	touch $@

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

test: $(VENV)/.installed $(VLLM_VENV)/.installed /usr/bin/chromium $(PROMTOOL) lint
	$(VENV)/bin/python -m pytest

bench: $(VENV)/.installed
	$(VENV)/bin/python -m bench.run
