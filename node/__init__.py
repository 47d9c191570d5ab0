"""knowhub node: the domain (facts, CIDs, search rules), its ports and its services.

Nothing in this package imports FastAPI, FAISS, sentence-transformers, web3 or libp2p;
``node.bootstrap`` is the one place that composes the real adapters.
"""

__version__ = "0.1.0"
