"""The receiver's OpenAPI document: every route, the feed's fields, the schemas it sends."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest
from flask import Flask

from client_lib.contract import FEED_EVENT, FEED_PAGE
from tests.receiver_support import event_body, receiver_app, signed_headers


@pytest.fixture
def app(tmp_path: Path) -> Iterator[Flask]:
    with receiver_app(tmp_path, max_wait_s=30) as app:
        yield app


def test_every_route_is_described(app: Flask) -> None:
    doc = app.test_client().get("/openapi.json").get_json()
    assert doc["openapi"] == "3.1.0"
    routes = {
        (r.rule.replace("<", "{").replace(">", "}"), m.lower())
        for r in app.url_map.iter_rules()
        if r.endpoint != "static"
        for m in r.methods or ()
        if m in ("GET", "POST")
    }
    described = {(path, method) for path, ops in doc["paths"].items() for method in ops}
    assert described == routes


def test_the_feeds_parameters_are_the_fields_it_validates_with(app: Flask) -> None:
    doc = app.test_client().get("/openapi.json").get_json()
    params = {p["name"]: p["schema"] for p in doc["paths"]["/v1/events"]["get"]["parameters"]}
    assert set(params) == {"after", "job_id", "jobs", "limit", "wait"}
    (wait, blank), (limit, _) = params["wait"]["anyOf"], params["limit"]["anyOf"]
    assert wait["maximum"] == 30  # the app's --max-wait, which it enforces
    assert blank == {"const": ""}  # an empty value means the default
    assert app.test_client().get("/v1/events?wait=31").status_code == 422
    assert params["limit"]["description"] == "Events per page"
    assert limit == {"type": "integer", "default": 100, "minimum": 1, "maximum": 1000}


def test_what_the_feed_sends_is_what_the_schemas_say(app: Flask) -> None:
    client = app.test_client()
    body = event_body("job_1")
    assert client.post("/webhooks", data=body, headers=signed_headers(body)).status_code == 204
    page = client.get("/v1/events?after=0").get_json()
    assert set(page) <= set(FEED_PAGE["properties"])
    assert set(FEED_PAGE["required"]) <= set(page)
    (event,) = page["events"]
    assert set(event) <= set(FEED_EVENT["properties"])
    assert set(FEED_EVENT["required"]) <= set(event)
    assert json.loads(body)["data"]["id"] == event["data"]["id"]
