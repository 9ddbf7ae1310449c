"""Real services in child processes, shared by the tests and the benchmarks; and deadlines.

A service is started as ``python -m <module> --host 127.0.0.1 --port 0 --ready-file F ...``;
it writes ``{"url": ..., "port": ..., "pid": ...}`` to F once it listens (the waitress-tests
shape: bind port 0, send the real port back to the parent), and is stopped with SIGTERM, then
SIGKILL if it does not exit in time.

The launcher lives here and ``scripts/`` imports it, not the other way round: the test suite
is its first user and must not depend on benchmark tooling, while the benchmarks may import
anything (they already import the packages they measure).
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
from typing import Any, TypeVar

T = TypeVar("T")
ROOT = Path(__file__).resolve().parent.parent
ADMIN = "e2e-admin"  # the operator token of every translation server started here


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
    """A service running in a child process; a context manager that stops it on exit."""

    proc: subprocess.Popen[bytes]
    url: str
    port: int
    log_path: Path

    def log(self) -> str:
        """Everything the service logged so far."""
        return self.log_path.read_text(errors="replace")

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 10.0) -> int:
        """Send ``sig``, wait for the exit (SIGKILL after ``timeout``); the exit code."""
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
        try:
            return self.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            return self.proc.wait()

    def kill(self) -> None:
        """SIGKILL: no clean-up at all, as a crash."""
        self.stop(signal.SIGKILL)

    def __enter__(self) -> Service:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


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
    cmd = [sys.executable, "-m", package, "--host", "127.0.0.1", "--port", str(port),
           "--ready-file", str(ready), *args]  # fmt: skip
    full_env = {k: v for k, v in os.environ.items() if not k.startswith("VT_")}
    full_env.update(env or {})
    with log_path.open("ab") as log:
        # cwd: the project's root, so that ``-m`` finds the benchmarks' own servers too
        proc = subprocess.Popen(cmd, cwd=ROOT, stdout=log, stderr=subprocess.STDOUT, env=full_env)
    service = Service(proc=proc, url="", port=0, log_path=log_path)

    def is_ready() -> dict[str, object] | None:
        if proc.poll() is not None:
            raise AssertionError(f"{name} exited with {proc.returncode}:\n{service.log()}")
        try:
            return dict(json.loads(ready.read_text()))
        except (FileNotFoundError, json.JSONDecodeError):
            return None

    try:
        info = wait_until(is_ready, timeout=timeout, message=f"{name} to listen")
    except BaseException:
        service.stop()
        raise
    service.url, service.port = str(info["url"]), int(str(info["port"]))
    return service


def start_server(
    workdir: Path, *args: str, demo: bool = False, port: int = 0, timeout: float = 20.0
) -> Service:
    """The translation server on its own SQLite database in ``workdir``, with the ``ADMIN``
    token; its demo client's credentials go to ``workdir/local.json``; ``args`` override."""
    base = ["--demo-job" if demo else "--no-demo-job",
            "--database-url", f"sqlite:///{workdir / 'server.db'}", "--admin-token", ADMIN,
            "--credentials-file", str(workdir / "local.json")]  # fmt: skip
    return start_service(
        "translation_server", [*base, *args], workdir, name="server", port=port, timeout=timeout
    )


def start_receiver(
    workdir: Path, *args: str, creds: Path | None = None, port: int = 0, timeout: float = 20.0
) -> Service:
    """The callback receiver on its own database in ``workdir``, trusting the secret in
    ``creds`` (by default ``workdir/local.json``, where ``start_server`` writes it)."""
    base = ["--database-url", f"sqlite:///{workdir / 'receiver.db'}",
            "--credentials-file", str(creds or workdir / "local.json")]  # fmt: skip
    return start_service(
        "callback_receiver", [*base, *args], workdir, name="receiver", port=port, timeout=timeout
    )


CHROMIUM = "/usr/bin/chromium"  # Debian's package; `make test` installs it when missing
CHROMIUM_ARGS = ("--headless", "--no-sandbox", "--disable-gpu", "--disable-quic",
                 "--no-first-run", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync")  # fmt: skip


def launch_chromium(playwright: Any) -> Any:
    """Debian's chromium driven by Playwright (``playwright install`` cannot fetch browsers)."""
    return playwright.chromium.launch(executable_path=CHROMIUM, args=list(CHROMIUM_ARGS))
