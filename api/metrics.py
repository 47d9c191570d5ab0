"""Prometheus metrics of one app: request histograms, plus the node's figures at scrape time.

Each app gets its own ``CollectorRegistry`` (several nodes may live in one test process).
Latencies are observed by ``api.observability.RequestContext`` under the route *template*
(``/v1/facts/{cid}``), never the raw path, so label cardinality stays fixed. Gauges and
counters that the node already keeps (facts stored, peers, gossip, anchoring) are read from
``node.status()`` when ``/metrics`` is scraped rather than mirrored on every change.
"""

from __future__ import annotations

from collections.abc import Iterator

from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from node.results import NodeStatus

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
_INGEST_ROUTES = {("POST", "/v1/facts"), ("POST", "/v1/facts/batch")}
_QUERY_ROUTES = {("POST", "/v1/query")}
# Embedding-bound requests: ms for one fact, seconds for a batch of 1,000.
_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60)


class NodeCollector(Collector):
    """Turns the latest ``NodeStatus`` into metric families (set just before each scrape)."""

    def __init__(self) -> None:
        self.status: NodeStatus | None = None

    def collect(self) -> Iterator[Metric]:
        status = self.status
        if status is None:
            return
        yield _gauge("knowhub_facts_stored", "Facts in the catalog.", status.facts)
        yield _gauge("knowhub_index_vectors", "Vectors in the FAISS index.", status.index_size)
        yield _gauge(
            "knowhub_ipfs_publish_backlog",
            "Blocks waiting to be published to the content store.",
            status.publication_backlog,
        )
        ingest = status.ingest
        yield _gauge(
            "knowhub_ingest_queue_depth", "Texts waiting to be embedded for ingest.", ingest.pending
        )
        yield _gauge(
            "knowhub_ingest_queue_bound",
            "Ingest queue depth beyond which writes get 503.",
            ingest.bound,
        )
        yield _gauge(
            "knowhub_queries_waiting", "Queries waiting for the model.", ingest.queries_waiting
        )
        yield CounterMetricFamily(
            "knowhub_facts_deferred_to_sync",
            "Peers' facts left to catch-up sync because the ingest queue was full.",
            value=ingest.deferred_to_sync,
        )
        yield _gauge(
            "knowhub_ready",
            "1 when the node can take writes (see /readyz), else 0.",
            0 if status.not_ready() else 1,
        )
        chain = status.chain
        if chain is not None:
            yield _gauge("knowhub_anchor_queue_depth", "Facts waiting for a batch.", chain.queued)
            yield _gauge(
                "knowhub_anchor_open_batches",
                "Sealed or sent batches not yet anchored.",
                chain.open_batches,
            )
            if chain.last_anchored_block is not None:
                yield _gauge(
                    "knowhub_last_anchored_block",
                    "Block of this node's latest anchor.",
                    chain.last_anchored_block,
                )
            if chain.follow_block is not None:
                yield _gauge(
                    "knowhub_chain_follow_block",
                    "Last block whose Anchored events were read.",
                    chain.follow_block,
                )
        p2p = status.network
        if p2p is not None:
            yield _gauge("knowhub_peers_connected", "Connected libp2p peers.", p2p.connected_peers)
            yield _gauge("knowhub_p2p_up", "1 while the libp2p host runs.", int(p2p.running))
            gossip = CounterMetricFamily(
                "knowhub_gossip_messages",
                "Gossip messages by validation result.",
                labels=["result"],
            )
            gossip.add_metric(["accepted"], p2p.messages_accepted)
            gossip.add_metric(["rejected"], p2p.messages_rejected)
            gossip.add_metric(["refused"], p2p.messages_refused)
            yield gossip
            yield _counter(
                "knowhub_p2p_connections_refused",
                "Inbound libp2p connections refused by the per-address or total cap.",
                p2p.connections_refused,
            )
            yield _counter(
                "knowhub_p2p_inbox_dropped",
                "Facts from gossip dropped on a full inbox (left to sync).",
                p2p.inbox_dropped,
            )
            yield _gauge("knowhub_p2p_banned_peers", "Peers banned now.", p2p.banned_peers)
            bands = GaugeMetricFamily(
                "knowhub_p2p_peer_scores",
                "Connected peers by gossipsub score band (docs/protocol.md).",
                labels=["band"],
            )
            for band, count in sorted(p2p.score_bands.items()):
                bands.add_metric([band], count)
            yield bands
            facts = CounterMetricFamily(
                "knowhub_p2p_facts", "Facts moved over the network.", labels=["direction"]
            )
            facts.add_metric(["published"], p2p.facts_published)
            facts.add_metric(["received"], p2p.facts_received)
            yield facts
            yield _counter("knowhub_p2p_syncs", "Catch-up syncs completed.", p2p.syncs)


class Metrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        self.node = NodeCollector()
        self.registry.register(self.node)
        self.requests = Counter(
            "knowhub_http_requests",
            "HTTP requests by route template, method and status.",
            ["method", "route", "status"],
            registry=self.registry,
        )
        self.latency = Histogram(
            "knowhub_http_request_duration_seconds",
            "HTTP request latency by route template and method.",
            ["method", "route"],
            buckets=_BUCKETS,
            registry=self.registry,
        )
        self.ingest = Histogram(
            "knowhub_ingest_duration_seconds",
            "Latency of successful POST /v1/facts and /v1/facts/batch requests.",
            ["route"],
            buckets=_BUCKETS,
            registry=self.registry,
        )
        self.query = Histogram(
            "knowhub_query_duration_seconds",
            "Latency of successful POST /v1/query requests.",
            buckets=_BUCKETS,
            registry=self.registry,
        )

    def observe(self, method: str, route: str, status: int, seconds: float) -> None:
        self.requests.labels(method, route, str(status)).inc()
        self.latency.labels(method, route).observe(seconds)
        if status < 400:
            if (method, route) in _INGEST_ROUTES:
                self.ingest.labels(route).observe(seconds)
            elif (method, route) in _QUERY_ROUTES:
                self.query.observe(seconds)

    def render(self, status: NodeStatus) -> bytes:
        self.node.status = status
        return generate_latest(self.registry)


def _gauge(name: str, documentation: str, value: float) -> GaugeMetricFamily:
    return GaugeMetricFamily(name, documentation, value=value)


def _counter(name: str, documentation: str, value: float) -> CounterMetricFamily:
    return CounterMetricFamily(name, documentation, value=value)
