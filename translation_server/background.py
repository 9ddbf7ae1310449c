"""A background loop owned by the app: started and stopped with it, woken when work arrives."""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable

log = logging.getLogger(__name__)

RETRY_AFTER_FAILURE_S = 0.5


class Loop:
    """Runs ``step`` on a thread; ``step`` returns how long it may sleep before the next run.

    ``wake()`` cuts the sleep short. A failing step is logged and tried again shortly: a
    background loop never dies of one error.
    """

    def __init__(self, name: str, step: Callable[[], float]) -> None:
        self._name = name
        self._step = step
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        """Start the thread."""
        self._thread = threading.Thread(target=self._run, name=self._name, daemon=True)
        self._thread.start()

    def stop(self, timeout: float = 5.0) -> None:
        """Ask the thread to stop and wait for it."""
        self._stop.set()
        self._wake.set()
        if self._thread is not None:
            self._thread.join(timeout)

    def wake(self) -> None:
        """Run the step again now."""
        self._wake.set()

    def _run(self) -> None:
        while not self._stop.is_set():
            self._wake.clear()  # a wake during the step makes the wait below return at once
            try:
                delay = self._step()
            except Exception:
                log.exception("%s: step failed; retrying shortly", self._name)
                delay = RETRY_AFTER_FAILURE_S
            if delay > 0:
                self._wake.wait(delay)
