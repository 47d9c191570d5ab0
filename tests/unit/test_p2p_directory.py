"""The peer directory (``p2p.directory``): adverts against the committed vectors, hostile
adverts refused by the topic validator as offences with nothing filed, and the table's replay,
expiry and size rules."""

from __future__ import annotations

import json
import subprocess
import sys
from typing import Any

import dag_cbor
import pytest
from libp2p.peer.id import ID
from libp2p.pubsub.pb import rpc_pb2

from node.ports import CollectionAdvert
from p2p.advertiser import DirectoryGossip
from p2p.directory import (
    EXPIRY_INTERVALS,
    MAX_COLLECTIONS,
    Advert,
    Directory,
    decode_advert,
    encode_advert,
    make_advert,
)
from p2p.publisher import Publisher
from p2p.wire import InvalidEnvelope
from tests.conftest import ROOT
from tests.sinks import MODEL_CID

VECTORS = json.loads((ROOT / "docs" / "vectors" / "directory.json").read_text())
DIGEST = "00" * 16
PEER = ID(b"peer")


def test_committed_vectors_are_current() -> None:
    result = subprocess.run(
        [sys.executable, "scripts/make_directory_vectors.py", "--check"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr


@pytest.mark.parametrize("case", VECTORS["valid"], ids=[c["name"] for c in VECTORS["valid"]])
def test_valid_vectors_decode_and_encode_to_their_bytes(case: dict[str, Any]) -> None:
    advert = decode_advert(bytes.fromhex(case["bytes"]))
    assert advert.model_cid == case["model"] and advert.holds_all == case["all"]
    assert {n: [c.facts, c.digest] for n, c in advert.collections.items()} == {
        n: [c["facts"], c["digest"]] for n, c in case["collections"].items()
    }
    assert encode_advert(advert).hex() == case["bytes"]


@pytest.mark.parametrize("case", VECTORS["invalid"], ids=[c["name"] for c in VECTORS["invalid"]])
def test_invalid_vectors_are_refused(case: dict[str, Any]) -> None:
    with pytest.raises(InvalidEnvelope):
        decode_advert(bytes.fromhex(case["bytes"]))


def message(data: bytes, seqno: int = 1, author: bytes = b"\x00\x24" + bytes(36)) -> Any:
    return rpc_pb2.Message(data=data, from_id=author, seqno=seqno.to_bytes(8, "big"))


HOSTILE = [
    b"",
    b"\xa0",
    dag_cbor.encode([1, 2, 3]),
    dag_cbor.encode({"v": True, "model": MODEL_CID, "all": False, "collections": {}}),
    dag_cbor.encode({"v": 1, "model": MODEL_CID, "all": "yes", "collections": {}}),
    dag_cbor.encode({"v": 1, "model": MODEL_CID, "all": False, "collections": []}),
    dag_cbor.encode({"v": 1, "model": "bafy" + "a" * 200, "all": False, "collections": {}}),
    dag_cbor.encode(
        {"v": 1, "model": MODEL_CID, "all": False, "collections": {"a": {"facts": 1.5}}}
    ),
    dag_cbor.encode(
        {
            "v": 1,
            "model": MODEL_CID,
            "all": False,
            "collections": {"_records": {"facts": 1, "digest": bytes(16)}},
        }
    ),
    b"\x00" * 20000,
]


@pytest.mark.parametrize("data", HOSTILE)
def test_a_hostile_advert_is_an_offence_and_changes_nothing(data: bytes) -> None:
    offences: list[str] = []
    gossip = DirectoryGossip(
        10.0, Publisher("a", "d", 0.01), lambda _: False, lambda _, why: offences.append(why)
    )
    assert gossip.validate(PEER, message(data)) is False
    assert len(offences) == 1 and offences[0].startswith("directory:")
    assert gossip.entries(set()) == []


def test_a_refused_peer_is_not_read_and_commits_no_offence() -> None:
    offences: list[str] = []
    gossip = DirectoryGossip(
        10.0, Publisher("a", "d", 0.01), lambda _: True, lambda _, why: offences.append(why)
    )
    assert gossip.validate(PEER, message(b"junk")) is False and offences == []


def advert(facts: int = 1, holds_all: bool = False) -> Advert:
    return Advert(MODEL_CID, holds_all, {"a": CollectionAdvert(facts, DIGEST)})


def test_the_table_keeps_the_latest_advert_and_ignores_replays() -> None:
    table = Directory(interval=10.0)
    assert table.heard("p", advert(2), seqno=5, now=100.0)
    assert not table.heard("p", advert(1), seqno=4, now=101.0)  # an older one, replayed
    assert not table.heard("p", advert(1), seqno=5, now=101.0)
    (entry,) = table.entries(now=102.0, connected={"p"})
    assert entry.collections["a"].facts == 2 and entry.seen_at == 100.0 and entry.connected
    assert table.heard("p", advert(3), seqno=6, now=103.0)
    assert table.entries(now=104.0, connected=set())[0].collections["a"].facts == 3


def test_entries_expire_after_three_intervals_and_come_freshest_first() -> None:
    table = Directory(interval=10.0)
    table.heard("old", advert(), 1, now=0.0)
    table.heard("new", advert(), 1, now=5.0)
    assert [e.peer_id for e in table.entries(now=6.0, connected=set())] == ["new", "old"]
    later = 10.0 * EXPIRY_INTERVALS + 1
    assert [e.peer_id for e in table.entries(now=later, connected=set())] == ["new"]
    assert table.collections() == {"a"}


def test_the_table_is_bounded_and_a_newcomer_replaces_the_stalest() -> None:
    table = Directory(interval=10.0, max_peers=3)
    for i in range(3):
        table.heard(f"p{i}", advert(), 1, now=float(i))
    table.heard("p3", advert(), 1, now=5.0)
    assert sorted(e.peer_id for e in table.entries(5.0, set())) == ["p1", "p2", "p3"]


def test_a_flood_of_new_authors_never_pushes_out_connected_peers() -> None:
    table = Directory(interval=10.0, max_peers=3)
    for i in range(3):
        table.heard(f"p{i}", advert(), 1, now=float(i))
    connected = {"p0", "p1"}
    for n in range(50):  # a stranger mints keys and advertises from each
        table.heard(f"sybil{n}", advert(), 1, now=10.0 + n / 100, connected=connected)
    kept = {e.peer_id for e in table.entries(11.0, connected)}
    assert {"p0", "p1"} <= kept and len(kept) == 3
    # every entry connected: a newcomer is not filed
    assert not table.heard("late", advert(), 1, now=11.0, connected=kept)
    # topics are learned from connected peers' adverts only
    assert table.collections(set()) == set() and table.collections(connected)


def test_an_advert_lists_the_largest_non_empty_collections() -> None:
    sets = {f"c{i:03}": CollectionAdvert(i, DIGEST) for i in range(MAX_COLLECTIONS + 10)}
    made = make_advert(MODEL_CID, True, sets)
    assert len(made.collections) == MAX_COLLECTIONS and "c000" not in made.collections
    assert min(c.facts for c in made.collections.values()) == 10
    assert decode_advert(encode_advert(made)) == made
