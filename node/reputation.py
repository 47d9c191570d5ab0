"""Contributor reputation: who this node trusts, from attestations, relative to its trust roots.

A contributor's facts are endorsed or disputed by other contributors' attestations
(``node.attestation`` is the record). This module owns what the node makes of them, and nothing
else: no I/O, no clock, no event loop.

- :class:`AttestationGraph` holds the *current* attestations, one per (attester, fact): the
  caller decides which one is current (``Attestation.supersedes``) and calls ``set`` with it.
  Beside it, the graph keeps per-fact, per-contributor and per-attester counts and the
  endorsement and dispute counts per (attester, contributor) pair, all updated in O(1) per
  change.
- :func:`trust_scores` is EigenTrust with pre-trusted peers (Kamvar, Schlosser and
  Garcia-Molina, 2003), i.e. personalised PageRank over positive local trust, teleporting to
  the node's trust roots. It is vectorised (numpy) over integer-numbered addresses.
- :class:`Reputation` turns trust into a reputation in [0, 1]; :func:`fact_weight` turns the
  reputations of a fact's contributor, endorsers and disputers into the factor retrieval
  multiplies the reciprocal of the fact's relevance position by (``node.search``).

Invariants:

- Sybil resistance: an address that no trust root reaches through positive edges has trust
  exactly 0 (absent from the scores), however many keys endorse it or each other; its facts
  weigh ``UNTRUSTED_WEIGHT``. The only way in is an endorsement by a reached key.
- An attestation by a fact's own contributor is recorded but makes no edge: nobody raises
  their own trust.
- Scores depend on the set of current attestations and the roots only, never on the order the
  attestations arrived in; they are personalised, so two nodes with different roots disagree.
- The exact rules are stated in docs/protocol.md and pinned by docs/vectors/reputation.json
  (``scripts/make_reputation_vectors.py``).
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping, MutableMapping
from dataclasses import dataclass
from statistics import median
from types import MappingProxyType

import numpy as np
import numpy.typing as npt

ENDORSE = "endorse"
DISPUTE = "dispute"
VERDICTS = (ENDORSE, DISPUTE)
#: Teleport probability: the share of trust sent back to the roots at every step.
ALPHA = 0.15
#: An address whose trust is at least this share of the median trust of the reached keys
#: counts fully (reputation 1).
REFERENCE_SHARE = 0.5
#: The weight of a fact whose contributor has no reputation (no trust root reaches it).
UNTRUSTED_WEIGHT = 0.05

_FloatArray = npt.NDArray[np.float64]
_IntArray = npt.NDArray[np.intp]


class AttestationGraph:
    """The current attestations: one verdict per (attester, fact), and each fact's contributor.

    Every query is O(1) or O(degree); ``set`` and ``remove`` are O(1). The edge view is the
    (endorsements, disputes) count per (attester, contributor) pair, attester and contributor
    distinct, pairs with neither left out.
    """

    __slots__ = ("_authors", "_edges", "_facts", "_given", "_received", "_size", "_version")

    def __init__(self) -> None:
        #: fact CID -> attester -> verdict
        self._facts: dict[str, dict[str, str]] = {}
        #: fact CID -> its contributor, while the fact has an attestation
        self._authors: dict[str, str | None] = {}
        #: contributor -> [endorsements, disputes] received (self-attestations excluded)
        self._received: dict[str, list[int]] = {}
        #: attester -> [endorsements, disputes] given (self-attestations included)
        self._given: dict[str, list[int]] = {}
        #: attester -> contributor -> [endorsements, disputes], not both 0, attester != contributor
        self._edges: dict[str, dict[str, list[int]]] = {}
        self._size = 0
        self._version = 0

    def __len__(self) -> int:
        return self._size

    @property
    def version(self) -> int:
        """Grows by one at every change (a cheap "has anything changed" for callers)."""
        return self._version

    def set(self, attester: str, fact_cid: str, contributor: str | None, verdict: str) -> bool:
        """Record ``attester``'s current verdict on ``fact_cid`` (a fact by ``contributor``),
        replacing their earlier one; True when something changed.

        The contributor's own attestation, or one on a fact without a contributor (None), is
        recorded but makes no edge and counts in nobody's ``received``. ``ValueError`` for a
        verdict other than ``ENDORSE`` or ``DISPUTE``, or for a contributor other than the one
        the fact's earlier attestations named (a fact's CID fixes its contributor).
        """
        if verdict not in VERDICTS:
            raise ValueError(f"verdict must be one of {', '.join(VERDICTS)}, not {verdict!r}")
        entries = self._facts.get(fact_cid)
        if entries is None:
            entries = self._facts[fact_cid] = {}
            self._authors[fact_cid] = contributor
        elif self._authors[fact_cid] != contributor:
            raise ValueError(
                f"fact {fact_cid} is by {self._authors[fact_cid]}, not by {contributor}"
            )
        old = entries.get(attester)
        if old == verdict:
            return False
        if old is None:
            self._size += 1
        else:
            self._count(attester, contributor, old, -1)
        entries[attester] = verdict
        self._count(attester, contributor, verdict, 1)
        self._version += 1
        return True

    def remove(self, attester: str, fact_cid: str) -> bool:
        """Forget ``attester``'s verdict on ``fact_cid``; True when there was one."""
        entries = self._facts.get(fact_cid)
        if entries is None or attester not in entries:
            return False
        verdict = entries.pop(attester)
        contributor = self._authors[fact_cid]
        if not entries:
            del self._facts[fact_cid]
            del self._authors[fact_cid]
        self._size -= 1
        self._count(attester, contributor, verdict, -1)
        self._version += 1
        return True

    def verdict(self, attester: str, fact_cid: str) -> str | None:
        return self._facts.get(fact_cid, {}).get(attester)

    def knows(self, fact_cid: str) -> bool:
        """Whether ``fact_cid`` has an attestation here (so its contributor is known, maybe
        None)."""
        return fact_cid in self._authors

    def contributor(self, fact_cid: str) -> str | None:
        """The contributor of ``fact_cid`` as its attestations name it (None without any)."""
        return self._authors.get(fact_cid)

    def fact_attesters(self, fact_cid: str) -> tuple[tuple[str, ...], tuple[str, ...]]:
        """(endorsers, disputers) of ``fact_cid``, each sorted; the fact's own contributor
        included when they attested it (``fact_weight`` leaves them out)."""
        # one C-level copy: safe beside a writer in another thread (no lock on the read path)
        entries = list(self._facts.get(fact_cid, {}).items())
        endorsers = sorted(a for a, v in entries if v == ENDORSE)
        disputers = sorted(a for a, v in entries if v == DISPUTE)
        return tuple(endorsers), tuple(disputers)

    def received(self, contributor: str) -> tuple[int, int]:
        """(endorsements, disputes) on ``contributor``'s facts by others."""
        counts = self._received.get(contributor)
        return (0, 0) if counts is None else (counts[0], counts[1])

    def given(self, attester: str) -> tuple[int, int]:
        """(endorsements, disputes) ``attester`` holds, on their own facts too."""
        counts = self._given.get(attester)
        return (0, 0) if counts is None else (counts[0], counts[1])

    def edges(self) -> Iterator[tuple[str, str, int, int]]:
        """(attester, contributor, endorsements, disputes) for every pair with either."""
        for attester, outs in self._edges.items():
            for contributor, (endorsed, disputed) in outs.items():
                yield attester, contributor, endorsed, disputed

    def net(self, attester: str, contributor: str) -> int:
        """Endorsements minus disputes by ``attester`` on ``contributor``'s facts."""
        endorsed, disputed = self._edges.get(attester, {}).get(contributor, (0, 0))
        return endorsed - disputed

    def _count(self, attester: str, contributor: str | None, verdict: str, sign: int) -> None:
        slot = 0 if verdict == ENDORSE else 1
        _bump(self._given, attester, slot, sign)
        if contributor is None or attester == contributor:
            return
        _bump(self._received, contributor, slot, sign)
        outs = self._edges.get(attester)
        if outs is None:
            outs = self._edges[attester] = {}
        pair = outs.get(contributor)
        if pair is None:
            pair = outs[contributor] = [0, 0]
        pair[slot] += sign
        if not (pair[0] or pair[1]):
            del outs[contributor]
            if not outs:
                del self._edges[attester]

    def _out_edges(self) -> Iterator[tuple[str, dict[str, list[int]]]]:
        """(attester, its out-edges as [endorsements, disputes]) for every attester."""
        return iter(self._edges.items())


