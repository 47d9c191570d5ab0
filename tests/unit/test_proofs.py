"""Proof-carrying hits (node.proofs) and the root cache (node.roots): anchored hits verify from a
cache filled only by the ledger's events, pending ones stay pending, and any changed byte of any
field makes the hit fail with the reason. The cache follows the chain incrementally, survives a
restart and refuses another chain or registry."""

from __future__ import annotations

import base64
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest

import node.roots
from index.sqlite_catalog import SqliteCatalog
from node.anchoring import Anchorer, AnchorOptions
from node.content import BlockService
from node.errors import InvalidInput
from node.facts import make_fact
from node.memory import MemoryContentStore, MemoryLedger
from node.ports import NewFact
from node.proofs import HitProof, Verdict, check_hit, check_result, hit_proof_json, roots_named
from node.provenance import hex32
from node.roots import RootCache, RootCacheMismatch
from node.signing import SigningKey

pytestmark = pytest.mark.anyio


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


class Rig:
    def __init__(self, tmp_path: Path) -> None:
        self.catalog = SqliteCatalog(tmp_path / "catalog.sqlite3")
        self.ledger = MemoryLedger()
        self.key = SigningKey.generate()
        self.anchorer = Anchorer(
            self.catalog,
            self.ledger,
            BlockService(MemoryContentStore(), self.catalog),
            AnchorOptions(batch_size=4, batch_age=3600.0),
        )
        self.n = 0
        self.cids: list[str] = []

    def add(self, count: int) -> list[str]:
        facts = []
        for _ in range(count):
            self.n += 1
            metadata = {"n": self.n, "tags": ["river", "delta"], "ok": True}
            facts.append(make_fact(f"signed fact {self.n}", metadata, self.key.address))
        self.catalog.insert(
            [
                NewFact(f, np.zeros(4, dtype=np.float32), signature=self.key.sign_cid(f.cid))
                for f in facts
            ]
        )
        self.cids += [f.cid for f in facts]
        return [f.cid for f in facts]

    def hit(self, cid: str, tombstone: str | None = None) -> dict[str, Any]:
        prov = self.catalog.provenance(cid)
        assert prov is not None
        stored = self.catalog.get(cid)
        assert stored is not None
        hit = {
            "cid": cid,
            "text": stored.text,
            "metadata": dict(stored.metadata),
            "contributor": stored.contributor,
            "proof": hit_proof_json(HitProof(prov, tombstone)),
        }
        wire: dict[str, Any] = json.loads(json.dumps(hit))  # what a client receives
        return wire


@pytest.fixture
async def rig(tmp_path: Path) -> Rig:
    rig = Rig(tmp_path)
    rig.add(8)
    await rig.anchorer.step()  # two batches of four sent (and mined) ...
    await rig.anchorer.step()  # ... and their receipts read: anchored
    return rig


def _cache(rig: Rig, path: Path | None = None) -> RootCache:
    cache = RootCache(rig.ledger.chain_id, rig.ledger.registry, path)
    cache.refresh(rig.ledger)
    return cache


async def test_anchored_hits_verify_and_pending_ones_stay_pending(rig: Rig) -> None:
    pending = rig.add(1)[0]
    cache = _cache(rig)
    assert len(cache) == 2
    answer = {"results": [rig.hit(cid) for cid in [*rig.cids[:3], pending]]}
    checks = check_result(answer, cache)
    assert [c.verdict for c in checks[:3]] == [Verdict.VERIFIED] * 3
    assert all(c.signer == rig.key.address and c.block_number for c in checks[:3])
    assert checks[3].verdict is Verdict.PENDING and checks[3].reasons == ("not anchored yet",)
    # a lean hit (no text shown) still checks its block, signature and anchor
    lean = {k: v for k, v in rig.hit(pending).items() if k in ("cid", "proof")}
    assert check_hit(lean, cache).verdict is Verdict.PENDING


async def test_a_root_the_cache_has_not_seen_fails_until_refreshed(rig: Rig) -> None:
    cache = RootCache(rig.ledger.chain_id, rig.ledger.registry)
    hit = rig.hit(rig.cids[0])
    assert roots_named({"results": [hit]}) == {bytes.fromhex(hit["proof"]["root"][2:])}
    check = check_hit(hit, cache)
    assert check.verdict is Verdict.FAILED
    assert any("not anchored in the registry" in r for r in check.reasons)
    cache.refresh(rig.ledger)
    assert check_hit(hit, cache).verdict is Verdict.VERIFIED


