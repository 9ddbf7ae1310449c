"""``make run-cluster``: several servers and receivers on the local PostgreSQL, behind nginx.

Two translation servers and two callback receivers (``--servers``, ``--receivers``) share one
PostgreSQL database (created when missing), each instance on a free port of its own; nginx
(Debian's package; ``deploy/cluster/nginx.conf``) gives each service one address: the servers
at :8000 and the receivers at :8001, as ``make run`` does, so the client and ``vt`` work
unchanged. Log lines are prefixed with the instance's name; Ctrl-C (or SIGTERM) stops all.

The servers create the demo client on the first start and write the local set-up file (by
default var/local.json, as ``make run``), where the receivers and the client find the
credentials and the feed token. nginx's pid, logs and temporary files stay under var/cluster.
Arguments after ``--`` go to every server (``make run-cluster ARGS="-- --workers 8"``).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import IO

import psycopg
from psycopg import sql
from sqlalchemy.engine import make_url

from client_lib.localsetup import data_home, ensure_receiver_token

ROOT = Path(__file__).resolve().parent.parent
TEMPLATE = ROOT / "deploy" / "cluster" / "nginx.conf"
POSTGRES = "postgresql+psycopg://postgres@127.0.0.1:5432"
NGINX = shutil.which("nginx") or "/usr/sbin/nginx"
START_TIMEOUT_S = 30.0


def parse(argv: list[str]) -> tuple[argparse.Namespace, list[str]]:
    """The launcher's options, and the arguments after ``--`` (every server's)."""
    extra: list[str] = []
    if "--" in argv:
        at = argv.index("--")
        argv, extra = argv[:at], argv[at + 1 :]
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--servers", type=int, default=2)
    parser.add_argument("--receivers", type=int, default=2)
    parser.add_argument("--port", type=int, default=8000, help="the servers' address (nginx)")
    parser.add_argument("--receiver-port", type=int, default=8001, help="the receivers' address")
    parser.add_argument(
        "--database-url",
        default=f"{POSTGRES}/vt_cluster",
        help="the PostgreSQL database of every instance (created when missing)",
    )
    parser.add_argument("--credentials-file", type=Path, default=None)
    parser.add_argument("--workdir", type=Path, default=ROOT / "var" / "cluster")
    parser.add_argument("--ready-file", type=Path, default=None, help="written once all listen")
    return parser.parse_args(argv), extra


def ensure_database(url: str) -> None:
    """Create the database named in ``url`` unless the PostgreSQL server already has it."""
    target = make_url(url)
    admin = target.set(drivername="postgresql", database="postgres")
    try:
        conn = psycopg.connect(
            admin.render_as_string(hide_password=False), autocommit=True, connect_timeout=5
        )
    except psycopg.OperationalError as exc:
        where = target.set(database=None).render_as_string()
        raise SystemExit(
            f"PostgreSQL is not reachable at {where} ({str(exc).strip()}): start the service "
            "(service postgresql start) or name another with --database-url"
        ) from None
    with conn:
        found = conn.execute(
            "SELECT 1 FROM pg_database WHERE datname = %s", (target.database,)
        ).fetchone()
        if found is None:
            conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(target.database)))
            print(f"created database {target.database}", flush=True)


def pump(name: str, stream: IO[bytes]) -> None:
    """Copy a child's output to ours, one prefixed line at a time."""
    for raw in iter(stream.readline, b""):
        print(f"{name:>9} | {raw.decode(errors='replace').rstrip()}", flush=True)


