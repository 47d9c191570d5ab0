#!/usr/bin/env bash
# Set everything up (first run only) and run every check: ruff, mypy (strict), import-linter,
# the fast tier (tests/unit: in-process, on the in-memory fakes, about a minute), the integration
# tier (everything else: congruence, API and integration tests on real processes), then the
# Docker image built and smoke-tested (scripts/docker-smoke.sh).
#
#   scripts/test.sh                 # all of it (what CI runs)
#   scripts/test.sh ARGS...         # setup and checks, then only `pytest ARGS...` (no tiers, no
#                                   # image): e.g. scripts/test.sh tests/unit -x
#   KNOWHUB_DOCKER_SMOKE=skip scripts/test.sh   # everything but the image
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
if [ $# -gt 0 ]; then
  echo "== pytest $*" && python -m pytest "$@"
  exit 0
fi
t0=$SECONDS
echo "== pytest: fast tier (tests/unit)" && python -m pytest tests/unit
echo "== fast tier: $((SECONDS - t0)) s"
t1=$SECONDS
echo "== pytest: integration tier" && python -m pytest tests --ignore=tests/unit
echo "== integration tier: $((SECONDS - t1)) s"
if [ "${KNOWHUB_DOCKER_SMOKE:-run}" = skip ]; then
  echo "== docker smoke: skipped (KNOWHUB_DOCKER_SMOKE=skip)"
else
  echo "== docker smoke" && bash scripts/docker-smoke.sh
fi
