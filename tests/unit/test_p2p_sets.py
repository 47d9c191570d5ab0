"""Replication sets on the wire: the sync responder's ``sets`` answer and set-named ``recon``
requests (a bad set name is an offence), the initiator's check that fetched records belong to
the set it reconciled, and the gossip topic rule (a collection's topic carries its facts
only; the base topic anything, for nodes from before collections)."""

from __future__ import annotations

from typing import Any, cast

import pytest
import trio
from libp2p.peer.id import ID
from libp2p.pubsub.pb import rpc_pb2

from node.collections import RECORDS_SET
from node.facts import make_fact
from node.records import SignedRecord, sign_record
from node.signing import SigningKey
from node.tombstone import make_tombstone
from p2p import sync
from p2p.inbox import Inbox
from p2p.reconcile import ItemSet, absorb, initial_request
from p2p.sync import SyncError, SyncServer, encode_message
from p2p.topics import FACTS_TOPIC, GossipIn, set_of_topic, topic_of, topic_of_set
from p2p.wire import encode_envelope, raw
from tests.sinks import RecordingSink
from tests.unit.test_p2p_sync_limits import FakeStream

ALICE = SigningKey.generate()


def signed(text: str, collection: str = "default") -> SignedRecord:
    return sign_record(make_fact(text, None, ALICE.address, collection=collection), ALICE)


DEFAULT, IN_A, ALSO_A, IN_B = (
    signed("Default."),
    signed("One of a.", "a"),
    signed("Two of a.", "a"),
    signed("One of b.", "b"),
)
TOMBSTONE = sign_record(make_tombstone(IN_B.cid, ALICE.address), ALICE)
ALL = [DEFAULT, IN_A, ALSO_A, IN_B, TOMBSTONE]


def serve(sink: RecordingSink, *requests: dict[str, Any]) -> tuple[list[Any], list[str]]:
    offences: list[str] = []
    server = SyncServer(cast(Any, sink), cast(Any, None), lambda p, why: offences.append(why))
    stream = FakeStream(b"".join(encode_message(r) for r in requests))
    trio.run(server.handle, cast(Any, stream))
    return [answer for answer, _ in stream.answers()], offences


def test_the_responder_lists_its_sets_with_counts_and_digests() -> None:
    sink = RecordingSink(ALL)
    [answer], offences = serve(sink, {"t": "sets"})
    assert offences == [] and answer["t"] == "sets"
    listed = {s["name"]: (s["count"], s["digest"]) for s in answer["sets"]}
    assert [s["name"] for s in answer["sets"]] == [RECORDS_SET, "a", "b", "default"]
    for name, (count, digest) in listed.items():
        items = ItemSet(sink.record_cids(name))
        assert count == len(items) and digest == items.fingerprint_all()
    assert listed["a"][0] == 2 and listed[RECORDS_SET][0] == 1


def test_a_recon_naming_a_set_reconciles_that_set_only() -> None:
    request = {**initial_request(ItemSet([])), "set": "a"}
    [answer], offences = serve(RecordingSink(ALL), request)
    missing, _ = absorb(ItemSet([]), answer)
    assert offences == [] and sorted(missing) == sorted(RecordingSink([IN_A, ALSO_A]).records)
    [everything], _ = serve(RecordingSink(ALL), initial_request(ItemSet([])))  # no set: all
    assert len(absorb(ItemSet([]), everything)[0]) == len(ALL)


@pytest.mark.parametrize("name", ["Bad", "", 7, None, b"a", "x" * 200, "_other", ["a"]])
def test_a_recon_naming_no_valid_set_is_an_offence(name: object) -> None:
    [answer], offences = serve(RecordingSink(ALL), {**initial_request(ItemSet([])), "set": name})
    assert answer["t"] == "error" and len(offences) == 1 and "set" in offences[0]


def test_the_initiator_refuses_a_record_listed_in_the_wrong_set() -> None:
    response = {"records": [{"block": IN_B.block, "sig": IN_B.signature_bytes}]}
    wanted = set(RecordingSink([IN_B]).records)
    with pytest.raises(SyncError, match="not of that set"):
        sync._verified(response, wanted, "a")
    assert [r.cid for r in sync._verified(response, wanted, "b")] == [IN_B.cid]


@pytest.mark.parametrize(
    "answer",
    [
        {"t": "sets", "sets": "a"},
        {"t": "sets", "sets": [{"name": "a", "count": 1}]},
        {"t": "sets", "sets": [{"name": "A!", "count": 1, "digest": bytes(16)}]},
        {"t": "sets", "sets": [{"name": "a", "count": 1, "digest": bytes(3)}]},
        {"t": "sets", "sets": [{"name": "a", "count": 1, "digest": bytes(16)}] * 300},
    ],
)
def test_a_malformed_sets_answer_aborts_the_sync(answer: dict[str, Any]) -> None:
    with pytest.raises(SyncError):
        sync._their_sets(answer)


# -- gossip topics --------------------------------------------------------------------------


def test_records_go_to_the_topic_of_their_set() -> None:
    assert topic_of(DEFAULT) == topic_of(TOMBSTONE) == FACTS_TOPIC
    assert topic_of(IN_A) == "/knowhub/facts/1/c/a" == topic_of_set("a")
    assert set_of_topic("/knowhub/facts/1/c/a") == "a" and set_of_topic(FACTS_TOPIC) == "default"
    assert set_of_topic("/knowhub/facts/1/c/Bad!") is None
    assert set_of_topic("/knowhub/anchors/1") is None


def validate(topic_set: str, records: list[SignedRecord]) -> tuple[bool, list[str]]:
    offences: list[str] = []
    gossip = GossipIn(Inbox(8, 8), lambda _: False, lambda _, why: offences.append(why))
    gossip._sink = RecordingSink()
    data = encode_envelope([raw(r) for r in records])
    msg = rpc_pb2.Message(data=data, from_id=b"author", seqno=bytes(8))
    return gossip._validate(topic_set, ID(b"forwarder"), msg), offences


@pytest.mark.parametrize(
    "records", [[IN_B], [IN_A, IN_B], [DEFAULT], [TOMBSTONE]], ids=["b", "a+b", "default", "tomb"]
)
def test_a_collection_topic_refuses_anything_but_its_facts(records: list[SignedRecord]) -> None:
    accepted, offences = validate("a", records)
    assert not accepted and len(offences) == 1


def test_a_collection_topic_accepts_its_facts_and_the_base_topic_accepts_all() -> None:
    assert validate("a", [IN_A, ALSO_A]) == (True, [])
    assert validate("default", [DEFAULT, IN_A, IN_B, TOMBSTONE]) == (True, [])
