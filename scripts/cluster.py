"""Run docker/compose.yml's topology as plain processes on 127.0.0.1 (no Docker engine).

    scripts/cluster [--dir .cluster] [--free-ports] [--ipfs-api URL] [--smoke]

What it runs is read from the Docker files, not restated here:

* the knowhub node services of ``docker/compose.yml`` (image ``knowhub:*``, no command) with
  their ``environment:`` on top of the ``ENV KNOWHUB_*`` defaults of ``docker/Dockerfile``,
  ``${VAR:-default}`` / ``${VAR:?message}`` interpolated from this process's environment;
* the one-shot ``init`` service's ``knowhub cluster init`` command;
* an anvil chain for the ``anvil`` service (the npm anvil binary).

Only what names the container world is rewritten: service host names (``anvil``, ``node1``)
become 127.0.0.1 (``localhost`` in ``/dns4/`` multiaddrs, which the nodes still resolve) and
the ports published in compose.yml (or free ones with ``--free-ports``);
``/data`` and ``/cluster`` become folders under ``--dir``; ``0.0.0.0`` becomes 127.0.0.1.
There is no Kubo binary on this machine: with ``--ipfs-api URL`` every node uses that IPFS RPC
daemon (compose runs one Kubo per node), without it each node keeps its embedded blockstore.
Without ``KNOWHUB_API_KEYS`` in the environment a random key is made (printed and saved in
DIR/cluster.json). The cluster runs until SIGINT / SIGTERM, then stops each node gracefully.
``--smoke`` contributes a fact at the first node, finds it at the last one, and stops.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import logging
import os
import re
import secrets
import shlex
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import httpx
import yaml
from _ports import free_port
from network import Member, rpc, smoke, stop_all

ROOT = Path(__file__).resolve().parent.parent
COMPOSE = ROOT / "docker" / "compose.yml"
DOCKERFILE = ROOT / "docker" / "Dockerfile"
ANVIL_BIN = ROOT / "contracts/tools/node_modules/@foundry-rs/anvil-linux-amd64/bin/anvil"
REST_PORT, P2P_PORT, RPC_PORT = 8700, 4001, 8545
log = logging.getLogger("cluster")
_VAR = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)(?:(:?[-?])([^}]*))?\}")


def dockerfile_env(path: Path = DOCKERFILE) -> dict[str, str]:
    """The ``ENV KNOWHUB_*`` settings of the Dockerfile's last stage."""
    text = re.sub(r"\\\n", " ", path.read_text())
    env: dict[str, str] = {}
    for line in text.splitlines():
        parts = shlex.split(line, comments=True)
        if parts and parts[0].upper() == "FROM":
            env = {}
        elif parts and parts[0].upper() == "ENV":
            for item in parts[1:]:
                key, sep, value = item.partition("=")
                if sep and key.startswith("KNOWHUB_"):
                    env[key] = value
    return env


def interpolate(value: str, environ: dict[str, str]) -> str:
    """Compose's ``${VAR}``, ``${VAR:-default}`` and ``${VAR:?error}``."""

    def one(match: re.Match[str]) -> str:
        name, op, arg = match.group(1), match.group(2) or "", match.group(3) or ""
        have = environ.get(name)
        if op.endswith("-"):
            return have if have else arg
        if op.endswith("?") and not have:
            raise SystemExit(f"cluster: {arg or name + ' is not set'}")
        return have or ""

    return _VAR.sub(one, value)


def load_compose(path: Path = COMPOSE) -> dict[str, Any]:
    data = yaml.safe_load(path.read_text())
    assert isinstance(data, dict)
    return data


