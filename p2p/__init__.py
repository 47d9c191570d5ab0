"""Peer-to-peer networking (libp2p gossip and catch-up sync). Imports nothing from the node's
adapters; only ``node`` domain types and ports. Arrives with the p2p issue."""
