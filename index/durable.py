"""Durable file replacement helpers shared by the index adapters' cache files.

``fsync_dir`` makes a rename inside ``path`` durable: after ``os.replace`` of a fsynced temporary
file, the directory entry itself must reach the disk too, or a power loss can bring back the
old file (or none)."""

from __future__ import annotations

import os
from pathlib import Path


def fsync_dir(path: Path) -> None:
    """fsync ``path`` (a directory, or a file: opened read-only either way)."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
