"""Curation: what attestations (``node.attestation``) do to the node that holds them.

``Curation`` is a rule of the write path (``node.ingest.RecordRule``) and the holder of the
node's view of who is trusted:

- **judge/refuse**: an attestation about a record this node holds that is not a fact is
  invalid (the sender is penalised like any invalid gossip). One about a fact this node has
  never seen is kept: the fact may arrive later, and until then the attestation counts for
  nobody.
- **stored**: a new attestation becomes the attester's current verdict on the fact when its
  ``(at, CID)`` is the greatest of that attester's attestations on it (all of them are kept
  and travel: the choice is the same on every node whatever the arrival order). Its edge in
  the attestation graph (``node.reputation``) goes from the attester to the fact's
  contributor; an attestation whose fact is not here yet waits (``pending``) and joins the
  graph when the fact arrives.
- **reputation**: recomputed in the background (``run``) after the graph changes, at most once
  per ``interval`` seconds, warm-started from the last scores, personalised to the operator's
  trust roots. Queries read the last snapshot and never wait for a recomputation.

Attestations are kept forever. Their weight is their attester's *current* trust: an attester
that loses every trusted endorsement keeps its attestations, which then weigh nothing (they
still show in the counts).

``Attester`` is the use case behind ``POST /v1/facts/{cid}/attestations``, ``knowhub attest``
and the MCP tool: it builds and checks the attestation (signed by the attester, or by the
operator key) and stores it through the one write path, so it is gossiped and anchored like
every record.

Invariants: the graph holds at most one verdict per (attester, fact), the greatest by
``(at, CID)`` among those stored; a query never blocks on a recomputation.
"""

from __future__ import annotations

import asyncio
import logging
import re
import threading
import time
from collections.abc import Awaitable, Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Protocol

from eth_utils.address import to_checksum_address

from node.attestation import ATTESTATION_KIND_NAME, Attestation, make_attestation
from node.errors import InvalidFact, InvalidInput, KnowhubError, NotFound, SignatureRequired
from node.kinds import decode_record
from node.ports import ContributorBook, FactRecords, FactRef, RecordBook, StoredFact
from node.records import RecordBody, SignedRecord
from node.reputation import DISPUTE, ENDORSE, AttestationGraph, Reputation, fact_weight
from node.results import Contribution, Standing
from node.signing import ADDRESS_PATTERN, SigningKey, check_signature, normalize_signature

log = logging.getLogger(__name__)

#: Seconds between retries of attestations whose fact had not arrived, when nothing else
#: wakes the recomputation.
PENDING_RETRY = 10.0
#: Fact CIDs looked up per pass for pending attestations (a flood of attestations about
#: facts nobody has costs a bounded lookup each pass).
PENDING_LOOKUPS = 10_000
_ADDRESS = re.compile(ADDRESS_PATTERN)


class CurationCatalog(FactRecords, RecordBook, ContributorBook, Protocol):
    """The catalog roles curation uses."""


@dataclass(frozen=True, slots=True)
class ContributorView:
    address: str
    reputation: float
    #: The contributor's share of the trust (EigenTrust score, all scores sum to 1).
    trust: float
    trust_root: bool
    facts: int
    endorsements: int
    disputes: int
    endorsements_given: int
    disputes_given: int


