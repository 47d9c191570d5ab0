"""KnowledgeRegistry: the committed artifact matches the source (real solc-js), the Python
Merkle trees equal OpenZeppelin's StandardMerkleTree, and the contract verifies facts on a
real anvil chain."""

from __future__ import annotations

import json
import random
import subprocess
import sys
import time
from collections.abc import Iterator
from typing import Any

import pytest
from multiformats import CID
from web3 import Web3
from web3.exceptions import ContractCustomError

from node.facts import make_fact
from node.merkle import build_tree, verify_proof
from node.settings import Settings
from tests.conftest import ROOT
from tests.helpers import free_port

TOOLS = ROOT / "contracts" / "tools"
ARTIFACT = json.loads((ROOT / "contracts" / "KnowledgeRegistry.json").read_text())


def test_committed_artifact_matches_the_source() -> None:
    result = subprocess.run(
        [sys.executable, "scripts/build_contracts.py", "--check"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=180,
    )
    assert result.returncode == 0, result.stderr
    assert ARTIFACT["evmVersion"] == "cancun"
    assert ARTIFACT["compiler"].startswith("0.8.37")


def record_cids(n: int, seed: int) -> list[bytes]:
    rng = random.Random(seed)
    return [bytes(CID.decode(make_fact(f"fact {seed}-{i}-{rng.random()}").cid)) for i in range(n)]


@pytest.mark.parametrize("n", [1, 2, 3, 7, 16, 33])
def test_merkle_tree_equals_openzeppelin(n: int) -> None:
    cids = record_cids(n, n)
    reference = json.loads(
        subprocess.run(
            ["node", str(TOOLS / "oz-merkle.mjs")],
            input=json.dumps(["0x" + c.hex() for c in cids]),
            cwd=TOOLS,
            capture_output=True,
            text=True,
            check=True,
            timeout=60,
        ).stdout
    )
    tree = build_tree(cids)
    assert "0x" + tree.root.hex() == reference["root"]
    for cid in cids:
        assert ["0x" + p.hex() for p in tree.proof(cid)] == reference["proofs"]["0x" + cid.hex()]
        assert verify_proof(cid, tree.proof(cid), tree.root)


@pytest.fixture(scope="module")
def chain() -> Iterator[Web3]:
    port = free_port()
    anvil = subprocess.Popen(
        [
            str(TOOLS / "node_modules" / "@foundry-rs" / "anvil-linux-amd64" / "bin" / "anvil"),
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
            "--chain-id",
            "31337",
            "--silent",
        ]
    )
    w3 = Web3(Web3.HTTPProvider(f"http://127.0.0.1:{port}"))
    deadline = time.monotonic() + 30
    while not w3.is_connected():
        assert time.monotonic() < deadline, "anvil did not start"
        time.sleep(0.1)
    yield w3
    anvil.terminate()
    anvil.wait(timeout=10)


@pytest.fixture(scope="module")
def registry(chain: Web3) -> Any:
    factory = chain.eth.contract(abi=ARTIFACT["abi"], bytecode=ARTIFACT["bytecode"])
    tx = factory.constructor().transact({"from": chain.eth.accounts[0]})
    address = chain.eth.wait_for_transaction_receipt(tx)["contractAddress"]
    return chain.eth.contract(address=address, abi=ARTIFACT["abi"])


def test_anchor_and_verify_on_chain(chain: Web3, registry: Any) -> None:
    cids = record_cids(10, 99)
    tree = build_tree(cids)
    sender = list(chain.eth.accounts)[1]
    tx = registry.functions.anchor(tree.root, "bafyreimanifest", len(cids)).transact(
        {"from": sender}
    )
    receipt = chain.eth.wait_for_transaction_receipt(tx)
    (event,) = registry.events.Anchored().process_receipt(receipt)
    assert event.args.root == tree.root
    assert event.args.submitter == sender
    assert event.args.manifestCid == "bafyreimanifest"
    assert event.args.count == 10
    record = registry.functions.getAnchor(tree.root).call()
    assert record[0] == sender
    assert record[1] == receipt["blockNumber"]
    assert record[2] == chain.eth.get_block(receipt["blockNumber"])["timestamp"]
    assert len(record) == 3  # manifest CID and count live in the event only (one slot per root)
    for cid in cids:
        assert registry.functions.verifyFact(cid, tree.proof(cid), tree.root).call()
    proof = tree.proof(cids[0])
    tampered = [bytes([proof[0][0] ^ 1]) + proof[0][1:], *proof[1:]]
    assert not registry.functions.verifyFact(cids[0], tampered, tree.root).call()
    assert not registry.functions.verifyFact(cids[0][:-1] + b"\x00", proof, tree.root).call()
    other = build_tree(record_cids(3, 7))  # a valid proof against a root nobody anchored
    some = record_cids(3, 7)[0]
    assert not registry.functions.verifyFact(some, other.proof(some), other.root).call()


def test_anchoring_a_root_twice_or_empty_reverts(chain: Web3, registry: Any) -> None:
    tree = build_tree(record_cids(2, 5))
    sender = chain.eth.accounts[0]
    chain.eth.wait_for_transaction_receipt(
        registry.functions.anchor(tree.root, "m", 2).transact({"from": sender})
    )
    with pytest.raises(ContractCustomError):
        registry.functions.anchor(tree.root, "m", 2).transact({"from": sender})
    with pytest.raises(ContractCustomError):
        registry.functions.anchor(build_tree(record_cids(1, 6)).root, "m", 0).transact(
            {"from": sender}
        )


def test_an_anchor_of_the_default_batch_costs_at_most_300_gas_per_record(
    chain: Web3, registry: Any
) -> None:
    """One storage slot per root; the manifest CID rides in the event (issue 18's budget)."""
    size = Settings.model_fields["anchor_batch_size"].default
    tree = build_tree(record_cids(size, 300))
    manifest = "bafyreigdyrzt5sfp7udm7hu76uh7y26nf3efuylqabf3oclgtqy55fbzdi"  # a CIDv1 length
    tx = registry.functions.anchor(tree.root, manifest, size).transact(
        {"from": chain.eth.accounts[0]}
    )
    gas = chain.eth.wait_for_transaction_receipt(tx)["gasUsed"]
    assert gas / size <= 300, f"{gas} gas for {size} records"
