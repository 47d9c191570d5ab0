"""The parts of the two-phase messages of ``/knowhub/query/1`` (docs/protocol.md section 6c):
a pools request's ``terms``, a pools answer's ``stats`` and ``entries``, a fetch request's
``cids`` and a fetch answer's ``proofs``. Pure encode and strict decode; ``p2p.query_wire``
owns the maps around them (version, type, keys, collection names, errors) and the entry
points, and calls these.

On the wire::

    terms:   [[term: str, weight: int], ...]         1-MAX_QUERY_TERMS distinct terms, each
                                                     1-MAX_TERM_BYTES of UTF-8, weight
                                                     1-MAX_TERM_WEIGHT
    stats:   {"docs": int, "length": int, "df": [int, ...]}     one df per query term
    entries: [[cid: bytes, contributor: bytes | null, relevance: float, pools: int,
               length: int, tf: [int, ...]], ...]
    cids:    [bytes, ...]                            1-MAX_K distinct binary CIDs
    proofs:  [{"cid": str, "proof": {str: any}}, ...]

A CID in an entry or a fetch request is binary (``node.cid.cid_from_bytes`` gives its
canonical string); a contributor is its 20 address bytes (the domain holds the EIP-55
checksum string); ``pools`` has bit 1 for the dense pool and bit 2 for the keyword pool.

Invariant: a decoded part has passed every bound here for the request in hand: at most
``2 k`` entries, at most ``k`` of each pool, no CID twice, relevance finite within
``MAX_RELEVANCE``, every count an integer in ``0..MAX_COUNT``, one count per query term,
``TermStats.fault`` and ``DocTerms.fault`` clear; at most as many proofs as CIDs asked, each
for an asked CID (compared as canonical strings), none twice, each proof a map with string
keys. Anything else raises ``InvalidEnvelope``. What only the node can judge (the proofs, the
stated numbers against the facts) is judged there.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from eth_utils.address import to_checksum_address

from node.cid import canonical_cid_or_none, cid_from_bytes, cid_to_bytes
from node.keyword_stats import DocTerms, QueryTerms, TermStats
from node.limits import MAX_K, MAX_QUERY_TERMS, MAX_TERM_BYTES, MAX_TERM_WEIGHT
from node.network_ports import PoolEntry
from p2p.wire import MAX_WIRE_CID_CHARS, InvalidEnvelope, is_int, is_number

#: A stated relevance (a cosine) is at most this far from zero: 1 and float error.
MAX_RELEVANCE = 1.0001
#: A count is an integer below 2**53 (exact as a float, wherever it is summed).
MAX_COUNT = 2**53 - 1
#: ``pools`` bits: the entry is among the dense pool, the keyword pool.
DENSE_BIT = 1
KEYWORD_BIT = 2
ADDRESS_BYTES = 20
_ENTRY_FIELDS = 6
_PROOF_KEYS = frozenset({"cid", "proof"})


def encode_terms(terms: QueryTerms) -> list[list[Any]]:
    return [[term, weight] for term, weight in terms]


def decode_terms(raw: Any) -> QueryTerms:
    if not isinstance(raw, list) or not 0 < len(raw) <= MAX_QUERY_TERMS:
        raise InvalidEnvelope(f"terms must list 1-{MAX_QUERY_TERMS} [term, weight] pairs")
    terms: list[tuple[str, int]] = []
    for pair in raw:
        if not isinstance(pair, list) or len(pair) != 2:
            raise InvalidEnvelope("a term is a [term, weight] pair")
        term, weight = pair
        if (
            not isinstance(term, str)
            or not term
            or len(term.encode("utf-8", "surrogatepass")) > MAX_TERM_BYTES
        ):
            raise InvalidEnvelope(f"a term is a string of 1-{MAX_TERM_BYTES} bytes")
        if not is_int(weight) or not 1 <= weight <= MAX_TERM_WEIGHT:
            raise InvalidEnvelope(f"a term's weight is an integer 1-{MAX_TERM_WEIGHT}")
        terms.append((term, weight))
    if len({term for term, _ in terms}) != len(terms):
        raise InvalidEnvelope("terms must be distinct")
    return tuple(terms)


def encode_stats(stats: TermStats) -> dict[str, Any]:
    return {"docs": stats.docs, "length": stats.length, "df": list(stats.df)}


def decode_stats(raw: Any, n_terms: int) -> TermStats:
    if not isinstance(raw, dict) or set(raw) != {"docs", "length", "df"}:
        raise InvalidEnvelope("stats is a map of exactly docs, length and df")
    stats = TermStats(
        _count(raw["docs"], "stats docs"),
        _count(raw["length"], "stats length"),
        _counts(raw["df"], n_terms, "df"),
    )
    fault = stats.fault(n_terms)
    if fault is not None:
        raise InvalidEnvelope(f"stats: {fault}")
    return stats


def encode_entries(entries: Sequence[PoolEntry]) -> list[list[Any]]:
    return [
        [
            cid_to_bytes(e.cid),
            None if e.contributor is None else bytes.fromhex(e.contributor[2:]),
            float(e.relevance),
            (DENSE_BIT if e.dense else 0) | (KEYWORD_BIT if e.keyword else 0),
            e.terms.length,
            list(e.terms.tf),
        ]
        for e in entries
    ]


def decode_entries(raw: Any, k: int, n_terms: int) -> tuple[PoolEntry, ...]:
    """The candidates of a pools answer to a request of depth ``k`` and ``n_terms`` terms."""
    if not isinstance(raw, list) or len(raw) > 2 * k:
        raise InvalidEnvelope(f"entries lists at most 2k={2 * k} candidates (k per pool)")
    entries = tuple(_entry(item, n_terms) for item in raw)
    if len({e.cid for e in entries}) != len(entries):
        raise InvalidEnvelope("an entry's cid appears twice")
    if sum(e.dense for e in entries) > k or sum(e.keyword for e in entries) > k:
        raise InvalidEnvelope(f"at most k={k} entries of each pool")
    return entries


def _entry(raw: Any, n_terms: int) -> PoolEntry:
    if not isinstance(raw, list) or len(raw) != _ENTRY_FIELDS:
        raise InvalidEnvelope("an entry is [cid, contributor, relevance, pools, length, tf]")
    cid, contributor, relevance, pools, length, tf = raw
    cid = _binary_cid(cid, "an entry's cid")
    if contributor is not None and (
        not isinstance(contributor, bytes) or len(contributor) != ADDRESS_BYTES
    ):
        raise InvalidEnvelope(f"an entry's contributor is {ADDRESS_BYTES} bytes or null")
    if not is_number(relevance) or abs(relevance) > MAX_RELEVANCE:
        raise InvalidEnvelope(f"an entry's relevance is a finite number within {MAX_RELEVANCE}")
    if not is_int(pools) or not 1 <= pools <= DENSE_BIT | KEYWORD_BIT:
        raise InvalidEnvelope("an entry's pools is 1 (dense), 2 (keyword) or 3 (both)")
    terms = DocTerms(_count(length, "an entry's length"), _counts(tf, n_terms, "tf"))
    fault = terms.fault(n_terms)
    if fault is not None:
        raise InvalidEnvelope(f"an entry's terms: {fault}")
    return PoolEntry(
        cid=cid,
        contributor=None if contributor is None else to_checksum_address(contributor),
        relevance=float(relevance),
        dense=bool(pools & DENSE_BIT),
        keyword=bool(pools & KEYWORD_BIT),
        terms=terms,
    )


def encode_cids(cids: Sequence[str]) -> list[bytes]:
    return [cid_to_bytes(cid) for cid in cids]


def decode_cids(raw: Any) -> tuple[str, ...]:
    """A fetch request's CIDs: 1-``MAX_K`` distinct binary CIDs, as canonical strings."""
    if not isinstance(raw, list) or not 0 < len(raw) <= MAX_K:
        raise InvalidEnvelope(f"cids must list 1-{MAX_K} binary CIDs")
    cids = tuple(_binary_cid(cid, "a fetched cid") for cid in raw)
    if len(set(cids)) != len(cids):
        raise InvalidEnvelope("a fetched cid appears twice")
    return cids


