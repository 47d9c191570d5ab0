"""Run a local knowhub network: N node processes on 127.0.0.1 sharing one anvil chain.

    .venv/bin/python scripts/network.py [--nodes 3] [--topology line|star|mesh] [--dir .network]
                                        [--rest-port 8701] [--smoke]

Starts anvil (state in DIR/anvil-state.json), deploys the KnowledgeRegistry, gives every node
its own funded operator key and a fixed libp2p identity (so bootstrap addresses are known
before any node starts), starts the nodes in parallel with KNOWHUB_BOOTSTRAP set by topology
(line: each node dials the previous one; star: every node dials node 1; mesh: every node dials
every earlier one), writes
DIR/network.json (URLs, peer ids, multiaddrs, RPC, registry) and runs until Ctrl-C.
``--smoke`` instead contributes one fact at node 1, waits until the last node returns it for a
query, prints the time and stops everything (exit status 0 on success).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import logging
import os
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from _ports import free_port  # noqa: E402
from libp2p.peer.id import ID  # noqa: E402

from contracts.anvil import ANVIL_BIN  # noqa: E402
from contracts.registry import deploy_registry  # noqa: E402
from node.signing import SigningKey, load_or_create_key  # noqa: E402
from p2p.identity import load_or_create_identity  # noqa: E402

log = logging.getLogger("network")
#: Seconds the smoke test waits for the fact at the last node: generous, a loaded machine (or
#: a CI runner) is slow, and gossip or, failing it, catch-up sync gets it there.
SMOKE_DEADLINE = 180
ANVIL_DEPLOYER = "ac0974bec39a17e36ba4a6b4d238ff944bacb478cbed5efcae784d7bf4f2ff80"


def rpc(url: str, method: str, *params: object) -> Any:
    reply = httpx.post(
        url, json={"jsonrpc": "2.0", "id": 1, "method": method, "params": list(params)}
    ).json()
    if "error" in reply:
        raise RuntimeError(f"{method}: {reply['error']}")
    return reply["result"]


@dataclass
class Member:
    name: str
    data_dir: Path
    rest_port: int
    p2p_port: int
    peer_id: str
    env: dict[str, str] = field(default_factory=dict)
    proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.rest_port}"

    @property
    def address(self) -> str:
        return f"/ip4/127.0.0.1/tcp/{self.p2p_port}/p2p/{self.peer_id}"

    def start(self) -> None:
        log_file = (self.data_dir.parent / f"{self.name}.log").open("ab")
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "api.cli", "node"],
            cwd=ROOT,
            env={**os.environ, **self.env},
            stdout=log_file,
            stderr=subprocess.STDOUT,
        )
        log_file.close()

    def wait_healthy(self, timeout: float = 300) -> None:
        deadline = time.monotonic() + timeout
        while True:
            assert self.proc is not None
            if self.proc.poll() is not None:
                raise RuntimeError(
                    f"{self.name} exited; see {self.data_dir.parent}/{self.name}.log"
                )
            try:
                if httpx.get(f"{self.url}/healthz", timeout=1).status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            if time.monotonic() > deadline:
                raise RuntimeError(f"{self.name} did not become healthy")
            time.sleep(0.2)

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            self.proc.wait(timeout=120)
        self.proc = None


class LocalNetwork:
    """The network as a context manager (used by benchmarks)."""

    def __init__(
        self,
        nodes: int,
        directory: Path,
        *,
        topology: str = "line",
        rest_port: int = 0,
        extra_env: dict[str, str] | None = None,
        member_env: list[dict[str, str]] | None = None,
    ) -> None:
        self.directory = directory
        self.topology = topology
        self.extra_env = extra_env or {}
        #: Environment of each node on top of ``extra_env`` (e.g. the collections it holds).
        self.member_env = member_env or [{} for _ in range(nodes)]
        self.anvil: subprocess.Popen[bytes] | None = None
        self.rpc_url = ""
        self.registry = ""
        self.members = [
            Member(
                name=f"node{i + 1}",
                data_dir=directory / f"node{i + 1}",
                rest_port=(rest_port + i) if rest_port else free_port(),
                p2p_port=free_port(),
                peer_id="",
            )
            for i in range(nodes)
        ]

    def __enter__(self) -> LocalNetwork:
        self.directory.mkdir(parents=True, exist_ok=True)
        self._start_chain()
        for i, member in enumerate(self.members):
            member.data_dir.mkdir(parents=True, exist_ok=True)
            key_pair = load_or_create_identity(member.data_dir / "p2p.key")
            member.peer_id = ID.from_pubkey(key_pair.public_key).to_string()
            operator = load_or_create_key(member.data_dir / "operator.key")
            rpc(self.rpc_url, "anvil_setBalance", operator.address, hex(10**22))
            member.env = {
                "KNOWHUB_DATA_DIR": str(member.data_dir),
                "KNOWHUB_PORT": str(member.rest_port),
                "KNOWHUB_P2P_LISTEN": f"/ip4/127.0.0.1/tcp/{member.p2p_port}",
                "KNOWHUB_CHAIN_RPC": self.rpc_url,
                "KNOWHUB_REGISTRY_ADDRESS": self.registry,
                "KNOWHUB_LOG_LEVEL": "warning",
                **self.extra_env,
                **self.member_env[i],
            }
            if i and self.topology == "mesh":  # every node dials every earlier one
                earlier = ",".join(m.address for m in self.members[:i])
                member.env["KNOWHUB_BOOTSTRAP"] = earlier
            elif i:
                peer = self.members[i - 1] if self.topology == "line" else self.members[0]
                member.env["KNOWHUB_BOOTSTRAP"] = peer.address
        for member in self.members:
            member.start()
        try:
            for member in self.members:
                member.wait_healthy()
        except BaseException:
            self.__exit__(None, None, None)
            raise
        (self.directory / "network.json").write_text(json.dumps(self.describe(), indent=2))
        return self

    def _start_chain(self) -> None:
        port = free_port()
        self.rpc_url = f"http://127.0.0.1:{port}"
        self.anvil = subprocess.Popen(
            [
                str(ANVIL_BIN),
                *("--host", "127.0.0.1", "--port", str(port), "--silent"),
                *("--state", str(self.directory / "anvil-state.json"), "--state-interval", "1"),
            ],
            stdin=subprocess.DEVNULL,
        )
        deadline = time.monotonic() + 30
        while True:
            try:
                rpc(self.rpc_url, "eth_chainId")
                break
            except httpx.HTTPError:
                if time.monotonic() > deadline:
                    raise RuntimeError("anvil did not start") from None
                time.sleep(0.05)
        known = self.directory / "registry.txt"
        if (
            known.exists()
            and rpc(self.rpc_url, "eth_getCode", known.read_text().strip(), "latest") != "0x"
        ):
            self.registry = known.read_text().strip()
        else:
            self.registry = deploy_registry(self.rpc_url, SigningKey(bytes.fromhex(ANVIL_DEPLOYER)))
            known.write_text(self.registry)

    def describe(self) -> dict[str, Any]:
        return {
            "rpc_url": self.rpc_url,
            "registry": self.registry,
            "topology": self.topology,
            "nodes": [
                {"name": m.name, "url": m.url, "peer_id": m.peer_id, "address": m.address}
                for m in self.members
            ],
        }

    def __exit__(self, *exc: object) -> None:
        stop_all(self.members, self.anvil)
        self.anvil = None


def stop_all(members: list[Member], anvil: subprocess.Popen[bytes] | None) -> None:
    """Stop every node gracefully (SIGTERM, in order), then the chain."""
    for member in members:
        try:
            member.stop()
        except Exception:
            log.exception("stopping %s failed", member.name)
    if anvil is not None:
        anvil.terminate()
        anvil.wait(timeout=30)


def smoke(members: list[Member], headers: dict[str, str] | None = None) -> float:
    """Contribute a fact at the first node; seconds until the last one returns it."""
    first, last = members[0], members[-1]
    text = f"Smoke test fact written at {time.time()}."
    started = time.monotonic()
    reply = httpx.post(f"{first.url}/v1/facts", json={"text": text}, headers=headers, timeout=60)
    reply.raise_for_status()
    cid = reply.json()["cid"]
    while True:
        hits = httpx.post(f"{last.url}/v1/query", json={"query": text, "k": 1}).json()["results"]
        if hits and hits[0]["cid"] == cid:
            return time.monotonic() - started
        if time.monotonic() - started > SMOKE_DEADLINE:
            raise RuntimeError(f"the fact did not reach the last node in {SMOKE_DEADLINE} s")
        time.sleep(0.02)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--nodes", type=int, default=3)
    parser.add_argument("--topology", choices=["line", "star", "mesh"], default="line")
    parser.add_argument("--dir", type=Path, default=ROOT / ".network")
    parser.add_argument("--rest-port", type=int, default=8701, help="first REST port (0: any)")
    parser.add_argument("--smoke", action="store_true", help="check propagation, then stop")
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    logging.getLogger("httpx").setLevel(logging.WARNING)
    with LocalNetwork(
        args.nodes, args.dir, topology=args.topology, rest_port=args.rest_port
    ) as net:
        for node in net.describe()["nodes"]:
            log.info("%s  %s  %s", node["name"], node["url"], node["address"])
        log.info("chain %s, registry %s; details in %s", net.rpc_url, net.registry, args.dir)
        if args.smoke:
            seconds = smoke(net.members)
            log.info("fact from node1 searchable at node%d after %.3f s", args.nodes, seconds)
            return 0
        with contextlib.suppress(KeyboardInterrupt):
            signal.pause()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
