"""Federated query with real node processes on one anvil chain (issue 21).

Node ``a`` holds collection ``a``, node ``b`` holds ``b``; both anchor on the same registry.
A network query at ``a`` whose best hit is in ``b`` gets it from ``b`` with its proof checked
against the chain (``verified``), and a client holding only the chain RPC verifies every hit
of the answer too. A peer that advertises a collection and answers with a forged hit (its own
process: a real libp2p network layer on a forging sink) is caught and penalised; a peer
running another model is never asked; with the only holder of a collection down the answer
says that collection is missing.

The forging peer runs as

    python -m tests.integration.test_federation forger BOOTSTRAP MODEL_CID OUT.json
"""

from __future__ import annotations

import base64
import json
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from api.proof_check import ResultVerifier, all_verified
from node.signing import SigningKey, write_key_file
from tests.helpers import NodeProcess
from tests.integration.test_provenance import Chain, all_anchored
from tests.p2p_nodes import address, p2p, wait_until

MALLORY = SigningKey.generate()
OXYGEN = "Hemoglobin in red blood cells carries oxygen from the lungs to the tissues."


def member(
    chain: Chain, path: Path, collections: str, bootstrap: str | None = None, **env: str
) -> NodeProcess:
    """A node on the chain with its own funded operator key, holding ``collections``."""
    key_file = path.parent / f"{path.name}.key"
    operator = SigningKey.generate()
    write_key_file(key_file, operator)
    chain.anvil.rpc("anvil_setBalance", operator.address, hex(10**21))
    extra = {
        "KNOWHUB_KEY_FILE": str(key_file),
        "KNOWHUB_COLLECTIONS": collections,
        "KNOWHUB_P2P_DIRECTORY_INTERVAL": "1",
        "KNOWHUB_SYNC_INTERVAL": "5",
        **env,
    }
    if bootstrap is not None:
        extra["KNOWHUB_BOOTSTRAP"] = bootstrap
    return NodeProcess(path, env=chain.env(**extra)).start()


def add(node: NodeProcess, collection: str, *texts: str) -> list[str]:
    facts = [{"text": t, "collection": collection} for t in texts]
    done = httpx.post(f"{node.url}/v1/facts/batch", json={"facts": facts}, timeout=300)
    assert done.status_code == 200 and done.json()["created"] == len(texts), done.text
    return [r["cid"] for r in done.json()["results"]]


def directory(node: NodeProcess) -> list[dict[str, Any]]:
    entries: list[dict[str, Any]] = httpx.get(f"{node.url}/v1/peers", timeout=30).json()[
        "directory"
    ]
    return entries


def sees(node: NodeProcess, peer_id: str, collection: str) -> bool:
    return any(
        e["peer_id"] == peer_id and e["connected"] and collection in e["collections"]
        for e in directory(node)
    )


def network_query(node: NodeProcess, text: str, **extra: Any) -> dict[str, Any]:
    body = {"query": text, "scope": "network", "k": 3, "mode": "dense", **extra}
    reply = httpx.post(f"{node.url}/v1/query", json=body, timeout=120)
    assert reply.status_code == 200, reply.text
    answer: dict[str, Any] = reply.json()
    return answer


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    tmp = tmp_path_factory.mktemp("federation")
    chain = Chain(tmp, state=tmp / "anvil-state.json")
    nodes: list[NodeProcess] = []
    try:
        b = member(chain, tmp / "b", "b")
        nodes.append(b)
        a = member(chain, tmp / "a", "a", bootstrap=address(b))
        nodes.append(a)
        cids = add(b, "b", OXYGEN, "Volcanoes erupt molten rock called lava.")
        cids += add(a, "a", "The heart pumps blood through the body.", "Paris is in France.")
        wait_until(lambda: all_anchored(b, cids[:2]), timeout=300, what="b's anchors")
        wait_until(lambda: all_anchored(a, cids[2:]), timeout=300, what="a's anchors")
        b_id = p2p(b)["peer_id"]
        wait_until(lambda: sees(a, b_id, "b"), timeout=120, what="b in a's directory")
        yield {"tmp": tmp, "chain": chain, "a": a, "b": b, "b_id": b_id}
    finally:
        for node in nodes:
            if node.proc is not None and node.proc.poll() is None:
                node.stop()
        chain.anvil.stop()


