"""In-memory fakes of the ports, for fast unit tests. Never the only test of an adapter:
``tests/congruence`` runs the same assertions against these and the real adapters."""

from __future__ import annotations

import hashlib
import re
from collections.abc import Sequence

import numpy as np

from node.cid import canonical_cid_string, verify_block
from node.errors import InvalidInput, NotFound
from node.ports import Ids, Vectors
from node.search import Hit

_WORD = re.compile(r"\w+")


class HashEmbedder:
    """Bag-of-words feature hashing: deterministic, unit length, shares words -> similar."""

    def __init__(self, dimension: int = 384, model_name: str = "hash-bow") -> None:
        self._dimension = dimension
        self._model_name = model_name

    @property
    def model_name(self) -> str:
        return self._model_name

    @property
    def dimension(self) -> int:
        return self._dimension

    def embed(self, texts: Sequence[str]) -> Vectors:
        out = np.zeros((len(texts), self._dimension), dtype=np.float32)
        for row, text in enumerate(texts):
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

    def search(self, vector: Vectors, k: int, allowed: Ids | None = None) -> list[Hit]:
        keys = (
            list(self._vectors)
            if allowed is None
            else [i for i in allowed.tolist() if i in self._vectors]
        )
        if not keys:
            return []
        matrix = np.stack([self._vectors[i] for i in keys])
        scores = matrix @ vector.astype(np.float32)
        order = np.lexsort((np.array(keys), -scores))[:k]
        return [Hit(keys[j], float(scores[j])) for j in order]

    def ids(self) -> Ids:
        return np.array(sorted(self._vectors), dtype=np.int64)

    def save(self) -> None:
        return None


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

    async def close(self) -> None:
        return None
