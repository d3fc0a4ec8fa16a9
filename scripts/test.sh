#!/usr/bin/env bash
# Set up and run the checks: lint, types, the suite on SQLite, then again on PostgreSQL.
#
#   ./scripts/test.sh          lint, types and every test not marked `slow`
#   ./scripts/test.sh --slow   the tests marked `slow` only: SIGKILL and multi-process runs, load, API fuzzing and
#                              every console page in Chromium (CI runs them after the command above)
#   ./scripts/test.sh --all    both in one go
#
# Further arguments go to pytest.
set -euo pipefail
cd "$(dirname "$0")/.."

SELECTION="not slow"
case "${1:-}" in
  --slow) SELECTION="slow"; shift ;;
  --all) SELECTION=""; shift ;;
esac

./scripts/setup.sh
./scripts/system-deps.sh

export PATH="$PWD/.venv/bin:$PATH"
if [ "$SELECTION" != "slow" ]; then
  echo "== ruff"; ruff check src tests scripts
  echo "== mypy"; mypy
fi
# Whole modules to a worker, in the order tests/conftest.py puts them (the modules with slow tests first).
PYTEST_ARGS=(-q -p no:cacheprovider --durations=25 -n "${ADSTACK_TEST_WORKERS:-2}" --dist loadfile --no-loadscope-reorder)

run_pytest() {
  # pytest exits 5 when a selection holds no test (the PostgreSQL run of a browser-only selection, say).
  local status=0
  pytest "${PYTEST_ARGS[@]}" "$@" || status=$?
  if [ "$status" -ne 0 ] && [ "$status" -ne 5 ]; then
    return "$status"
  fi
}

PG_MARKS="not browser${SELECTION:+ and ($SELECTION)}"

echo "== tests on SQLite${SELECTION:+ ($SELECTION)}"
ADSTACK_TEST_DATABASE_URL= run_pytest ${SELECTION:+-m "$SELECTION"} "$@"

PG_URL="${ADSTACK_TEST_POSTGRES_URL:-postgresql+psycopg://postgres@127.0.0.1:5432/postgres}"
if ./scripts/ensure-postgres.sh; then
  echo "== tests on PostgreSQL (${PG_MARKS})"
  ADSTACK_TEST_DATABASE_URL="$PG_URL" run_pytest -m "$PG_MARKS" "$@"
elif [ "${CI:-}" = "true" ]; then
  echo "PostgreSQL is not reachable on 127.0.0.1:5432; CI needs it." >&2
  exit 1
else
  echo "== PostgreSQL not reachable: skipped the PostgreSQL run"
fi