def local_trust(endorsed: int, disputed: int) -> float:
    """l(a, c): a's endorsements of c's facts, times the share of a's verdicts on c's facts
    that are endorsements (``e * e / (e + d)``); 0 without an endorsement. Disputes scale an
    attester's trust in a contributor down without cancelling it: a key whose facts a root
    endorsed 13 times and disputed 52 times keeps a fifth of that trust (e - d would have cut
    it off, and with it all of the key's undisputed facts)."""
    if endorsed <= 0:
        return 0.0
    return endorsed * endorsed / (endorsed + max(disputed, 0))


def _bump(counts: dict[str, list[int]], key: str, slot: int, sign: int) -> None:
    pair = counts.get(key)
    if pair is None:
        pair = counts[key] = [0, 0]
    pair[slot] += sign
    if not (pair[0] or pair[1]):
        del counts[key]


@dataclass(frozen=True, slots=True)
class _Edges:
    """The positive edges as arrays over integer-numbered addresses."""

    names: list[str]
    src: _IntArray
    dst: _IntArray
    #: local trust l(a, c), then normalised per source to c(a, c)
    weight: _FloatArray


def _positive_edges(graph: AttestationGraph, roots: frozenset[str]) -> _Edges:
    """Addresses (sorted, so the numbering is independent of insertion order) and positive
    edges sorted by (source, destination), so every sum runs in one fixed order."""
    sources: list[str] = []
    targets: list[str] = []
    counts: list[float] = []
    for attester, outs in graph._out_edges():
        for contributor, (endorsed, disputed) in outs.items():
            if endorsed > 0:
                sources.append(attester)
                targets.append(contributor)
                counts.append(local_trust(endorsed, disputed))
    names = sorted(roots.union(sources, targets))
    index = {name: i for i, name in enumerate(names)}
    size = len(counts)
    src = np.fromiter(map(index.__getitem__, sources), dtype=np.intp, count=size)
    dst = np.fromiter(map(index.__getitem__, targets), dtype=np.intp, count=size)
    weight = np.array(counts, dtype=np.float64)
    order = np.argsort(src.astype(np.int64) * len(names) + dst)
    return _Edges(names, src[order], dst[order], weight[order])


