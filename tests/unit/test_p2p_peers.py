"""The peer rules of p2p.peers, the gossip inbox bounds and the inbound admission counts."""

from __future__ import annotations

import trio

from p2p.admission import Admission, ConnectionLimits
from p2p.inbox import Inbox
from p2p.peers import PeerBook, PeerPolicy


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def book(**policy: float) -> tuple[PeerBook, Clock]:
    clock = Clock()
    return PeerBook(PeerPolicy(**policy), clock=clock, wall=clock), clock  # type: ignore[arg-type]


def test_offences_ban_at_the_limit_within_the_window_only() -> None:
    peers, clock = book(offence_limit=3, offence_window=60, ban_seconds=600)
    assert not peers.offence("a") and not peers.offence("a")
    clock.now += 61  # the first two fall out of the window
    assert not peers.offence("a") and not peers.offence("a")
    assert peers.offence("a")  # the third within 60 s bans
    assert peers.is_banned("a") and peers.refuses("a") and not peers.may_dial("a")
    clock.now += 601
    assert not peers.is_banned("a")


def test_a_penalised_address_refuses_untrusted_peers_only() -> None:
    peers, clock = book(offence_limit=100, ip_offence_limit=10)
    for i in range(10):  # ten fresh ids on one address, one offence each: no id is banned
        peers.connected(f"sybil{i}", "10.0.0.9")
        peers.offence(f"sybil{i}")
    peers.connected("fresh", "10.0.0.9")
    peers.connected("useful", "10.0.0.9")
    peers.delivered("useful", 3)
    peers.connected("boot", "10.0.0.9")
    peers.protect("boot")
    peers.connected("elsewhere", "10.0.0.10")
    assert peers.ip_penalised("10.0.0.9")
    assert peers.refuses("fresh") and peers.refuses("sybil3")
    assert not peers.refuses("useful") and not peers.refuses("boot")
    assert not peers.refuses("elsewhere")
    clock.now += 61  # the address's offences age out
    assert not peers.refuses("fresh")


def test_only_trusted_peers_are_dialled_with_backoff_and_a_cap() -> None:
    peers, clock = book(redial_min=1, redial_max=8, redial_attempts=3, useful_seconds=3600)
    assert not peers.may_dial("stranger")  # left, never useful: never redialled
    peers.delivered("useful", 1)
    assert peers.may_dial("useful")
    delays = []
    for _ in range(3):
        peers.dialled("useful", False)
        delays.append(peers.retry_in("useful"))
        assert not peers.may_dial("useful")
        clock.now += delays[-1]
    assert delays == [1, 2, 4]
    assert not peers.may_dial("useful")  # given up after three failures in a row
    peers.protect("boot")
    for _ in range(10):
        peers.dialled("boot", False)
    assert peers.retry_in("boot") == 8  # capped, and a protected peer is never given up
    clock.now += 8
    assert peers.may_dial("boot")
    clock.now += 3601  # usefulness expires
    peers.dialled("useful", True)
    assert not peers.may_dial("useful")


def test_trimming_keeps_trusted_and_young_and_drops_offenders_first() -> None:
    peers, clock = book(offence_limit=100)
    for i in range(10):
        peers.connected(f"p{i}", "10.0.0.1")
        clock.now += 1
    peers.protect("p0")
    peers.delivered("p1", 1)
    peers.offence("p5")
    clock.now += 10
    peers.connected("young", "10.0.0.2")
    connected = [f"p{i}" for i in range(10)] + ["young"]
    assert peers.choose_trim(connected, low=6, high=12, grace=5) == []  # not above high
    chosen = peers.choose_trim(connected, low=6, high=8, grace=5)
    assert len(chosen) == 5 and chosen[0] == "p5"
    assert not {"p0", "p1", "young"} & set(chosen)
    assert chosen[1:] == ["p9", "p8", "p7", "p6"]  # newest first among equals


def test_the_table_is_bounded_and_keeps_what_matters() -> None:
    peers, clock = book(max_records=50, offence_limit=1)
    peers.protect("boot")
    peers.delivered("useful", 1)
    peers.offence("banned")
    peers.connected("here", "10.0.0.1")
    for i in range(500):
        clock.now += 1
        peers.get(f"gone{i}")
    assert len(peers) <= 51
    kept = {peer for peer, _ in peers}
    assert {"boot", "useful", "banned", "here", "gone499"} <= kept
    assert "gone0" not in kept


def test_the_inbox_bounds_each_source_and_the_total() -> None:
    async def main() -> None:
        inbox: Inbox[int] = Inbox(per_source=4, total=6)
        assert inbox.put([1, 2, 3], "a")
        assert not inbox.put([4, 5], "a")  # over a's share: dropped, counted
        assert inbox.put([10, 11, 12], "b")
        assert not inbox.put([20], "c")  # over the total
        assert inbox.dropped == 3 and len(inbox) == 6
        assert await inbox.take() == {"a": [1, 2, 3], "b": [10, 11, 12]}
        assert len(inbox) == 0 and inbox.put([20], "c")
        assert await inbox.take() == {"c": [20]}
        with trio.move_on_after(0.05) as waited:
            await inbox.take()
        assert waited.cancelled_caught  # nothing waits: take waits

    trio.run(main)


def test_admission_caps_each_address_and_the_total_and_gives_slots_back() -> None:
    admission = Admission(ConnectionLimits(max_connections=5, max_per_ip=3))
    assert all(admission.admit("10.0.0.1") for _ in range(3))
    assert not admission.admit("10.0.0.1")
    assert admission.admit("10.0.0.2") and admission.admit("10.0.0.3")
    assert not admission.admit("10.0.0.4")  # the total
    assert admission.refused == 2
    for _ in range(3):
        admission.release("10.0.0.1")
    assert admission.per_ip("10.0.0.1") == 0 and admission.open == 2
    assert admission.admit("10.0.0.1") and admission.admit("10.0.0.4")


def test_a_penalised_address_gets_new_connections_at_a_rate_only() -> None:
    clock = Clock()
    penalised = {"10.0.0.9"}
    admission = Admission(
        ConnectionLimits(penalised_rate=1.0, penalised_burst=2),
        penalised=lambda ip: ip in penalised,
        clock=clock,
    )
    assert admission.admit("10.0.0.9") and admission.admit("10.0.0.9")  # the burst
    assert not admission.admit("10.0.0.9")
    assert all(admission.admit("10.0.0.10") for _ in range(10))  # others are not throttled
    clock.now += 1.0
    assert admission.admit("10.0.0.9") and not admission.admit("10.0.0.9")
    penalised.clear()  # the offences aged out
    assert all(admission.admit("10.0.0.9") for _ in range(5))
    assert admission.refused == 2


def test_addresses_whose_offences_aged_out_leave_the_table() -> None:
    peers, clock = book(max_records=50, offence_limit=100, offence_window=60)
    for i in range(100):
        peers.connected(f"p{i}", f"10.0.{i}.1")
        peers.offence(f"p{i}")
        peers.disconnected(f"p{i}")
    clock.now += 61
    for i in range(100):  # new records push the table over its bound: a prune
        peers.get(f"later{i}")
    assert len(peers._ip_offences) == 0  # the 100 stale addresses went with it
