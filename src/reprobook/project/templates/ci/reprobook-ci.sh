#!/usr/bin/env bash
# This project's continuous integration, for any CI service (GitHub Actions runs it from
# .github/workflows/reprobook.yml). In order: install, run the tests and `reprobook check`,
# then run the whole pipeline on this branch and on its base, compare the two (the same
# comparison as `reprobook compare --format markdown`), write it to a Markdown file for the
# pull-request comment, and fail when the proposed model misses the promotion gate or a
# quality metric gets worse than the base's by more than `ci.tolerance` (params.yaml).
#
#   ci/reprobook-ci.sh [BASE]     BASE: a branch, tag or commit; default $REPROBOOK_BASE_REF, else origin/main
#
# Environment:
#   REPROBOOK_CI_REPORT        where the Markdown goes (default: reprobook-ci.md)
#   REPROBOOK_CI_DIR           where both sides' runs are kept; the base's are reused by commit,
#                              so caching this folder between jobs saves the base's run
#   REPROBOOK_CI_SKIP_INSTALL  1: the environment is set up already (reprobook on the PATH)
#
# Exit status: 0 every gate passed; 1 a test, a check, a pipeline or a gate failed; 2 a usage error.
set -euo pipefail
cd "$(dirname "$0")/.."
BASE="${1:-${REPROBOOK_BASE_REF:-origin/main}}"
REPORT="${REPROBOOK_CI_REPORT:-reprobook-ci.md}"
export DVC_NO_ANALYTICS=1 MPLBACKEND=Agg

step() { printf '\n== reprobook ci: %s\n' "$*" >&2; }

if [ "${REPROBOOK_CI_SKIP_INSTALL:-0}" != "1" ]; then
  step "install (make setup)"
  make setup
  export PATH="$PWD/.venv/bin:$PATH"
fi

if compgen -G "data/raw/*.dvc" >/dev/null; then
  step "data (dvc pull)"
  dvc pull --quiet
fi

step "tests"
python -m pytest -q tests

step "stage contract check"
reprobook check

step "pipeline on this change and on $BASE, compared"
reprobook ci --base "$BASE" --report "$REPORT"
