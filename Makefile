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

# the double at Kubernetes 1.22-1.24 reads an older kubernetes-validate release's schemas, installed
# beside the pinned one (kubedouble/openapi.py); a no-op once it is there
$(STAMP): pyproject.toml Makefile
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q -e '.[test]'
	$(BIN)/python -m kubedouble --install-schemas --version 1.24
	touch $(STAMP)

clean:
	rm -rf $(VENV) .vtflow
