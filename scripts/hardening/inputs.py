"""Hostile input against both services: schemathesis, then the inputs that broke the contract.

Both services run as shipped on free ports with temporary SQLite files
(``tests.support``). Then:

- schemathesis runs every check against each service's ``GET /openapi.json``, with a
  tenant's API key, the admin token and the feed token (``tests.apifuzz``); the services'
  own ``GET /metrics`` count the 5xx they answered;
- a list of hostile requests is sent to each service over raw sockets: JSON nested 30,000
  deep, ``NaN``, ``Infinity`` and ``1e400`` in bodies, an unpaired surrogate, a 58 KB
  language tag, ``?limit=%C2%B2``, a declared 300 MB body, ``%0A`` in a path, 40 KB of
  headers, oversized ids and keys. Each answer is read whole: its status, whether it is
  problem+json naming the field at fault, and whether its body is strict JSON;
- finally both logs are read: every line must be one record.
"""

from __future__ import annotations

import json
import re
import socket
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

from client_lib.webhooks import sign
from client_lib.wire import loads_strict
from scripts.hardening import Figure
from tests import apifuzz
from tests.support import ADMIN, Service, start_receiver, start_server

LOG_LINE = re.compile(r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d{3} [A-Z]+ [\w.]+: ")


@dataclass(frozen=True)
class Bad:
    """One hostile request and what it should get: a status, and the field a problem+json
    answer must name (None: the answer names none, or is waitress's own plain text)."""

    service: str  # "server" or "receiver"
    what: str
    request: bytes
    status: int
    field: str | None = None


@dataclass(frozen=True)
class Answer:
    status: int
    content_type: str
    body: bytes


def send(port: int, request: bytes, *, body_after: bool = True) -> Answer:
    """One request on its own connection; the whole answer (the server closes or says its
    length)."""
    with socket.create_connection(("127.0.0.1", port), timeout=30) as sock:
        sock.sendall(request)
        raw = b""
        while b"\r\n\r\n" not in raw:
            chunk = sock.recv(65536)
            if not chunk:
                break
            raw += chunk
        head, _, body = raw.partition(b"\r\n\r\n")
        lines = head.decode("latin-1").split("\r\n")
        headers = {k.lower(): v.strip() for k, _, v in (ln.partition(":") for ln in lines[1:])}
        length = int(headers.get("content-length", "0"))
        while body_after and len(body) < length:
            chunk = sock.recv(65536)
            if not chunk:
                break
            body += chunk
    return Answer(int(lines[0].split()[1]), headers.get("content-type", ""), body)


def http(method: str, path: str, headers: dict[str, str], body: bytes = b"") -> bytes:
    lines = [f"{method} {path} HTTP/1.1", "Host: 127.0.0.1", "Connection: close"]
    lines += [f"Content-Length: {len(body)}", *(f"{k}: {v}" for k, v in headers.items())]
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + body


def _json(key: str, body: str, extra: dict[str, str] | None = None) -> bytes:
    headers = {"Authorization": f"Bearer {key}", "Content-Type": "application/json"}
    return http("POST", "/v1/jobs", {**headers, **(extra or {})}, body.encode())


def server_inputs(key: str) -> list[Bad]:
    auth = {"Authorization": f"Bearer {key}"}
    deep = "[" * 30_000 + "]" * 30_000
    return [
        Bad("server", "JSON nested 30,000 deep", _json(key, deep), 400),
        Bad("server", "NaN in metadata", _json(key, '{"metadata": {"x": NaN}}'), 400),
        Bad("server", "Infinity in metadata", _json(key, '{"metadata": {"x": Infinity}}'), 400),
        Bad("server", "1e400 in metadata", _json(key, '{"metadata": {"x": 1e400}}'), 400),
        Bad("server", "an unpaired surrogate", _json(key, '{"metadata": {"x": "\\ud800"}}'), 422,
            "metadata"),
        Bad("server", "a 58 KB target_language",
            _json(key, json.dumps({"target_language": "es-" + "abcdefgh-" * 6_400})), 422,
            "target_language"),
        Bad("server", "?limit=%C2%B2", http("GET", "/v1/jobs?limit=%C2%B2", auth), 422, "limit"),
        Bad("server", "?limit=1e400", http("GET", "/v1/jobs?limit=1e400", auth), 422, "limit"),
        Bad("server", "101 ids", http("GET", "/v1/jobs?ids=" + ",".join(["job_a"] * 101), auth),
            422, "ids"),
        Bad("server", "a 300-character Idempotency-Key",
            _json(key, "{}", {"Idempotency-Key": "k" * 300}), 422, "Idempotency-Key"),
        Bad("server", "a 300 MB body declared",
            http("POST", "/v1/jobs", auth).replace(b"Content-Length: 0", b"Content-Length: "
                                                   + str(300 * 2**20).encode()), 413),
        Bad("server", "%0A in a path", http("GET", "/v1/jobs/x%0AFORGED%20200", auth), 404),
        Bad("server", "40 KB of headers", http("GET", "/healthz", {"X-Big": "a" * 40_000}), 431),
        Bad("server", "a control character in a header",
            http("GET", "/healthz", {"X-Odd": "a\x1bb"}), 400),
    ]  # fmt: skip


def _webhook(secret: str, body: str) -> bytes:
    msg_id, ts = f"msg_bad_{time.time_ns()}", int(time.time())
    headers = {"webhook-id": msg_id, "webhook-timestamp": str(ts),
               "webhook-signature": sign([secret], msg_id, ts, body),
               "Content-Type": "application/json"}  # fmt: skip
    return http("POST", "/webhooks", headers, body.encode())


def receiver_inputs(secret: str, token: str) -> list[Bad]:
    feed = {"Authorization": f"Bearer {token}"}
    job = '{"type": "job.completed", "data": {"id": "job_bad", "metadata": {"x": VALUE}}}'
    deep = '{"type": "job.completed", "data": ' + "[" * 30_000 + "]" * 30_000 + "}"
    return [
        Bad("receiver", "JSON nested 30,000 deep", _webhook(secret, deep), 400),
        Bad("receiver", "NaN in a webhook", _webhook(secret, job.replace("VALUE", "NaN")),
            400),
        Bad("receiver", "1e400 in a webhook",
            _webhook(secret, job.replace("VALUE", "1e400")), 400),
        Bad("receiver", "?limit=%C2%B2", http("GET", "/v1/events?limit=%C2%B2", feed), 422,
            "limit"),
        Bad("receiver", "?wait=1e400", http("GET", "/v1/events?wait=1e400", feed), 422, "wait"),
        Bad("receiver", "?wait=NaN", http("GET", "/v1/events?wait=NaN", feed), 422, "wait"),
        Bad("receiver", "a 300-character job_id",
            http("GET", "/v1/events?job_id=" + "j" * 300, feed), 422, "job_id"),
        Bad("receiver", "a 58 KB query string",
            http("GET", "/v1/events?job_id=" + "j" * 58_000, feed), 431),
        Bad("receiver", "a 300 MB body declared",
            http("POST", "/webhooks", {}).replace(b"Content-Length: 0", b"Content-Length: "
                                                  + str(300 * 2**20).encode()), 413),
        Bad("receiver", "%0A in a path", http("GET", "/v1/events/x%0AFORGED%20200", feed), 404),
        Bad("receiver", "40 KB of headers", http("GET", "/healthz", {"X-Big": "a" * 40_000}),
            431),
    ]  # fmt: skip


def _names_field(answer: Answer, field: str) -> bool:
    if answer.content_type != "application/problem+json":
        return False
    doc = loads_strict(answer.body)
    return bool(doc.get("field") == field and str(doc.get("detail", "")).startswith(field))


def _strict(answer: Answer) -> bool:
    if "json" not in answer.content_type:
        return True
    try:
        loads_strict(answer.body)  # refuses NaN, Infinity and 1e400 (error text may name them)
    except ValueError:
        return False
    return True


def _forged(service: Service) -> int:
    return sum(1 for line in service.log().splitlines() if not LOG_LINE.match(line))


def measure(quick: bool) -> list[Figure]:
    with tempfile.TemporaryDirectory() as tmp:
        workdir = Path(tmp)
        with (
            start_server(workdir, "--duration-min", "0.1", "--duration-max", "0.3") as server,
            start_receiver(workdir, "--max-wait", "0.5") as receiver,
        ):
            setup = json.loads((workdir / "local.json").read_text())
            examples = 10 if quick else 25
            fuzz = [
                apifuzz.run(server.url, {"apiKey": setup["api_key"], "adminToken": ADMIN},
                            workdir, max_examples=examples),
                apifuzz.run(receiver.url, {s: setup["receiver_token"]
                                           for s in apifuzz.security_schemes(receiver.url)},
                            workdir, max_examples=examples),
            ]  # fmt: skip
            setup = json.loads((workdir / "local.json").read_text())  # secrets rotated since
            bad = server_inputs(setup["api_key"]) + receiver_inputs(
                setup["webhook_secret"], setup["receiver_token"]
            )
            ports = {"server": server.port, "receiver": receiver.port}
            answers = [(b, send(ports[b.service], b.request)) for b in bad]
            server.stop()
            receiver.stop()
            forged = _forged(server) + _forged(receiver)
    cases = sum(f.cases for f in fuzz)
    fuzz_5xx = sum(f.server_errors for f in fuzz)
    failed = sum(not f.passed for f in fuzz)
    five = [b.what for b, a in answers if a.status >= 500]
    wrong = [f"{b.service}: {b.what} ({a.status})" for b, a in answers if a.status != b.status]
    with_field = [(b, a) for b, a in answers if b.field]
    named = sum(_names_field(a, b.field or "") for b, a in with_field)
    loose = [b.what for b, a in answers if not _strict(a)]
    return [
        Figure("5xx across schemathesis, both services", f"{fuzz_5xx} in {cases:,} cases", "0",
               fuzz_5xx == 0, f"schemathesis --max-examples {examples}, every check, "
               f"deterministic; the services' own 5xx counters"),
        Figure("schemathesis runs with a failed check", f"{failed} of {len(fuzz)}", "0",
               failed == 0, "server and receiver documents, every check (tests/apifuzz.py)"),
        Figure("5xx across the bad inputs", f"{len(five)} of {len(answers)}", "0", not five,
               "nesting, NaN, Infinity, 1e400, surrogates, a 58 KB tag, ?limit=%C2%B2, a "
               "declared 300 MB body, %0A in a path, 40 KB of headers, on both services"),
        Figure("bad inputs answered with the status the contract gives",
               f"{len(answers) - len(wrong)} of {len(answers)}", f"all {len(answers)}",
               not wrong, "400, 404, 413, 422 or 431, each as docs/api.md says"
               + (f"; not so: {'; '.join(wrong)}" if wrong else "")),
        Figure("bad inputs answered with problem+json naming the field",
               f"{named} of {len(with_field)}", f"{len(with_field)} of {len(with_field)}",
               named == len(with_field),
               "the others are malformed JSON (400) or waitress's own plain 413, 431, 400"),
        Figure("answers that are not strict JSON (NaN, Infinity)", f"{len(loose)}", "0",
               not loose, "every JSON answer to the bad inputs, parsed strictly"),
        Figure("log lines forged or not one record", f"{forged}", "0", forged == 0,
               "every line of both services' logs starts with a timestamp and level"),
    ]  # fmt: skip
