"""Curation across real node processes on 127.0.0.1 (issue 20): an attestation made with the
CLI at node 1 reaches node 3 through node 2 and changes node 3's ranking; a clique of 50 fresh
keys endorsing each other gains no weight anywhere; an attester that loses the trust roots'
trust keeps its attestations, which then weigh nothing; invalid attestations are rejected at
the first node and their sender penalised like any invalid gossip."""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from node.attestation import make_attestation
from node.signing import SigningKey, write_key_file
from node.tombstone import make_tombstone
from p2p.wire import RawRecord, encode_envelope
from tests.conftest import ROOT
from tests.helpers import NodeProcess, knowhub
from tests.p2p_nodes import address, p2p, running_line, wait_until
from tests.signed_bodies import signed_attestation, signed_fact

pytestmark = [pytest.mark.integration, pytest.mark.slow]

TRUSTED = SigningKey.generate()
ALICE = SigningKey.generate()
MALLORY = SigningKey.generate()


@pytest.fixture(scope="module")
def keys(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    base = tmp_path_factory.mktemp("keys")
    out = {}
    for name, key in (("trusted", TRUSTED), ("alice", ALICE), ("mallory", MALLORY)):
        write_key_file(base / f"{name}.key", key)
        out[name] = base / f"{name}.key"
    return out


@pytest.fixture(scope="module")
def line(tmp_path_factory: pytest.TempPathFactory) -> Iterator[list[NodeProcess]]:
    yield from running_line(
        tmp_path_factory.mktemp("curation-line"),
        extra={"KNOWHUB_TRUST_ROOTS": TRUSTED.address, "KNOWHUB_REPUTATION_INTERVAL": "0.1"},
    )


def add_signed(node: NodeProcess, keyfile: Path, text: str) -> str:
    done = knowhub("add", text, "--key", str(keyfile), "--url", node.url)
    assert done.returncode == 0, done.stderr
    return done.stdout.split()[0]


def contributor(node: NodeProcess, key: SigningKey) -> dict[str, Any]:
    reply = httpx.get(f"{node.url}/v1/contributors/{key.address}", timeout=30)
    assert reply.status_code == 200, reply.text
    out: dict[str, Any] = reply.json()
    return out


def ranked(node: NodeProcess, text: str, rank: str = "reputation") -> list[str]:
    body = {"query": text, "k": 5, "mode": "keyword", "rank": rank}
    reply = httpx.post(f"{node.url}/v1/query", json=body, timeout=60)
    assert reply.status_code == 200, reply.text
    return [h["cid"] for h in reply.json()["results"]]


def has(node: NodeProcess, cid: str) -> bool:
    return httpx.get(f"{node.url}/v1/facts/{cid}", timeout=30).status_code == 200


def attest_rest(node: NodeProcess, key: SigningKey, cid: str, verdict: str, at: int) -> None:
    body, _ = signed_attestation(key, cid, verdict, at)
    reply = httpx.post(f"{node.url}/v1/facts/{cid}/attestations", json=body, timeout=60)
    assert reply.status_code == 201, reply.text


def test_an_endorsement_at_node_1_changes_the_ranking_at_node_3(
    line: list[NodeProcess], keys: dict[str, Path]
) -> None:
    n1, _, n3 = line
    query = "tungsten melting point kelvin"
    planted = add_signed(
        n1, keys["mallory"], "Tungsten melting point kelvin: tungsten melts at 300 kelvin."
    )
    honest = add_signed(n1, keys["alice"], "The melting point of tungsten is 3695 kelvin.")
    wait_until(lambda: has(n3, planted) and has(n3, honest), what="both facts at node 3")
    assert ranked(n3, query)[:2] == [planted, honest]  # nobody trusted yet: relevance order

    done = knowhub("attest", honest, "endorse", "--key", str(keys["trusted"]), "--url", n1.url)
    assert done.returncode == 0, done.stderr
    assert f"{honest} endorsed by {TRUSTED.address}" in done.stdout, done.stdout
    wait_until(lambda: contributor(n3, ALICE)["reputation"] == 1.0, what="trust at node 3")
    assert ranked(n3, query)[:2] == [honest, planted]
    assert ranked(n3, query, rank="relevance")[:2] == [planted, honest]

    shown = knowhub("contributor", ALICE.address, "--url", n3.url)
    assert shown.returncode == 0 and "reputation 1.000" in shown.stdout, shown.stdout
    cli_query = knowhub("query", query, "--mode", "keyword", "-k", "2", "--url", n3.url)
    assert cli_query.returncode == 0, cli_query.stderr
    assert cli_query.stdout.index(honest) < cli_query.stdout.index(planted)
    assert "contributor reputation 1.00, 1 endorsements" in cli_query.stdout

    # a dispute by the trusted key travels too, and the context says so
    done = knowhub(
        "attest", honest, "dispute", "--key", str(keys["trusted"]), "--at", "4102444800",
        "--url", n1.url,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr

    def marked() -> bool:
        body = {"query": query, "k": 5, "mode": "keyword", "min_relevance": -1}
        answer = httpx.post(f"{n3.url}/v1/query", json=body, timeout=60).json()
        return "[DISPUTED by 1 trusted contributor]" in answer["context"]

    wait_until(marked, what="the dispute at node 3")


def test_a_clique_of_fifty_fresh_keys_gains_no_weight(line: list[NodeProcess]) -> None:
    n1, _, n3 = line
    clique = [SigningKey.generate() for _ in range(50)]
    facts = [
        signed_fact(key, f"Clique claim {n}: the Great Wall of China is visible from the Moon.")
        for n, key in enumerate(clique)
    ]
    reply = httpx.post(f"{n1.url}/v1/facts/batch", json={"facts": facts}, timeout=600)
    assert reply.status_code == 200 and reply.json()["failed"] == 0, reply.text
    cids = [item["cid"] for item in reply.json()["results"]]
    for n, key in enumerate(clique):
        for step in (1, 2, 3):
            attest_rest(n1, key, cids[(n + step) % len(cids)], "endorse", 1)
    wait_until(
        lambda: all(contributor(n3, k)["endorsements"] == 3 for k in clique[-3:]),
        timeout=180,
        what="the clique's attestations at node 3",
    )
    for node in (n1, n3):
        views = [contributor(node, key) for key in clique]
        assert all(v["reputation"] == 0.0 and v["trust"] == 0.0 for v in views)
        assert sum(v["endorsements_given"] for v in views) == 150


def test_an_attester_that_loses_trust_keeps_its_attestations_which_weigh_nothing(
    line: list[NodeProcess],
) -> None:
    n1, _, n3 = line
    bob, carol = SigningKey.generate(), SigningKey.generate()
    cids = {}
    for key, text in ((bob, "Bob: copper conducts heat well."), (carol, "Carol: silver too.")):
        reply = httpx.post(f"{n1.url}/v1/facts", json=signed_fact(key, text), timeout=60)
        assert reply.status_code == 201, reply.text
        cids[key.address] = reply.json()["cid"]
    attest_rest(n1, TRUSTED, cids[bob.address], "endorse", 10)
    attest_rest(n1, bob, cids[carol.address], "endorse", 10)
    wait_until(lambda: contributor(n3, carol)["reputation"] > 0, what="trust through Bob")
    attest_rest(n1, TRUSTED, cids[bob.address], "dispute", 20)  # replaces the endorsement
    wait_until(lambda: contributor(n3, bob)["reputation"] == 0.0, what="Bob to lose trust")
    wait_until(lambda: contributor(n3, carol)["reputation"] == 0.0, what="Carol to follow")
    view = contributor(n3, carol)
    assert view["endorsements"] == 1  # Bob's endorsement is kept and counted...
    assert view["trust"] == 0.0  # ...and weighs nothing now
    assert contributor(n3, bob)["endorsements_given"] == 1


def test_invalid_attestations_are_rejected_and_their_sender_penalised(
    line: list[NodeProcess], keys: dict[str, Path], tmp_path: Path
) -> None:
    n1, n2, n3 = line
    cid = add_signed(n1, keys["alice"], "Alice's fact about the boiling point of ethanol.")
    wait_until(lambda: has(n2, cid), what="the fact at node 2")
    forged = make_attestation(cid, "endorse", TRUSTED.address, 7)  # signed by Mallory
    tombstone = make_tombstone(cid, ALICE.address)
    revoke = httpx.request(
        "DELETE",
        f"{n1.url}/v1/facts/{cid}",
        json={"contributor": ALICE.address, "signature": ALICE.sign_cid(tombstone.cid)},
        timeout=60,
    )
    assert revoke.status_code == 201, revoke.text
    wait_until(lambda: not has(n2, cid), what="the revocation at node 2")
    about_tombstone = make_attestation(tombstone.cid, "endorse", MALLORY.address, 8)
    messages = {
        "forged_attestation": encode_envelope(
            [RawRecord(forged.block, bytes.fromhex(MALLORY.sign_cid(forged.cid)[2:]))]
        ).hex(),
        "attestation_about_a_tombstone": encode_envelope(
            [
                RawRecord(
                    about_tombstone.block, bytes.fromhex(MALLORY.sign_cid(about_tombstone.cid)[2:])
                )
            ]
        ).hex(),
    }
    path = tmp_path / "messages.json"
    path.write_text(json.dumps(messages))
    before = [p2p(n)["messages_rejected"] for n in line]
    given = [contributor(n, TRUSTED)["endorsements_given"] for n in line]
    subprocess.run(
        [
            sys.executable,
            "-m",
            "tests.p2p_peer",
            address(n2),
            str(tmp_path / "out.json"),
            str(path),
        ],
        cwd=ROOT,
        check=True,
        timeout=120,
        capture_output=True,
    )
    wait_until(
        lambda: p2p(n2)["messages_rejected"] >= before[1] + 2, timeout=60, what="the rejections"
    )
    peers = httpx.get(f"{n2.url}/v1/peers", timeout=30).json()["peers"]
    assert any(p["rejected_messages"] >= 2 for p in peers)
    assert p2p(n1)["messages_rejected"] == before[0]
    assert p2p(n3)["messages_rejected"] == before[2]
    assert [contributor(n, TRUSTED)["endorsements_given"] for n in line] == given
    for node in line:
        for made in (forged, about_tombstone):
            reply = httpx.get(f"{node.url}/v1/facts/{made.cid}/provenance", timeout=30)
            assert reply.status_code == 404, reply.text
