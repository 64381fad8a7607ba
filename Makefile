# The two commands a newcomer types: `make up` (run vtflow) and `make test` (pass the tests).
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: up test bench clean

up: $(STAMP)
	$(BIN)/vtflow up

test: $(STAMP)
	sh scripts/test-prereqs.sh
	$(BIN)/python -m pytest $(PYTEST_ARGS)

bench: $(STAMP)
	$(BIN)/pip install -q -e '.[test,bench]'
	sh scripts/test-prereqs.sh
	$(BIN)/python bench/node_prep.py
	$(BIN)/python bench/kube_double.py
	$(BIN)/python bench/deploy_steps.py
	$(BIN)/python bench/data_load.py
	$(BIN)/python bench/data_kill.py
	$(BIN)/python bench/health_check.py
	$(BIN)/python bench/webhook.py

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q -e '.[test]'
	touch $(STAMP)

clean:
	rm -rf $(VENV) .vtflow
