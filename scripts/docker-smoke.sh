#!/usr/bin/env bash
# Build docker/Dockerfile and prove the image runs a node: the check an operator's first
# `docker run` makes, on every change (the test command runs it: scripts/test.sh).
#
#   scripts/docker-smoke.sh            # build, then one node: the checks below
#   scripts/docker-smoke.sh --compose  # build, then the three-node topology of docker/compose.yml
#                                      # (scripts/docker-smoke-compose.sh; not in CI: ~6 min more)
#
# Engine: `docker` where a Docker engine answers, else podman (installed with apt-get when
# missing, with buildah, runc and debootstrap). Base images that cannot be pulled (no registry
# here) are made locally once and kept: a Debian bookworm root from debootstrap, and on it a
# stand-in for python:3.11.14-slim-bookworm (Debian's Python 3.11). ../shared/notes/docker.md
# has the measurements behind every workaround.
#
# One node, each step timed; the script fails naming the step:
#   healthy within the HEALTHCHECK start period; 401 without an API key, 201 with one; the
#   query finds the fact; the process runs as a non-root uid; /metrics answers; SIGTERM exits 0
#   within the stop grace period; the fact survives a restart on the same volume.
# It removes the containers and volumes it made and keeps the images (the next build reuses
# their layers), but not the untagged ones that earlier builds left (dangling: nothing uses
# them; about 50 GB of them had piled up here after a day of test runs).
# Settings (environment): KNOWHUB_SMOKE_TAG (knowhub:smoke),
# KNOWHUB_TORCH_INDEX_URL (passed as TORCH_INDEX_URL; by default PyTorch's CPU index, or
# PyPI's when that index cannot be reached and the host's pip has a local +cpu torch wheel).
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
MODE=node
[[ "${1:-}" == "--compose" ]] && MODE=compose
TAG="${KNOWHUB_SMOKE_TAG:-knowhub:smoke}"
PYTHON_BASE="docker.io/library/python:3.11.14-slim-bookworm"
DEBIAN_BASE="localhost/debian:bookworm"
NAME="knowhub-smoke-$$"
VOLUME="knowhub-smoke-data-$$"
KEY="smoke-test-api-key-0123456789"
STEP="start"
STARTED=$(date +%s)
WORK="$(mktemp -d)"
ENGINE=""

step() {
  STEP="$1"
  echo "==> [$(($(date +%s) - STARTED)) s] $STEP"
}

fail() {
  echo "docker-smoke: FAILED at step '$STEP': $*" >&2
  exit 1
}

cleanup() {
  local rc=$?
  if [[ -n "$ENGINE" ]]; then
    if [[ $rc -ne 0 && "$MODE" == node ]] && $ENGINE inspect "$NAME" >/dev/null 2>&1; then
      echo "--- container log (last 40 lines) ---" >&2
      $ENGINE logs --tail 40 "$NAME" >&2 2>/dev/null || true
    fi
    $ENGINE rm -f "$NAME" "$NAME-2" >/dev/null 2>&1 || true
    if declare -F compose_cleanup >/dev/null; then compose_cleanup; fi
    $ENGINE volume rm -f "$VOLUME" >/dev/null 2>&1 || true
  fi
  if [[ $rc -ne 0 && -s "$WORK/engine.log" ]]; then
    echo "--- engine messages ---" >&2
    tail -20 "$WORK/engine.log" >&2
  fi
  rm -rf "$WORK"
  if [[ $rc -eq 0 ]]; then
    echo "docker-smoke: passed in $(($(date +%s) - STARTED)) s"
  else
    echo "docker-smoke: FAILED at step '$STEP' after $(($(date +%s) - STARTED)) s" >&2
  fi
}
trap cleanup EXIT

free_port() {
  python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}

# ---- the engine --------------------------------------------------------------------------
step "find a container engine"
if command -v docker >/dev/null 2>&1 && docker info >/dev/null 2>&1; then
  ENGINE=docker
  BUILD=(docker build)
