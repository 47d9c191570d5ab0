"""The data directory belongs to one node process at a time.

``DataDirLock`` takes an exclusive, non-blocking ``flock`` on ``<data_dir>/node.lock`` before
anything in the directory is opened (catalog, index, local chain) and holds it for the life of
the process; the kernel releases it when the process exits, ``kill -9`` included, so a crash
never leaves a stale lock. The holder's pid is written into the file so that a second node on
the same directory fails at once with a message naming the process that has it (two nodes on
one directory ran two local chains on one state file and reported anchors that existed only
on the other chain).
"""

from __future__ import annotations

import contextlib
import fcntl
import os
from pathlib import Path

from node.errors import ConfigError

LOCK_FILE = "node.lock"


class DataDirInUse(ConfigError):
    code = "data_dir_in_use"


class DataDirLock:
    def __init__(self, data_dir: Path) -> None:
        self.path = data_dir / LOCK_FILE
        self._fd: int | None = None

    def acquire(self) -> DataDirLock:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = _holder(fd)
            os.close(fd)
            raise DataDirInUse(self._in_use_by(holder)) from None
        except OSError as exc:
            os.close(fd)
            raise ConfigError(f"cannot lock data dir {self.path.parent}: {exc}") from exc
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
        self._fd = fd
        return self

    def in_use(self) -> str | None:
        """Whether another process holds the lock, without taking it or creating anything:
        the ``DataDirInUse`` message, or None (a check before starting; ``acquire`` decides)."""
        try:
            fd = os.open(self.path, os.O_RDWR)
        except OSError:
            return None  # no lock file: nobody has run here, or it cannot be opened yet
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            return self._in_use_by(_holder(fd))
        except OSError:
            return None
        else:
            fcntl.flock(fd, fcntl.LOCK_UN)
            return None
        finally:
            os.close(fd)

    def _in_use_by(self, holder: str) -> str:
        return (
            f"data dir {self.path.parent} is in use by another knowhub node (pid {holder}); "
            "stop it or give this node another --data-dir"
        )

    def release(self) -> None:
        if self._fd is not None:
            with contextlib.suppress(OSError):
                fcntl.flock(self._fd, fcntl.LOCK_UN)
            os.close(self._fd)
            self._fd = None


def _holder(fd: int) -> str:
    """The pid the lock holder wrote into the lock file."""
    return os.pread(fd, 64, 0).decode("ascii", "replace").strip() or "unknown"