def _flip_hex(value: str) -> str:
    last = value[-1]
    return value[:-1] + ("0" if last != "0" else "1")


def _flip_block(value: str) -> str:
    raw = bytearray(base64.b64decode(value))
    raw[len(raw) // 2] ^= 0x01
    return base64.b64encode(bytes(raw)).decode()


TAMPERS: dict[str, tuple[Callable[[dict[str, Any]], None], str]] = {
    "block": (lambda h: h["proof"].update(block=_flip_block(h["proof"]["block"])), "block"),
    "signature": (
        lambda h: h["proof"].update(signature=_flip_hex(h["proof"]["signature"][:-2]) + "1b"),
        "signature",
    ),
    "proof element": (
        lambda h: h["proof"]["merkle_proof"].__setitem__(
            0, _flip_hex(h["proof"]["merkle_proof"][0])
        ),
        "does not fold",
    ),
    "root": (lambda h: h["proof"].update(root=_flip_hex(h["proof"]["root"])), "root"),
    "text": (lambda h: h.update(text=h["text"] + "!"), "text differs"),
    "metadata": (lambda h: h.update(metadata={"n": -1}), "metadata differs"),
    "contributor": (lambda h: h.update(contributor="0x" + "22" * 20), "contributor differs"),
    "cid": (lambda h: h.update(cid=make_fact("another fact").cid), "hashes to"),
    "anchor block": (
        lambda h: h["proof"]["anchor"].update(
            block_number=h["proof"]["anchor"]["block_number"] + 1
        ),
        "block_number",
    ),
    "anchor tx": (
        lambda h: h["proof"]["anchor"].update(tx_hash=_flip_hex(h["proof"]["anchor"]["tx_hash"])),
        "tx_hash",
    ),
    "manifest": (
        lambda h: h["proof"]["anchor"].update(manifest_cid=make_fact("x").cid),
        "manifest_cid",
    ),
    "chain id": (lambda h: h["proof"]["anchor"].update(chain_id=1), "chain 1"),
    "registry": (
        lambda h: h["proof"]["anchor"].update(registry="0x" + "cd" * 20),
        "registry",
    ),
    "tombstone": (lambda h: h["proof"].update(tombstone=make_fact("t").cid), "revoked"),
    "proof length": (
        lambda h: h["proof"].update(merkle_proof=["0x" + "00" * 32] * 10_000),
        "at most 64 steps",
    ),
    "proof type": (lambda h: h["proof"].update(merkle_proof="0x00"), "at most 64 steps"),
}


@pytest.mark.parametrize("field", sorted(TAMPERS))
async def test_any_changed_field_fails_the_hit_with_the_reason(rig: Rig, field: str) -> None:
    cache = _cache(rig)
    cid = rig.cids[5]
    assert check_hit(rig.hit(cid), cache).verdict is Verdict.VERIFIED
    hit = json.loads(json.dumps(rig.hit(cid)))
    tamper, reason = TAMPERS[field]
    tamper(hit)
    check = check_hit(hit, cache)
    assert check.verdict is Verdict.FAILED, field
    assert any(reason in r for r in check.reasons), check.reasons


HOSTILE: list[object] = [
    None,
    "text",
    [],
    {"cid": 7},
    {"cid": "not a cid"},
    {"cid": make_fact("a").cid},
    {"cid": make_fact("a").cid, "proof": "x"},
    {"cid": make_fact("a").cid, "proof": {"block": "!!not base64!!"}},
    {"cid": make_fact("a").cid, "proof": {"block": [1, 2]}},
    {"cid": make_fact("a").cid, "proof": {"block": base64.b64encode(b"\xff" * 40).decode()}},
    {
        "cid": make_fact("a").cid,
        "proof": {"block": base64.b64encode(make_fact("a").block).decode(), "signature": 5},
    },
    {
        "cid": make_fact("a").cid,
        "proof": {
            "block": base64.b64encode(make_fact("a").block).decode(),
            "status": "anchored",
            "anchor": {"chain_id": 31337, "registry": "0x" + "ab" * 20},
            "root": "0x" + "00" * 32,
            "merkle_proof": [["nested"]],
        },
    },
]


@pytest.mark.parametrize("hit", HOSTILE, ids=range(len(HOSTILE)))
async def test_hostile_hits_fail_without_raising(rig: Rig, hit: object) -> None:
    check = check_hit(hit, _cache(rig))
    assert check.verdict is Verdict.FAILED and check.reasons
    assert check_result({"results": [hit]}, _cache(rig))[0].verdict is Verdict.FAILED


async def test_an_answer_without_results_fails() -> None:
    cache = RootCache(1, "0x" + "ab" * 20)
    answers: list[object] = [None, {}, {"results": "x"}, []]
    for answer in answers:
        assert check_result(answer, cache)[0].verdict is Verdict.FAILED


async def test_root_cache_follows_the_chain_incrementally_and_survives_restarts(
    rig: Rig, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(node.roots, "LOG_SPAN", 1)  # one block per read: many spans
    path = tmp_path / "roots.json"
    cache = _cache(rig, path)
    assert len(cache) == 2 and cache.next_block == rig.ledger.head() + 1
    rig.add(4)
    await rig.anchorer.step()
    await rig.anchorer.step()
    reopened = RootCache(rig.ledger.chain_id, rig.ledger.registry, path)
    assert set(reopened) == set(cache) and reopened.next_block == cache.next_block
    seen: list[tuple[int, int]] = []
    real = rig.ledger.anchored_events

    def spy(start: int, end: int) -> list[Any]:
        seen.append((start, end))
        return real(start, end)

    monkeypatch.setattr(rig.ledger, "anchored_events", spy)
    assert reopened.refresh(rig.ledger) == 1
    assert seen and seen[0][0] == cache.next_block  # only the new blocks are read
    assert len(RootCache(rig.ledger.chain_id, rig.ledger.registry, path)) == 3
    assert reopened.refresh(rig.ledger) == 0


async def test_root_cache_leaves_unconfirmed_blocks_for_later(rig: Rig) -> None:
    cache = RootCache(rig.ledger.chain_id, rig.ledger.registry, confirmations=1)
    cache.refresh(rig.ledger)
    assert len(cache) == 1  # the second batch's block is the head: not confirmed yet
    rig.ledger.block += 1  # a later block
    cache.refresh(rig.ledger)
    assert len(cache) == 2


class OtherRegistry(MemoryLedger):
    @property
    def registry(self) -> str:
        return "0x" + "cd" * 20


async def test_root_cache_refuses_another_chain_or_registry(rig: Rig, tmp_path: Path) -> None:
    path = tmp_path / "roots.json"
    _cache(rig, path)
    with pytest.raises(RootCacheMismatch):
        RootCache(1, rig.ledger.registry, path)
    with pytest.raises(RootCacheMismatch):
        RootCache(rig.ledger.chain_id, "0x" + "cd" * 20, path)
    cache = RootCache(rig.ledger.chain_id, rig.ledger.registry)
    with pytest.raises(RootCacheMismatch):
        cache.refresh(OtherRegistry())
    with pytest.raises(RootCacheMismatch):
        cache.refresh(MemoryLedger(chain_id=1))
    assert len(cache) == 0


@pytest.mark.parametrize(
    "content",
    ["", "{", "[]", '{"format": "other"}', '{"format": "knowhub-root-cache/1", "roots": 3}'],
)
async def test_root_cache_refuses_an_unreadable_file(tmp_path: Path, content: str) -> None:
    path = tmp_path / "roots.json"
    path.write_text(content)
    with pytest.raises(InvalidInput):
        RootCache(1, "0x" + "ab" * 20, path)


@pytest.mark.parametrize(
    "value",
    ["0x" + "ab" * 21 + " " * 22, "0x" + "ab" * 31 + "\n\n", "0x" + "zz" * 32, "ab" * 33, 7, None],
)
def test_a_root_or_proof_step_is_exactly_32_bytes_of_hex(value: object) -> None:
    """``bytes.fromhex`` skips whitespace: a 66-character string may hold fewer than 32 bytes."""
    with pytest.raises(InvalidInput):
        hex32(value, "root")