else
  if ! command -v podman >/dev/null 2>&1 || ! command -v buildah >/dev/null 2>&1 \
      || ! command -v runc >/dev/null 2>&1 || ! command -v debootstrap >/dev/null 2>&1; then
    step "install podman, buildah, runc and debootstrap (apt-get)"
    [[ $(id -u) -eq 0 ]] || fail "podman is missing and installing it needs root"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq || fail "apt-get update"
    apt-get install -y -qq podman buildah runc debootstrap uidmap slirp4netns fuse-overlayfs \
      >/dev/null || fail "apt-get install"
  fi
  # crun refuses hybrid cgroups ("cgroups in hybrid mode not supported"); a container lacks
  # CAP_SYS_RESOURCE, so podman's default ulimits cannot be set: runc and lower limits.
  cat >"$WORK/containers.conf" <<'EOF'
[containers]
default_ulimits = ["nofile=16384:16384", "nproc=32768:32768"]
[engine]
runtime = "runc"
EOF
  export CONTAINERS_CONF="$WORK/containers.conf"
  ENGINE=podman
  # --format docker keeps HEALTHCHECK (OCI drops it); --pull=never: local base images.
  BUILD=(podman build --runtime runc --network host --pull=never --format docker)
fi
echo "engine: $($ENGINE --version)"

# ---- base images (podman without a registry) ----------------------------------------------
if [[ "$ENGINE" == podman ]] && ! podman image exists "$PYTHON_BASE"; then
  step "pull $PYTHON_BASE"
  if ! timeout 120 podman pull -q "$PYTHON_BASE" >/dev/null 2>&1; then
    if ! podman image exists "$DEBIAN_BASE"; then
      step "make $DEBIAN_BASE with debootstrap (no registry)"
      MIRROR=$( (grep -rhoE '^(URIs:|deb) +https?://[^ ]+/debian/?' /etc/apt/sources.list \
        /etc/apt/sources.list.d/ 2>/dev/null || true) | head -1 | awk '{print $2}')
      MIRROR="${MIRROR:-http://deb.debian.org/debian}"
      debootstrap --variant=minbase bookworm "$WORK/rootfs" "$MIRROR" >"$WORK/debootstrap.log" 2>&1 \
        || { tail -20 "$WORK/debootstrap.log" >&2; fail "debootstrap from $MIRROR"; }
      tar -C "$WORK/rootfs" -c . | podman import - "$DEBIAN_BASE" >/dev/null 2>>"$WORK/engine.log" \
        || fail "podman import"
      rm -rf "$WORK/rootfs"
    fi
    step "make a stand-in for $PYTHON_BASE on $DEBIAN_BASE"
    cat >"$WORK/Containerfile.python" <<EOF
