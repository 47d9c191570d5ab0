#!/usr/bin/env bash
# Set everything up (first run only) and run every check: ruff, mypy (strict), import-linter,
# then the whole pytest suite (unit, congruence, API and integration tests on real processes).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
# Debian's Chromium for the web page's browser test (Playwright drives it and never downloads a
# browser). Needs root or passwordless sudo; otherwise say what to install.
if [ ! -x /usr/bin/chromium ]; then
  sudo=""
  [ "$(id -u)" = 0 ] || sudo="sudo -n"
  echo "installing Debian's chromium for the browser test..." >&2
  $sudo apt-get update -qq && DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq \
    --no-install-recommends chromium >/dev/null \
    || echo "could not install chromium: run 'apt-get install chromium' as root" >&2
fi
export PATH="$PWD/.venv/bin:$PATH"
echo "== ruff" && ruff check .
echo "== mypy" && mypy
echo "== import-linter" && lint-imports
echo "== pytest" && python -m pytest "$@"