def node_services(compose: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {
        name: spec
        for name, spec in sorted(compose["services"].items())
        if str(spec.get("image", "")).startswith("knowhub:") and not spec.get("command")
    }


def published(spec: dict[str, Any], container_port: int) -> int:
    for entry in spec.get("ports", []):
        host, _, inner = str(entry).rpartition(":")
        if int(inner.split("/")[0]) == container_port:
            return int(host.rpartition(":")[2])
    raise SystemExit(f"cluster: no published port for {container_port} in {spec}")


class Cluster:
    def __init__(self, directory: Path, *, free_ports: bool, ipfs_api: str | None) -> None:
        self.directory = directory.resolve()
        self.compose = load_compose()
        self.nodes = node_services(self.compose)
        self.ipfs_api = ipfs_api
        self.environ = dict(os.environ)
        if not self.environ.get("KNOWHUB_API_KEYS"):
            self.environ["KNOWHUB_API_KEYS"] = secrets.token_urlsafe(24)
        anvil_spec = self.compose["services"]["anvil"]
        # service name -> {container port: local port}
        self.ports: dict[str, dict[int, int]] = {
            "anvil": {RPC_PORT: free_port() if free_ports else published(anvil_spec, RPC_PORT)}
        }
        for name, spec in self.nodes.items():
            self.ports[name] = {
                port: free_port() if free_ports else published(spec, port)
                for port in (REST_PORT, P2P_PORT)
            }
        self.anvil: subprocess.Popen[bytes] | None = None
        self.members: list[Member] = []
        self.summary: dict[str, Any] = {}

    # -- translation of the container world ---------------------------------------------------

    def local(self, value: str) -> str:
        """A compose value with container paths, hosts and ports made local."""
        if value.startswith("/cluster/") or value == "/cluster":
            return str(self.directory / "cluster") + value.removeprefix("/cluster")
        parts = urlsplit(value)
        if parts.scheme in {"http", "https"} and parts.hostname in self.ports:
            port = self.ports[parts.hostname].get(parts.port or 80)
            if port is None:
                raise SystemExit(f"cluster: {value} names a port the topology does not publish")
            return urlunsplit(parts._replace(netloc=f"127.0.0.1:{port}"))
        match = re.fullmatch(r"/dns4/([^/]+)/tcp/(\d+)", value)
        if match and match.group(1) in self.ports:
            # still a DNS name, as in compose, so the nodes resolve it the way containers do
            return f"/dns4/localhost/tcp/{self.ports[match.group(1)][int(match.group(2))]}"
        return value

    def node_env(self, name: str) -> dict[str, str]:
        spec = self.nodes[name]
        env = dockerfile_env()
        for key, raw in (spec.get("environment") or {}).items():
            env[key] = interpolate(str(raw), self.environ)
        env = {key: self.local(value) for key, value in env.items()}
        env["KNOWHUB_DATA_DIR"] = str(self.directory / name / "data")
        env["KNOWHUB_HOST"] = "127.0.0.1"
        env["KNOWHUB_PORT"] = str(self.ports[name][REST_PORT])
        env["KNOWHUB_P2P_LISTEN"] = f"/ip4/127.0.0.1/tcp/{self.ports[name][P2P_PORT]}"
        if "KNOWHUB_IPFS_API" in env:
            if self.ipfs_api:
                env["KNOWHUB_IPFS_API"] = self.ipfs_api
            else:
                del env["KNOWHUB_IPFS_API"]  # no Kubo here: the embedded blockstore
        return env

    def init_command(self) -> list[str]:
        spec = self.compose["services"]["init"]
        args: list[str] = []
        for arg in spec["command"]:
            option, sep, value = str(arg).partition("=")
            if option == "--member" and sep:
                directory, _, address = value.partition("=")
                args.append(f"--member={self.local(directory)}={self.local(address)}")
            elif sep:
                args.append(f"{option}={self.local(value)}")
            else:
                args.append(option)
        return [sys.executable, "-m", "api.cli", *args]

    # -- processes ----------------------------------------------------------------------------

    def __enter__(self) -> Cluster:
        self.directory.mkdir(parents=True, exist_ok=True)
        self._start_anvil()
        try:
            init = subprocess.run(
                self.init_command(), cwd=ROOT, capture_output=True, text=True, check=False
            )
            if init.returncode != 0:
                raise SystemExit(f"cluster: init failed: {init.stderr.strip()}")
            self.summary = json.loads(init.stdout)
            for name in self.nodes:
                env = self.node_env(name)
                member = Member(
                    name=name,
                    data_dir=Path(env["KNOWHUB_DATA_DIR"]),
                    rest_port=self.ports[name][REST_PORT],
                    p2p_port=self.ports[name][P2P_PORT],
                    peer_id="",
                    env=env,
                )
                member.data_dir.mkdir(parents=True, exist_ok=True)
                self.members.append(member)
            for member in self.members:
                member.start()
            for member in self.members:
                member.wait_healthy()
        except BaseException:
            self.__exit__()
            raise
        (self.directory / "cluster.json").write_text(json.dumps(self.describe(), indent=2))
        return self

    def _start_anvil(self) -> None:
        port = self.ports["anvil"][RPC_PORT]
        state = self.directory / "anvil"
        state.mkdir(parents=True, exist_ok=True)
        args = [str(ANVIL_BIN), "--host=127.0.0.1", f"--port={port}", "--silent"]
        for arg in self.compose["services"]["anvil"]["command"]:
            option = str(arg).partition("=")[0]
            if option == "--state":
                args.append(f"--state={state / 'anvil-state.json'}")
            elif option not in {"--host", "--port"}:
                args.append(str(arg))
        self.anvil = subprocess.Popen(args, stdin=subprocess.DEVNULL)
        url = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + 30
        while True:
            try:
                rpc(url, "eth_chainId")
                return
            except httpx.HTTPError:
                if time.monotonic() > deadline or self.anvil.poll() is not None:
                    raise SystemExit("cluster: anvil did not start") from None
                time.sleep(0.05)

    def describe(self) -> dict[str, Any]:
        return {
            "api_key": self.environ["KNOWHUB_API_KEYS"].split(",")[0].strip(),
            "chain_rpc": f"http://127.0.0.1:{self.ports['anvil'][RPC_PORT]}",
            "registry": self.summary.get("registry"),
            "nodes": [
                {
                    "name": m.name,
                    "url": m.url,
                    "pid": m.proc.pid if m.proc else None,
                    "log": str(m.data_dir.parent / f"{m.name}.log"),
                    "env": m.env,
                    **peer,
                }
                for m, peer in zip(self.members, self.summary.get("members", []), strict=False)
            ],
        }

    def __exit__(self, *exc: object) -> None:
        stop_all(self.members, self.anvil)
        self.anvil = None


def _interrupt(*_: object) -> None:
    raise KeyboardInterrupt


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--dir", type=Path, default=ROOT / ".cluster")
    parser.add_argument("--free-ports", action="store_true", help="not compose's host ports")
    parser.add_argument("--ipfs-api", help="IPFS RPC URL for every node (default: embedded)")
    parser.add_argument("--smoke", action="store_true", help="check propagation, then stop")
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="cluster: %(message)s")
    logging.getLogger("httpx").setLevel(logging.WARNING)
    signal.signal(signal.SIGTERM, _interrupt)
    with (
        contextlib.suppress(KeyboardInterrupt),
        Cluster(args.dir, free_ports=args.free_ports, ipfs_api=args.ipfs_api) as cluster,
    ):
        info = cluster.describe()
        for node in info["nodes"]:
            log.info("%s  %s  %s", node["name"], node["url"], node["address"])
        log.info("chain %s, registry %s", info["chain_rpc"], info["registry"])
        log.info("API key %s; details in %s", info["api_key"], args.dir / "cluster.json")
        if args.smoke:
            key = info["api_key"]
            seconds = smoke(cluster.members, {"authorization": f"Bearer {key}"})
            log.info(
                "fact from %s found at %s after %.3f s",
                info["nodes"][0]["name"],
                info["nodes"][-1]["name"],
                seconds,
            )
            return 0
        log.info("running; Ctrl-C or SIGTERM stops every node gracefully")
        signal.pause()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
