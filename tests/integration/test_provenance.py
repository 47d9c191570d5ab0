"""Provenance against real node processes and a real anvil chain: signed and unsigned
contributions, anchoring in batches, on-chain verification, `knowhub verify`, a crash between
sending a transaction and its receipt, and a chain that goes away and comes back."""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from multiformats import CID
from web3 import Web3

from contracts.registry import ANCHORED_TOPIC, load_artifact
from node.facts import make_fact
from node.signing import SigningKey, write_key_file
from tests.helpers import ANVIL_KEYS, Anvil, NodeProcess, knowhub

ALICE = SigningKey(bytes.fromhex(ANVIL_KEYS[1][2:]))
MALLORY = SigningKey.generate()


def wait_until(check: Callable[[], bool], timeout: float = 60.0, what: str = "condition") -> None:
    deadline = time.monotonic() + timeout
    while not check():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.2)


def signed(key: SigningKey, text: str, contributor: str | None = None) -> dict[str, Any]:
    who = contributor or key.address
    return {
        "text": text,
        "contributor": who,
        "signature": key.sign_cid(make_fact(text, None, who).cid),
    }


def status(node: NodeProcess) -> dict[str, Any]:
    result: dict[str, Any] = httpx.get(f"{node.url}/v1/status", timeout=30).json()
    return result


def provenance(node: NodeProcess, cid: str) -> dict[str, Any]:
    result: dict[str, Any] = httpx.get(f"{node.url}/v1/facts/{cid}/provenance", timeout=30).json()
    return result


def all_anchored(node: NodeProcess, cids: list[str]) -> bool:
    return all(provenance(node, c)["status"] == "anchored" for c in cids)


# -- signatures (the shared node, on its own local anvil) -------------------------------------


def test_unsigned_fact_is_signed_by_the_operator(node: NodeProcess) -> None:
    operator = status(node)["operator"]
    created = httpx.post(f"{node.url}/v1/facts", json={"text": "Operators sign unsigned facts."})
    assert created.status_code == 201, created.text
    cid = created.json()["cid"]
    assert cid == make_fact("Operators sign unsigned facts.", None, operator).cid
    prov = provenance(node, cid)
    assert prov["contributor"] == operator and prov["signature_valid"] is True
    assert prov["status"] in {"pending", "anchored"}


@pytest.mark.parametrize(
    ("body", "status_code", "code"),
    [
        (signed(MALLORY, "Forged fact.", contributor=ALICE.address), 401, "signature_mismatch"),
        (
            signed(ALICE, "Wrong contributor.") | {"contributor": MALLORY.address},
            401,
            "signature_mismatch",
        ),
        ({"text": "No signature.", "contributor": ALICE.address}, 401, "signature_required"),
        (signed(ALICE, "Short sig.") | {"signature": "0x1234"}, 400, "invalid_signature"),
        ({"text": "Sig only.", "signature": "0x" + "11" * 65}, 400, "invalid_signature"),
        (
            signed(ALICE, "Lower-case.") | {"contributor": ALICE.address.lower()},
            400,
            "invalid_fact",
        ),
    ],
)
def test_bad_signatures_are_refused_and_nothing_is_stored(
    node: NodeProcess, body: dict[str, Any], status_code: int, code: str
) -> None:
    response = httpx.post(f"{node.url}/v1/facts", json=body)
    assert response.status_code == status_code, response.text
    assert response.json()["error"]["code"] == code
    for who in {ALICE.address, MALLORY.address}:
        cid = make_fact(body["text"], None, who).cid
        assert httpx.get(f"{node.url}/v1/facts/{cid}").status_code == 404


def test_signed_fact_keeps_its_contributor(node: NodeProcess) -> None:
    body = signed(ALICE, "Alice signed this fact.")
    response = httpx.post(f"{node.url}/v1/facts", json=body)
    assert response.status_code == 201, response.text
    got = httpx.get(f"{node.url}/v1/facts/{response.json()['cid']}").json()
    assert got["record"]["contributor"] == ALICE.address
    assert got["signature"] == body["signature"]
    batch = httpx.post(
        f"{node.url}/v1/facts/batch",
        json={"facts": [signed(ALICE, "Batch signed."), signed(MALLORY, "x", ALICE.address)]},
    ).json()
    assert [r["status"] for r in batch["results"]] == ["created", "error"]
    assert batch["results"][1]["error"]["code"] == "signature_mismatch"


