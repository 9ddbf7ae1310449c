"""``make run``: the translation server and the callback receiver side by side, in the foreground.

Each service's log lines are prefixed with its name; Ctrl-C (or SIGTERM) stops both cleanly.
The server creates the demo client on its first start and writes var/local.json, where the
receiver and the client library find the credentials. The receiver's feed token is written
there before either starts, so the receiver serves its feed from its first request. Extra
arguments go to the server (``make run ARGS="--workers 8"``); VT_ variables reach both.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
from pathlib import Path
from typing import IO

from client_lib.localsetup import data_home, ensure_receiver_token

ROOT = Path(__file__).resolve().parent.parent
COLOURS = {"server": "\033[36m", "receiver": "\033[35m"}


def pump(name: str, stream: IO[bytes]) -> None:
    """Copy a child's output to ours, one prefixed line at a time."""
    colour, reset = (COLOURS[name], "\033[0m") if sys.stdout.isatty() else ("", "")
    for raw in iter(stream.readline, b""):
        line = raw.decode(errors="replace").rstrip("\n")
        print(f"{colour}{name:>8} |{reset} {line}", flush=True)


def start(name: str, args: list[str]) -> subprocess.Popen[bytes]:
    proc = subprocess.Popen(
        [sys.executable, "-u", "-m", *args],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    assert proc.stdout is not None
    threading.Thread(target=pump, args=(name, proc.stdout), daemon=True).start()
    return proc


def main() -> int:
    creds = os.environ.get("VT_CREDENTIALS_FILE") or str(data_home() / "local.json")
    if creds:
        ensure_receiver_token(Path(creds))
    services = {"server": start("server", ["translation_server", *sys.argv[1:]])}
    if (ROOT / "callback_receiver" / "__main__.py").exists():
        services["receiver"] = start("receiver", ["callback_receiver"])
    stopping = threading.Event()

    def stop(_signum: int, _frame: object) -> None:
        stopping.set()

    signal.signal(signal.SIGINT, stop)
    signal.signal(signal.SIGTERM, stop)
    while not stopping.is_set():
        if any(p.poll() is not None for p in services.values()):
            break
        stopping.wait(0.2)
    for proc in services.values():
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGTERM)
    codes = {name: proc.wait(timeout=15) for name, proc in services.items()}
    print(f"stopped: {codes}", flush=True)
    return 0 if stopping.is_set() and all(c == 0 for c in codes.values()) else 1


if __name__ == "__main__":
    sys.exit(main())
