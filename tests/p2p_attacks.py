"""Hostile libp2p peers in bulk, for tests and scripts/bench_p2p_abuse.py: bare py-libp2p hosts,
each with a fresh identity, run in their own process against one node.

    python -m tests.p2p_attacks churn ADDRESS OUT.json [--peers N] [--banned B] [--hold H]
    python -m tests.p2p_attacks flood ADDRESS OUT.json [--ids N] [--messages M]
    python -m tests.p2p_attacks recon ADDRESS OUT.json [--streams S]

``churn``: N peers connect one after another (``--concurrent`` at a time) and leave; the last B
of them first misbehave (five malformed sync requests each, enough for a ban); then H more
connect at once and stay connected until the process is stopped (the node should trim them).
OUT.json gets the dial outcomes, and is written before holding.

``flood``: N fresh ids each connect, open ``/meshsub/1.1.0`` and publish M correctly signed
pubsub messages whose envelope holds 63 valid facts and one with a bad signature, the most
expensive invalid message the protocol allows; then leave. OUT.json gets the counts, and
OUT.json.progress the messages written so far, every 0.2 s.

``recon``: one peer opens S sync streams at once on one connection and sends on each the
amplification request of issue 15 (32,768 copies of ``[b"", null, <wrong fingerprint>]``,
655 KB); OUT.json gets, per stream, the request and answer sizes and the answer's type.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

#: py-libp2p's pubsub signing prefix (the spec's "libp2p-pubsub:").
PUBSUB_PREFIX = b"libp2p-pubsub:"
FACTS_TOPIC = "/knowhub/facts/1"


@asynccontextmanager
async def bare_host(listen: bool = True) -> AsyncIterator[Any]:
    """A py-libp2p host with a fresh Ed25519 identity, Noise and Yamux, nothing else."""
    import multiaddr
    from libp2p import new_host
    from libp2p.crypto.ed25519 import create_new_key_pair
    from libp2p.crypto.x25519 import create_new_key_pair as x25519_key_pair
    from libp2p.security.noise.transport import PROTOCOL_ID as NOISE_ID
    from libp2p.security.noise.transport import Transport as NoiseTransport
    from libp2p.stream_muxer.yamux.yamux import PROTOCOL_ID as YAMUX_ID
    from libp2p.stream_muxer.yamux.yamux import Yamux

    key_pair = create_new_key_pair()
    host = new_host(
        key_pair=key_pair,
        sec_opt={NOISE_ID: NoiseTransport(key_pair, noise_privkey=x25519_key_pair().private_key)},
        muxer_opt={YAMUX_ID: Yamux},  # type: ignore[dict-item]
    )
    addresses = [multiaddr.Multiaddr("/ip4/127.0.0.1/tcp/0")] if listen else []
    async with host.run(addresses):
        yield host


def innermost(exc: BaseException) -> str:
    while isinstance(exc, BaseExceptionGroup) and exc.exceptions:
        exc = exc.exceptions[0]
    return f"{type(exc).__name__}: {exc}"


def frame(data: bytes) -> bytes:
    from p2p.wire import encode_varint

    return encode_varint(len(data)) + data


async def misbehave(host: Any, peer: Any, times: int = 5) -> int:
    """Send ``times`` malformed sync requests (each an offence); the answers that came back."""
    import dag_cbor
    import trio
    from libp2p.custom_types import TProtocol

    answered = 0
    for _ in range(times):
        try:
            with trio.fail_after(30):
                stream = await host.new_stream(peer, [TProtocol("/knowhub/sync/1.0.0")])
                await stream.write(frame(dag_cbor.encode({"t": "bogus"})))
                answered += bool(await stream.read(1))
                await stream.close()
        except Exception:  # refused or reset; once we are banned, the node hangs up
            if peer not in host.get_connected_peers():
                break
    return answered


async def churn(target: str, peers: int, banned: int, concurrent: int, hold: int) -> dict[str, Any]:
    import multiaddr
    import trio
    from libp2p.peer.peerinfo import info_from_p2p_addr

    info = info_from_p2p_addr(multiaddr.Multiaddr(target))
    outcomes: list[str] = [""] * peers
    limit = trio.Semaphore(concurrent)

    async def one(i: int) -> None:
        async with limit:
            try:
                async with bare_host(listen=False) as host:
                    with trio.fail_after(30):
                        await host.connect(info)
                    if i >= peers - banned:
                        await misbehave(host, info.peer_id)
                        outcomes[i] = "banned"
                    else:
                        await trio.sleep(0.05)
                        outcomes[i] = "ok"
                    with trio.move_on_after(10):  # leave: py-libp2p keeps sockets otherwise
                        await host.disconnect(info.peer_id)
            except Exception as exc:
                outcomes[i] = f"failed: {innermost(exc)}"[:300]

    started = time.monotonic()
    async with trio.open_nursery() as nursery:
        for i in range(peers):
            nursery.start_soon(one, i)
    report = {
        "peers": peers,
        "ok": outcomes.count("ok"),
        "misbehaved": outcomes.count("banned"),
        "failed": [o for o in outcomes if o.startswith("failed")][:20],
        "failed_count": sum(o.startswith("failed") for o in outcomes),
        "failed_before_misbehaving": sum(
            o.startswith("failed") for o in outcomes[: peers - banned]
        ),
        "last_failed_index": max(
            (i for i, o in enumerate(outcomes) if o.startswith("failed")), default=None
        ),
        "seconds": round(time.monotonic() - started, 1),
    }
    return report


async def hold_open(target: str, count: int, out: Path, report: dict[str, Any]) -> None:
    """Connect ``count`` more peers at once and keep them connected until the process is
    stopped; OUT.json is written once all of them have tried."""
    import multiaddr
    import trio
    from libp2p.peer.peerinfo import info_from_p2p_addr

    info = info_from_p2p_addr(multiaddr.Multiaddr(target))
    connected = tried = 0
    all_tried = trio.Event()

    async def one() -> None:
        nonlocal connected, tried
        try:
            async with bare_host(listen=False) as host:
                with trio.fail_after(30):
                    await host.connect(info)
                connected += 1
                tried += 1
                if tried == count:
                    all_tried.set()
                await trio.sleep_forever()
        except Exception:
            tried += 1
            if tried == count:
                all_tried.set()

    async with trio.open_nursery() as nursery:
        for _ in range(count):
            nursery.start_soon(one)
        await all_tried.wait()
        report["held"] = connected
        await trio.Path(out).write_text(json.dumps(report))
        await trio.sleep_forever()


def flood_envelope() -> bytes:
    """63 validly signed facts and a 64th whose signature is another fact's."""
    from node.facts import make_fact
    from node.signing import SigningKey
    from p2p.wire import RawRecord, encode_envelope

    key = SigningKey.generate()
    records = []
    for i in range(64):
        fact = make_fact(f"Flood fact {i} from {os.getpid()} at {time.time()}.", None, key.address)
        records.append(RawRecord(fact.block, bytes.fromhex(key.sign_cid(fact.cid)[2:])))
    records[-1] = RawRecord(records[-1].block, records[0].signature)
    return encode_envelope(records)


