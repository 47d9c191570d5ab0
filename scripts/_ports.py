"""Local TCP ports for the processes that tests, benchmarks and ``scripts/network.py`` start.

A port is chosen from *below* the kernel's ephemeral range and handed out once per process.
Asking the kernel for port 0 and closing the socket is not enough when the port is only bound
later by another process: in between, any outgoing connection on the machine (a node dialing
its peer, an HTTP client) may be given that very port as its local end, and the listener then
fails with "Address already in use". Ports outside the ephemeral range are never given to
outgoing connections, so that race cannot happen.
"""

from __future__ import annotations

import random
import socket
import threading
from pathlib import Path

_LOWEST = 20_000
_handed: set[int] = set()
_lock = threading.Lock()


def ephemeral_low() -> int:
    """First port of the kernel's ephemeral range (32768 when it cannot be read)."""
    try:
        text = Path("/proc/sys/net/ipv4/ip_local_port_range").read_text()
        return int(text.split()[0])
    except (OSError, ValueError, IndexError):
        return 32_768


def _bindable(port: int, host: str) -> bool:
    with socket.socket() as sock:
        try:
            sock.bind((host, port))
        except OSError:
            return False
    return True


def free_port(host: str = "127.0.0.1") -> int:
    """A port nobody listens on now, outside the ephemeral range, not handed out before."""
    high = ephemeral_low()
    if high - _LOWEST < 100:  # an unusual range: fall back to the kernel's choice
        with socket.socket() as sock:
            sock.bind((host, 0))
            return int(sock.getsockname()[1])
    with _lock:
        for _ in range(1000):
            port = random.randrange(_LOWEST, high)
            if port not in _handed and _bindable(port, host):
                _handed.add(port)
                return port
    raise RuntimeError(f"no free port between {_LOWEST} and {high}")