def test_a_query_at_a_gets_the_best_hit_from_b_with_its_proof_verified(
    cluster: dict[str, Any], tmp_path: Path
) -> None:
    a, b_id, chain = cluster["a"], cluster["b_id"], cluster["chain"]
    # by relevance: by reputation, a's own operator (its trust root) outranks b's operator
    answer = network_query(a, "What carries oxygen in the blood?", proofs=True, rank="relevance")
    top = answer["results"][0]
    assert top["text"] == OXYGEN and top["source"] == b_id, answer["results"]
    assert top["verdict"] == "verified" and top["proof"]["status"] == "anchored"
    assert top["relevance"] == max(h["relevance"] for h in answer["results"])
    covered = answer["completeness"]
    assert covered["complete"] and covered["local"] == ["a"] and covered["remote"] == ["b"]
    assert covered["peers"][0]["outcome"] == "answered" and covered["peers"][0]["rejected"] == 0
    # a client with only the chain RPC checks every hit, local and remote alike
    verifier = ResultVerifier.from_chain(
        chain.anvil.url, chain.registry, cache_file=tmp_path / "roots.json"
    )
    assert all_verified(verifier.verify(answer)), verifier.verify(answer)
    # b counted the query it answered and its bytes
    status = p2p(cluster["b"])
    assert status["queries_answered"] >= 1 and status["query_bytes"] > 0


def test_a_hybrid_query_ranks_in_two_phases_over_real_hosts(
    cluster: dict[str, Any], tmp_path: Path
) -> None:
    """Keyword and hybrid network queries take pools, then proofs of what is shown, from b
    (two requests over /knowhub/query/1), and the hit shown is verified like a dense one."""
    a, b, b_id, chain = cluster["a"], cluster["b"], cluster["b_id"], cluster["chain"]
    before = p2p(b)["queries_answered"]
    answer = network_query(
        a, "What carries oxygen in the blood?", mode="hybrid", proofs=True, rank="relevance"
    )
    top = answer["results"][0]
    assert top["text"] == OXYGEN and top["source"] == b_id, answer["results"]
    assert top["verdict"] == "verified" and top["proof"]["status"] == "anchored"
    covered = answer["completeness"]
    assert covered["complete"] and covered["remote"] == ["b"], covered
    assert covered["peers"][0]["hits"] >= 1 and covered["peers"][0]["rejected"] == 0
    verifier = ResultVerifier.from_chain(
        chain.anvil.url, chain.registry, cache_file=tmp_path / "roots.json"
    )
    assert all_verified(verifier.verify(answer)), verifier.verify(answer)
    wait_until(lambda: p2p(b)["queries_answered"] >= before + 2, timeout=60, what="pools and fetch")
    words = network_query(a, "lava volcanoes", mode="keyword")
    assert words["results"][0]["source"] == b_id, words["results"]
    assert words["results"][0]["text"].startswith("Volcanoes erupt")


def test_a_peer_returning_a_forged_hit_is_caught(cluster: dict[str, Any], tmp_path: Path) -> None:
    a = cluster["a"]
    model = httpx.get(f"{a.url}/v1/status", timeout=30).json()["model"]["cid"]
    out = tmp_path / "forger.json"
    log = (tmp_path / "forger.log").open("wb")
    forger = subprocess.Popen(
        [
            *(sys.executable, "-m", "tests.integration.test_federation", "forger"),
            *(address(a), model, str(out)),
        ],
        stdout=subprocess.DEVNULL,
        stderr=log,
    )
    try:
        wait_until(out.exists, timeout=120, what="the forger to start")
        forger_id = json.loads(out.read_text())["peer_id"]
        wait_until(lambda: sees(a, forger_id, "c"), timeout=120, what="the forger's advert")
        rejected = p2p(a)["messages_rejected"]
        answer = network_query(a, "What carries oxygen in the blood?", collections=["a", "c"])
        assert all(h.get("source") != forger_id for h in answer["results"]), answer
        covered = answer["completeness"]
        assert not covered["complete"] and covered["missing"] == ["c"], covered
        report = covered["peers"][0]
        assert report["peer_id"] == forger_id and report["outcome"] == "invalid", report
        assert report["rejected"] >= 1 and "hashes to" in report["reason"], report
        assert p2p(a)["messages_rejected"] > rejected  # an offence in the network layer
        again = network_query(a, "oxygen", collections=["a", "c"])["completeness"]
        assert again["peers"] == [] and "penalised" in again["reasons"]["c"], again
    finally:
        forger.send_signal(signal.SIGKILL)
        forger.wait()
        log.close()


