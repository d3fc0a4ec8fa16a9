#!/usr/bin/env bash
# Set up and run adstack on the embedded default (SQLite + in-process analytics) with demo data.
set -euo pipefail
cd "$(dirname "$0")/.."
./scripts/setup.sh
export PATH="$PWD/.venv/bin:$PATH"
exec adstack demo --serve "$@"
