"""Local retrieval adapters: the sentence-transformers embedder, the FAISS vector index and
the SQLite catalog (source of truth, metadata filters, FTS5 keyword search)."""
