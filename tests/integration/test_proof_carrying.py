"""Proof-carrying retrieval end to end: a real node anchoring on a real anvil answers queries
with proofs, and a client that has only the chain RPC verifies every hit (and keeps verifying
with the chain gone, from its root cache); any flipped byte of any field fails that hit with
the reason. Also `knowhub query --verify` and the LangChain retriever's ``verified_only``."""

from __future__ import annotations

import base64
import copy
import json
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from api.langchain_retriever import KnowhubRetriever
from api.proof_check import ResultVerifier, all_verified
from node.proofs import Verdict
from node.roots import RootCacheMismatch
from tests.helpers import NodeProcess, knowhub
from tests.integration.test_provenance import ALICE, Chain, all_anchored, signed, wait_until

TEXTS = [f"River number {i} carries sediment to the delta." for i in range(12)]


@pytest.fixture(scope="module")
def anchored(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[NodeProcess, Chain]]:
    tmp = tmp_path_factory.mktemp("proofs")
    chain = Chain(tmp, state=tmp / "anvil-state.json")
    node = NodeProcess(tmp / "data", env=chain.env()).start()
    try:
        facts = [signed(ALICE, t) for t in TEXTS[:6]] + [{"text": t} for t in TEXTS[6:]]
        result = httpx.post(f"{node.url}/v1/facts/batch", json={"facts": facts}, timeout=120)
        cids = [r["cid"] for r in result.json()["results"]]
        wait_until(lambda: all_anchored(node, cids), what="anchoring")
        yield node, chain
    finally:
        node.stop()
        chain.anvil.stop()


def ask(node: NodeProcess, **extra: Any) -> dict[str, Any]:
    body = {"query": "Which river carries sediment?", "k": 10, "proofs": True, **extra}
    response = httpx.post(f"{node.url}/v1/query", json=body, timeout=60)
    assert response.status_code == 200, response.text
    answer: dict[str, Any] = response.json()
    return answer


def flip_b64(value: str) -> str:
    raw = bytearray(base64.b64decode(value))
    raw[-3] ^= 0x01
    return base64.b64encode(bytes(raw)).decode()


def flip_hex(value: str, at: int = 10) -> str:
    digit = "0" if value[at] != "0" else "1"
    return value[:at] + digit + value[at + 1 :]


TAMPERS: dict[str, Callable[[dict[str, Any]], None]] = {
    "block": lambda h: h["proof"].update(block=flip_b64(h["proof"]["block"])),
    "signature": lambda h: h["proof"].update(signature=flip_hex(h["proof"]["signature"])),
    "proof element": lambda h: h["proof"]["merkle_proof"].__setitem__(
        -1, flip_hex(h["proof"]["merkle_proof"][-1])
    ),
    "root": lambda h: h["proof"].update(root=flip_hex(h["proof"]["root"])),
    "text": lambda h: h.update(text=h["text"].replace("River", "Rover")),
}


def test_every_hit_verifies_from_the_chain_alone_and_any_flip_fails_it(
    anchored: tuple[NodeProcess, Chain], tmp_path: Path
) -> None:
    node, chain = anchored
    answer = ask(node)
    assert len(answer["results"]) == 10
    roots_file = tmp_path / "roots.json"
    verifier = ResultVerifier.from_chain(chain.anvil.url, chain.registry, cache_file=roots_file)
    checks = verifier.verify(answer)
    assert all_verified(checks), checks
    assert {c.signer for c in checks} >= {ALICE.address}
    assert roots_file.exists() and len(verifier.cache) >= 1
    # a lean answer with proofs verifies too (the block carries the text)
    lean = ask(node, include=["cid", "score"])
    assert all("text" not in h and "proof" in h for h in lean["results"])
    assert all_verified(verifier.verify(lean))
    for hit_index, hit in enumerate(answer["results"]):
        for name, tamper in TAMPERS.items():
            if name == "proof element" and not hit["proof"]["merkle_proof"]:
                continue
            bad = copy.deepcopy(answer)
            tamper(bad["results"][hit_index])
            result = verifier.verify(bad)
            assert result[hit_index].verdict is Verdict.FAILED, (name, result[hit_index])
            assert result[hit_index].reasons, name
            others = [c for i, c in enumerate(result) if i != hit_index]
            assert all(c.verdict is Verdict.VERIFIED for c in others), name
    # a restarted client reads its cache file: no chain needed for known roots
    reopened = ResultVerifier.from_chain(chain.anvil.url, chain.registry, cache_file=roots_file)
    assert set(reopened.cache) == set(verifier.cache)
    assert reopened.cache.next_block == verifier.cache.next_block
    # the cache refuses to serve another registry
    other = "0x" + "12" * 20
    with pytest.raises(RootCacheMismatch):
        ResultVerifier.from_chain(chain.anvil.url, other, cache_file=roots_file)


def test_query_verify_command_and_the_verified_only_retriever(
    anchored: tuple[NodeProcess, Chain], tmp_path: Path
) -> None:
    node, chain = anchored
    args = ["--url", node.url, "-k", "4", "--rpc", chain.anvil.url, "--registry", chain.registry]
    roots = ["--roots-file", str(tmp_path / "roots.json")]
    done = knowhub("query", "Which river carries sediment?", "--verify", *args, *roots)
    assert done.returncode == 0, done.stdout + done.stderr
    assert done.stdout.count("VERIFIED: anchored at block") == 4, done.stdout
    as_json = knowhub("query", "sediment", "--verify", "--json", *args, *roots)
    assert as_json.returncode == 0, as_json.stderr
    verification = json.loads(as_json.stdout)["verification"]
    assert len(verification) == 4 and all(v.startswith("VERIFIED") for v in verification.values())
    retriever = KnowhubRetriever(
        url=node.url,
        k=4,
        verified_only=True,
        chain_rpc=chain.anvil.url,
        registry=chain.registry,
        roots_file=tmp_path / "retriever-roots.json",
        relevant_only=False,
    )
    docs = retriever.invoke("Which river carries sediment?")
    assert len(docs) == 4 and all(isinstance(d.metadata["verified_block"], int) for d in docs)


def test_verification_needs_no_chain_once_the_roots_are_cached(
    anchored: tuple[NodeProcess, Chain], tmp_path: Path
) -> None:
    node, chain = anchored
    verifier = ResultVerifier.from_chain(
        chain.anvil.url, chain.registry, cache_file=tmp_path / "roots.json"
    )
    answer = ask(node)
    assert all_verified(verifier.verify(answer))
    chain.anvil.stop()  # runs last in this module: the fixture's chain is gone from here on
    try:
        assert all_verified(verifier.verify(ask(node)))
    finally:
        chain.anvil.start()
