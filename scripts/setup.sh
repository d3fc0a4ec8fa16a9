#!/usr/bin/env bash
# Create .venv and install adstack with its development tools. Safe to run again.
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON="${PYTHON:-python3}"
if [ ! -x .venv/bin/python ]; then
  "$PYTHON" -m venv .venv
fi
.venv/bin/python -m pip install --quiet --upgrade pip
.venv/bin/python -m pip install --quiet -e ".[dev]"

# --- console browser assets (htmx, Chart.js, Inter; axe-core for the browser tests), served from our own origin ---
CONSOLE_ASSETS=src/adstack/console/static/vendor
if [ ! -f "$CONSOLE_ASSETS/node_modules/.package-lock.json" ] \
   || [ "$CONSOLE_ASSETS/package-lock.json" -nt "$CONSOLE_ASSETS/node_modules/.package-lock.json" ]; then
  if command -v npm >/dev/null 2>&1; then
    npm ci --prefix "$CONSOLE_ASSETS" --omit=dev --no-audit --no-fund --loglevel=error
  else
    # No Node here: the same locked tarballs, integrity-checked, installed by Python.
    .venv/bin/python -m adstack.console.assets "$CONSOLE_ASSETS"
  fi
fi

# --- Swagger UI for /docs (swagger-ui-dist), served from our own origin rather than a CDN ---
DOCS_ASSETS=src/adstack/core/docs_assets
if [ ! -f "$DOCS_ASSETS/node_modules/.package-lock.json" ] \
   || [ "$DOCS_ASSETS/package-lock.json" -nt "$DOCS_ASSETS/node_modules/.package-lock.json" ]; then
  if command -v npm >/dev/null 2>&1; then
    # --ignore-scripts: swagger-ui-dist's dependency @scarf/scarf would otherwise report the install.
    npm ci --prefix "$DOCS_ASSETS" --omit=dev --ignore-scripts --no-audit --no-fund --loglevel=error
  else
    .venv/bin/python -m adstack.console.assets "$DOCS_ASSETS"
  fi
fi
