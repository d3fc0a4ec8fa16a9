#!/usr/bin/env bash
# Set up and run every check: lint, types, the suite on SQLite, then again on PostgreSQL.
set -euo pipefail
cd "$(dirname "$0")/.."

./scripts/setup.sh
./scripts/system-deps.sh

export PATH="$PWD/.venv/bin:$PATH"
echo "== ruff"; ruff check src tests scripts
echo "== mypy"; mypy
# Whole modules to a worker, in the order tests/conftest.py puts them (the modules with slow tests first).
PYTEST_ARGS=(-q -p no:cacheprovider --durations=25 -n "${ADSTACK_TEST_WORKERS:-2}" --dist loadfile --no-loadscope-reorder)

echo "== tests on SQLite"
ADSTACK_TEST_DATABASE_URL= pytest "${PYTEST_ARGS[@]}" "$@"

PG_URL="${ADSTACK_TEST_POSTGRES_URL:-postgresql+psycopg://postgres@127.0.0.1:5432/postgres}"
if ./scripts/ensure-postgres.sh; then
  echo "== tests on PostgreSQL"
  ADSTACK_TEST_DATABASE_URL="$PG_URL" pytest "${PYTEST_ARGS[@]}" -m "not browser" "$@"
elif [ "${CI:-}" = "true" ]; then
  echo "PostgreSQL is not reachable on 127.0.0.1:5432; CI needs it." >&2
  exit 1
else
  echo "== PostgreSQL not reachable: skipped the PostgreSQL run"
fi
