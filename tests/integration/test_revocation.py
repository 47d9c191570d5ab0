"""Revocation across real node processes on 127.0.0.1 (issue 17): a tombstone made with the CLI
at node 1 erases the fact at node 3 through node 2; a node that was down catches up; a stale
peer, a CAR snapshot and a chain rebuild cannot bring the fact back; a tombstone signed by
someone else is rejected at the first node and its sender penalised."""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from node.signing import SigningKey, write_key_file
from node.tombstone import make_tombstone
from p2p.wire import RawRecord, encode_envelope
from tests.conftest import ROOT
from tests.helpers import NodeProcess, knowhub
from tests.p2p_nodes import address, p2p, running_line, start, wait_until

pytestmark = [pytest.mark.integration, pytest.mark.slow]

ALICE = SigningKey.generate()
MALLORY = SigningKey.generate()


@pytest.fixture(scope="module")
def keys(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("keys") / "alice.key"
    write_key_file(path, ALICE)
    return path


@pytest.fixture(scope="module")
def line(tmp_path_factory: pytest.TempPathFactory) -> Iterator[list[NodeProcess]]:
    yield from running_line(tmp_path_factory.mktemp("revocation-line"))


def status(node: NodeProcess, path: str) -> int:
    return httpx.get(f"{node.url}{path}", timeout=30).status_code


def found(node: NodeProcess, text: str, cid: str) -> bool:
    for mode in ("keyword", "dense", "hybrid"):
        body = {"query": text, "k": 10, "mode": mode}
        hits = httpx.post(f"{node.url}/v1/query", json=body, timeout=60).json()["results"]
        if cid in [h["cid"] for h in hits]:
            return True
    return False


def add_signed(node: NodeProcess, keyfile: Path, text: str) -> str:
    done = knowhub("add", text, "--key", str(keyfile), "--url", node.url)
    assert done.returncode == 0, done.stderr
    return done.stdout.split()[0]


def revoke(node: NodeProcess, keyfile: Path, cid: str) -> str:
    done = knowhub("revoke", cid, "--key", str(keyfile), "--reason", "wrong", "--url", node.url)
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith(f"{cid} revoked by tombstone "), done.stdout
    return done.stdout.split()[4]


def gone(node: NodeProcess, cid: str, tombstone: str) -> bool:
    reply = httpx.get(f"{node.url}/v1/facts/{cid}", timeout=30)
    return reply.status_code == 410 and reply.json()["error"]["tombstone"] == tombstone


def test_a_revocation_at_node_1_erases_the_fact_at_node_3(
    line: list[NodeProcess], keys: Path
) -> None:
    n1, _n2, n3 = line
    text = "The Great Wall of China is visible from the Moon with the naked eye."
    cid = add_signed(n1, keys, text)
    wait_until(lambda: status(n3, f"/v1/facts/{cid}") == 200, what="the fact at node 3")
    assert found(n3, text, cid)
    tombstone = revoke(n1, keys, cid)
    took = wait_until(lambda: gone(n3, cid, tombstone), timeout=60, what="the revocation at n3")
    assert not found(n3, text, cid) and not found(n1, text, cid)
    assert status(n3, f"/ipfs/{cid}?format=raw") == 410
    assert status(n3, f"/ipfs/{tombstone}?format=raw") == 200
    for node in line:
        counts = httpx.get(f"{node.url}/v1/status").json()["revocations"]
        assert counts["tombstones"] >= 1 and counts["erased"] >= 1
    # digests agree again: every node holds the tombstone and none the fact
    wait_until(
        lambda: len({p2p(n)["fact_set_digest"] for n in line}) == 1, what="equal record sets"
    )
    print(f"revocation reached node 3 in {took:.2f} s")


def test_a_node_that_was_down_catches_up_and_never_serves_the_fact(
    line: list[NodeProcess], keys: Path
) -> None:
    n1, n2, n3 = line
    text = "Lightning never strikes the same place twice."
    cid = add_signed(n1, keys, text)
    wait_until(lambda: status(n3, f"/v1/facts/{cid}") == 200, what="the fact at node 3")
    n3.stop()
    tombstone = revoke(n1, keys, cid)
    wait_until(lambda: gone(n2, cid, tombstone), what="the revocation at node 2")
    line[2] = n3 = NodeProcess(n3.data_dir, env=n3.env).start()
    wait_until(lambda: gone(n3, cid, tombstone), timeout=120, what="node 3 to catch up")
    assert not found(n3, text, cid)


def test_stale_copies_cannot_bring_a_revoked_fact_back(
    line: list[NodeProcess], keys: Path, tmp_path: Path
) -> None:
    n1, _n2, n3 = line
    text = "Goldfish have a three-second memory."
    # an isolated node holds the fact and never hears of the revocation
    stale = start(tmp_path / "stale")
    try:
        cid = add_signed(stale, keys, text)
        snapshot = tmp_path / "before.car"
        exported = knowhub("export", str(snapshot), "--url", stale.url, "--no-progress")
        assert exported.returncode == 0, exported.stderr
        cid_at_n1 = add_signed(n1, keys, text)
        assert cid_at_n1 == cid
        tombstone = revoke(n1, keys, cid)
        wait_until(lambda: gone(n3, cid, tombstone), what="the revocation at node 3")
        # a CAR snapshot taken before the revocation: the fact is refused, the rest stays
        imported = knowhub("import-car", str(snapshot), "--url", n1.url, "--no-progress")
        assert imported.returncode == 0, imported.stderr
        assert "refused 1" in imported.stdout, imported.stdout
        assert gone(n1, cid, tombstone)
        # gossip and sync from a peer that still has it: refused, and that peer is not
        # penalised (it is behind, not lying); it learns of the tombstone and erases the fact
        rejected = p2p(n1)["messages_rejected"]
        httpx.post(f"{n1.url}/v1/peers", json={"address": address(stale)}, timeout=60)
        wait_until(lambda: gone(stale, cid, tombstone), timeout=120, what="the stale node")
        assert gone(n1, cid, tombstone) and not found(n1, text, cid)
        assert p2p(n1)["messages_rejected"] == rejected
    finally:
        stale.stop()


def test_a_tombstone_by_anyone_else_is_rejected_and_its_sender_penalised(
    line: list[NodeProcess], keys: Path, tmp_path: Path
) -> None:
    n1, n2, n3 = line
    text = "Alice's fact that Mallory would like to erase."
    cid = add_signed(n1, keys, text)
    wait_until(lambda: status(n2, f"/v1/facts/{cid}") == 200, what="the fact at node 2")
    forged = make_tombstone(cid, MALLORY.address, "mine now")
    envelope = encode_envelope(
        [RawRecord(forged.block, bytes.fromhex(MALLORY.sign_cid(forged.cid)[2:]))]
    )
    messages = tmp_path / "messages.json"
    messages.write_text(json.dumps({"forged_tombstone": envelope.hex()}))
    before = [p2p(n)["messages_rejected"] for n in line]
    out = tmp_path / "report.json"
    subprocess.run(
        [sys.executable, "-m", "tests.p2p_peer", address(n2), str(out), str(messages)],
        cwd=ROOT,
        check=True,
        timeout=120,
        capture_output=True,
    )
    wait_until(lambda: p2p(n2)["messages_rejected"] > before[1], timeout=30, what="the rejection")
    offenders = [
        p for p in httpx.get(f"{n2.url}/v1/peers").json()["peers"] if p["rejected_messages"]
    ]
    assert any(p["rejected_messages"] >= 1 for p in offenders)
    # dropped at node 2, never forwarded; the fact stands everywhere
    assert p2p(n1)["messages_rejected"] == before[0]
    assert p2p(n3)["messages_rejected"] == before[2]
    for node in line:
        assert status(node, f"/v1/facts/{cid}") == 200
        assert status(node, f"/v1/facts/{forged.cid}/provenance") == 404


def test_a_chain_rebuild_does_not_bring_a_revoked_fact_back(keys: Path, tmp_path: Path) -> None:
    from tests.integration.test_provenance import Chain

    chain = Chain(tmp_path)
    try:
        a = NodeProcess(tmp_path / "a", env=chain.env(KNOWHUB_SYNC_INTERVAL="3600")).start()
        try:
            text = "Bulls are enraged by the colour red."
            cid = add_signed(a, keys, text)
            others = [
                add_signed(a, keys, f"An anchored fact that stays, number {i}.") for i in range(3)
            ]

            def settled() -> bool:
                c = httpx.get(f"{a.url}/v1/status").json()["chain"]
                return bool(c["anchor_queue"] == 0 and c["open_batches"] == 0)

            wait_until(settled, what="the facts to be anchored")
            tombstone = revoke(a, keys, cid)
            wait_until(settled, what="the tombstone to be anchored")
            events = len(chain.anchored_events())
            assert events >= 2
            # "revoked since" is provable: the tombstone is anchored like a fact, and verifies
            prov = httpx.get(f"{a.url}/v1/facts/{tombstone}/provenance").json()
            assert prov["status"] == "anchored" and prov["record"]["kind"] == "tombstone"
            verified = knowhub(
                "verify", tombstone, "--node", a.url, "--rpc", chain.anvil.url,
                "--registry", chain.registry,
            )  # fmt: skip
            assert verified.returncode == 0, verified.stdout + verified.stderr
            # a new node rebuilds from the chain (the first batch lists the fact) and node A
            b = chain.joining_node(tmp_path / "b", address(a))
            try:
                wait_until(
                    lambda: (
                        httpx.get(f"{b.url}/v1/status").json()["chain"]["verified_batches"]
                        >= events
                    ),
                    timeout=120,
                    what="node B to check every anchored batch",
                )
                assert gone(b, cid, tombstone) and not found(b, text, cid)
                for other in others:
                    assert status(b, f"/v1/facts/{other}") == 200
                assert p2p(b)["fact_set_digest"] == p2p(a)["fact_set_digest"]
            finally:
                b.stop()
        finally:
            a.stop()
    finally:
        chain.anvil.stop()


def test_a_superseded_fact_drops_out_of_default_search_everywhere(
    line: list[NodeProcess], keys: Path
) -> None:
    n1, _n2, n3 = line
    old_text = "The tallest mountain on Earth is K2."
    old = add_signed(n1, keys, old_text)
    new_text = "The tallest mountain on Earth is Mount Everest, not K2."
    done = knowhub("add", new_text, "--key", str(keys), "--supersedes", old, "--url", n1.url)
    assert done.returncode == 0, done.stderr
    new = done.stdout.split()[0]
    wait_until(lambda: status(n3, f"/v1/facts/{new}") == 200, what="the correction at node 3")
    wait_until(lambda: status(n3, f"/v1/facts/{old}") == 200, what="the old fact at node 3")
    assert httpx.get(f"{n3.url}/v1/facts/{old}").json()["superseded_by"] == new
    assert not found(n3, old_text, old) and found(n3, new_text, new)
    body = {"query": old_text, "k": 10, "mode": "keyword", "include_superseded": True}
    hits = httpx.post(f"{n3.url}/v1/query", json=body, timeout=60).json()["results"]
    assert {h["cid"]: h.get("superseded_by") for h in hits if h["cid"] in (old, new)} == {
        old: new,
        new: None,
    }
