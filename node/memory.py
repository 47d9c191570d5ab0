"""In-memory fakes of the ports, for fast unit tests. Never the only test of an adapter:
``tests/congruence`` runs the same assertions against these and the real adapters."""

from __future__ import annotations

import hashlib
import json
import re
from collections import Counter
from collections.abc import Callable, Sequence

import numpy as np

from node.cid import canonical_cid_string, verify_block
from node.errors import ChainError, InvalidInput, NonceTooLow, NotFound
from node.keyword_stats import DocTerms, QueryTerms, TermStats, bm25_scores
from node.merkle import verify_proof
from node.model_identity import ModelDescription, bare_description
from node.ports import AnchorEvent, Ids, MinedTx, OnChainAnchor, SignedTx, Vectors
from node.search import Hit

_WORD = re.compile(r"\w+")


class HashEmbedder:
    """Bag-of-words feature hashing: deterministic, unit length, shares words -> similar."""

    def __init__(self, dimension: int = 384, model_name: str = "hash-bow") -> None:
        self._dimension = dimension
        self._model_name = model_name
        self._yield_point: Callable[[], None] | None = None

    def set_yield_point(self, yield_point: Callable[[], None] | None) -> None:
        """Called before each text (a real model calls it before each layer)."""
        self._yield_point = yield_point

    @property
    def model_name(self) -> str:
        return self._model_name

    @property
    def dimension(self) -> int:
        return self._dimension

    @property
    def description(self) -> ModelDescription:
        """What names the fake's vectors (``node.model_identity``): its name and dimension,
        fp32, no weights; a node whose options describe no model is described so too."""
        return bare_description(self._model_name, self._dimension)

    def embed(self, texts: Sequence[str]) -> Vectors:
        out = np.zeros((len(texts), self._dimension), dtype=np.float32)
        for row, text in enumerate(texts):
            if self._yield_point is not None:
                self._yield_point()
            for word in _WORD.findall(text.lower()):
                digest = hashlib.blake2b(word.encode(), digest_size=8).digest()
                slot = int.from_bytes(digest[:4], "little") % self._dimension
                out[row, slot] += 1.0 if digest[4] & 1 else -1.0
            norm = float(np.linalg.norm(out[row]))
            if norm == 0.0:
                out[row, 0] = 1.0
            else:
                out[row] /= norm
        return out


class MemoryVectorIndex:
    """Exact inner-product search over a dict of vectors."""

    def __init__(self, dimension: int) -> None:
        self._dimension = dimension
        self._vectors: dict[int, Vectors] = {}

    @property
    def kind(self) -> str:
        return "memory-exact"

    @property
    def dimension(self) -> int:
        return self._dimension

    def __len__(self) -> int:
        return len(self._vectors)

    def add(self, ids: Ids, vectors: Vectors) -> None:
        if vectors.shape != (len(ids), self._dimension):
            raise ValueError(f"expected {len(ids)} vectors of {self._dimension} dims")
        for i, v in zip(ids.tolist(), vectors, strict=True):
            if i in self._vectors:
                raise ValueError(f"id {i} already in the index")
            self._vectors[i] = v.astype(np.float32)

    def remove(self, ids: Ids) -> None:
        for i in ids.tolist():
            self._vectors.pop(i, None)

    def search(
        self,
        vector: Vectors,
        k: int,
        allowed: Ids | None = None,
        excluded: Ids | None = None,
        *,
        exact: bool = True,
        ef: int | None = None,
    ) -> list[Hit]:
        # exact either way (and whatever ``ef``): it keeps float vectors
        keys = (
            list(self._vectors)
            if allowed is None
            else [i for i in allowed.tolist() if i in self._vectors]
        )
        if excluded is not None:
            skip = set(excluded.tolist())
            keys = [i for i in keys if i not in skip]
        if not keys:
            return []
        matrix = np.stack([self._vectors[i] for i in keys])
        scores = matrix @ vector.astype(np.float32)
        order = np.lexsort((np.array(keys), -scores))[:k]
        return [Hit(keys[j], float(scores[j])) for j in order]

    def similarity(self, vector: Vectors, ids: Ids) -> Vectors:
        query = vector.astype(np.float32)
        nan = np.float32("nan")
        return np.array(
            [float(self._vectors[i] @ query) if i in self._vectors else nan for i in ids.tolist()],
            dtype=np.float32,
        )

    def ids(self) -> Ids:
        return np.array(sorted(self._vectors), dtype=np.int64)

    def save(self) -> None:
        return None


