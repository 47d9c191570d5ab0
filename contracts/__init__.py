"""The KnowledgeRegistry contract, its compiled artifact and the web3 ledger adapter.
Arrives with the provenance issue."""