class Curation:
    def __init__(
        self, catalog: CurationCatalog, roots: Iterable[str], *, interval: float = 0.5
    ) -> None:
        self._catalog = catalog
        self._roots = frozenset(roots)
        self._interval = interval
        self._lock = threading.Lock()
        self._graph = AttestationGraph()
        #: (attester, fact CID) -> (at, CID, verdict) of the current attestation (not the
        #: whole record: a million attestations stay a few hundred MB smaller).
        self._current: dict[tuple[str, str], tuple[int, str, str]] = {}
        #: Fact CID -> attesters whose current attestation waits for the fact.
        self._pending: dict[str, set[str]] = {}
        self._reputation = Reputation.compute(self._graph, self._roots)
        self._changed = asyncio.Event()
        self._loop: asyncio.AbstractEventLoop | None = None

    # -- start -----------------------------------------------------------------------------

    def load(self) -> None:
        """At start (blocking): every stored attestation into the graph, then the scores."""
        with self._lock:
            for stored in self._catalog.records_of_kind(ATTESTATION_KIND_NAME):
                try:
                    body = decode_record(stored.block)
                except KnowhubError as exc:  # stored by an older, laxer node: skip it
                    log.warning("stored attestation %s no longer decodes: %s", stored.cid, exc)
                    continue
                if isinstance(body, Attestation):
                    self._consider(body)
        self.recompute()
        log.info(
            "curation: %d attestations in the graph, %d contributors trusted",
            len(self._graph),
            len(self._reputation.trust),
        )

    # -- the write path's rule -------------------------------------------------------------

    def judge(self, records: Sequence[RecordBody]) -> dict[str, KnowhubError]:
        attestations = [r for r in records if isinstance(r, Attestation)]
        if not attestations:
            return {}
        others = self._catalog.held_records([a.about for a in attestations])
        return {
            a.cid: InvalidFact(
                f"attestation {a.cid} is about {a.about}, a record that is not a fact",
                field="about",
            )
            for a in attestations
            if a.about in others
        }

    def refuse(self, records: Sequence[RecordBody]) -> dict[str, KnowhubError]:
        return self.judge(records)

    def withdrawn(self, cids: Sequence[str]) -> set[str]:
        return set()

    def stored(self, records: Sequence[SignedRecord]) -> list[int]:
        changed = False
        with self._lock:
            for record in records:
                if isinstance(record.body, Attestation):
                    changed |= self._consider(record.body)
        if changed:
            self._wake()
        return []

    def facts_arrived(self) -> None:
        """Facts were stored: attestations waiting for them may join the graph now."""
        if self._pending:
            self._wake()

    def _wake(self) -> None:
        """Wake ``run`` from any thread (the rules run in worker threads)."""
        loop = self._loop
        if loop is not None and not loop.is_closed():
            loop.call_soon_threadsafe(self._changed.set)

    # -- the graph -------------------------------------------------------------------------

    def _consider(self, attestation: Attestation) -> bool:
        """Make ``attestation`` current if it is the latest of its attester on its fact
        (under the lock); whether the graph or the pending set changed."""
        key = (attestation.attester, attestation.about)
        old = self._current.get(key)
        if old is not None and (attestation.at, attestation.cid) <= old[:2]:
            return False
        self._current[key] = (attestation.at, attestation.cid, attestation.verdict)
        if self._graph.knows(attestation.about):  # its contributor is known: no lookup
            owner = self._graph.contributor(attestation.about)
            self._graph.set(attestation.attester, attestation.about, owner, attestation.verdict)
        else:
            self._pending.setdefault(attestation.about, set()).add(attestation.attester)
        return True

    def _resolve(self) -> None:
        """Join the pending attestations whose facts are known now (under the lock)."""
        if not self._pending:
            return
        wanted = list(self._pending)[:PENDING_LOOKUPS]
        owners = self._catalog.contributors_of(wanted)
        for about, owner in owners.items():
            for attester in self._pending.pop(about, ()):
                verdict = self._current[(attester, about)][2]
                self._graph.set(attester, about, owner, verdict)

    def recompute(self) -> None:
        """Resolve pending attestations and recompute the scores (blocking)."""
        with self._lock:
            self._resolve()
            self._reputation = Reputation.compute(self._graph, self._roots, start=self._reputation)

    async def run(self) -> None:
        """Recompute after changes, at most once per ``interval`` seconds; retry pending
        attestations every ``PENDING_RETRY`` seconds."""
        self._loop = asyncio.get_running_loop()
        while True:
            try:
                await asyncio.wait_for(self._changed.wait(), timeout=PENDING_RETRY)
            except TimeoutError:
                if not self._pending:
                    continue
            self._changed.clear()
            try:
                await asyncio.to_thread(self.recompute)
            except KnowhubError as exc:  # a catalog read failed: try again next time
                log.warning("reputation recomputation failed: %s", exc)
            await asyncio.sleep(self._interval)

    # -- reads -----------------------------------------------------------------------------

    def standing(self, facts: Sequence[FactRef | StoredFact]) -> list[Standing]:
        """Each fact's standing under the current reputation snapshot (no catalog reads)."""
        # No lock: the snapshot is immutable and the graph's reads copy atomically, so a query
        # never waits for a recomputation (which holds the lock while it runs).
        reputation = self._reputation
        out = []
        unattested: dict[str | None, Standing] = {}  # most hits: one standing per contributor
        for fact in facts:
            if not self._graph.knows(fact.cid):
                known = unattested.get(fact.contributor)
                if known is None:
                    known = unattested[fact.contributor] = Standing(
                        reputation=reputation.of(fact.contributor),
                        endorsements=0,
                        disputes=0,
                        trusted_disputes=0,
                        weight=fact_weight(reputation, fact.contributor, (), ()),
                    )
                out.append(known)
                continue
            endorsers, disputers = self._graph.fact_attesters(fact.cid)
            trusted = sum(1 for a in disputers if a != fact.contributor and reputation.of(a) > 0)
            out.append(
                Standing(
                    reputation=reputation.of(fact.contributor) if fact.contributor else 0.0,
                    endorsements=len(endorsers),
                    disputes=len(disputers),
                    trusted_disputes=trusted,
                    weight=fact_weight(reputation, fact.contributor, endorsers, disputers),
                )
            )
        return out

    def contributor(self, address: str) -> ContributorView:
        """What this node knows of ``address`` (any case of 0x + 40 hex; blocking: counts its
        facts); ``InvalidInput`` for anything else."""
        address = checksum_address(address)
        facts = self._catalog.facts_by(address)
        reputation = self._reputation
        received = self._graph.received(address)  # single dict reads: no lock (see standing)
        given = self._graph.given(address)
        return ContributorView(
            address=address,
            reputation=reputation.of(address),
            trust=reputation.trust.get(address, 0.0),
            trust_root=address in self._roots,
            facts=facts,
            endorsements=received[0],
            disputes=received[1],
            endorsements_given=given[0],
            disputes_given=given[1],
        )


