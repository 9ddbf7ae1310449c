"""Every request field is bounded and every answer is strict JSON, on both services.

Each test here fails on a naive implementation: ``json.loads`` reads ``1e400`` as infinity
and keeps unpaired surrogates; ``json.dumps`` writes ``NaN``; a length check on unique ids
lets 150 copies of one id through; ``str.strip`` and a JSON Schema disagree on blanks; and a
field the OpenAPI document leaves unbounded is one a client can fill without limit.
"""

from __future__ import annotations

import json
import logging
import math
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from flask import Flask
from flask.testing import FlaskClient

from client_lib.contract import IDS_PATTERN, NON_BLANK
from client_lib.wire import LogLineFormatter, loads_strict
from tests.conftest import ADMIN_TOKEN, auth
from tests.receiver_support import receiver_app, signed_headers

ADMIN = {"Authorization": f"Bearer {ADMIN_TOKEN}"}
JSON_TYPE = {"Content-Type": "application/json"}
# numbers JSON's grammar (or Python's reader) allows that no strict JSON may hold
HOSTILE_VALUES = ["NaN", "Infinity", "-Infinity", "1e400", "-1e999"]
# string escapes that parse to an unpaired surrogate: no UTF-8 text holds one
SURROGATES = ["\\ud800", "a\\udfffb"]


@pytest.fixture
def receiver(tmp_path: Path) -> Iterator[Flask]:
    with receiver_app(tmp_path) as app:
        yield app


def _strict(raw: bytes) -> Any:
    """The body parsed strictly: a NaN, an Infinity or a lone surrogate fails the test."""
    return loads_strict(raw)


@pytest.mark.parametrize("value", HOSTILE_VALUES)
def test_the_server_refuses_what_it_could_not_echo_as_json(
    client: FlaskClient, tenant: dict[str, str], value: str
) -> None:
    body = '{"metadata": {"x": ' + value + "}}"
    resp = client.post(
        "/v1/jobs", data=body, headers={**auth(tenant), "Content-Type": "application/json"}
    )
    assert resp.status_code == 400, resp.data
    problem = _strict(resp.data)
    assert problem["code"] == "malformed_json" and resp.mimetype == "application/problem+json"
    assert client.get("/v1/jobs", headers=auth(tenant)).get_json()["jobs"] == []


@pytest.mark.parametrize("value", HOSTILE_VALUES)
def test_the_receiver_refuses_what_its_feed_could_not_echo(receiver: Flask, value: str) -> None:
    client = receiver.test_client()
    raw = '{"type": "job.completed", "data": {"id": "job_1", "metadata": {"x": ' + value + "}}}"
    resp = client.post("/webhooks", data=raw.encode(), headers=signed_headers(raw.encode()))
    assert resp.status_code == 400 and _strict(resp.data)["code"] == "invalid_json"
    page = client.get("/v1/events?after=0")
    assert page.status_code == 200 and _strict(page.data)["events"] == []


@pytest.mark.parametrize("value", SURROGATES)
def test_an_unpaired_surrogate_is_422_naming_the_field(
    client: FlaskClient, tenant: dict[str, str], value: str
) -> None:
    for field, body in [
        ("metadata", '{"metadata": {"x": "' + value + '"}}'),
        ("metadata", '{"metadata": {"' + value + '": 1}}'),
        ("source_url", '{"source_url": "https://example.com/' + value + '"}'),
        ("target_language", '{"target_language": "' + value + '"}'),
    ]:
        resp = client.post(
            "/v1/jobs", data=body, headers={**auth(tenant), "Content-Type": "application/json"}
        )
        assert resp.status_code == 422, (body, resp.data)
        assert _strict(resp.data)["field"] == field
    name = client.post(
        "/v1/clients", data='{"name": "' + value + '"}', headers={**ADMIN, **JSON_TYPE}
    )
    assert name.status_code == 422 and name.get_json()["field"] == "name"
    assert client.get("/v1/jobs", headers=auth(tenant)).get_json()["jobs"] == []


