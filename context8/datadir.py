"""The demo's data folder (``.context8`` unless ``--data-dir``): one demo at a time holds it.

It holds the private Redis's append-only log (``redis/``), the children's logs (``logs/``),
the lock (``demo.lock``: an exclusive ``flock`` held while the demo runs, with its pid
inside, so a second demo names the one in the way and stops before it starts anything) and,
while the demo runs, ``redis.url``: the address of its Redis, where ``context8 status`` looks
when no REDIS_URL is given. The lock goes with the process, also after a kill -9: the kernel
drops it, so a stale lock file never blocks the next demo.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import shutil
from pathlib import Path
from typing import Final

__all__ = ["DEFAULT_DATA_DIR", "DataDirBusy", "DemoDataDir", "demo_redis_url"]

DEFAULT_DATA_DIR: Final = ".context8"
_LOCK: Final = "demo.lock"
_URL: Final = "redis.url"


class DataDirBusy(RuntimeError):
    """Another demo holds the folder."""


class DemoDataDir:
    """The folder, locked for this process until ``release`` (or its exit)."""

    def __init__(self, root: Path) -> None:
        self.root = root
        root.mkdir(parents=True, exist_ok=True)
        fd = os.open(root / _LOCK, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.read(fd, 32).decode(errors="replace").strip() or "another process"
            os.close(fd)
            raise DataDirBusy(
                f"{root} is in use by the demo of process {holder}: stop that one, or give "
                "this one another folder with --data-dir"
            ) from None
        os.ftruncate(fd, 0)
        os.write(fd, f"{os.getpid()}\n".encode())
        self._fd: int | None = fd

    @property
    def redis_dir(self) -> Path:
        return self.root / "redis"

    @property
    def log_dir(self) -> Path:
        return self.root / "logs"

    def reset(self) -> None:
        """Start from an empty event log: the Redis data and the logs of earlier runs go."""
        for folder in (self.redis_dir, self.log_dir):
            shutil.rmtree(folder, ignore_errors=True)

    def publish_redis_url(self, url: str) -> None:
        path = self.root / _URL
        path.write_text(url + "\n")
        path.chmod(0o600)  # it may carry a password

    def release(self) -> None:
        if self._fd is None:
            return
        with contextlib.suppress(FileNotFoundError):
            (self.root / _URL).unlink()
        os.close(self._fd)  # drops the lock
        self._fd = None


def demo_redis_url(data_dir: str | Path = DEFAULT_DATA_DIR) -> str | None:
    """The Redis URL of the demo running on ``data_dir``, or None when none runs there."""
    root = Path(data_dir)
    try:
        url = (root / _URL).read_text().strip()
        fd = os.open(root / _LOCK, os.O_RDONLY)
    except OSError:
        return None
    try:
        fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
    except BlockingIOError:
        return url or None  # locked: its demo runs
    finally:
        os.close(fd)
    return None  # a file left by a demo that is gone