def checksum_address(value: object) -> str:
    """``value`` as an EIP-55 address; ``InvalidInput`` unless it is 0x and 40 hex digits."""
    if not isinstance(value, str) or _ADDRESS.fullmatch(value) is None:
        raise InvalidInput("address must be 0x followed by 40 hex digits", field="address")
    return to_checksum_address(value)


class Attester:
    """The use case: endorse or dispute a fact, signed by the attester or the operator."""

    def __init__(
        self,
        catalog: FactRecords,
        operator: SigningKey,
        store: Callable[[Sequence[SignedRecord]], Awaitable[list[Contribution | KnowhubError]]],
    ) -> None:
        self._catalog = catalog
        self._operator = operator
        self._store = store

    def attestation_for(
        self, cid: str, verdict: str, contributor: str | None, at: int | None
    ) -> Attestation:
        """The attestation to sign (``contributor`` None: the operator's; ``at`` None: now);
        ``NotFound`` when the node has no such fact."""
        if self._catalog.get(cid) is None:
            raise NotFound(f"no fact {cid}")
        when = int(time.time()) if at is None else at
        return make_attestation(cid, verdict, contributor or self._operator.address, when)

    async def attest(
        self,
        cid: str,
        verdict: str,
        *,
        contributor: str | None,
        signature: str | None,
        at: int | None,
        as_operator: bool,
    ) -> tuple[Attestation, Contribution]:
        """Store an attestation on ``cid``; the attestation and whether it is new."""
        if signature is None and not as_operator:
            raise SignatureRequired(
                "an attestation needs its attester's signature of the attestation CID "
                "(EIP-191), or the operator's API key to attest with the operator key",
                field="signature",
            )
        if signature is None and contributor not in (None, self._operator.address):
            raise SignatureRequired(
                f"only {contributor}'s signature can attest as {contributor}", field="signature"
            )
        attestation = await asyncio.to_thread(self.attestation_for, cid, verdict, contributor, at)
        if signature is None:
            signature = self._operator.sign_cid(attestation.cid)
        else:
            signature = normalize_signature(signature)
            check_signature(attestation.cid, attestation.contributor, signature)
        (outcome,) = await self._store([SignedRecord(attestation, signature)])
        if isinstance(outcome, KnowhubError):
            raise outcome
        return attestation, outcome


__all__ = [
    "DISPUTE",
    "ENDORSE",
    "Attester",
    "ContributorView",
    "Curation",
    "Standing",
]
