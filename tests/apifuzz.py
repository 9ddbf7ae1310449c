"""Schemathesis against a running service's ``GET /openapi.json``: shared by the test suite
(``tests/e2e/test_schemathesis.py``) and the hardening benchmark (``scripts/hardening``).

It runs schemathesis's own command line (``python -m schemathesis.cli run``, its public
interface) with every check, bounded and deterministic examples, and a configuration file
that gives each security scheme of the document its token. A few operations get one more
status among the answers a schema-valid request may receive, each for a rule JSON Schema
cannot state (``SEMANTIC``); and 413, the body limit, counts as rejecting invalid data.
Every other check applies unchanged.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import Any

# operations whose schema-valid requests may still be refused, with the status and the rule
SEMANTIC = {
    # a callback URL must be in the allow-list and resolve; metadata is limited in bytes
    ("POST", "/v1/jobs"): "422",
    # ids excludes the other parameters; a cursor must be one the server issued
    ("GET", "/v1/jobs"): "422",
    # jobs excludes job_id
    ("GET", "/v1/events"): "422",
    # a heartbeat of 1000 entries can exceed the 64 KiB body limit
    ("POST", "/webhooks"): "413",
}
POSITIVE_STATUSES = ["2xx", "3xx", "401", "403", "404", "409", "429"]
NEGATIVE_STATUSES = ["400", "401", "403", "404", "405", "406", "409", "413", "415", "422",
                     "428", "429"]  # fmt: skip


@dataclass
class FuzzRun:
    """One schemathesis run: its exit code, its report, and the 5xx the service counted."""

    returncode: int
    output: str
    cases: int
    server_errors: int

    @property
    def passed(self) -> bool:
        return self.returncode == 0


def _toml(value: object) -> str:
    return json.dumps(value)  # a JSON string or list of strings is valid TOML


def write_config(
    path: Path, tokens: dict[str, str], seed: int, operations: set[tuple[str, str]]
) -> Path:
    """A schemathesis configuration: the seed, deterministic generation, a bearer token per
    security scheme, 413 as a rejection, and the allowances of ``SEMANTIC`` (for the
    ``operations`` the document has)."""
    lines = [f"seed = {seed}", "", "[generation]", "deterministic = true", "",
             "[checks.negative_data_rejection]",
             f"expected-statuses = {_toml(NEGATIVE_STATUSES)}", ""]  # fmt: skip
    for scheme, token in tokens.items():
        lines += [f"[auth.openapi.{scheme}]", f"bearer = {_toml(token)}", ""]
    for (method, route), status in SEMANTIC.items():
        if (method, route) not in operations:
            continue
        lines += [
            "[[operations]]",
            f"include-method = {_toml(method)}",
            f"include-path = {_toml(route)}",
            "checks.positive_data_acceptance.expected-statuses = "
            + _toml([*POSITIVE_STATUSES, status]),
            "",
        ]
    path.write_text("\n".join(lines))
    return path


def document(url: str) -> dict[str, Any]:
    """The service's OpenAPI document."""
    with urllib.request.urlopen(f"{url}/openapi.json", timeout=10) as resp:
        return dict(json.load(resp))


def security_schemes(url: str) -> list[str]:
    """The names of the security schemes the service's document declares."""
    return sorted(document(url).get("components", {}).get("securitySchemes", {}))


def server_errors(url: str) -> int:
    """The 5xx answers the service counted so far (its ``GET /metrics``, either service)."""
    with urllib.request.urlopen(f"{url}/metrics", timeout=10) as resp:
        text = resp.read().decode()
    total = 0.0
    for line in text.splitlines():
        if "_http_requests_total{" in line and re.search(r'status="5\d\d"', line):
            total += float(line.rsplit(" ", 1)[1])
    return int(total)


def run(
    url: str,
    tokens: dict[str, str],
    workdir: Path,
    *,
    max_examples: int = 15,
    seed: int = 1,
    timeout: float = 280,
) -> FuzzRun:
    """Every check of schemathesis against ``url``'s document, ``max_examples`` per
    operation and phase, one worker; the service's 5xx counted from its metrics."""
    paths = document(url)["paths"]
    operations = {(method.upper(), route) for route, item in paths.items() for method in item}
    config = write_config(workdir / f"schemathesis-{seed}.toml", tokens, seed, operations)
    before = server_errors(url)
    cmd = [sys.executable, "-m", "schemathesis.cli", "--config-file", str(config), "run",
           f"{url}/openapi.json", "--checks", "all", "--max-examples", str(max_examples),
           "--workers", "1", "--no-color", "--request-timeout", "10"]  # fmt: skip
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, cwd=workdir)
    output = done.stdout + done.stderr
    found = re.search(r"(\d+) generated", output)
    return FuzzRun(
        returncode=done.returncode,
        output=output,
        cases=int(found.group(1)) if found else 0,
        server_errors=server_errors(url) - before,
    )
