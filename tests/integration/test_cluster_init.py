"""``knowhub cluster init`` (compose's one-shot init service) against a real anvil."""

from __future__ import annotations

import json
import stat
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.helpers import Anvil, knowhub

pytestmark = pytest.mark.integration
REGISTRY = "0x5FbDB2315678afecb367f032d93F642f64180aa3"
ACCOUNT0 = "0xf39Fd6e51aad88F6F4ce6aB8827279cffFb92266"


@pytest.fixture
def anvil() -> Iterator[Anvil]:
    chain = Anvil().start()
    yield chain
    chain.stop()


def init(tmp_path: Path, anvil: Anvil) -> dict[str, object]:
    result = knowhub(
        "cluster", "init",
        f"--member={tmp_path / 'a'}=/dns4/a/tcp/4001",
        f"--member={tmp_path / 'b'}=/ip4/10.0.0.2/tcp/4001",
        f"--dev-chain={anvil.url}",
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    summary: dict[str, object] = json.loads(result.stdout)
    return summary


def test_init_makes_keys_bootstrap_files_funds_and_deploys_once(
    tmp_path: Path, anvil: Anvil
) -> None:
    first = init(tmp_path, anvil)
    assert first["registry"] == REGISTRY
    assert anvil.rpc("eth_getCode", REGISTRY, "latest") not in ("0x", "0x0")
    members = first["members"]
    assert isinstance(members, list) and len(members) == 2
    a, b = members
    assert a["address"] == f"/dns4/a/tcp/4001/p2p/{a['peer_id']}"
    for member in members:
        folder = Path(member["directory"])
        for name in ("operator.key", "p2p.key"):
            assert stat.S_IMODE((folder / name).stat().st_mode) == 0o600
        lines = [x for x in (folder / "bootstrap").read_text().splitlines() if x[:1] == "/"]
        assert lines == [a["address"], b["address"]]
        balance = int(str(anvil.rpc("eth_getBalance", member["operator"], "latest")), 16)
        assert balance > 10**18
    again = init(tmp_path, anvil)
    assert again == first  # same identities, same registry
    assert anvil.rpc("eth_getTransactionCount", ACCOUNT0, "latest") == "0x1"  # deployed once


def test_init_refuses_a_used_chain_and_bad_members(tmp_path: Path, anvil: Anvil) -> None:
    anvil.rpc("eth_sendTransaction", {"from": ACCOUNT0, "to": ACCOUNT0, "value": "0x1"})
    used = knowhub("cluster", "init", f"--member={tmp_path}/a=/ip4/10.0.0.1/tcp/1",
                   f"--dev-chain={anvil.url}")  # fmt: skip
    assert used.returncode == 1 and "not a fresh dev chain" in used.stderr
    with_id = knowhub("cluster", "init", f"--member={tmp_path}/a=/ip4/10.0.0.1/tcp/1/p2p/12D3")
    assert with_id.returncode == 2 and "without /p2p/" in with_id.stderr
    no_sep = knowhub("cluster", "init", "--member", "just-a-dir")
    assert no_sep.returncode == 2 and "DIR=MULTIADDR" in no_sep.stderr