class MemoryKeywordIndex:
    """BM25 by brute force over every held text, with ``node.keyword_stats``'s formula (SQLite
    FTS5's). Terms are lowercase words, with no stemming and no stopwords (the real index,
    ``index.bm25_index``, adds both); a query scores each of its distinct words once."""

    def __init__(self) -> None:
        self._docs: dict[int, Counter[str]] = {}

    def __len__(self) -> int:
        return len(self._docs)

    def add(self, ids: Ids, texts: Sequence[str]) -> None:
        for i, text in zip(ids.tolist(), texts, strict=True):
            self._docs[i] = Counter(_WORD.findall(text.lower()))

    def remove(self, ids: Ids) -> int:
        return sum(self._docs.pop(i, None) is not None for i in ids.tolist())

    def search(
        self, text: str, k: int, allowed: Ids | None = None, excluded: Ids | None = None
    ) -> list[Hit]:
        keep = None if allowed is None else set(allowed.tolist())
        skip = set() if excluded is None else set(excluded.tolist())
        ids = [i for i in self._docs if (keep is None or i in keep) and i not in skip]
        query = self.query_terms(text)
        terms = [term for term, _ in query]
        scores = bm25_scores(
            [weight for _, weight in query],
            self.term_stats(terms),
            [_doc_terms(self._docs[i], terms) for i in ids],
        )
        hits = [Hit(i, score) for i, score in zip(ids, scores, strict=True) if score > 0]
        hits.sort(key=lambda h: (-h.score, h.id))
        return hits[:k]

    def query_terms(self, text: str) -> QueryTerms:
        return tuple((word, 1) for word in dict.fromkeys(_WORD.findall(text.lower())))

    def term_stats(self, terms: Sequence[str], allowed: Ids | None = None) -> TermStats:
        keep = self._docs.keys() if allowed is None else set(allowed.tolist()) & self._docs.keys()
        docs = [self._docs[i] for i in keep]
        return TermStats(
            len(docs),
            sum(d.total() for d in docs),
            tuple(sum(term in d for d in docs) for term in terms),
        )

    def doc_terms(self, terms: Sequence[str], ids: Ids) -> list[DocTerms | None]:
        return [
            None if i not in self._docs else _doc_terms(self._docs[i], terms) for i in ids.tolist()
        ]

    def text_terms(self, terms: Sequence[str], texts: Sequence[str]) -> list[DocTerms]:
        return [_doc_terms(Counter(_WORD.findall(t.lower())), terms) for t in texts]

    def ids(self) -> Ids:
        return np.array(sorted(self._docs), dtype=np.int64)

    def save(self) -> None:
        return None


def _doc_terms(words: Counter[str], terms: Sequence[str]) -> DocTerms:
    return DocTerms(words.total(), tuple(words[term] for term in terms))


class MemoryContentStore:
    """Blocks in a dict, verified on the way in and out, like the real stores."""

    def __init__(self) -> None:
        self.blocks: dict[str, bytes] = {}
        self.pins: set[str] = set()

    @property
    def kind(self) -> str:
        return "memory"

    @staticmethod
    def _key(cid: str) -> str:
        return canonical_cid_string(cid)

    async def put(self, cid: str, data: bytes) -> None:
        if not verify_block(cid, data):
            raise InvalidInput(f"block does not match its CID {cid}")
        self.blocks[self._key(cid)] = data

    async def get(self, cid: str) -> bytes:
        try:
            return self.blocks[self._key(cid)]
        except KeyError as exc:
            raise NotFound(f"block {cid} is not in the store") from exc

    async def has(self, cid: str) -> bool:
        return self._key(cid) in self.blocks

    async def pin(self, cid: str) -> None:
        if not await self.has(cid):
            raise NotFound(f"cannot pin {cid}: not in the store")
        self.pins.add(self._key(cid))

    async def put_many(self, blocks: Sequence[tuple[str, bytes]]) -> None:
        for cid, data in blocks:
            if not verify_block(cid, data):
                raise InvalidInput(f"block does not match its CID {cid}")
        for cid, data in blocks:
            self.blocks[self._key(cid)] = data
            self.pins.add(self._key(cid))

    async def delete(self, cid: str) -> None:
        self.blocks.pop(self._key(cid), None)
        self.pins.discard(self._key(cid))

    async def close(self) -> None:
        return None

    def list_cids(self) -> list[str]:
        return sorted(self.blocks)


