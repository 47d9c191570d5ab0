"""A persistent local anvil chain for nodes that have no ``KNOWHUB_CHAIN_RPC``.

The chain's state (accounts, contracts, blocks and receipts) is dumped to the data directory
every second and on exit, and loaded on the next start, so anchors outlive restarts. anvil
runs as a child that receives SIGTERM when the node dies, even by ``kill -9``, so it always
gets to write its state. It listens on a free port of 127.0.0.1: several nodes can run side by
side on one machine.
"""

from __future__ import annotations

import ctypes
import logging
import os
import signal
import socket
import subprocess
import time
from pathlib import Path
from typing import Any

import requests

from node.errors import ChainError

log = logging.getLogger(__name__)

ANVIL_BIN = (
    Path(__file__).parent
    / "tools"
    / "node_modules"
    / "@foundry-rs"
    / "anvil-linux-amd64"
    / "bin"
    / "anvil"
)
LOCAL_CHAIN_ID = 31337
_PR_SET_PDEATHSIG = 1


def _die_with_parent() -> None:  # runs in the child between fork and exec
    libc = ctypes.CDLL("libc.so.6", use_errno=True)
    libc.prctl(_PR_SET_PDEATHSIG, signal.SIGTERM)


def _free_port(host: str) -> int:
    with socket.socket() as sock:
        sock.bind((host, 0))
        return int(sock.getsockname()[1])


class LocalChain:
    def __init__(
        self,
        state_dir: Path,
        *,
        binary: Path | None = None,
        host: str = "127.0.0.1",
        port: int = 0,
        chain_id: int = LOCAL_CHAIN_ID,
    ) -> None:
        self._state_dir = state_dir
        self._binary = binary or ANVIL_BIN
        self._host = host
        self._port = port
        self._chain_id = chain_id
        self._process: subprocess.Popen[bytes] | None = None
        self.rpc_url = ""

    def start(self, timeout: float = 20.0) -> str:
        if not self._binary.exists():
            raise ChainError(
                f"anvil not found at {self._binary}; run scripts/setup.sh (npm install in "
                "contracts/tools) or set KNOWHUB_CHAIN_RPC"
            )
        self._state_dir.mkdir(parents=True, exist_ok=True)
        for _attempt in range(3):  # a free port can be taken between probing and binding
            port = self._port or _free_port(self._host)
            self.rpc_url = f"http://{self._host}:{port}"
            log_file = open(self._state_dir / "anvil.log", "ab")  # noqa: SIM115 - child owns it
            self._process = subprocess.Popen(
                [
                    str(self._binary),
                    "--host",
                    self._host,
                    "--port",
                    str(port),
                    "--chain-id",
                    str(self._chain_id),
                    "--state",
                    str(self._state_dir / "state.json"),
                    "--state-interval",
                    "1",
                ],
                stdout=log_file,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                preexec_fn=_die_with_parent,
            )
            log_file.close()
            if self._wait_ready(timeout):
                log.info("local chain (anvil) at %s, state in %s", self.rpc_url, self._state_dir)
                return self.rpc_url
            self.stop()
        raise ChainError(f"anvil did not start; see {self._state_dir / 'anvil.log'}")

    def _wait_ready(self, timeout: float) -> bool:
        deadline = time.monotonic() + timeout
        body: dict[str, Any] = {"jsonrpc": "2.0", "id": 1, "method": "eth_chainId", "params": []}
        while time.monotonic() < deadline:
            if self._process is None or self._process.poll() is not None:
                return False
            try:
                if requests.post(self.rpc_url, json=body, timeout=1).ok:
                    return True
            except requests.RequestException:
                time.sleep(0.05)
        return False

    def fund(self, address: str, wei: int = 10**24) -> None:
        """Give ``address`` a balance on this dev chain (anvil_setBalance)."""
        body: dict[str, Any] = {
            "jsonrpc": "2.0",
            "id": 1,
            "method": "anvil_setBalance",
            "params": [address, hex(wei)],
        }
        try:
            requests.post(self.rpc_url, json=body, timeout=5).raise_for_status()
        except requests.RequestException as exc:
            raise ChainError(f"cannot fund {address} on the local chain: {exc}") from exc

    def stop(self) -> None:
        """SIGTERM, so anvil writes its state, then wait."""
        process, self._process = self._process, None
        if process is None or process.poll() is not None:
            return
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            log.warning("anvil did not stop in 10 s; killing it")
            process.kill()
            process.wait()

    @property
    def pid(self) -> int | None:
        return None if self._process is None else self._process.pid


def registry_file(state_dir: Path) -> Path:
    return state_dir / "registry.txt"


def remember_registry(state_dir: Path, address: str) -> None:
    path = registry_file(state_dir)
    tmp = path.with_suffix(".tmp")
    tmp.write_text(address + "\n")
    os.replace(tmp, path)


# Account 0 of anvil's (and Hardhat's) default test mnemonic: public knowledge, funded on every
# fresh dev chain, never to be used on a real one. Deploying the registry from it as its first
# transaction puts the registry at a fixed address, which a compose file can name in advance.
DEV_DEPLOYER_KEY = "ac0974bec39a17e36ba4a6b4d238ff944bacb478cbed5efcae784d7bf4f2ff80"


def create_address(sender: str, nonce: int) -> str:
    """The address of the contract ``sender`` creates with transaction number ``nonce``."""
    import rlp
    from eth_hash.auto import keccak
    from eth_utils.address import to_checksum_address

    return str(to_checksum_address(keccak(rlp.encode([bytes.fromhex(sender[2:]), nonce]))[12:]))


def _dev_rpc(rpc_url: str, method: str, *params: object) -> Any:
    body = {"jsonrpc": "2.0", "id": 1, "method": method, "params": list(params)}
    try:
        reply = requests.post(rpc_url, json=body, timeout=10)
        reply.raise_for_status()
        data = reply.json()
    except (requests.RequestException, ValueError) as exc:
        raise ChainError(f"{method} on {rpc_url} failed: {exc}") from exc
    if "error" in data:
        raise ChainError(f"{method} on {rpc_url}: {data['error'].get('message', data['error'])}")
    return data["result"]


def fund_dev_account(rpc_url: str, address: str, wei: int = 10**22) -> None:
    """Top ``address`` up to ``wei`` with ``anvil_setBalance`` (dev chains only)."""
    if int(_dev_rpc(rpc_url, "eth_getBalance", address, "latest"), 16) < wei // 2:
        _dev_rpc(rpc_url, "anvil_setBalance", address, hex(wei))


def ensure_dev_registry(rpc_url: str) -> str:
    """The registry at the dev deployer's first-contract address, deployed if not there yet."""
    from contracts.registry import deploy_registry
    from node.signing import SigningKey

    deployer = SigningKey(bytes.fromhex(DEV_DEPLOYER_KEY))
    expected = create_address(deployer.address, 0)
    if _dev_rpc(rpc_url, "eth_getCode", expected, "latest") not in ("0x", "0x0"):
        return expected
    nonce = int(_dev_rpc(rpc_url, "eth_getTransactionCount", deployer.address, "latest"), 16)
    if nonce != 0:
        raise ChainError(
            f"the dev deployer {deployer.address} has already sent {nonce} transactions and "
            f"{expected} holds no contract: this is not a fresh dev chain; deploy with "
            "`knowhub chain deploy` and set KNOWHUB_REGISTRY_ADDRESS"
        )
    fund_dev_account(rpc_url, deployer.address)
    address = deploy_registry(rpc_url, deployer)
    if address != expected:
        raise ChainError(f"registry deployed at {address}, expected {expected}")
    return address