FROM $DEBIAN_BASE
RUN apt-get update \\
 && apt-get install -y --no-install-recommends python3 python3-venv python3-pip python3-dev \\
      python-is-python3 ca-certificates \\
 && rm -rf /var/lib/apt/lists/*
EOF
    "${BUILD[@]}" -q -t "$PYTHON_BASE" -f "$WORK/Containerfile.python" "$WORK" >/dev/null \
      || fail "build the Python base"
  fi
fi

# ---- build --------------------------------------------------------------------------------
step "build docker/Dockerfile as $TAG"
BUILD_ARGS=()
MOUNTS=()
TORCH_INDEX="${KNOWHUB_TORCH_INDEX_URL:-}"
if [[ -z "$TORCH_INDEX" ]] && ! curl -fsS -o /dev/null --max-time 15 \
    https://download.pytorch.org/whl/cpu/torch/ 2>/dev/null; then
  # PyTorch's index is out of reach: the host's pip configuration may hold the +cpu wheel
  TORCH_INDEX=https://pypi.org/simple
fi
[[ -n "$TORCH_INDEX" ]] && BUILD_ARGS+=(--build-arg "TORCH_INDEX_URL=$TORCH_INDEX")
if [[ "$ENGINE" == podman ]]; then
  # The host's pip configuration (local wheel folders, file:// indexes, a CA bundle), mounted
  # for the build only: nothing mounted with `podman build -v` lands in the image.
  python3 - "$WORK/pip.conf" >"$WORK/mounts" <<'EOF'
import os, subprocess, sys
values = {}
out = subprocess.run(["pip", "config", "list"], capture_output=True, text=True).stdout
for line in out.splitlines():
    key, _, value = line.partition("=")
    name = key.split(".")[-1]
    if name in ("find-links", "extra-index-url", "index-url", "cert", "default-timeout"):
        values[name] = value.strip().strip("'")
paths = set()
for name in ("find-links", "extra-index-url", "index-url", "cert"):
    for item in values.get(name, "").split():
        path = item[len("file://"):] if item.startswith("file://") else item
        if name.endswith("index-url") and os.path.basename(path.rstrip("/")) == "simple":
            path = os.path.dirname(path.rstrip("/"))  # a simple index links to ../files
        if path.startswith("/") and os.path.exists(path):
            paths.add(path)
with open(sys.argv[1], "w") as conf:
    conf.write("[global]\n" + "".join(f"{k} = {v}\n" for k, v in values.items()))
for path in sorted(paths):
    print(f"{path}:{path}:ro")
EOF
  while read -r mount; do MOUNTS+=(-v "$mount"); done <"$WORK/mounts"
  MOUNTS+=(-v "$WORK/pip.conf:/etc/pip.conf:ro")
fi
BUILD_STARTED=$(date -u +%Y-%m-%dT%H:%M:%SZ)
"${BUILD[@]}" "${BUILD_ARGS[@]}" "${MOUNTS[@]}" -f docker/Dockerfile -t "$TAG" . \
  >"$WORK/build.log" 2>&1 || { tail -40 "$WORK/build.log" >&2; fail "docker build"; }
# Each build that changed leaves the previous image and its build stage untagged (~5.7 GB
# here): remove the untagged images older than this build, and keep this build's layers.
$ENGINE image prune -f --filter "until=$BUILD_STARTED" >/dev/null \
  || echo "could not remove the untagged images of earlier builds" >&2
SIZE=$($ENGINE image inspect "$TAG" --format '{{.Size}}')
echo "image $TAG: $((SIZE / 1024 / 1024)) MiB"

# ---- what both modes check with ----------------------------------------------------------
# docker prints the start period in nanoseconds, podman as a Go duration ("4m0s")
START_PERIOD=$(python3 -c '
import re, sys
text = sys.argv[1].strip()
units = {"h": 3600, "m": 60, "s": 1, "ms": 1e-3, "us": 1e-6, "ns": 1e-9}
if text.isdigit():
    print(int(text) // 10**9)
else:
    parts = re.findall(r"([0-9.]+)(h|ms|us|ns|m|s)", text)
    print(int(sum(float(n) * units[u] for n, u in parts)))
' "$($ENGINE image inspect "$TAG" --format '{{.Config.Healthcheck.StartPeriod}}')")
[[ $START_PERIOD -gt 0 ]] || fail "the image has no HEALTHCHECK start period"

healthy() {  # name: the image's own HEALTHCHECK, run by the engine
  if [[ "$ENGINE" == podman ]]; then  # podman runs health checks only through systemd timers
    podman healthcheck run "$1" >/dev/null 2>&1
  else
    [[ "$(docker inspect --format '{{.State.Health.Status}}' "$1")" == healthy ]]
  fi
}

wait_healthy() {  # name
  local deadline=$(($(date +%s) + START_PERIOD))
  until healthy "$1"; do
    [[ "$($ENGINE inspect --format '{{.State.Running}}' "$1")" == true ]] \
      || fail "the container exited: $($ENGINE inspect --format '{{.State.ExitCode}}' "$1")"
    [[ $(date +%s) -lt $deadline ]] || fail "not healthy within the start period (${START_PERIOD} s)"
    sleep 2
  done
}

code() { curl -s -o "$WORK/body" -w '%{http_code}' "$@"; }

if [[ "$MODE" == compose ]]; then
  # shellcheck source=scripts/docker-smoke-compose.sh
  source "$ROOT/scripts/docker-smoke-compose.sh"
  compose_smoke
  exit 0
fi

# ---- one node -----------------------------------------------------------------------------
PORT=$(free_port)
P2P_PORT=$(free_port)
URL="http://127.0.0.1:$PORT"

run_node() {  # name
  $ENGINE run -d --name "$1" -v "$VOLUME:/data" -p "127.0.0.1:$PORT:8700" \
    -p "127.0.0.1:$P2P_PORT:4001" -e KNOWHUB_API_KEYS="$KEY" -e KNOWHUB_LOG_LEVEL=info \
    --stop-timeout 45 "$TAG" >/dev/null 2>>"$WORK/engine.log"
}

step "run one node (volume $VOLUME)"
# podman without systemd says it cannot schedule the health checks (we run them ourselves):
# engine messages go to a log shown only when a step fails.
$ENGINE volume create "$VOLUME" >/dev/null
run_node "$NAME"
step "healthy within the start period (${START_PERIOD} s)"
wait_healthy "$NAME"

step "POST /v1/facts without an API key: 401"
FACT='{"text": "The docker smoke test stored this fact and found it again."}'
got=$(code -X POST "$URL/v1/facts" -H 'content-type: application/json' -d "$FACT")
[[ "$got" == 401 ]] || fail "got $got: $(cat "$WORK/body")"

step "POST /v1/facts with the key: 201"
got=$(code -X POST "$URL/v1/facts" -H 'content-type: application/json' \
  -H "Authorization: Bearer $KEY" -d "$FACT")
[[ "$got" == 201 ]] || fail "got $got: $(cat "$WORK/body")"
CID=$(python3 -c 'import json, sys; print(json.load(open(sys.argv[1]))["cid"])' "$WORK/body")
echo "cid $CID"

step "the query finds the fact"
got=$(code -X POST "$URL/v1/query" -H 'content-type: application/json' \
  -d '{"query": "which fact did the docker smoke test store?", "k": 3}')
[[ "$got" == 200 ]] || fail "got $got: $(cat "$WORK/body")"
grep -q "$CID" "$WORK/body" || fail "$CID not among the hits: $(cat "$WORK/body")"

step "runs as a non-root uid"
UID_IN=$($ENGINE exec "$NAME" id -u)
[[ "$UID_IN" != 0 ]] || fail "the node runs as root"
echo "uid $UID_IN"

step "GET /metrics answers"
got=$(code "$URL/metrics")
[[ "$got" == 200 ]] && grep -q '^knowhub_' "$WORK/body" || fail "got $got"

step "SIGTERM: exit 0 within the stop grace period"
$ENGINE stop -t 45 "$NAME" >/dev/null 2>>"$WORK/engine.log"
EXIT=$($ENGINE inspect --format '{{.State.ExitCode}}' "$NAME")
[[ "$EXIT" == 0 ]] || fail "exit code $EXIT"

step "the fact survives a restart on the same volume"
$ENGINE rm "$NAME" >/dev/null 2>>"$WORK/engine.log"
run_node "$NAME-2"
NAME_BEFORE="$NAME"
NAME="$NAME-2"
wait_healthy "$NAME"
got=$(code "$URL/v1/facts/$CID")
[[ "$got" == 200 ]] || fail "GET /v1/facts/$CID after the restart: $got"
NAME="$NAME_BEFORE"
