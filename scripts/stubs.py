"""The benchmarks' own servers, started by ``tests.support.start_service`` like the real ones.

    python -m scripts.stubs --port 0 --ready-file F bare --body-file B --threads N
    python -m scripts.stubs --port 0 --ready-file F recorder

``bare``: a bare Flask app on stock waitress, with the translation server's waitress settings
(``service_common.serving``), answering ``GET /v1/jobs/<id>`` with a fixed JSON
body (the baseline of ``bench_server``). ``recorder``: a WSGI app with no framework (it must
not be the bottleneck) that stamps each ``POST`` on arrival, keeps its body and webhook headers
and answers 204, as the project's receiver does; ``GET /_count`` and ``GET /_all`` read them
back (``bench_webhooks``). Both serve until SIGTERM.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from flask import Flask, Response
from waitress.server import create_server

from service_common.serving import build_server
from translation_server.config import Settings


def bare_app(body: bytes) -> Flask:
    """A Flask app answering ``GET /v1/jobs/<id>`` with ``body`` for every id."""
    app = Flask("bare")
    app.add_url_rule(
        "/v1/jobs/<job_id>", view_func=lambda job_id: Response(body, mimetype="application/json")
    )
    return app


class Recorder:
    """``POST``: stamped, kept, answered 204; ``GET /_count``: how many; ``GET /_all``: all."""

    def __init__(self) -> None:
        self.lock, self.arrivals = threading.Lock(), list[dict[str, Any]]()

    def __call__(self, environ: dict[str, Any], start_response: Callable[..., Any]) -> list[bytes]:
        """Dispatch on the method, then the path."""
        at = time.time()
        if environ["REQUEST_METHOD"] == "POST":
            body = environ["wsgi.input"].read(int(environ.get("CONTENT_LENGTH") or 0)).decode()
            names = ("webhook-id", "webhook-timestamp", "webhook-signature")
            headers = {h: environ.get("HTTP_" + h.upper().replace("-", "_"), "") for h in names}
            with self.lock:
                self.arrivals.append({"at": at, "headers": headers, "body": body})
            start_response("204 No Content", [])
            return [b""]
        with self.lock:
            out = json.dumps(
                len(self.arrivals) if environ["PATH_INFO"] == "/_count" else self.arrivals
            )
        start_response("200 OK", [("Content-Type", "application/json")])
        return [out.encode()]


def main() -> None:
    """Serve the chosen app on ``--port`` and write the ready file, until SIGTERM."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--ready-file", type=Path, required=True)
    apps = parser.add_subparsers(dest="app", required=True)
    bare = apps.add_parser("bare")
    bare.add_argument("--body-file", type=Path, required=True)
    bare.add_argument("--threads", type=int, default=4)
    apps.add_parser("recorder")
    args = parser.parse_args()
    app = bare_app(args.body_file.read_bytes()) if args.app == "bare" else Recorder()
    if args.app == "bare":  # the server's own waitress settings, but for its threads
        settings = Settings().replace(host=args.host, port=args.port, threads=args.threads)
        server: Any = build_server(app, settings, "bare")
    else:
        server = create_server(app, host=args.host, port=args.port, threads=32)
    port = int(server.effective_port)
    ready = {"url": f"http://{args.host}:{port}", "port": port, "pid": os.getpid()}
    args.ready_file.with_suffix(".tmp").write_text(json.dumps(ready))
    args.ready_file.with_suffix(".tmp").replace(args.ready_file)  # at once: the parent polls
    signal.signal(signal.SIGTERM, lambda _signum, _frame: sys.exit(0))
    try:
        server.run()
    finally:
        server.close()


if __name__ == "__main__":
    main()
