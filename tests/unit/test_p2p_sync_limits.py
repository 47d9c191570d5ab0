"""Sync abuse: recon requests are validated, answers keep to the frame limit and to 4x the
request (or a small floor), work runs off the trio loop, idle streams are closed, and honest
reconciliation still converges. The pure parts (``p2p.reconcile``) and ``SyncServer`` on an
in-memory stream."""

from __future__ import annotations

import os
import random
import threading
from collections.abc import Sequence
from types import SimpleNamespace
from typing import Any, cast

import dag_cbor
import pytest
import trio

from node.facts import DEFAULT_COLLECTION
from node.origin import Origin
from node.records import SignedRecord
from p2p import sync
from p2p.reconcile import (
    ANSWER_RATIO,
    BRANCH,
    MAX_BOUND_BYTES,
    MIN_ANSWER_BYTES,
    ItemSet,
    RequestRefused,
    absorb,
    answer_budget,
    initial_request,
    max_request_ranges,
    reconcile_locally,
    respond,
)
from p2p.sync import MAX_STREAMS_PER_PEER, SyncServer, encode_message
from p2p.wire import MAX_SYNC_MESSAGE_BYTES, encode_varint
from tests.sinks import QuietSink

WRONG = b"\x00" * 16


def cids(n: int, seed: int = 0) -> list[bytes]:
    rng = random.Random(seed)
    return [b"\x01\x71\x12\x20" + rng.randbytes(32) for _ in range(n)]


def amplification_request() -> dict[str, Any]:
    """The request of issue 15: 32,768 copies of [b"", null, <wrong fingerprint>] (655 KB)."""
    return {"t": "recon", "ranges": [[b"", None, WRONG]] * 32768}


def encoded(obj: dict[str, Any]) -> int:
    return len(dag_cbor.encode(obj))


def within_limits(request: dict[str, Any], answer: dict[str, Any]) -> None:
    size, answer_size = encoded(request), encoded(answer)
    assert answer_size <= MAX_SYNC_MESSAGE_BYTES
    assert answer_size <= max(ANSWER_RATIO * size, MIN_ANSWER_BYTES), (size, answer_size)
    assert answer_size <= answer_budget(size)


# -- the pure core ---------------------------------------------------------------------------


def test_the_amplification_request_is_refused() -> None:
    own = ItemSet(cids(200))
    request = amplification_request()
    assert encoded(request) > 600_000
    with pytest.raises(RequestRefused):
        respond(own, request)


@pytest.mark.parametrize(
    ("why", "ranges"),
    [
        ("overlapping", [[b"", b"\x05", WRONG], [b"\x03", None, WRONG]]),
        ("unsorted", [[b"\x05", b"\x06", WRONG], [b"\x01", b"\x02", WRONG]]),
        ("after an unbounded range", [[b"", None, WRONG], [b"\x05", None, WRONG]]),
        ("empty", [[b"\x05", b"\x05", WRONG]]),
        ("inverted", [[b"\x06", b"\x05", WRONG]]),
        ("long bound", [[b"\x01" * (MAX_BOUND_BYTES + 1), None, WRONG]]),
        ("short fingerprint", [[b"", None, b"\x00"]]),
        ("not a list", [[b"", None]]),
        ("integer bound", [[0, None, WRONG]]),
    ],
)
def test_malformed_requests_are_refused(why: str, ranges: list[Any]) -> None:
    with pytest.raises(RequestRefused):
        respond(ItemSet(cids(200)), {"t": "recon", "ranges": ranges})


