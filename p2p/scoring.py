"""Gossipsub v1.1 peer scoring as this node configures it (py-libp2p 0.8.1's ``ScoreParams``).

The library names the global terms differently from the spec; the spec's names are used in
docs/protocol.md. Mapping and values:

* P4, invalid messages (library ``p4_invalid_messages``, per topic): each message the node's
  validator rejects adds 1, decaying 1 % per heartbeat (1 s, half-life ~70 s), weight -10,
  capped at 100. After ~5 recent invalid messages a peer is below ``publish_threshold`` (-50):
  the library then drops its messages before even checking their signatures, and stops
  sending to it.
* P7, behaviour penalty (library ``p5_behavior_penalty_*``): the library's own penalties (GRAFT
  floods, IWANT/IHAVE spam, duplicate extensions) above 2, linear, weight -5.
* P6, IP colocation (library ``p7_ip_colocation_*``): beyond 8 peers on one IP address, minus
  (excess peers)^2: a Sybil swarm on one address sinks below the graylist threshold (-80) from
  its 18th peer and loses its mesh slots to peers elsewhere.
* P5, application score (library ``p6_appl_slack_weight`` and ``app_specific_score_fn``): +2,
  plus ``TRUSTED_BONUS`` for trusted peers (bootstrap, operator-connected, recently useful:
  ``p2p.peers``), ``BANNED_PENALTY`` for banned ones. py-libp2p has no IP-colocation whitelist;
  the trusted bonus, larger than the colocation penalty at the per-address connection cap,
  stands in for it, so an honest peer behind the same address as a Sybil swarm keeps its place.

Scores are shown per peer in ``/v1/peers``, and connected peers by score band in
``knowhub_p2p_peer_scores`` on ``/metrics``.
"""

from __future__ import annotations

from collections.abc import Callable

from libp2p.peer.id import ID
from libp2p.pubsub.score import ScoreParams, TopicScoreParams

TRUSTED_BONUS = 5000.0
BANNED_PENALTY = -1000.0
COLOCATION_THRESHOLD = 8
GRAYLIST_THRESHOLD = -80.0


def score_params(trusted: Callable[[str], bool], banned: Callable[[str], bool]) -> ScoreParams:
    def application_score(peer: ID) -> float:
        key = str(peer)
        if banned(key):
            return BANNED_PENALTY
        return 2.0 + (TRUSTED_BONUS if trusted(key) else 0.0)

    return ScoreParams(
        p4_invalid_messages=TopicScoreParams(weight=10.0, cap=100.0, decay=0.99),
        p5_behavior_penalty_weight=5.0,
        p5_behavior_penalty_decay=0.99,
        p5_behavior_penalty_threshold=2.0,
        p6_appl_slack_weight=1.0,
        p6_appl_slack_decay=1.0,
        p7_ip_colocation_weight=1.0,
        p7_ip_colocation_threshold=COLOCATION_THRESHOLD,
        publish_threshold=-50.0,
        gossip_threshold=-25.0,
        graylist_threshold=GRAYLIST_THRESHOLD,
        accept_px_threshold=10.0,
        app_specific_score_fn=application_score,
    )