def _reachable(n: int, src: _IntArray, dst: _IntArray, roots: _IntArray) -> npt.NDArray[np.bool_]:
    """Which addresses the roots reach through the edges (src sorted): breadth first, one
    vectorised step per level."""
    indptr = np.zeros(n + 1, dtype=np.intp)
    np.cumsum(np.bincount(src, minlength=n), out=indptr[1:])
    reached = np.zeros(n, dtype=np.bool_)
    reached[roots] = True
    frontier = roots
    while frontier.size:
        starts = indptr[frontier]
        counts = indptr[frontier + 1] - starts
        total = int(counts.sum())
        if total == 0:
            break
        offsets = np.repeat(starts - (np.cumsum(counts) - counts), counts) + np.arange(total)
        found = dst[offsets]
        frontier = np.unique(found[~reached[found]])
        reached[frontier] = True
    return reached


def trust_scores(
    graph: AttestationGraph,
    roots: Iterable[str],
    *,
    alpha: float = ALPHA,
    tolerance: float = 1e-10,
    max_iterations: int = 200,
    start: Mapping[str, float] | None = None,
    stats: MutableMapping[str, float] | None = None,
) -> dict[str, float]:
    """Global trust t per address, personalised to ``roots``: the addresses with t > 0
    (summing to 1), nothing for addresses the roots do not reach through positive edges.

    Local trust, with e and d the numbers of c's facts a endorses and disputes (a != c), is
    l(a, c) = e * e / (e + d) (``local_trust``; 0 when e = 0), and
    c(a, c) = l(a, c) / sum_x l(a, x). With p uniform over the roots and ``dangling`` the
    addresses without a positive out-edge,
    ``t <- (1 - alpha) * (C^T t + mass(t on dangling) * p) + alpha * p`` from ``t = p`` (or
    ``start``, restricted to the reached addresses and renormalised) until the L1 change is
    below ``tolerance`` or after ``max_iterations``. ``stats``, when given, receives
    ``iterations`` and ``change`` (the last L1 change).
    """
    if not 0.0 < alpha <= 1.0:
        raise ValueError(f"alpha must be in (0, 1], not {alpha}")
    root_set = frozenset(roots)
    if stats is not None:
        stats["iterations"] = 0
        stats["change"] = 0.0
    if not root_set:
        return {}
    edges = _positive_edges(graph, root_set)
    names = edges.names
    n = len(names)
    index = {name: i for i, name in enumerate(names)}
    root_ids = np.array(sorted(index[r] for r in root_set), dtype=np.intp)
    reached = _reachable(n, edges.src, edges.dst, root_ids)
    # Only the reached part moves: an unreached address never holds mass, so it stays at 0.0.
    keep = reached[edges.src]
    src, dst, weight = edges.src[keep], edges.dst[keep], edges.weight[keep]
    out = np.bincount(src, weights=weight, minlength=n)
    weight = weight / out[src]
    dangling = np.flatnonzero(reached & (out == 0))
    p = np.zeros(n, dtype=np.float64)
    p[root_ids] = 1.0 / root_ids.size
    t = _start_vector(start, index, reached, p)
    iterations = 0
    change = 0.0
    while iterations < max_iterations:
        flow = np.bincount(dst, weights=t[src] * weight, minlength=n)
        leaked = float(t[dangling].sum())
        following = (1.0 - alpha) * (flow + leaked * p) + alpha * p
        change = float(np.abs(following - t).sum())
        t = following
        iterations += 1
        if change < tolerance:
            break
    if stats is not None:
        stats["iterations"] = iterations
        stats["change"] = change
    t = t / t.sum()
    return {names[i]: float(t[i]) for i in np.flatnonzero(t > 0.0)}


