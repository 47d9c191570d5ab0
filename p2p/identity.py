"""The node's persistent libp2p identity: an Ed25519 key whose 32-byte seed is kept (hex, mode
0600) in the data directory, so the peer id stays the same across restarts."""

from __future__ import annotations

import logging
import os
import secrets
from pathlib import Path

from libp2p.crypto.ed25519 import create_new_key_pair
from libp2p.crypto.keys import KeyPair

from node.errors import StorageError

log = logging.getLogger(__name__)


def load_or_create_identity(path: Path) -> KeyPair:
    if path.exists():
        try:
            seed = bytes.fromhex(path.read_text().strip())
        except (OSError, ValueError) as exc:
            raise StorageError(f"cannot read libp2p key {path}: {exc}") from exc
        if len(seed) != 32:
            raise StorageError(f"libp2p key {path} must hold a 32-byte Ed25519 seed (hex)")
        return create_new_key_pair(seed)
    path.parent.mkdir(parents=True, exist_ok=True)
    seed = secrets.token_bytes(32)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as out:
        out.write(seed.hex() + "\n")
        out.flush()
        os.fsync(out.fileno())
    log.info("created libp2p identity %s", path)
    return create_new_key_pair(seed)


def peer_id_of(path: Path) -> str:
    """The peer id of the identity in ``path`` (created if missing)."""
    from libp2p.peer.id import ID

    return str(ID.from_pubkey(load_or_create_identity(path).public_key))