def test_no_more_ranges_than_a_responder_would_send() -> None:
    own = ItemSet(cids(200))
    limit = max_request_ranges(len(own))
    assert limit == BRANCH * (200 // 33)
    bounds = sorted(cids(limit + 1, seed=1))
    ok = [[bounds[k], bounds[k + 1], WRONG] for k in range(limit)]
    within_limits({"t": "recon", "ranges": ok}, respond(own, {"t": "recon", "ranges": ok}))
    too_many = [*ok, [bounds[-1], None, WRONG]]
    with pytest.raises(RequestRefused, match="ranges"):
        respond(own, {"t": "recon", "ranges": too_many})


@pytest.mark.parametrize("n", [0, 1, 200, 5000, 40_000])
def test_answers_keep_to_the_budget_whatever_the_ranges(n: int) -> None:
    """Valid requests of every shape (few or many ranges, wide or narrow, all fingerprints
    wrong) are answered within 4x their size (or the floor) and the frame limit."""
    own = ItemSet(cids(n))
    rng = random.Random(n)
    limit = max_request_ranges(n)
    for count in {1, 2, 16, limit // 2, limit}:
        for source in (own.items, cids(4 * count + 1, seed=count)):
            points = sorted(set(rng.sample(list(source), min(len(source), count + 1))))
            if len(points) < 2:
                points = [b"", b"\xff"]
            ranges: list[list[Any]] = [
                [points[k], points[k + 1], WRONG] for k in range(len(points) - 1)
            ]
            ranges[0][0] = b""
            ranges[-1][1] = None
            request = {"t": "recon", "ranges": ranges}
            answer = respond(own, request)
            within_limits(request, answer)
            absorb(ItemSet([]), answer)  # a well-formed answer (sorted, no overlap)


def test_an_initial_request_gets_at_most_the_floor() -> None:
    own = ItemSet(cids(100_000))
    request = {"t": "recon", "ranges": [[b"", None, WRONG]]}
    answer = respond(own, request)
    assert encoded(answer) <= MIN_ANSWER_BYTES
    assert len(answer["ranges"]) == BRANCH  # an honest first answer is not cut


@pytest.mark.parametrize(
    ("n", "difference", "extra"), [(0, 0, 5), (200, 0, 0), (200, 150, 3), (20_000, 2000, 50)]
)
def test_honest_reconciliation_converges_within_the_limits(
    n: int, difference: int, extra: int
) -> None:
    theirs = cids(n, seed=n)
    rng = random.Random(difference)
    dropped = set(rng.sample(range(n), difference))
    mine = [x for i, x in enumerate(theirs) if i not in dropped] + cids(extra, seed=-1)
    own, other = ItemSet(mine), ItemSet(theirs)
    request: dict[str, Any] | None = initial_request(own)
    found: list[bytes] = []
    rounds = 0
    while request is not None:
        rounds += 1
        answer = respond(other, request)  # check_request accepts every honest request
        within_limits(request, answer)
        more, request = absorb(own, answer)
        found += more
    assert sorted(found) == sorted(theirs[i] for i in dropped)
    assert rounds <= 8
    missing, _, _ = reconcile_locally(own, other)
    assert sorted(missing) == sorted(found)


def classic(own: ItemSet, request: dict[str, Any]) -> dict[str, Any]:
    """docs/protocol.md 4.1 without any budget: the answer before the limits existed."""
    ranges: list[list[Any]] = []
    ids: list[list[Any]] = []
    for lo, hi, fp in request["ranges"]:
        i, j = own.span(lo, hi)
        if own.fingerprint(lo, hi) == fp:
            continue
        if j - i <= 32:
            ids.append([lo, hi, own.items[i:j]])
            continue
        step = (j - i + 15) // 16
        for start in range(i, j, step):
            end = own.items[start + step] if start + step < j else hi
            ranges.append([lo, end, own.fingerprint(lo, end)])
            lo = end
    return {"t": "recon", "ranges": ranges, "ids": ids}


@pytest.mark.parametrize("n", [0, 10, 40, 500])
def test_small_honest_answers_are_unchanged_by_the_limits(n: int) -> None:
    own = ItemSet(cids(n))
    request = {"t": "recon", "ranges": [[b"", None, WRONG]]}
    assert respond(own, request) == classic(own, request)
    mine = ItemSet(cids(n)[: n // 2])
    honest: dict[str, Any] | None = initial_request(mine)
    while honest is not None:
        answer, unlimited = respond(own, honest), classic(own, honest)
        if encoded(unlimited) + 16 <= answer_budget(encoded(honest)):
            assert answer == unlimited  # cut only when over the budget
        else:
            assert encoded(answer) <= answer_budget(encoded(honest))
        _, honest = absorb(mine, answer)


# -- the server on an in-memory stream ---------------------------------------------------------


class FakeStream:
    def __init__(self, data: bytes, peer: str = "peer", *, hang: bool = False) -> None:
        self._in = bytearray(data)
        self.out = bytearray()
        self.hang = hang
        self.closed = self.was_reset = False
        self.muxed_conn = SimpleNamespace(peer_id=peer)

    async def read(self, n: int) -> bytes:
        await trio.lowlevel.checkpoint()
        if not self._in:
            if self.hang:
                await trio.sleep_forever()
            return b""
        chunk = bytes(self._in[:n])
        del self._in[:n]
        return chunk

    async def write(self, data: bytes) -> None:
        await trio.lowlevel.checkpoint()
        self.out += data

    async def close(self) -> None:
        self.closed = True

    async def reset(self) -> None:
        self.was_reset = True

    def answers(self) -> list[tuple[dict[str, Any], int]]:
        out, data = [], bytes(self.out)
        while data:
            size = shift = i = 0
            while True:
                byte = data[i]
                size |= (byte & 0x7F) << shift
                shift += 7
                i += 1
                if not byte & 0x80:
                    break
            out.append((cast(dict[str, Any], dag_cbor.decode(data[i : i + size])), size))
            data = data[i + size :]
        return out


class FakeSink(QuietSink):
    def __init__(self, items: list[bytes], records: list[tuple[bytes, str]] | None = None):
        self.items = items
        self.records = records or []

    async def receive_records(
        self, records: Sequence[SignedRecord], peer: str, origin: Origin
    ) -> int:
        return 0

    def record_cids(self, set_name: str | None = None) -> list[bytes]:
        return list(self.items) if set_name in (None, DEFAULT_COLLECTION) else []

    def set_version(self) -> int:
        return len(self.items)

    def signed_records(self, cids: Sequence[bytes]) -> list[tuple[bytes, str]]:
        return list(self.records)


def serve(sink: FakeSink, *streams: FakeStream) -> list[tuple[Any, str]]:
    offences: list[tuple[Any, str]] = []
    server = SyncServer(cast(Any, sink), cast(Any, None), lambda p, r: offences.append((p, r)))

    async def main() -> None:
        async with trio.open_nursery() as nursery:
            for stream in streams:
                nursery.start_soon(server.handle, cast(Any, stream))

    trio.run(main)
    return offences


def test_server_refuses_the_amplification_request_and_counts_an_offence() -> None:
    framed = encode_message(amplification_request())
    stream = FakeStream(framed)
    offences = serve(FakeSink(cids(200)), stream)
    [(answer, size)] = stream.answers()
    assert answer["t"] == "error"
    assert size <= ANSWER_RATIO * len(framed) and size <= MAX_SYNC_MESSAGE_BYTES
    assert len(offences) == 1 and offences[0][0] == "peer"
    assert stream.closed and not stream.was_reset  # a reset would drop the error in flight


def test_server_answers_honest_rounds_within_the_limits() -> None:
    theirs = cids(3000)
    mine = ItemSet(theirs[:2500])
    request: dict[str, Any] | None = initial_request(mine)
    found: list[bytes] = []
    while request is not None:
        stream = FakeStream(encode_message(request))
        assert serve(FakeSink(theirs), stream) == []
        [(answer, size)] = stream.answers()
        assert size <= answer_budget(encoded(request))
        assert stream.closed and not stream.was_reset
        more, request = absorb(mine, answer)
        found += more
    assert sorted(found) == sorted(theirs[2500:])


def test_reconciliation_runs_in_a_worker_thread(monkeypatch: pytest.MonkeyPatch) -> None:
    threads: list[threading.Thread] = []

    def spy(own: ItemSet, request: dict[str, Any], size: int | None = None) -> dict[str, Any]:
        threads.append(threading.current_thread())
        return respond(own, request, size)

    monkeypatch.setattr(sync, "respond", spy)
    stream = FakeStream(encode_message(initial_request(ItemSet([]))))
    serve(FakeSink(cids(100)), stream)
    assert threads and threads[0] is not threading.main_thread()
    assert stream.answers()[0][0]["t"] == "recon"


def test_malformed_frames_are_offences() -> None:
    for data in (b"\x05garbage", b"\xff" * 11, encode_varint(MAX_SYNC_MESSAGE_BYTES + 1)):
        stream = FakeStream(data)
        offences = serve(FakeSink(cids(10)), stream)
        assert len(offences) == 1, data
        assert stream.answers()[0][0]["t"] == "error"
        assert stream.closed
    stream = FakeStream(encode_message({"t": "nonsense"}))
    assert len(serve(FakeSink([]), stream)) == 1


def test_idle_streams_are_reset_without_an_offence(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(sync, "SYNC_IDLE_TIMEOUT", 0.2)
    quiet = FakeStream(b"", hang=True)
    slow = FakeStream(encode_message(initial_request(ItemSet([])))[:3], hang=True)
    assert serve(FakeSink(cids(10)), quiet, slow) == []
    assert quiet.was_reset and slow.was_reset and not quiet.out and not slow.out


def test_too_many_streams_from_one_peer(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(sync, "SYNC_IDLE_TIMEOUT", 0.5)
    streams = [FakeStream(b"", hang=True) for _ in range(MAX_STREAMS_PER_PEER + 1)]
    offences = serve(FakeSink([]), *streams)
    assert len(offences) == 1 and "streams" in offences[0][1]
    refused = [s for s in streams if s.out]
    assert len(refused) == 1 and refused[0].answers()[0][0]["t"] == "error"


def test_records_answers_fit_in_one_frame() -> None:
    big = [(os.urandom(20_000), "0x" + "11" * 65) for _ in range(256)]
    request = {"t": "get", "cids": cids(256)}
    stream = FakeStream(encode_message(request))
    assert serve(FakeSink([], big), stream) == []
    [(answer, size)] = stream.answers()
    assert size <= MAX_SYNC_MESSAGE_BYTES
    assert 0 < len(answer["records"]) < 256
    assert [r["block"] for r in answer["records"]] == [b for b, _ in big[: len(answer["records"])]]