def _start_vector(
    start: Mapping[str, float] | None,
    index: Mapping[str, int],
    reached: npt.NDArray[np.bool_],
    p: _FloatArray,
) -> _FloatArray:
    if start is None:
        return p.copy()
    t = np.zeros(len(p), dtype=np.float64)
    for name, value in start.items():
        i = index.get(name)
        if i is not None and reached[i] and value > 0.0:
            t[i] = value
    total = float(t.sum())
    return p.copy() if total <= 0.0 or not np.isfinite(total) else t / total


@dataclass(frozen=True, slots=True)
class Reputation:
    """Trust scores and what they make of an address: :meth:`of`, in [0, 1]."""

    trust: Mapping[str, float]
    roots: frozenset[str]
    #: the trust that counts fully: REFERENCE_SHARE x the median trust of the reached keys
    #: that are not roots (of the roots when there are none); 0 when nothing is reached
    reference: float

    @classmethod
    def compute(
        cls,
        graph: AttestationGraph,
        roots: Iterable[str],
        start: Reputation | None = None,
        *,
        alpha: float = ALPHA,
        tolerance: float = 1e-10,
        max_iterations: int = 200,
        stats: MutableMapping[str, float] | None = None,
    ) -> Reputation:
        """The reputation over ``graph`` seen from ``roots``; ``start`` (an earlier
        reputation) only warm-starts the iteration, the result is the same without it."""
        root_set = frozenset(roots)
        trust = trust_scores(
            graph,
            root_set,
            alpha=alpha,
            tolerance=tolerance,
            max_iterations=max_iterations,
            start=None if start is None else start.trust,
            stats=stats,
        )
        return cls(MappingProxyType(trust), root_set, _reference(trust, root_set))

    @classmethod
    def empty(cls, roots: Iterable[str]) -> Reputation:
        """The reputation before any attestation: the roots share the trust and count fully,
        everybody else has none (what :meth:`compute` gives over an empty graph)."""
        return cls.compute(AttestationGraph(), roots)

    def of(self, address: str | None) -> float:
        """min(1, trust / reference): 1 for an address with at least REFERENCE_SHARE of the
        median trust of the reached keys, 0 for one the roots do not reach (or None)."""
        if address is None or self.reference <= 0.0:
            return 0.0
        return min(1.0, self.trust.get(address, 0.0) / self.reference)


def _reference(trust: Mapping[str, float], roots: frozenset[str]) -> float:
    others = [value for name, value in trust.items() if name not in roots]
    pool = others or [value for name, value in trust.items() if name in roots]
    return REFERENCE_SHARE * float(median(pool)) if pool else 0.0


def fact_weight(
    reputation: Reputation,
    contributor: str | None,
    endorsers: Iterable[str],
    disputers: Iterable[str],
    *,
    floor: float = UNTRUSTED_WEIGHT,
) -> float:
    """The factor retrieval multiplies a hit's reciprocal relevance rank by (rank "reputation").

    With r the contributor's reputation (0 for a fact without one), we and wd the summed
    reputations of the fact's distinct endorsers and disputers other than its contributor,
    and g = (1 + we) / (1 + we + wd): ``floor + (1 - floor) * r * g``. So a fact by a key no
    trust root reaches keeps only ``floor`` of its score, one by a fully reputed key keeps all
    of it, and one disputed by a single fully reputed key and endorsed by none about half.
    """
    r = reputation.of(contributor)
    we = sum(reputation.of(a) for a in dict.fromkeys(endorsers) if a != contributor)
    wd = sum(reputation.of(a) for a in dict.fromkeys(disputers) if a != contributor)
    g = (1.0 + we) / (1.0 + we + wd)
    return floor + (1.0 - floor) * r * g
