"""The local port helper that tests, benchmarks and scripts/network.py share."""

from __future__ import annotations

import socket
import sys

import pytest

from tests.helpers import ephemeral_low, free_port


def test_ports_are_outside_the_ephemeral_range_distinct_and_bindable() -> None:
    # A port inside the ephemeral range may be given to any outgoing connection before the
    # process told to listen on it binds it ("Address already in use", a flaky network test).
    ports = [free_port() for _ in range(200)]
    assert len(set(ports)) == len(ports)
    assert all(1024 < p < ephemeral_low() for p in ports)
    for port in ports[:20]:
        with socket.socket() as sock:
            sock.bind(("127.0.0.1", port))


def test_a_port_someone_listens_on_is_never_handed_out(monkeypatch: pytest.MonkeyPatch) -> None:
    ports = sys.modules[free_port.__module__]
    # a fresh record of handed-out ports: the port the test offers next must not be skipped
    # only because an earlier test in this process was given it
    monkeypatch.setattr(ports, "_handed", set())
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", free_port()))
        taken.listen()
        busy = taken.getsockname()[1]
        # a port nobody holds right now (other processes on the machine bind ports too)
        other = next(
            p
            for p in range(20_000, ephemeral_low())
            if p != busy and ports._bindable(p, "127.0.0.1")
        )
        picks = iter([busy, busy, other])
        monkeypatch.setattr("random.randrange", lambda low, high: next(picks))
        assert free_port() == other