def test_neither_service_writes_nan_or_infinity(app: Flask, receiver: Flask) -> None:
    for service in (app, receiver):
        with pytest.raises(ValueError):
            service.json.dumps({"x": math.nan})
        with pytest.raises(ValueError):
            service.json.dumps({"x": math.inf})
        assert service.json.dumps({"x": 1.5}) == '{"x": 1.5}'


def test_strict_json_keeps_what_is_valid() -> None:
    assert loads_strict('["\\ud83d\\ude00", 1e308, -0.0, {"k": "é"}]') == [
        "😀",
        1e308,
        -0.0,
        {"k": "é"},
    ]
    for raw in ("[1e400]", '{"a": [NaN]}', "[" * 33 + "]" * 33):
        with pytest.raises(ValueError):
            loads_strict(raw)


def _ids_query(ids: list[str]) -> str:
    return "/v1/jobs?ids=" + ",".join(ids)


def test_bulk_ids_are_counted_as_given_and_blanks_are_refused(
    client: FlaskClient, tenant: dict[str, str]
) -> None:
    # 150 copies of one id fold to one; counted after folding, they would slip past the limit
    for query in (_ids_query(["job_x"] * 101), "/v1/jobs?ids=,%20,", "/v1/jobs?ids="):
        resp = client.get(query, headers=auth(tenant))
        assert resp.status_code == 422, query
        assert resp.get_json()["field"] == "ids" and resp.get_json()["detail"].startswith("ids: ")
    ok = client.get(_ids_query(["job_x"] * 100) + ",,%20,", headers=auth(tenant))
    assert ok.status_code == 200 and ok.get_json() == {"jobs": []}


def test_blank_means_ascii_white_space_to_the_document_and_the_server(
    client: FlaskClient,
) -> None:
    # str.strip() also strips \x1c-\x1f and U+2003, which a JSON Schema's \s does not: the
    # document and the server use the same explicit set
    for name, status in [("\x1c", 201), ("\u2003", 201), (" \t\n", 422), ("", 422)]:
        resp = client.post("/v1/clients", json={"name": name}, headers=ADMIN)
        assert resp.status_code == status, (name, resp.get_json())
        if status == 422:
            assert resp.get_json()["field"] == "name"
    missing = client.post("/v1/clients", json={}, headers=ADMIN)
    assert missing.status_code == 422 and missing.get_json()["detail"] == "name: is required"
    assert client.post("/v1/clients", json={"name": " a "}, headers=ADMIN).get_json()["name"] == "a"
    assert re_full(NON_BLANK, "\x1c") and not re_full(NON_BLANK, " \t")
    assert re_full(IDS_PATTERN, "a, ,b") and not re_full(IDS_PATTERN, ",".join("a" * 101))


def re_full(pattern: str, text: str) -> bool:
    import re

    return re.fullmatch(pattern, text) is not None


@pytest.mark.parametrize("key", ["", "k" * 256])
def test_the_idempotency_key_is_bounded(
    client: FlaskClient, tenant: dict[str, str], key: str
) -> None:
    resp = client.post("/v1/jobs", json={}, headers={**auth(tenant), "Idempotency-Key": key})
    assert resp.status_code == 422 and resp.get_json()["field"] == "Idempotency-Key"


@pytest.mark.parametrize(
    ("query", "field"),
    [("limit=%C2%B2", "limit"), ("limit=%D9%A3", "limit"), ("wait=1e400", "wait"),
     ("wait=NaN", "wait"), ("wait=Infinity", "wait"), ("job_id=" + "j" * 256, "job_id"),
     ("after=latest%0A", "after")],
)  # fmt: skip
def test_the_feeds_query_is_bounded_like_the_servers(
    receiver: Flask, query: str, field: str
) -> None:
    resp = receiver.test_client().get(f"/v1/events?{query}")
    assert resp.status_code == 422 and resp.mimetype == "application/problem+json"
    assert resp.get_json()["field"] == field and resp.get_json()["detail"].startswith(field)