class MemoryLedger:
    """An in-process stand-in for a registry on a chain, for fast unit tests.

    It follows the contract's rules (``AlreadyAnchored`` reverts, nonces in order, a known
    transaction may be broadcast again) and lets tests switch the chain off (``down``), stop
    mining (``automine``) and drop the mempool, like anvil's RPC does.
    """

    def __init__(self, account: str = "0x" + "11" * 20, chain_id: int = 31337) -> None:
        self._account = account
        self._chain_id = chain_id
        self.anchors: dict[bytes, OnChainAnchor] = {}
        self.events: list[tuple[bytes, str, int]] = []  # (root, tx hash, block)
        self.logs: list[AnchorEvent] = []
        self.receipts: dict[str, MinedTx] = {}
        self.pending: dict[str, bytes] = {}
        self.nonce = 0
        self.block = 0
        self.down = False
        self.automine = True

    @property
    def chain_id(self) -> int:
        self._check()
        return self._chain_id

    @property
    def registry(self) -> str:
        return "0x" + "ab" * 20

    @property
    def account(self) -> str:
        return self._account

    @property
    def rpc_url(self) -> str:
        return "memory://ledger"

    def _check(self) -> None:
        if self.down:
            raise ChainError("memory ledger is down")

    def get_anchor(self, root: bytes) -> OnChainAnchor | None:
        self._check()
        return self.anchors.get(root)

    def next_nonce(self) -> int:
        self._check()
        return self.nonce + len(self.pending)

    def sign_anchor(
        self, root: bytes, manifest_cid: str, count: int, nonce: int, fee_bump: float = 1.0
    ) -> SignedTx:
        self._check()
        raw = json.dumps([root.hex(), manifest_cid, count, nonce, fee_bump]).encode()
        return SignedTx("0x" + hashlib.sha256(raw).hexdigest(), raw, nonce)

    def broadcast(self, raw: bytes) -> None:
        self._check()
        tx_hash = "0x" + hashlib.sha256(raw).hexdigest()
        if tx_hash in self.pending or tx_hash in self.receipts:
            return
        _root, _manifest, _count, nonce, bump = json.loads(raw)
        if nonce < self.nonce:
            raise NonceTooLow("nonce too low")
        for other, other_raw in list(self.pending.items()):
            if json.loads(other_raw)[3] == nonce:  # a replacement must pay more
                if json.loads(other_raw)[4] >= bump:
                    raise ChainError("replacement transaction underpriced")
                del self.pending[other]
        self.pending[tx_hash] = raw
        if self.automine:
            self.mine()

    def mine(self) -> None:
        """Mine pending transactions in nonce order (one block each)."""
        while True:
            ready = [(h, r) for h, r in self.pending.items() if json.loads(r)[3] == self.nonce]
            if not ready:
                return
            tx_hash, raw = ready[0]
            del self.pending[tx_hash]
            root_hex, manifest_cid, count, _nonce, _bump = json.loads(raw)
            root = bytes.fromhex(root_hex)
            self.block += 1
            self.nonce += 1
            ok = root not in self.anchors and count > 0
            if ok:
                self.anchors[root] = OnChainAnchor(
                    root, self._account, self.block, 1_700_000_000 + self.block, count, manifest_cid
                )
                self.events.append((root, tx_hash, self.block))
                self.logs.append(
                    AnchorEvent(root, self._account, manifest_cid, count, tx_hash, self.block)
                )
            self.receipts[tx_hash] = MinedTx(tx_hash, ok, self.block)

    def drop_pending(self) -> None:
        self.pending.clear()

    def receipt(self, tx_hash: str) -> MinedTx | None:
        self._check()
        return self.receipts.get(tx_hash)

    def head(self) -> int:
        self._check()
        return self.block

    def find_anchor_tx(self, root: bytes, block_number: int) -> str | None:
        self._check()
        for event_root, tx_hash, block in self.events:
            if event_root == root and block == block_number:
                return tx_hash
        return None

    def verify_fact(self, cid_bytes: bytes, proof: Sequence[bytes], root: bytes) -> bool:
        self._check()
        return root in self.anchors and verify_proof(cid_bytes, proof, root)

    def anchored_events(self, from_block: int, to_block: int) -> list[AnchorEvent]:
        self._check()
        return [e for e in self.logs if from_block <= e.block_number <= to_block]

    def close(self) -> None:
        pass
