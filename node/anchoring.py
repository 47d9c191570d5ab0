"""Anchoring: batch queued facts into Merkle roots and put each root on chain exactly once.

The queue, the batches and their transactions live in the catalog, so a restart resumes where
the node stopped. The rules that keep a root from being anchored twice:

* a batch's signed transaction (nonce, hash, raw bytes) is stored before it is broadcast;
* before sending or resending, the registry is asked whether the root is already anchored
  (by this node's earlier transaction or anyone else's) and, if so, that anchor is recorded;
* a resend reuses the stored nonce, so at most one of its transactions can be mined; and the
  contract itself reverts ``AlreadyAnchored`` as the last line of defence.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import ParamSpec, TypeVar

from multiformats import CID

from node.content import BlockService
from node.errors import ChainError, KnowhubError, NonceTooLow
from node.manifest import build_manifest
from node.merkle import build_tree
from node.ports import AnchorBook, AnchorEvent, Ledger, OnChainAnchor
from node.provenance import Batch, BatchStatus

log = logging.getLogger(__name__)

P = ParamSpec("P")
T = TypeVar("T")


@dataclass(frozen=True, slots=True)
class AnchorOptions:
    #: A batch closes when this many facts wait ...
    batch_size: int = 256
    #: ... or when the oldest has waited this many seconds.
    batch_age: float = 10.0
    #: Seconds between receipt checks while a transaction is outstanding.
    poll_interval: float = 0.5
    #: Re-sign a transaction with higher fees when it is not mined after this many seconds.
    resend_after: float = 60.0
    #: Seconds between rebroadcasts of an outstanding transaction.
    rebroadcast_interval: float = 5.0
    #: Blocks (including the one holding the transaction) before a batch counts as anchored.
    confirmations: int = 1
    #: Upper bound of the retry backoff after chain errors.
    max_backoff: float = 30.0


@dataclass(frozen=True, slots=True)
class AnchorStatus:
    queued: int
    open_batches: int
    last_anchored_block: int | None
    error: str | None


class Anchorer:
    def __init__(
        self,
        catalog: AnchorBook,
        ledger: Ledger,
        blocks: BlockService,
        options: AnchorOptions,
        on_anchored: Callable[[AnchorEvent], None] | None = None,
    ) -> None:
        self._on_anchored = on_anchored
        self._catalog = catalog
        self._ledger = ledger
        self._blocks = blocks
        self._options = options
        self._nonce: int | None = None
        self._audited = False
        self._last_broadcast: dict[int, float] = {}
        self._last_anchored_block: int | None = None
        self.wake = asyncio.Event()
        self.last_error: str | None = None

    @property
    def ledger(self) -> Ledger:
        return self._ledger

    async def run(self) -> None:
        backoff = self._options.poll_interval
        while True:
            try:
                outstanding = await self.step()
                self.last_error = None
                backoff = self._options.poll_interval
            except Exception as exc:  # the loop must outlive any one failure
                message = exc.message if isinstance(exc, KnowhubError) else repr(exc)
                if self.last_error != message:
                    if isinstance(exc, KnowhubError):
                        log.warning("anchoring paused, will retry: %s", message)
                    else:
                        log.exception("anchoring failed unexpectedly; will retry")
                self.last_error = message
                await asyncio.sleep(backoff)
                backoff = min(backoff * 2, self._options.max_backoff)
                continue
            self.wake.clear()
            timeout = self._options.poll_interval if outstanding else await self._idle_time()
            try:
                async with asyncio.timeout(timeout):
                    await self.wake.wait()
            except TimeoutError:
                pass

    async def step(self, *, flush: bool = False) -> bool:
        """Seal due batches, send sealed ones, check sent ones; True while any is unanchored."""
        await self._seal_due(flush)
        if not self._audited:
            await self._audit()
        open_batches = await _thread(self._catalog.batches, [BatchStatus.SENT, BatchStatus.SEALED])
        for batch in open_batches:
            if batch.status is BatchStatus.SENT:
                await self._check_sent(batch)
            else:
                await self._send(batch)
        remaining = await _thread(self._catalog.batches, [BatchStatus.SENT, BatchStatus.SEALED])
        return bool(remaining)

    async def flush(self, seconds: float) -> bool:
        """Seal every queued fact and drive the open batches until they are anchored or
        ``seconds`` pass (graceful shutdown). True when nothing is left unanchored."""
        try:
            async with asyncio.timeout(seconds):
                while await self.step(flush=True):  # noqa: ASYNC110 - polls the chain
                    await asyncio.sleep(self._options.poll_interval)
        except TimeoutError:
            log.warning("shutdown: batches unanchored after %.0f s; resumed on restart", seconds)
            return False
        except KnowhubError as exc:
            log.warning("shutdown: anchoring not finished (%s); it resumes on restart", exc.message)
            return False
        log.info("shutdown: every queued fact is anchored")
        return True

    def status(self) -> AnchorStatus:
        queued, _ = self._catalog.anchor_backlog()
        open_batches = self._catalog.batches([BatchStatus.SENT, BatchStatus.SEALED])
        return AnchorStatus(
            queued=queued,
            open_batches=len(open_batches),
            last_anchored_block=self._last_anchored_block,
            error=self.last_error,
        )

    # -- sealing -----------------------------------------------------------------------------

    async def _idle_time(self) -> float:
        queued, oldest = await _thread(self._catalog.anchor_backlog)
        if not queued or oldest is None:
            return 3600.0
        return max(0.05, oldest + self._options.batch_age - time.time())

    async def _seal_due(self, flush: bool) -> None:
        while True:
            queued, oldest = await _thread(self._catalog.anchor_backlog)
            if not queued or oldest is None:
                return
            due = queued >= self._options.batch_size or (
                time.time() - oldest >= self._options.batch_age
            )
            if not (due or flush):
                return
            await self._seal(
                await _thread(self._catalog.queued_for_anchor, self._options.batch_size)
            )

    async def _seal(self, queued: list[tuple[str, str, str | None]]) -> Batch:
        cids = [cid for cid, _, _ in queued]
        manifest, blocks = build_manifest(
            cids,
            {cid: kind for cid, kind, _ in queued},
            {cid: name for cid, _, name in queued if name is not None},
        )
        await self._blocks.store_dag(blocks, [manifest.cid])
        tree = build_tree([bytes(CID.decode(c)) for c in cids])
        proofs = {c: tree.proof(bytes(CID.decode(c))) for c in cids}
        batch = await _thread(self._catalog.seal_batch, tree.root, str(manifest.cid), proofs)
        log.info("sealed batch %d: %d records, root 0x%s", batch.id, batch.count, tree.root.hex())
        return batch

    # -- chain -------------------------------------------------------------------------------

    async def _audit(self) -> None:
        """Re-queue batches this chain has forgotten (e.g. a local dev chain that lost state)."""
        for batch in await _thread(self._catalog.batches, [BatchStatus.ANCHORED]):
            if batch.chain_id != self._ledger.chain_id or batch.registry != self._ledger.registry:
                continue
            if await _thread(self._ledger.get_anchor, batch.root) is None:
                log.warning(
                    "batch %d (root 0x%s) is not in registry %s any more; anchoring it again",
                    batch.id,
                    batch.root.hex(),
                    self._ledger.registry,
                )
                _reset(batch)
                await _thread(self._catalog.save_batch, batch)
            elif batch.block_number is not None:
                self._last_anchored_block = max(self._last_anchored_block or 0, batch.block_number)
        self._audited = True

    async def _next_nonce(self) -> int:
        if self._nonce is None:
            chain = await _thread(self._ledger.next_nonce)
            sent = await _thread(self._catalog.batches, [BatchStatus.SENT])
            mine = [
                b.nonce + 1
                for b in sent
                if b.nonce is not None and b.chain_id == self._ledger.chain_id
            ]
            self._nonce = max([chain, *mine])
        return self._nonce

    async def _send(self, batch: Batch) -> None:
        existing = await _thread(self._ledger.get_anchor, batch.root)
        if existing is not None:
            await self._record_anchor(batch, existing, None)
            return
        nonce = await self._next_nonce()
        tx = await _thread(
            self._ledger.sign_anchor, batch.root, batch.manifest_cid, batch.count, nonce
        )
        batch.status = BatchStatus.SENT
        batch.nonce, batch.tx_hash, batch.raw_tx = nonce, tx.tx_hash, tx.raw
        batch.sent_at = time.time()
        batch.attempts += 1
        batch.chain_id, batch.registry = self._ledger.chain_id, self._ledger.registry
        await _thread(self._catalog.save_batch, batch)  # written before it leaves the node
        self._nonce = nonce + 1
        await self._broadcast(batch)

    async def _broadcast(self, batch: Batch) -> None:
        assert batch.raw_tx is not None
        self._last_broadcast[batch.id] = time.monotonic()
        try:
            await _thread(self._ledger.broadcast, batch.raw_tx)
        except NonceTooLow:
            # The nonce went to another transaction. If that one anchored the root, the next
            # check records it; otherwise the batch is sent again with a fresh nonce.
            log.warning("batch %d: nonce %s already used", batch.id, batch.nonce)
            self._nonce = None
            anchor = await _thread(self._ledger.get_anchor, batch.root)
            if anchor is not None:
                await self._record_anchor(batch, anchor, None)
            else:
                _reset(batch)
                await _thread(self._catalog.save_batch, batch)
        else:
            log.info("batch %d: sent tx %s (nonce %s)", batch.id, batch.tx_hash, batch.nonce)

    async def _check_sent(self, batch: Batch) -> None:
        assert batch.tx_hash is not None
        mined = await _thread(self._ledger.receipt, batch.tx_hash)
        if mined is not None and mined.success:
            head = await _thread(self._ledger.head)
            if head - mined.block_number + 1 < self._options.confirmations:
                return
            anchor = await _thread(self._ledger.get_anchor, batch.root)
            if anchor is None:
                raise ChainError(f"tx {batch.tx_hash} succeeded but root is not anchored")
            await self._record_anchor(batch, anchor, batch.tx_hash)
            return
        anchor = await _thread(self._ledger.get_anchor, batch.root)
        if anchor is not None:  # anchored by an earlier or another transaction
            await self._record_anchor(batch, anchor, None)
            return
        if mined is not None:  # reverted for another reason: start over with a fresh nonce
            log.warning("batch %d: tx %s reverted; sending again", batch.id, batch.tx_hash)
            _reset(batch)
            await _thread(self._catalog.save_batch, batch)
            return
        now = time.time()
        if batch.sent_at is not None and now - batch.sent_at > self._options.resend_after:
            assert batch.nonce is not None
            bump = 1.25 ** min(batch.attempts, 8)
            tx = await _thread(
                self._ledger.sign_anchor,
                batch.root,
                batch.manifest_cid,
                batch.count,
                batch.nonce,
                bump,
            )
            log.info(
                "batch %d: not mined after %.0f s; fees x%.2f", batch.id, now - batch.sent_at, bump
            )
            batch.tx_hash, batch.raw_tx, batch.sent_at = tx.tx_hash, tx.raw, now
            batch.attempts += 1
            await _thread(self._catalog.save_batch, batch)
            await self._broadcast(batch)
        elif time.monotonic() - self._last_broadcast.get(batch.id, float("-inf")) >= (
            self._options.rebroadcast_interval
        ):
            await self._broadcast(batch)  # after a restart or an RPC outage

    async def _record_anchor(
        self, batch: Batch, anchor: OnChainAnchor, tx_hash: str | None
    ) -> None:
        if tx_hash is None:
            tx_hash = await _thread(self._ledger.find_anchor_tx, batch.root, anchor.block_number)
        batch.status = BatchStatus.ANCHORED
        batch.tx_hash = tx_hash
        batch.chain_id, batch.registry = self._ledger.chain_id, self._ledger.registry
        batch.block_number, batch.anchored_at = anchor.block_number, anchor.timestamp
        batch.submitter = anchor.submitter
        await _thread(self._catalog.save_batch, batch)
        self._last_broadcast.pop(batch.id, None)
        self._last_anchored_block = max(self._last_anchored_block or 0, anchor.block_number)
        if self._on_anchored is not None and tx_hash is not None:
            self._on_anchored(
                AnchorEvent(
                    batch.root,
                    anchor.submitter,
                    batch.manifest_cid,
                    batch.count,
                    tx_hash,
                    anchor.block_number,
                )
            )
        log.info(
            "batch %d anchored: %d facts, block %d, tx %s",
            batch.id,
            batch.count,
            anchor.block_number,
            tx_hash,
        )


def _reset(batch: Batch) -> None:
    batch.status = BatchStatus.SEALED
    batch.nonce = batch.tx_hash = batch.raw_tx = batch.sent_at = None
    batch.block_number = batch.anchored_at = None
    batch.submitter = None


async def _thread(fn: Callable[P, T], *args: P.args, **kwargs: P.kwargs) -> T:
    return await asyncio.to_thread(fn, *args, **kwargs)