def signed_rpc(key_pair: Any, peer_id: Any, data: bytes, seqno: int, subscribe: bool) -> bytes:
    from libp2p.pubsub.pb import rpc_pb2

    message = rpc_pb2.Message(
        from_id=peer_id.to_bytes(),
        data=data,
        seqno=seqno.to_bytes(8, "big"),
        topicIDs=[FACTS_TOPIC],
    )
    signature = key_pair.private_key.sign(PUBSUB_PREFIX + message.SerializeToString())
    message.key = key_pair.public_key.serialize()
    message.signature = signature
    rpc = rpc_pb2.RPC(publish=[message])
    if subscribe:
        rpc.subscriptions.append(rpc_pb2.RPC.SubOpts(subscribe=True, topicid=FACTS_TOPIC))
    return frame(rpc.SerializeToString())


async def flood(target: str, ids: int, messages: int, concurrent: int, out: Path) -> dict[str, Any]:
    import multiaddr
    import trio
    from libp2p.crypto.ed25519 import create_new_key_pair
    from libp2p.custom_types import TProtocol
    from libp2p.peer.id import ID
    from libp2p.peer.peerinfo import info_from_p2p_addr

    info = info_from_p2p_addr(multiaddr.Multiaddr(target))
    envelope = flood_envelope()
    sent = 0
    failed = 0
    limit = trio.Semaphore(concurrent)

    async def one() -> None:
        nonlocal sent, failed
        async with limit:
            try:
                async with bare_host(listen=False) as host:
                    key_pair = create_new_key_pair()  # the messages' author: another fresh id
                    author = ID.from_pubkey(key_pair.public_key)
                    with trio.fail_after(60):
                        await host.connect(info)
                        stream = await host.new_stream(info.peer_id, [TProtocol("/meshsub/1.1.0")])
                        for n in range(messages):
                            await stream.write(signed_rpc(key_pair, author, envelope, n, n == 0))
                            sent += 1
                        await trio.sleep(0.2)
                        await stream.close()
            except Exception:  # refused, reset or disconnected: that is the node's right
                failed += 1

    async def progress() -> None:  # messages written so far, for whoever watches the node
        while True:
            await trio.Path(f"{out}.progress").write_text(str(sent))
            await trio.sleep(0.2)

    started = time.monotonic()
    async with trio.open_nursery() as outer:
        outer.start_soon(progress)
        async with trio.open_nursery() as nursery:
            for _ in range(ids):
                nursery.start_soon(one)
        outer.cancel_scope.cancel()
    return {
        "ids": ids,
        "messages_sent": sent,
        "ids_failed": failed,
        "envelope_bytes": len(envelope),
        "seconds": round(time.monotonic() - started, 1),
    }


