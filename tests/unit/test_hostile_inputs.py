"""Hostile inputs get a clear 4xx naming the problem, never a 5xx, and nothing unsafe is kept
or logged: nesting, non-finite numbers, unbounded tags, non-ASCII digits, forged log lines."""

from __future__ import annotations

import json
import logging
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from flask import Flask
from flask.testing import FlaskClient

from client_lib.wire import loads_strict, printable
from tests.conftest import auth
from tests.receiver_support import receiver_app, signed_headers


def test_deeply_nested_json_is_400_not_a_recursion_error(
    client: FlaskClient, tenant: dict[str, str]
) -> None:
    for depth in (33, 30_000):  # 60 KB of brackets: within the body limit
        body = "[" * depth + "]" * depth
        resp = client.post(
            "/v1/jobs", data=body, headers={**auth(tenant), "Content-Type": "application/json"}
        )
        assert resp.status_code == 400, depth
        assert resp.get_json()["code"] == "malformed_json" and "nested" in resp.get_json()["detail"]


@pytest.mark.parametrize("constant", ["NaN", "Infinity", "-Infinity"])
def test_non_finite_numbers_are_refused(
    client: FlaskClient, tenant: dict[str, str], constant: str
) -> None:
    body = '{"metadata": {"x": ' + constant + "}}"
    resp = client.post(
        "/v1/jobs", data=body, headers={**auth(tenant), "Content-Type": "application/json"}
    )
    assert resp.status_code == 400 and constant in resp.get_json()["detail"]


def test_a_language_tag_is_bounded(client: FlaskClient, tenant: dict[str, str]) -> None:
    resp = client.post(
        "/v1/jobs", json={"target_language": "es" + "-abcd" * 10}, headers=auth(tenant)
    )
    assert resp.status_code == 422 and resp.get_json()["field"] == "target_language"


def test_query_integers_are_ascii_digits(client: FlaskClient, tenant: dict[str, str]) -> None:
    resp = client.get("/v1/jobs?limit=%C2%B2", headers=auth(tenant))
    assert resp.status_code == 422 and resp.get_json()["field"] == "limit"


def test_a_newline_in_a_path_does_not_forge_a_log_line(
    client: FlaskClient, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.INFO, logger="translation_server.access"):
        client.get("/v1/jobs/x%0AFORGED 200 request_id=0")
    lines = [r.getMessage() for r in caplog.records if r.name == "translation_server.access"]
    assert lines and all("\n" not in line for line in lines)
    assert "\\nFORGED" in lines[-1]


@pytest.fixture
def receiver(tmp_path: Path) -> Iterator[Flask]:
    with receiver_app(tmp_path) as app:
        yield app


def test_the_receiver_refuses_nesting_and_non_finite_numbers(receiver: Flask) -> None:
    client = receiver.test_client()
    for body in ('{"type": "job.completed", "data": {"id": "j", "x": NaN}}', "[" * 50 + "]" * 50):
        raw = body.encode()
        resp = client.post("/webhooks", data=raw, headers=signed_headers(raw))
        assert resp.status_code == 400 and resp.get_json()["code"] == "invalid_json"


def test_strict_json_and_printable_text() -> None:
    assert loads_strict('{"a": [1, 2.5, {"b": null}]}') == {"a": [1, 2.5, {"b": None}]}
    with pytest.raises(ValueError, match="NaN"):
        loads_strict("[NaN]")
    assert printable("ok path") == "ok path" and printable("a\nb\x1b") == "a\\nb\\x1b"
    nested: Any = 0
    for _ in range(32):
        nested = [nested]
    assert loads_strict(json.dumps(nested)) == nested
