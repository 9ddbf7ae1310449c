"""Helpers shared by the tests: deadlines, and real services in child processes.

A service is started as ``python -m <package> --port 0 --ready-file F``; it writes
``{"url": ..., "port": ..., "pid": ...}`` to F once it listens (the waitress-tests shape:
bind port 0, send the real port back to the parent).
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TypeVar

T = TypeVar("T")


def wait_until(
    predicate: Callable[[], T | None],
    *,
    timeout: float = 10.0,
    interval: float = 0.02,
    message: str = "condition",
) -> T:
    """Poll ``predicate`` until it returns a truthy value or the deadline passes."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() >= deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {message}")
        time.sleep(interval)


@dataclass
class Service:
    """A service running in a child process."""

    proc: subprocess.Popen[bytes]
    url: str
    port: int
    log_path: Path

    def log(self) -> str:
        """Everything the service logged so far."""
        return self.log_path.read_text(errors="replace")

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 10.0) -> int:
        """Send ``sig`` and wait for the process to exit; returns its exit code."""
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
        return self.proc.wait(timeout=timeout)

    def kill(self) -> None:
        """SIGKILL: no clean-up at all, as a crash."""
        self.stop(signal.SIGKILL)


def start_service(
    package: str,
    args: Sequence[str],
    workdir: Path,
    *,
    name: str | None = None,
    port: int = 0,
    env: dict[str, str] | None = None,
    timeout: float = 20.0,
) -> Service:
    """Start ``python -m package`` on ``port`` (0: a free one) and wait until it listens."""
    name = name or package
    ready = workdir / f"{name}.ready.json"
    ready.unlink(missing_ok=True)
    log_path = workdir / f"{name}.log"
    cmd = [
        sys.executable,
        "-m",
        package,
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
        "--ready-file",
        str(ready),
        *args,
    ]
    full_env = {k: v for k, v in os.environ.items() if not k.startswith("VT_")}
    full_env.update(env or {})
    with log_path.open("ab") as log:
        proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, env=full_env)

    def is_ready() -> dict[str, object] | None:
        if proc.poll() is not None:
            raise AssertionError(f"{name} exited with {proc.returncode}:\n{log_path.read_text()}")
        try:
            return json.loads(ready.read_text())
        except (FileNotFoundError, json.JSONDecodeError):
            return None

    info = wait_until(is_ready, timeout=timeout, message=f"{name} to listen")
    return Service(proc=proc, url=str(info["url"]), port=int(str(info["port"])), log_path=log_path)