class Cluster:
    """The child processes, started one by one and stopped together."""

    def __init__(self, workdir: Path) -> None:
        self.workdir = workdir
        self.procs: dict[str, subprocess.Popen[bytes]] = {}

    def spawn(self, name: str, command: list[str]) -> subprocess.Popen[bytes]:
        proc = subprocess.Popen(
            command, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
            start_new_session=True,
        )  # fmt: skip
        assert proc.stdout is not None
        threading.Thread(target=pump, args=(name, proc.stdout), daemon=True).start()
        self.procs[name] = proc
        return proc

    def service(self, name: str, module: str, args: list[str]) -> int:
        """Start ``python -m module`` on a free port; its port once it listens."""
        ready = self.workdir / f"{name}.ready.json"
        ready.unlink(missing_ok=True)
        command = [sys.executable, "-u", "-m", module, "--host", "127.0.0.1", "--port", "0",
                   "--ready-file", str(ready), *args]  # fmt: skip
        proc = self.spawn(name, command)
        deadline = time.monotonic() + START_TIMEOUT_S
        while time.monotonic() < deadline:
            if proc.poll() is not None:
                raise SystemExit(f"{name} exited with {proc.returncode}")
            try:
                return int(json.loads(ready.read_text())["port"])
            except (FileNotFoundError, ValueError, KeyError):
                time.sleep(0.05)
        raise SystemExit(f"{name} did not listen within {START_TIMEOUT_S:.0f} s")

    def failed(self) -> bool:
        return any(proc.poll() is not None for proc in self.procs.values())

    def stop(self) -> dict[str, int]:
        for proc in self.procs.values():
            if proc.poll() is None:
                os.killpg(proc.pid, signal.SIGTERM)
        return {name: proc.wait(timeout=20) for name, proc in self.procs.items()}


def nginx_config(prefix: Path, port: int, receiver_port: int, servers: list[int],
                 receivers: list[int]) -> Path:  # fmt: skip
    """Fill the template in; the path of the configuration written under ``prefix``."""
    fields = {
        "prefix": str(prefix),
        "port": str(port),
        "receiver_port": str(receiver_port),
        "servers": "\n".join(f"        server 127.0.0.1:{p};" for p in servers),
        "receivers": "\n".join(f"        server 127.0.0.1:{p};" for p in receivers),
    }
    text = TEMPLATE.read_text()
    for name, value in fields.items():
        text = text.replace("{{" + name + "}}", value)
    path = prefix / "nginx.conf"
    path.write_text(text)
    return path


def main(argv: list[str]) -> int:
    options, server_args = parse(argv)
    workdir = options.workdir.resolve()
    workdir.mkdir(parents=True, exist_ok=True)
    creds = options.credentials_file or Path(
        os.environ.get("VT_CREDENTIALS_FILE") or data_home() / "local.json"
    )
    ensure_receiver_token(creds)
    ensure_database(options.database_url)
    common = ["--database-url", options.database_url, "--credentials-file", str(creds)]
    cluster = Cluster(workdir)
    stopping = threading.Event()
    signal.signal(signal.SIGINT, lambda *_: stopping.set())
    signal.signal(signal.SIGTERM, lambda *_: stopping.set())
    try:
        servers = [
            cluster.service(f"server{n + 1}", "translation_server", [*common, *server_args])
            for n in range(options.servers)
        ]
        receivers = [
            cluster.service(f"receiver{n + 1}", "callback_receiver", common)
            for n in range(options.receivers)
        ]
        config = nginx_config(workdir, options.port, options.receiver_port, servers, receivers)
        cluster.spawn("nginx", [NGINX, "-p", str(workdir), "-c", str(config),
                                "-e", str(workdir / "error.log")])  # fmt: skip
        print(
            f"cluster: servers at http://127.0.0.1:{options.port} ({len(servers)}), receivers "
            f"at http://127.0.0.1:{options.receiver_port} ({len(receivers)}); Ctrl-C stops all",
            flush=True,
        )
        if options.ready_file:
            options.ready_file.write_text(
                json.dumps({"servers": servers, "receivers": receivers, "pid": os.getpid()})
            )
        while not stopping.is_set() and not cluster.failed():
            stopping.wait(0.2)
    finally:
        codes = cluster.stop()
        print(f"stopped: {codes}", flush=True)
    return 0 if stopping.is_set() and all(code == 0 for code in codes.values()) else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
