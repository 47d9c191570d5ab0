#!/usr/bin/env bash
# Create or refresh the project's virtual environment (.venv) with every pinned dependency.
# Idempotent: does nothing when pyproject.toml and the constraints have not changed.
set -euo pipefail
cd "$(dirname "$0")/.."
venv="${KNOWHUB_VENV:-.venv}"
py="$(command -v python3.11 || command -v python3)"
want="$(cat pyproject.toml requirements/constraints.txt | sha256sum | cut -c1-16)"
stamp="$venv/.knowhub-setup"
if [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$want" ]; then
  exit 0
fi
echo "setting up $venv (first run takes a minute or two)..." >&2
"$py" -m venv "$venv"
# torch is pinned to 2.13.0: on this platform pip takes the local CPU-only wheel for it;
# an unpinned torch would pull several GB of CUDA packages.
"$venv/bin/python" -m pip install --quiet --disable-pip-version-check \
  -c requirements/constraints.txt -e ".[dev]"
echo "$want" > "$stamp"