def test_a_peer_with_another_model_is_never_asked(cluster: dict[str, Any]) -> None:
    a, chain, tmp = cluster["a"], cluster["chain"], cluster["tmp"]
    fp32 = member(chain, tmp / "fp32", "d", bootstrap=address(a), KNOWHUB_EMBEDDER="onnx")
    try:
        add(fp32, "d", "Oxygen is carried by hemoglobin, says the fp32 node.")
        fp32_id = p2p(fp32)["peer_id"]
        wait_until(lambda: sees(a, fp32_id, "d"), timeout=120, what="the fp32 node's advert")
        asked_before = p2p(fp32)["queries_answered"]
        answer = network_query(a, "What carries oxygen?", collections=["a", "d"])
        covered = answer["completeness"]
        assert covered["missing"] == ["d"] and "another embedding model" in covered["reasons"]["d"]
        assert all(h.get("source") is None for h in answer["results"])
        # and the other way round: the fp32 node never asks a or b either
        back = network_query(fp32, "What carries oxygen?", collections=["d", "b"])
        assert back["completeness"]["missing"] == ["b"], back["completeness"]
        assert "another embedding model" in back["completeness"]["reasons"]["b"]
        assert p2p(fp32)["queries_answered"] == asked_before
    finally:
        fp32.stop()


def test_with_the_only_holder_down_the_answer_says_its_collection_is_missing(
    cluster: dict[str, Any],
) -> None:
    a, chain, tmp = cluster["a"], cluster["chain"], cluster["tmp"]
    e = member(chain, tmp / "e", "e", bootstrap=address(a))
    add(e, "e", "The only copy of this oxygen fact lives on node e.")
    e_id = p2p(e)["peer_id"]
    wait_until(lambda: sees(a, e_id, "e"), timeout=120, what="e's advert")
    assert network_query(a, "oxygen", collections=["a", "e"])["completeness"]["complete"]
    pooled = network_query(a, "oxygen fact", collections=["a", "e"], mode="hybrid")
    assert pooled["completeness"]["complete"], pooled["completeness"]
    assert any(h.get("source") == e_id for h in pooled["results"]), pooled["results"]
    e.kill()  # SIGKILL: no goodbye
    wait_until(lambda: not sees(a, e_id, "e"), timeout=120, what="a to notice e is gone")
    for mode in ("dense", "hybrid"):
        answer = network_query(a, "oxygen fact", collections=["a", "e"], mode=mode)
        covered = answer["completeness"]
        assert not covered["complete"] and covered["missing"] == ["e"], (mode, covered)
        assert covered["reasons"]["e"], covered
        assert all(h.get("source") is None for h in answer["results"])


# -- the forging peer ------------------------------------------------------------------------


def forge(bootstrap: str, model: str, out: Path) -> None:
    """A real network layer whose sink holds one genuine fact of collection ``c`` (so its
    advert is honest about what it holds) and answers every query with that fact's block
    altered: the text no longer hashes to the CID it claims."""
    import asyncio

    from node.collections import Collections
    from node.facts import make_fact
    from node.ports import PeerAnswer, PeerRequest, RemoteAnswer, RemoteHit
    from node.records import SignedRecord
    from p2p.host import Libp2pNetwork, P2PConfig
    from tests.sinks import RecordingSink

    fact = make_fact("Oxygen is carried by green blood.", None, MALLORY.address, collection="c")
    signature = MALLORY.sign_cid(fact.cid)
    forged = make_fact("Oxygen is carried by hemoglobin.", None, MALLORY.address, collection="c")

    class Forger(RecordingSink):
        def model_cid(self) -> str:
            return model

        async def answer_query(self, query: PeerRequest, peer: str) -> PeerAnswer:
            proof: dict[str, Any] = {
                "block": base64.b64encode(forged.block).decode(),  # not the CID's block
                "signature": signature,
                "status": "pending",
                "root": None,
                "merkle_proof": [],
                "anchor": None,
                "tombstone": None,
            }
            return RemoteAnswer((RemoteHit(fact.cid, 0.9, 0.9, proof),), ("c",))

    async def main() -> None:
        sink = Forger([SignedRecord(fact, signature)], Collections.of(["c"]))
        network = Libp2pNetwork(
            P2PConfig(
                key_path=out.parent / "forger.key", bootstrap=[bootstrap], directory_interval=1.0
            )
        )
        await network.start(sink)
        started = json.dumps({"peer_id": network.status().peer_id})
        await asyncio.to_thread(out.write_text, started)
        await asyncio.Event().wait()  # until the test kills this process

    asyncio.run(main())


if __name__ == "__main__" and sys.argv[1] == "forger":
    forge(sys.argv[2], sys.argv[3], Path(sys.argv[4]))
