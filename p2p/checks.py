"""Gossip envelope checks that remember their answers, so a repeated message costs a hash.

Why. Checking an envelope means decoding up to 64 fact blocks, re-encoding each to prove it
canonical and recovering each signature: ~0.3 ms a record, ~20 ms for a full envelope whose
last record is bad (the costliest invalid message, issue 15). A flood re-sends the same bytes
under fresh message ids, or the same good records around one new bad one, and relays forward
the same valid records again; none of that needs to be checked twice.

What. ``EnvelopeChecks.check`` is ``p2p.wire.decode_envelope`` with two bounded LRU memories:
the reason each rejected envelope was rejected (by the SHA-256 of its bytes), and the records
already verified (by block and signature bytes, at most ``record_bytes`` of blocks). Both
answers depend only on the bytes (``decode_envelope`` and ``verify_record`` are pure), so a
remembered answer is the answer; forgetting one only costs the check again. Valid envelopes
are not remembered whole: their records are.

Not thread-safe: ``p2p.host`` calls it from the trio thread only.
"""

from __future__ import annotations

import hashlib
from collections import OrderedDict
from typing import Any

from node.records import SignedRecord
from p2p.wire import InvalidEnvelope, decode_envelope, verify_record


class EnvelopeChecks:
    def __init__(
        self, rejected: int = 4096, records: int = 16384, record_bytes: int = 16 * 1024 * 1024
    ) -> None:
        self._rejected: OrderedDict[bytes, str] = OrderedDict()
        self._records: OrderedDict[tuple[bytes, bytes], SignedRecord] = OrderedDict()
        self._max_rejected = rejected
        self._max_records = records
        self._max_record_bytes = record_bytes
        self._record_bytes = 0
        self.remembered = 0  # answers given from memory (rejections and records)

    def check(self, data: bytes) -> list[SignedRecord]:
        """The envelope's verified facts; ``InvalidEnvelope`` as ``decode_envelope`` raises it."""
        digest = hashlib.sha256(data).digest()
        reason = self._rejected.get(digest)
        if reason is not None:
            self._rejected.move_to_end(digest)
            self.remembered += 1
            raise InvalidEnvelope(reason)
        try:
            return decode_envelope(data, self._verify)
        except InvalidEnvelope as exc:
            self._rejected[digest] = exc.message
            if len(self._rejected) > self._max_rejected:
                self._rejected.popitem(last=False)
            raise

    def _verify(self, block: Any, signature: Any) -> SignedRecord:
        if not isinstance(block, bytes) or not isinstance(signature, bytes):
            return verify_record(block, signature)  # raises with the reason
        key = (block, signature)
        known = self._records.get(key)
        if known is not None:
            self._records.move_to_end(key)
            self.remembered += 1
            return known
        verified = verify_record(block, signature)
        self._records[key] = verified
        self._record_bytes += len(block)
        while len(self._records) > self._max_records or self._record_bytes > self._max_record_bytes:
            (old_block, _), _ = self._records.popitem(last=False)
            self._record_bytes -= len(old_block)
        return verified
