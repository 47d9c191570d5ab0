"""The libp2p stack a knowhub host runs, with every setting chosen on purpose (the library's
defaults lose messages silently: docs/protocol.md section 1 and the platform notes).

``new_libp2p_host``: TCP, Noise only (no plaintext, secio or TLS), Yamux, identify and ping; no
automatic dialling of peers from the peerstore (the node dials its bootstrap peers itself,
with backoff, and must not redial peers it blocked). ``new_gossipsub``: gossipsub 1.1
(``/meshsub/1.1.0`` with the 1.0.0 fallback; 1.2's IDONTWANT costs ~7 ms CPU per relayed
message here), degree 6 (4-12), a 1 s heartbeat, no built-in per-topic publish throttle, and
the node's peer scores (``p2p.scoring``). Pure construction: nothing runs until the host does.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, cast

from libp2p import new_host
from libp2p.abc import IHost
from libp2p.crypto.x25519 import create_new_key_pair as x25519_key_pair
from libp2p.custom_types import TMuxerOptions, TProtocol
from libp2p.network.config import ConnectionConfig
from libp2p.pubsub.gossipsub import GossipSub
from libp2p.security.noise.transport import PROTOCOL_ID as NOISE_ID
from libp2p.security.noise.transport import Transport as NoiseTransport
from libp2p.stream_muxer.yamux.yamux import PROTOCOL_ID as YAMUX_ID
from libp2p.stream_muxer.yamux.yamux import Yamux

from p2p.scoring import score_params

GOSSIP_PROTOCOLS = [TProtocol("/meshsub/1.1.0"), TProtocol("/meshsub/1.0.0")]


def new_libp2p_host(key_pair: Any, max_connections: int) -> IHost:
    return new_host(
        key_pair=key_pair,
        sec_opt={NOISE_ID: NoiseTransport(key_pair, noise_privkey=x25519_key_pair().private_key)},
        muxer_opt=cast(TMuxerOptions, {YAMUX_ID: Yamux}),
        connection_config=ConnectionConfig(
            min_connections=0,
            low_watermark=0,
            max_connections=max_connections,
            high_watermark=max_connections,
        ),
    )


def new_gossipsub(is_trusted: Callable[[str], bool], is_banned: Callable[[str], bool]) -> GossipSub:
    return GossipSub(
        protocols=GOSSIP_PROTOCOLS,
        degree=6,
        degree_low=4,
        degree_high=12,
        heartbeat_interval=1,
        heartbeat_initial_delay=0.1,
        spam_protection_enabled=False,
        score_params=score_params(is_trusted, is_banned),
    )
