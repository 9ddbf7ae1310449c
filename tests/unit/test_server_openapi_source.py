"""The server's OpenAPI document and its validation come from one source: the contract's
declared fields; and what the server sends matches the declared schemas."""

from __future__ import annotations

from flask.testing import FlaskClient

from client_lib.contract import CREATE_JOB, JOB, PROBLEM
from client_lib.fields import object_schema
from tests.conftest import auth


def test_the_create_schema_is_the_fields_validation_checks(client: FlaskClient) -> None:
    doc = client.get("/openapi.json").get_json()
    assert doc["components"]["schemas"]["CreateJob"] == object_schema(CREATE_JOB)
    simulate = doc["components"]["schemas"]["CreateJob"]["properties"]["simulate"]
    assert simulate["properties"]["estimate_factor"]["maximum"] == 5.0
    params = {p["name"] for p in doc["paths"]["/v1/jobs"]["get"]["parameters"]}
    assert params == {"ids", "status", "limit", "cursor"}


def test_every_declared_limit_is_enforced(client: FlaskClient, tenant: dict[str, str]) -> None:
    for field in CREATE_JOB:
        if field.maximum is None or field.type != "integer":
            continue
        body = {field.name: int(field.maximum) + 1}
        resp = client.post("/v1/jobs", json=body, headers=auth(tenant))
        assert resp.status_code == 422 and resp.get_json()["field"] == field.name


def test_what_the_server_sends_is_what_the_schemas_say(
    client: FlaskClient, tenant: dict[str, str]
) -> None:
    job = client.post("/v1/jobs", json={}, headers=auth(tenant)).get_json()
    assert set(job) == set(JOB["properties"])
    problem = client.get("/v1/jobs/job_none", headers=auth(tenant)).get_json()
    assert set(PROBLEM["required"]) <= set(problem) <= set(PROBLEM["properties"])
