# The two commands of the README: `make run` (the whole pipeline) and
# `make test` (the whole test suite). Both set up the virtual environment first.
PYTHON ?= python3.11
VENV := .venv
BIN := $(CURDIR)/$(VENV)/bin
STAMP := $(VENV)/.installed-$(shell cat pyproject.toml constraints.txt | cksum | cut -d' ' -f1)

# Put the environment's tools first, never phone home, and cope with a machine
# that has no git identity (DVC experiments commit and fail without one).
export PATH := $(BIN):$(PATH)
export DVC_NO_ANALYTICS := 1
export MPLBACKEND := Agg
GIT_NAME := $(or $(shell git config user.name 2>/dev/null),reprobook)
GIT_EMAIL := $(or $(shell git config user.email 2>/dev/null),reprobook@localhost)
export GIT_AUTHOR_NAME ?= $(GIT_NAME)
export GIT_AUTHOR_EMAIL ?= $(GIT_EMAIL)
export GIT_COMMITTER_NAME ?= $(GIT_NAME)
export GIT_COMMITTER_EMAIL ?= $(GIT_EMAIL)

.PHONY: setup run test bench clean

setup: $(STAMP)

$(STAMP): pyproject.toml constraints.txt
	@command -v $(PYTHON) >/dev/null || { echo "error: $(PYTHON) not found; install Python 3.11"; exit 1; }
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade "pip>=24"
	$(BIN)/python -m pip install --quiet -c constraints.txt -e ".[test]"
	$(BIN)/python -m ipykernel install --sys-prefix --name reprobook --display-name "Python (reprobook)" >/dev/null
	@rm -f $(VENV)/.installed-* && touch $@

run: setup
	$(BIN)/reprobook run

test: setup
	$(BIN)/python -m pytest

bench: setup
	$(BIN)/python benchmarks/pipeline_bench.py

clean:
	rm -rf reports/*/notebook.* mlflow.db mlartifacts
