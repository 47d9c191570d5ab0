"""The ``Network`` port: the in-memory fake (``node.memory_network``) and the real libp2p host
(``p2p.host``) run one scenario and must give the same report.

Two networks, A and B, on recording sinks: B catches up on connect (origin sync), receives A's
gossip (origin gossip), rejects a message its node judges invalid and counts the sender's
offence, and fetches records from A by CID (verified; an unknown CID is simply absent). The
libp2p run happens in a process of its own (py-libp2p 0.8.1 leaves a socket unclosed at
shutdown, which pytest would report against whichever test comes next)."""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import pytest

from node.errors import CollectionNotHeld
from node.facts import make_fact
from node.origin import Origin
from node.ports import Network, RemoteAnswer, RemoteQuery
from node.records import SignedRecord, sign_record
from node.signing import SigningKey
from node.tombstone import make_tombstone
from tests.conftest import ROOT

ALICE = SigningKey.generate()
MALLORY = SigningKey.generate()


class RecordingSink:
    """The node as the network sees it: records by binary CID, the origin each came by, and a
    ``judge`` that refuses the CIDs in ``invalid``."""

    def __init__(self, records: Sequence[SignedRecord] = ()) -> None:
        self.records: dict[bytes, SignedRecord] = {}
        self.origins: dict[str, str] = {}
        self.invalid: set[str] = set()
        for record in records:
            self.add(record)

    def add(self, record: SignedRecord) -> None:
        from multiformats import CID

        self.records[bytes(CID.decode(record.cid))] = record

    def has(self, cid: str) -> bool:
        return any(r.cid == cid for r in self.records.values())

    async def receive_records(
        self, records: Sequence[SignedRecord], peer: str, origin: Origin
    ) -> int:
        new = 0
        for record in records:
            new += not self.has(record.cid)
            self.origins.setdefault(record.cid, origin.value)
            self.add(record)
        return new

    def judge(self, records: Sequence[SignedRecord]) -> str | None:
        bad = [r.cid for r in records if r.cid in self.invalid]
        return f"{bad[0]}: judged invalid" if bad else None

    def record_cids(self) -> list[bytes]:
        return list(self.records)

    def set_version(self) -> int:
        return len(self.records)

    def signed_records(self, cids: Sequence[bytes]) -> list[tuple[bytes, str]]:
        return [
            (self.records[c].block, self.records[c].signature) for c in cids if c in self.records
        ]

    async def get_block(self, cid: str) -> bytes | None:
        return None

    async def anchor_announced(self, chain_id: int, registry: str) -> None:
        return None

    async def answer_query(self, query: RemoteQuery, peer: str) -> RemoteAnswer:
        raise CollectionNotHeld("this sink answers no queries")


def signed(text: str) -> SignedRecord:
    return sign_record(make_fact(text, None, ALICE.address), ALICE)


async def wait_for(
    check: Callable[[], bool], what: str, retry: Callable[[], None] | None = None
) -> None:
    started = time.monotonic()
    tick = started
    while not check():
        assert time.monotonic() - started < 120, f"timed out waiting for {what}"
        if retry is not None and time.monotonic() - tick > 1.0:
            retry()  # gossip before the mesh formed may be lost: publish again (idempotent)
            tick = time.monotonic()
        await asyncio.sleep(0.05)


async def scenario(kind: str, work: Path) -> dict[str, Any]:
    first, second, third = signed("First, before B."), signed("Second, gossip."), signed("Third.")
    forged = make_tombstone(first.cid, MALLORY.address)
    judged = sign_record(forged, MALLORY)
    a_sink, b_sink = RecordingSink([first]), RecordingSink()
    b_sink.invalid.add(judged.cid)
    a: Network
    b: Network
    if kind == "memory":
        from node.memory_network import MemoryHub, MemoryNetwork

        hub = MemoryHub()
        a = MemoryNetwork(hub)
        await a.start(a_sink)
        b = MemoryNetwork(hub, bootstrap=[a.status().listen_addresses[0]])
    else:
        from p2p.host import Libp2pNetwork, P2PConfig

        a = Libp2pNetwork(P2PConfig(work / "a.key", sync_interval=3600))
        await a.start(a_sink)
        bootstrap = [a.status().listen_addresses[0]]
        b = Libp2pNetwork(P2PConfig(work / "b.key", bootstrap=bootstrap, sync_interval=3600))
    await b.start(b_sink)
    report: dict[str, Any] = {}
    try:
        await wait_for(lambda: b_sink.has(first.cid), "catch-up on connect")
        report["catch_up_origin"] = b_sink.origins[first.cid]
        a_sink.add(second)
        await wait_for(lambda: b_sink.has(second.cid), "gossip", lambda: a.publish([second]))
        report["gossip_origin"] = b_sink.origins[second.cid]
        rejected = b.status().messages_rejected
        a.publish([judged])
        await wait_for(lambda: b.status().messages_rejected > rejected, "the rejection")
        report["judged_delivered"] = b_sink.has(judged.cid)
        offenders = [p for p in b.peers() if p.rejected_messages]
        report["offender_is_a"] = [p.peer_id for p in offenders] == [a.status().peer_id]
        a_sink.add(third)  # never published: only a fetch brings it
        unknown = signed("Nobody has this one.").cid
        fetched = await b.fetch_records([third.cid, unknown])
        report["fetched"] = sorted(r.cid == third.cid for r in fetched)
        report["fetched_is_verified_record"] = all(
            isinstance(r, SignedRecord) and r.signature == third.signature for r in fetched
        )
        report["b_peers"] = b.status().connected_peers
    finally:
        await b.close()
        await a.close()
    return report


@pytest.mark.parametrize("kind", ["memory", "libp2p"])
def test_the_fake_and_the_real_network_agree(kind: str, tmp_path: Path) -> None:
    if kind == "memory":
        report = asyncio.run(scenario(kind, tmp_path))
    else:
        out = tmp_path / "report.json"
        subprocess.run(
            [sys.executable, "-m", "tests.congruence.test_network", kind, str(tmp_path), str(out)],
            cwd=ROOT,
            check=True,
            timeout=300,
            capture_output=True,
        )
        report = json.loads(out.read_text())
    assert report == {
        "catch_up_origin": "sync",
        "gossip_origin": "gossip",
        "judged_delivered": False,
        "offender_is_a": True,
        "fetched": [True],
        "fetched_is_verified_record": True,
        "b_peers": 1,
    }


if __name__ == "__main__":
    kind_, work_, out_ = sys.argv[1:4]
    Path(out_).write_text(json.dumps(asyncio.run(scenario(kind_, Path(work_)))))
