#!/usr/bin/env bash
# Set everything up (first run only) and run a node: ./scripts/node.sh [--port 8700] [--data-dir DIR]
set -euo pipefail
cd "$(dirname "$0")/.."
KNOWHUB_SKIP_JSIPFS=1 bash scripts/setup.sh
exec .venv/bin/knowhub node "$@"
