# The two commands a newcomer needs: `make run` and `make test`. Both install what they use.
PYTHON ?= python3
VENV := .venv
VLLM_VENV := .venv-vllm

.PHONY: run test lint bench

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(VENV)/bin/pip install -q --upgrade pip
	$(VENV)/bin/pip install -q -e '.[test,bench]'
	touch $@

$(VLLM_VENV)/.installed: vllm_server/install_cpu.sh
	bash vllm_server/install_cpu.sh $(VLLM_VENV)
	touch $@

run: $(VENV)/.installed
	$(VENV)/bin/vllm-gateway serve

lint: $(VENV)/.installed
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .

test: $(VENV)/.installed $(VLLM_VENV)/.installed lint
	$(VENV)/bin/python -m pytest

bench: $(VENV)/.installed
	$(VENV)/bin/python -m bench.run