def test_cli_signs_with_a_key_file(node: NodeProcess, tmp_path: Path) -> None:
    key_file = tmp_path / "alice.key"
    made = knowhub("keys", "new", "--out", str(key_file))
    assert made.returncode == 0, made.stderr
    address = made.stdout.split()[0]
    assert key_file.stat().st_mode & 0o777 == 0o600
    again = knowhub("keys", "new", "--out", str(key_file))
    assert again.returncode == 1 and "not overwriting" in again.stderr
    added = knowhub("add", "Signed on the client side.", "--key", str(key_file), "--url", node.url)
    assert added.returncode == 0, added.stderr
    cid = added.stdout.split()[0]
    prov = provenance(node, cid)
    assert prov["contributor"] == address and prov["signature_valid"] is True


# -- anchoring on an external chain ------------------------------------------------------------


class Chain:
    """An anvil chain with a registry deployed by `knowhub chain deploy`, and an operator key."""

    def __init__(self, tmp: Path, state: Path | None = None) -> None:
        self.anvil = Anvil(state=state).start()
        self.deployer = tmp / "deployer.key"
        write_key_file(self.deployer, SigningKey(bytes.fromhex(ANVIL_KEYS[0][2:])))
        result = knowhub("chain", "deploy", "--rpc", self.anvil.url, "--key", str(self.deployer))
        assert result.returncode == 0, result.stderr
        self.registry = result.stdout.strip()
        self.operator = SigningKey.generate()
        self.key_file = tmp / "operator.key"
        write_key_file(self.key_file, self.operator)
        self.anvil.rpc("anvil_setBalance", self.operator.address, hex(10**21))
        self.w3 = Web3(Web3.HTTPProvider(self.anvil.url))
        self.address = Web3.to_checksum_address(self.registry)
        self.operator_address = Web3.to_checksum_address(self.operator.address)
        self.contract = self.w3.eth.contract(address=self.address, abi=load_artifact()["abi"])

    def env(self, **extra: str) -> dict[str, str]:
        return {
            "KNOWHUB_CHAIN_RPC": self.anvil.url,
            "KNOWHUB_REGISTRY_ADDRESS": self.registry,
            "KNOWHUB_KEY_FILE": str(self.key_file),
            "KNOWHUB_ANCHOR_BATCH_SIZE": "16",
            "KNOWHUB_ANCHOR_BATCH_AGE": "1",
            **extra,
        }

    def joining_node(self, data_dir: Path, bootstrap: str) -> NodeProcess:
        """A second node on this chain, with its own funded operator key, bootstrapped to one
        peer and syncing only on connect: it rebuilds from the chain and that peer."""
        key_file = data_dir.parent / f"{data_dir.name}.key"
        operator = SigningKey.generate()
        write_key_file(key_file, operator)
        self.anvil.rpc("anvil_setBalance", operator.address, hex(10**21))
        env = self.env(KNOWHUB_KEY_FILE=str(key_file), KNOWHUB_SYNC_INTERVAL="3600")
        env["KNOWHUB_BOOTSTRAP"] = bootstrap
        return NodeProcess(data_dir, env=env).start()

    def anchored_events(self) -> list[Any]:
        return list(
            self.w3.eth.get_logs(
                {"address": self.address, "fromBlock": 0, "topics": [ANCHORED_TOPIC]}
            )
        )

    def operator_nonce(self) -> int:
        return int(self.w3.eth.get_transaction_count(self.operator_address, "latest"))


@pytest.fixture
def chain(tmp_path: Path) -> Iterator[Chain]:
    c = Chain(tmp_path, state=tmp_path / "anvil-state.json")
    yield c
    c.anvil.stop()