def test_an_empty_query_value_means_the_default(
    client: FlaskClient, tenant: dict[str, str], receiver: Flask
) -> None:
    assert client.get("/v1/jobs?limit=&status=&cursor=", headers=auth(tenant)).status_code == 200
    page = receiver.test_client().get("/v1/events?after=&limit=&wait=&job_id=")
    assert page.status_code == 200 and page.get_json()["events"] == []


def _request_schemas(doc: dict[str, Any]) -> Iterator[tuple[str, dict[str, Any]]]:
    """Every schema a request carries: parameters and bodies, references followed."""
    components = doc["components"]["schemas"]

    def walk(where: str, schema: dict[str, Any]) -> Iterator[tuple[str, dict[str, Any]]]:
        if "$ref" in schema:
            yield from walk(where, components[schema["$ref"].rsplit("/", 1)[1]])
            return
        yield where, schema
        if "x-max-json-bytes" in schema:
            return  # bounded as a whole (the body limit, the metadata limit)
        for key in ("anyOf", "oneOf", "allOf"):
            for i, sub in enumerate(schema.get(key, [])):
                yield from walk(f"{where}/{key}{i}", sub)
        for name, sub in schema.get("properties", {}).items():
            yield from walk(f"{where}.{name}", sub)
        if "items" in schema:
            yield from walk(f"{where}[]", schema["items"])

    for path, item in doc["paths"].items():
        for method, op in item.items():
            for param in op.get("parameters", []):
                yield from walk(f"{method} {path} {param['name']}", param["schema"])
            for media in op.get("requestBody", {}).get("content", {}).values():
                yield from walk(f"{method} {path} body", media["schema"])


def _unbounded(schema: dict[str, Any]) -> str | None:
    types = schema.get("type")
    types = types if isinstance(types, list) else [types]
    if "string" in types and "maxLength" not in schema and "enum" not in schema:
        return "a string without maxLength"
    if {"number", "integer"} & set(types) and not {"minimum", "maximum"} <= set(schema):
        return "a number without finite bounds"
    if "array" in types and "maxItems" not in schema:
        return "an array without maxItems"
    if "object" in types and "properties" not in schema and "x-max-json-bytes" not in schema:
        return "an object without declared fields or x-max-json-bytes"
    return None


def test_every_request_field_of_both_documents_is_bounded(app: Flask, receiver: Flask) -> None:
    seen = 0
    for service in (app, receiver):
        doc = service.test_client().get("/openapi.json").get_json()
        for where, schema in _request_schemas(doc):
            seen += 1
            problem = _unbounded(schema)
            assert problem is None, f"{where}: {problem}"
    assert seen > 40


def test_a_log_line_cannot_be_forged_by_a_message() -> None:
    formatter = LogLineFormatter("%(levelname)s %(message)s")
    record = logging.LogRecord(
        "x", logging.INFO, __file__, 1, "got %s", ("a\nFORGED\x1b[2J",), None
    )
    assert formatter.format(record) == "INFO got a\\nFORGED\\x1b[2J"
    plain = logging.LogRecord("x", logging.INFO, __file__, 1, "path %s", ("/v1/jobs",), None)
    assert formatter.format(plain) == "INFO path /v1/jobs"
    try:
        raise ValueError("bad\n2026-01-01 00:00:00,000 INFO forged: line\x85also")
    except ValueError:
        failed = logging.LogRecord("x", logging.ERROR, __file__, 1, "failed", (), sys.exc_info())
    first, *rest = formatter.format(failed).splitlines()
    assert first == "ERROR failed" and rest and all(line.startswith("    ") for line in rest)
    assert "    2026-01-01 00:00:00,000 INFO forged: line" in rest  # indented: not a record


def test_the_document_bodies_are_what_the_server_checks(app: Flask) -> None:
    doc = app.test_client().get("/openapi.json").get_json()
    body = doc["paths"]["/v1/clients"]["post"]["requestBody"]["content"]["application/json"]
    assert body["schema"]["required"] == ["name"]
    assert body["schema"]["properties"]["name"]["maxLength"] == 200
    headers = doc["paths"]["/v1/jobs"]["get"]["responses"]["200"]["headers"]
    assert json.dumps(headers["X-Request-ID"]["schema"]).count("128") == 1