FRAME_LIMIT = 4 * 1024 * 1024


async def read_answer(stream: Any) -> tuple[int, str]:
    """Read one varint-framed answer: its size and its type (``t``), or a note on why not."""
    import dag_cbor

    size = shift = 0
    while True:
        byte = (await stream.read(1))[0]
        size |= (byte & 0x7F) << shift
        shift += 7
        if not byte & 0x80:
            break
    if size > FRAME_LIMIT:
        return size, "over the frame limit"
    body = b""
    while len(body) < size:
        chunk = await stream.read(size - len(body))
        if not chunk:
            return size, "stream closed mid-answer"
        body += chunk
    decoded: Any = dag_cbor.decode(body)
    return size, str(decoded["t"])


async def recon(target: str, streams: int) -> list[dict[str, Any]]:
    import dag_cbor
    import multiaddr
    import trio
    from libp2p.custom_types import TProtocol
    from libp2p.peer.peerinfo import info_from_p2p_addr

    info = info_from_p2p_addr(multiaddr.Multiaddr(target))
    request = dag_cbor.encode({"t": "recon", "ranges": [[b"", None, b"\x00" * 16]] * 32768})
    reports: list[dict[str, Any]] = []

    async def one(host: Any) -> None:
        report: dict[str, Any] = {"request_bytes": len(request)}
        try:
            stream = await host.new_stream(info.peer_id, [TProtocol("/knowhub/sync/1.0.0")])
            await stream.write(frame(request))
            with trio.fail_after(120):
                report["answer_bytes"], report["answer_type"] = await read_answer(stream)
                try:
                    report["closed_after_answer"] = await stream.read(1) == b""
                except Exception:  # reset: closed too
                    report["closed_after_answer"] = True
        except Exception as exc:  # refused or reset before an answer: no amplification
            report["answer_bytes"], report["answer_type"] = 0, innermost(exc)[:200]
        reports.append(report)

    async with bare_host() as host:
        await host.connect(info)
        async with trio.open_nursery() as nursery:
            for _ in range(streams):
                nursery.start_soon(one, host)
        with trio.move_on_after(10):
            await host.disconnect(info.peer_id)
    return reports


def main(argv: list[str]) -> None:
    import trio

    parser = argparse.ArgumentParser(prog="python -m tests.p2p_attacks")
    parser.add_argument("kind", choices=["churn", "flood", "recon"])
    parser.add_argument("address")
    parser.add_argument("out", type=Path)
    parser.add_argument("--peers", type=int, default=400)
    parser.add_argument("--banned", type=int, default=120)
    parser.add_argument("--hold", type=int, default=0)
    parser.add_argument("--concurrent", type=int, default=8)
    parser.add_argument("--ids", type=int, default=500)
    parser.add_argument("--messages", type=int, default=20)
    parser.add_argument("--streams", type=int, default=8)
    args = parser.parse_args(argv)
    if args.kind == "churn":
        report = trio.run(churn, args.address, args.peers, args.banned, args.concurrent, args.hold)
        if args.hold:
            trio.run(hold_open, args.address, args.hold, args.out, report)
        args.out.write_text(json.dumps(report))
    elif args.kind == "recon":
        args.out.write_text(json.dumps(trio.run(recon, args.address, args.streams)))
    else:
        result = trio.run(flood, args.address, args.ids, args.messages, args.concurrent, args.out)
        args.out.write_text(json.dumps(result))


if __name__ == "__main__":
    main(sys.argv[1:])
