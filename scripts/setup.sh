#!/usr/bin/env bash
# Create or refresh the project's virtual environment (.venv) with every pinned dependency.
# Idempotent: does nothing when pyproject.toml, the constraints and the npm lock are unchanged.
set -euo pipefail
cd "$(dirname "$0")/.."
venv="${KNOWHUB_VENV:-.venv}"
py="$(command -v python3.11 || command -v python3)"
want="$(cat pyproject.toml requirements/constraints.txt | sha256sum | cut -c1-16)"
stamp="$venv/.knowhub-setup"
if [ ! -f "$stamp" ] || [ "$(cat "$stamp")" != "$want" ]; then
  echo "setting up $venv (first run takes a minute or two)..." >&2
  "$py" -m venv "$venv"
  # torch is pinned to 2.13.0: on this platform pip takes the local CPU-only wheel for it;
  # an unpinned torch would pull several GB of CUDA packages.
  "$venv/bin/python" -m pip install --quiet --disable-pip-version-check \
    -c requirements/constraints.txt -e ".[dev]"
  echo "$want" > "$stamp"
fi

# The ONNX embedding models (fp32 and int8), exported from the bundled weights into the venv:
# never downloaded. Idempotent: a stamp of the source weights makes this a no-op when current.
"$venv/bin/python" -m index.onnx_export >&2

# npm_install_once DIR: install exactly what DIR's lock file pins (npm ci: fails when the lock
# and package.json disagree) unless the lock file is unchanged since the last install.
npm_install_once() {
  local lock_hash stamp="$1/node_modules/.knowhub-setup"
  lock_hash="$(sha256sum "$1/package-lock.json" | cut -c1-16)"
  if [ ! -f "$stamp" ] || [ "$(cat "$stamp")" != "$lock_hash" ]; then
    echo "installing npm packages in $1 (a few minutes the first time)..." >&2
    (cd "$1" && npm ci --no-audit --no-fund --loglevel=error >&2)
    echo "$lock_hash" > "$stamp"
  fi
}

# Chain tools (pinned by contracts/tools/package-lock.json): solc-js to build the contract
# artifact, anvil for a local chain, OpenZeppelin's merkle-tree as the tests' reference.
npm_install_once contracts/tools

# The only IPFS RPC daemon installable here (Kubo's npm package downloads a binary at install
# time): js-ipfs 0.66.1 on Node 22, pinned by tests/jsipfs/package-lock.json. Tests only.
if [ "${KNOWHUB_SKIP_JSIPFS:-}" != "1" ]; then
  npm_install_once tests/jsipfs
fi