def test_batches_are_anchored_and_verify_on_chain(chain: Chain, tmp_path: Path) -> None:
    node = NodeProcess(tmp_path / "data", env=chain.env()).start()
    try:
        texts = [f"Anchored fact number {i} about rivers." for i in range(40)]
        result = httpx.post(
            f"{node.url}/v1/facts/batch", json={"facts": [{"text": t} for t in texts]}, timeout=60
        ).json()
        cids = [r["cid"] for r in result["results"]]
        wait_until(lambda: all_anchored(node, cids), what="anchoring")
        events = chain.anchored_events()
        assert len(events) == 3  # 16 + 16 + 8 facts: three roots, three transactions
        roots = set()
        for cid in cids:
            prov = provenance(node, cid)
            assert prov["signature_valid"] and prov["registry"] == chain.registry
            root = bytes.fromhex(prov["root"][2:])
            proof = [bytes.fromhex(p[2:]) for p in prov["proof"]]
            cid_bytes = bytes(CID.decode(cid))
            # asked of the contract directly, not through the node
            assert chain.contract.functions.verifyFact(cid_bytes, proof, root).call()
            tampered = [bytes([proof[0][0] ^ 1]) + proof[0][1:], *proof[1:]]
            assert not chain.contract.functions.verifyFact(cid_bytes, tampered, root).call()
            record = chain.contract.functions.getAnchor(root).call()
            assert record[0] == chain.operator.address and record[1] == prov["block_number"]
            receipt = chain.w3.eth.get_transaction_receipt(prov["tx_hash"])
            assert receipt["blockNumber"] == prov["block_number"]
            (event,) = chain.contract.events.Anchored().process_receipt(receipt)
            assert event.args.root == root and event.args.manifestCid == prov["manifest_cid"]
            roots.add(root)
        assert len(roots) == 3
        hits = httpx.post(f"{node.url}/v1/query", json={"query": "rivers", "k": 3}).json()
        assert [h["provenance"]["status"] for h in hits["results"]] == ["anchored"] * 3
        check_verify_command(node, chain, cids[0], tmp_path)
    finally:
        node.stop()


def check_verify_command(node: NodeProcess, chain: Chain, cid: str, tmp_path: Path) -> None:
    ok = knowhub(
        "verify", cid, "--node", node.url, "--rpc", chain.anvil.url, "--registry", chain.registry
    )
    assert ok.returncode == 0, ok.stdout + ok.stderr
    assert "VERIFIED" in ok.stdout
    trusting_node = knowhub("verify", cid, "--node", node.url)  # chain RPC and registry from it
    assert trusting_node.returncode == 0, trusting_node.stdout + trusting_node.stderr
    assert "VERIFIED" in trusting_node.stdout
    assert "chain RPC/registry taken from the node" in trusting_node.stderr
    bundle = provenance(node, cid)
    good = tmp_path / "bundle.json"
    good.write_text(json.dumps(bundle))
    args = ["--rpc", chain.anvil.url, "--registry", chain.registry]
    assert knowhub("verify", str(good), *args).returncode == 0
    other_root = "0x" + "ab" * 32
    tampering: dict[str, dict[str, Any]] = {
        "cid": {"record": {**bundle["record"], "text": "A different text."}},
        "signature": {"signature": MALLORY.sign_cid(cid)},
        "proof": {"proof": ["0x" + "00" * 32, *bundle["proof"][1:]]},
        "anchored": {"root": other_root},
        "manifest": {"manifest_cid": "bafyreigh2akiscaildcqabsyg3dfr6chu3fgpregiymsck7e7aqa4s52zy"},
        "block": {"block_number": bundle["block_number"] + 1},
    }
    for failed_check, change in tampering.items():
        bad = tmp_path / f"bundle-{failed_check}.json"
        bad.write_text(json.dumps({**bundle, **change}))
        result = knowhub("verify", str(bad), *args)
        assert result.returncode == 1, (failed_check, result.stdout)
        assert f"FAIL {failed_check}:" in result.stdout, result.stdout
        assert "NOT VERIFIED" in result.stdout
    missing_chain = knowhub("verify", str(good))
    assert missing_chain.returncode == 2 and "--rpc and --registry" in missing_chain.stderr


