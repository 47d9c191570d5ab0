"""A hostile libp2p peer for tests: joins /knowhub/facts/1 and publishes bad messages.

    python -m tests.p2p_peer ADDRESS OUT.json [MESSAGES.json]

Connects to ADDRESS (a node's multiaddr with /p2p/), waits to be in the mesh, publishes one
message of each kind below (or, given MESSAGES.json, the messages it holds: ``{"name": hex}``),
and writes the CIDs of the facts it tried to smuggle in to OUT.json.
Each message is correctly signed by this peer (libp2p strict signing); only the content is bad.
"""

from __future__ import annotations

import json
import sys

import dag_cbor
import multiaddr
import trio
from libp2p import new_host
from libp2p.crypto.ed25519 import create_new_key_pair
from libp2p.crypto.x25519 import create_new_key_pair as x25519_key_pair
from libp2p.custom_types import TProtocol
from libp2p.peer.peerinfo import info_from_p2p_addr
from libp2p.pubsub.gossipsub import GossipSub
from libp2p.pubsub.pubsub import Pubsub
from libp2p.security.noise.transport import PROTOCOL_ID as NOISE_ID
from libp2p.security.noise.transport import Transport as NoiseTransport
from libp2p.stream_muxer.yamux.yamux import PROTOCOL_ID as YAMUX_ID
from libp2p.stream_muxer.yamux.yamux import Yamux
from libp2p.tools.anyio_service import background_trio_service

from node.facts import make_fact
from node.signing import SigningKey
from p2p.wire import MAX_ENVELOPE_BYTES, RawRecord, encode_envelope

TOPIC = "/knowhub/facts/1"
ALICE = SigningKey.generate()
MALLORY = SigningKey.generate()


def bad_messages() -> tuple[dict[str, bytes], list[str]]:
    forged = make_fact("Forged: signed by Mallory, claims Alice.", None, ALICE.address)
    other = make_fact("Another fact Alice really signed.", None, ALICE.address)
    moved = make_fact("Signature moved from another fact.", None, ALICE.address)
    unsigned = make_fact("A fact with no contributor.")
    # a non-canonical encoding of a valid record (keys out of canonical order)
    good = make_fact("Non-canonical bytes.", None, ALICE.address)
    record = good.record()
    noncanon = dag_cbor.encode(record)[:1] + b"".join(
        dag_cbor.encode(k) + dag_cbor.encode(record[k])
        for k in [
            "contributor",
            "metadata",
            "text",
            "v",
        ]  # canonical is v, text, metadata, contributor
    )
    messages = {
        "malformed": b"\xff\x00 not cbor at all",
        "forged_signature": encode_envelope(
            [RawRecord(forged.block, bytes.fromhex(MALLORY.sign_cid(forged.cid)[2:]))]
        ),
        "moved_signature": encode_envelope(
            [RawRecord(moved.block, bytes.fromhex(ALICE.sign_cid(other.cid)[2:]))]
        ),
        "no_contributor": encode_envelope(
            [RawRecord(unsigned.block, bytes.fromhex(ALICE.sign_cid(unsigned.cid)[2:]))]
        ),
        "non_canonical": encode_envelope(
            [RawRecord(noncanon, bytes.fromhex(ALICE.sign_cid(good.cid)[2:]))]
        ),
        "oversized": b"\xa2" + b"\x00" * (MAX_ENVELOPE_BYTES + 10),
    }
    return messages, [forged.cid, moved.cid, unsigned.cid, good.cid]


async def main(address: str, out: str, given: str | None = None) -> None:
    key_pair = create_new_key_pair()
    host = new_host(
        key_pair=key_pair,
        sec_opt={NOISE_ID: NoiseTransport(key_pair, noise_privkey=x25519_key_pair().private_key)},
        muxer_opt={YAMUX_ID: Yamux},  # type: ignore[dict-item]
    )
    gossipsub = GossipSub(
        protocols=[TProtocol("/meshsub/1.1.0")],
        degree=6,
        degree_low=4,
        degree_high=12,
        heartbeat_interval=1,
        spam_protection_enabled=False,
    )
    pubsub = Pubsub(host, gossipsub, strict_signing=True, max_inbound_rpc_size=4 * 1024 * 1024)
    messages, cids = bad_messages()
    if given is not None:
        raw = json.loads(await trio.Path(given).read_text())
        messages, cids = {name: bytes.fromhex(data) for name, data in raw.items()}, []
    async with (
        host.run([multiaddr.Multiaddr("/ip4/127.0.0.1/tcp/0")]),
        background_trio_service(pubsub),
        background_trio_service(gossipsub),
    ):
        await pubsub.wait_until_ready()
        await pubsub.subscribe(TOPIC)
        await host.connect(info_from_p2p_addr(multiaddr.Multiaddr(address)))
        await trio.sleep(3)  # heartbeats put us in the node's mesh
        for data in messages.values():
            await pubsub.publish(TOPIC, data)
            await trio.sleep(0.3)
        await trio.sleep(2)
        connected = len(host.get_connected_peers())
    report = {"cids": cids, "kinds": list(messages), "connected_at_end": connected}
    await trio.Path(out).write_text(json.dumps(report))


if __name__ == "__main__":
    trio.run(main, *sys.argv[1:4])
