"""A value read from a file, re-read whenever the file changes (mtime, size or inode): what
the receiver takes from the local set-up file, which the translation server may write or
rewrite after the receiver started."""

from __future__ import annotations

import os
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Generic, TypeVar

T = TypeVar("T")


class WatchedFile(Generic[T]):
    """``load()``'s value for ``path`` as it is now; ``missing`` while the file does not exist.
    The file is stat-ed on every ``get()``, read only when it changed."""

    def __init__(self, path: Path, load: Callable[[], T], missing: T) -> None:
        self.path = path
        self._load = load
        self._missing = missing
        self._lock = threading.Lock()
        self._stamp: tuple[int, int, int] | None = None
        self._value = missing

    def get(self) -> T:
        """The value for the file as it is now."""
        try:
            st = os.stat(self.path)
            stamp: tuple[int, int, int] | None = (st.st_mtime_ns, st.st_size, st.st_ino)
        except OSError:
            stamp = None
        with self._lock:
            if stamp != self._stamp:
                self._value = self._load() if stamp is not None else self._missing
                self._stamp = stamp
            return self._value
