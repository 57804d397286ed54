# The two commands of the README: `make run` (the whole pipeline) and
# `make test` (the whole test suite). Both set up the virtual environment first.
PYTHON ?= python3.11
VENV := .venv
BIN := $(CURDIR)/$(VENV)/bin
STAMP := $(VENV)/.installed-$(shell cat pyproject.toml constraints.txt | cksum | cut -d' ' -f1)

# Put the environment's tools first and never phone home.
export PATH := $(BIN):$(PATH)
export DVC_NO_ANALYTICS := 1
export MPLBACKEND := Agg

.PHONY: setup run test bench check-ui reference clean git-identity

setup: $(STAMP) git-identity

# DVC experiments commit: a machine without a git identity gets a repository-local one.
git-identity:
	@git rev-parse --git-dir >/dev/null 2>&1 || exit 0; \
	git var GIT_COMMITTER_IDENT >/dev/null 2>&1 || { \
	  git config --local user.name "$$(whoami)" && git config --local user.email "$$(whoami)@localhost" && \
	  echo "note: git had no user name/email; set a repository-local identity $$(whoami) <$$(whoami)@localhost> (change it with git config user.name/user.email)"; }

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

# The MLflow UI in a headless Chromium (apt-get install chromium, or CHROMIUM=/path): not part of `make test`.
check-ui: setup
	$(BIN)/python -m pip install --quiet -c constraints.txt -e ".[ui]"
	$(BIN)/python checks/mlflow_ui.py

bench: setup
	$(BIN)/python benchmarks/pipeline_bench.py

# The reference project's dvc.yaml, params.yaml, MLproject, notebooks and schema are
# what `reprobook new` writes for the built-in data: regenerate them from the templates.
reference: setup
	$(BIN)/python -c "from pathlib import Path; from reprobook.project.scaffold import builtin_spec, render; render(builtin_spec('reprobook'), Path('.'), reference_only=True)"
	$(BIN)/reprobook fingerprint

clean:
	rm -rf reports/*/notebook.* mlflow.db mlartifacts
