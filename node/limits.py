"""Every size and count a record or a request is held to: the one home of these numbers.

The domain checks them (``node.facts``, ``node.filters``, the service's query rules); the REST
schemas, the MCP tools, the Python clients and the LangChain retriever declare them from here,
so the documents they publish (OpenAPI, MCP tool schemas) say what the node enforces.
Sizes of text are UTF-8 bytes, which is what the node counts; a schema that can only bound
characters bounds them by the same number (a character is at least one byte), and the node's
byte check decides.

Invariant: nothing outside this module writes one of these numbers as a literal.
"""

from __future__ import annotations

from typing import Final

#: A fact's text, UTF-8 bytes.
MAX_TEXT_BYTES: Final = 16 * 1024
#: A fact's metadata, as its DAG-CBOR encoding.
MAX_METADATA_BYTES: Final = 4 * 1024
MAX_METADATA_KEY_CHARS: Final = 128
#: A collection's name, characters (ASCII: ``[a-z0-9][a-z0-9._-]*``, ``node.facts``).
MAX_COLLECTION_CHARS: Final = 64
#: Collections one query may name.
MAX_QUERY_COLLECTIONS: Final = 32
#: A query's text, UTF-8 bytes.
MAX_QUERY_BYTES: Final = 16 * 1024
#: Hits a query may ask for, and how many it gets by default.
MAX_K: Final = 100
#: The deepest pool a peer answers (a pools request's ``k``, ``p2p.query_wire``): 4 x MAX_K,
#: so that the asker's fusion has candidates well below each source's own cut.
MAX_POOL_DEPTH: Final = 4 * MAX_K
#: A pools request's query terms: how many, each term's UTF-8 bytes, and a term's weight
#: (the distinct query words giving it: ``index.bm25_tokens`` keeps at most 64 words).
MAX_QUERY_TERMS: Final = 64
MAX_TERM_BYTES: Final = 64
MAX_TERM_WEIGHT: Final = 64
#: A query's search breadth (``ef``: the candidates an HNSW walk keeps), at most ~5x the
#: default's (``hnsw_ef_search``, 192): a wider walk costs more (at 100k facts 0.65 ms at 64,
#: 0.88 ms at 192, BENCHMARKS.md), so one query cannot ask for an unbounded one.
MAX_EF: Final = 1024
#: Seconds a network query may wait for peers at most (``node.federator``).
MAX_QUERY_BUDGET_SECONDS: Final = 60
DEFAULT_K: Final = 5
#: Facts in one batch request (and in one ingest step of a snapshot or a recovery).
MAX_BATCH: Final = 1000
#: Keys in a metadata filter, and values in one ``$in``.
MAX_FILTER_KEYS: Final = 16
MAX_IN_VALUES: Final = 256
#: Components of a query vector a client may send (the model's dimension is checked after).
MAX_VECTOR_COMPONENTS: Final = 4096
#: A tombstone's optional reason, UTF-8 bytes.
MAX_REASON_BYTES: Final = 1024
