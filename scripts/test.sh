#!/usr/bin/env bash
# Set everything up (first run only) and run every check: ruff, mypy (strict), import-linter,
# then the whole pytest suite (unit, congruence, API and integration tests on real processes).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
export PATH="$PWD/.venv/bin:$PATH"
echo "== ruff" && ruff check .
echo "== mypy" && mypy
echo "== import-linter" && lint-imports
echo "== pytest" && python -m pytest "$@"