def crash_once(chain: Chain, data: Path, env: dict[str, str], lost: bool) -> None:
    chain.anvil.rpc("evm_setAutomine", False)
    node = NodeProcess(data, env=env).start()
    text = f"Crash test fact, transaction lost: {lost}."
    cid = httpx.post(f"{node.url}/v1/facts", json={"text": text}).json()["cid"]
    pending = chain.operator_nonce() + 1
    wait_until(
        lambda: chain.w3.eth.get_transaction_count(chain.operator_address, "pending") == pending,
        what="the anchoring transaction in the mempool",
    )
    node.kill()  # after broadcast, before any receipt
    if lost:
        chain.anvil.rpc("anvil_dropAllTransactions")
        chain.anvil.rpc("evm_setAutomine", True)
    else:
        chain.anvil.rpc("evm_mine")  # mined while the node is down
    before = len(chain.anchored_events())
    node = NodeProcess(data, env=env).start()
    try:
        wait_until(lambda: all_anchored(node, [cid]), what="anchoring after restart")
        time.sleep(1.5)  # room for a wrong second transaction to show up
        root = provenance(node, cid)["root"]
        events = [e for e in chain.anchored_events() if "0x" + e["topics"][1].hex() == root]
        assert len(events) == 1
        assert len(chain.anchored_events()) == before + (1 if lost else 0)
    finally:
        node.stop()
    chain.anvil.rpc("evm_setAutomine", True)


def test_crash_between_send_and_receipt_does_not_double_anchor(
    chain: Chain, tmp_path: Path
) -> None:
    env = chain.env(KNOWHUB_ANCHOR_BATCH_AGE="0.5")
    crash_once(chain, tmp_path / "data", env, lost=False)
    crash_once(chain, tmp_path / "data", env, lost=True)
    assert chain.operator_nonce() == 2  # one transaction per batch, nothing else


def test_chain_down_then_back_anchors_every_queued_fact(chain: Chain, tmp_path: Path) -> None:
    node = NodeProcess(tmp_path / "data", env=chain.env()).start()
    try:
        first = httpx.post(f"{node.url}/v1/facts", json={"text": "Before the outage."}).json()
        wait_until(lambda: all_anchored(node, [first["cid"]]), what="first anchor")
        chain.anvil.stop()  # writes its state; the RPC port is closed now
        texts = [f"Written while the chain is down, number {i}." for i in range(30)]
        result = httpx.post(
            f"{node.url}/v1/facts/batch", json={"facts": [{"text": t} for t in texts]}, timeout=60
        )
        assert result.status_code == 200 and result.json()["created"] == 30
        cids = [r["cid"] for r in result.json()["results"]]
        wait_until(lambda: status(node)["chain"]["error"] is not None, what="chain error")
        assert (
            status(node)["chain"]["anchor_queue"] + 16 * status(node)["chain"]["open_batches"] >= 30
        )
        time.sleep(2)
        chain.anvil.start()  # same port, same state file
        wait_until(lambda: all_anchored(node, cids), timeout=90, what="anchoring after outage")
        assert status(node)["chain"]["error"] is None
        assert len(chain.anchored_events()) == 1 + 2  # 16 + 14 facts after the outage
    finally:
        node.stop()


def test_required_signatures_and_no_chain(tmp_path: Path) -> None:
    env = {"KNOWHUB_REQUIRE_SIGNATURES": "true", "KNOWHUB_LOCAL_CHAIN": "false"}
    node = NodeProcess(tmp_path / "data", env=env).start()
    try:
        refused = httpx.post(f"{node.url}/v1/facts", json={"text": "Unsigned."})
        assert refused.status_code == 401
        assert refused.json()["error"]["code"] == "signature_required"
        accepted = httpx.post(f"{node.url}/v1/facts", json=signed(ALICE, "Signed."))
        assert accepted.status_code == 201
        info = status(node)
        assert info["require_signatures"] is True and info["chain"] is None
        assert provenance(node, accepted.json()["cid"])["status"] == "pending"
    finally:
        node.stop()


def test_local_chain_survives_kill_9(tmp_path: Path) -> None:
    env = {"KNOWHUB_ANCHOR_BATCH_AGE": "0.5"}
    node = NodeProcess(tmp_path / "data", env=env).start()
    cid = httpx.post(f"{node.url}/v1/facts", json={"text": "Local chain fact."}).json()["cid"]
    wait_until(lambda: all_anchored(node, [cid]), what="local anchoring")
    registry = status(node)["chain"]["registry"]
    time.sleep(1.2)  # anvil dumps its state every second (and on SIGTERM, which it gets too)
    node.kill()
    node = NodeProcess(tmp_path / "data", env=env).start()
    try:
        info = status(node)["chain"]
        assert info["registry"] == registry
        result = knowhub("verify", cid, "--node", node.url)
        assert result.returncode == 0, result.stdout + result.stderr
    finally:
        node.stop()