def encode_proofs(proofs: Sequence[tuple[str, Mapping[str, Any]]]) -> list[dict[str, Any]]:
    return [{"cid": cid, "proof": dict(proof)} for cid, proof in proofs]


def decode_proofs(raw: Any, asked: Sequence[str]) -> tuple[tuple[str, Mapping[str, Any]], ...]:
    """A fetch answer's ``(cid, proof)`` pairs for the ``asked`` CIDs, each CID canonical."""
    if not isinstance(raw, list) or len(raw) > len(asked):
        raise InvalidEnvelope(f"proofs lists at most the {len(asked)} asked")
    wanted = {_canonical(cid) for cid in asked}
    out: list[tuple[str, Mapping[str, Any]]] = []
    seen: set[str] = set()
    for item in raw:
        if not isinstance(item, dict) or set(item) != _PROOF_KEYS:
            raise InvalidEnvelope(f"a proof entry is a map of exactly {sorted(_PROOF_KEYS)}")
        cid, proof = item["cid"], item["proof"]
        canonical = _canonical(cid) if isinstance(cid, str) else None
        if canonical is None or canonical not in wanted:
            raise InvalidEnvelope("a proof's cid is one of the asked")
        if canonical in seen:
            raise InvalidEnvelope("a proof's cid appears twice")
        seen.add(canonical)
        if not isinstance(proof, dict) or not all(isinstance(key, str) for key in proof):
            raise InvalidEnvelope("a proof is a map with string keys")
        out.append((canonical, proof))
    return tuple(out)


def _binary_cid(raw: Any, what: str) -> str:
    if not isinstance(raw, bytes) or not 0 < len(raw) <= MAX_WIRE_CID_CHARS:
        raise InvalidEnvelope(f"{what} is a binary CID")
    cid = cid_from_bytes(raw)
    if len(cid) > MAX_WIRE_CID_CHARS or _canonical(cid) != cid:
        raise InvalidEnvelope(f"{what} is a binary CID of at most {MAX_WIRE_CID_CHARS} characters")
    return cid


def _canonical(cid: str) -> str | None:
    """``cid`` in canonical form, or None when it is no CID (or too long to be one here)."""
    return None if len(cid) > MAX_WIRE_CID_CHARS else canonical_cid_or_none(cid)


def _count(raw: Any, what: str) -> int:
    if not is_int(raw) or not 0 <= raw <= MAX_COUNT:
        raise InvalidEnvelope(f"{what} is an integer 0-{MAX_COUNT}")
    return raw


def _counts(raw: Any, n_terms: int, what: str) -> tuple[int, ...]:
    if not isinstance(raw, list) or len(raw) != n_terms:
        raise InvalidEnvelope(f"{what} must have one count per query term ({n_terms})")
    return tuple(_count(value, what) for value in raw)
