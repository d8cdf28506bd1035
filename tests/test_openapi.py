"""The OpenAPI document is well formed and in step with the routes, the validator and Job.to_json()."""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from typing import Any

import pytest
from aiohttp import web

from jobnode.api.openapi import openapi_document
from jobnode.core.settings import Settings
from jobnode.core.job import STATUSES, Job, JobSpec
from jobnode.core.submission import (
    MAX_IDEMPOTENCY_KEY_LEN,
    MAX_PRIORITY,
    MAX_RETRIES_LIMIT,
    MAX_TIMEOUT_S,
    MAX_TYPE_LEN,
    MIN_PRIORITY,
    PRIORITY_NAMES,
    SUBMIT_FIELDS,
)
from jobnode.node import build_app
from tests.harness import start_node  # noqa: F401  (fixture)

HTTP_METHODS = {"get", "put", "post", "delete", "options", "head", "patch", "trace"}
BATCH_LIMIT = 7


@pytest.fixture(scope="module")
def app() -> web.Application:
    """The node's application, built but never started: its router is what we compare against."""
    return build_app(Settings.from_env({"METRICS_ENABLED": "false", "MAX_BATCH_SIZE": str(BATCH_LIMIT)},
                                       env_file=None))


@pytest.fixture(scope="module")
def doc(app) -> dict[str, Any]:
    # Through JSON, as a client sees it: a tuple or a set in the document would show up here.
    return json.loads(json.dumps(openapi_document(app)))


def routes_of(app: web.Application) -> set[tuple[str, str]]:
    return {
        (route.method.lower(), route.resource.canonical)
        for route in app.router.routes()
        if route.method != "HEAD" and route.resource is not None
    }


def operations(doc: dict[str, Any]) -> Iterator[tuple[str, str, dict[str, Any]]]:
    for path, item in doc["paths"].items():
        for method, op in item.items():
            if method in HTTP_METHODS:
                yield path, method, op


def refs(node: Any) -> Iterator[str]:
    if isinstance(node, dict):
        if isinstance(node.get("$ref"), str):
            yield node["$ref"]
        for value in node.values():
            yield from refs(value)
    elif isinstance(node, list):
        for value in node:
            yield from refs(value)


def resolve(doc: dict[str, Any], ref: str) -> Any:
    assert ref.startswith("#/"), f"only local references are expected, got {ref}"
    node: Any = doc
    for part in ref[2:].split("/"):
        assert isinstance(node, dict) and part in node, f"{ref} does not resolve"
        node = node[part]
    return node


# --- well formed --------------------------------------------------------------------------------


def test_the_document_has_the_openapi_3_1_top_level_shape(doc):
    assert re.fullmatch(r"3\.1\.\d+", doc["openapi"])
    assert doc["info"]["title"] and isinstance(doc["info"]["version"], str) and doc["info"]["version"]
    assert doc["paths"] and all(path.startswith("/") for path in doc["paths"])
    assert set(doc) <= {"openapi", "info", "jsonSchemaDialect", "servers", "paths", "webhooks", "components",
                        "security", "tags", "externalDocs"}


def test_every_operation_has_an_id_and_described_responses(doc):
    seen = set()
    for path, method, op in operations(doc):
        where = f"{method.upper()} {path}"
        assert op["operationId"] not in seen, f"{where}: operationId {op['operationId']} is used twice"
        seen.add(op["operationId"])
        assert op["responses"], f"{where} documents no response"
        for status, response in op["responses"].items():
            assert re.fullmatch(r"[1-5](\d\d|XX)|default", status), f"{where}: bad status key {status!r}"
            assert isinstance(response["description"], str), f"{where} {status} has no description"


def test_path_parameters_match_the_path_template(doc):
    for path, method, op in operations(doc):
        params = op.get("parameters", [])
        for param in params:
            assert param["in"] in {"query", "header", "path", "cookie"} and param["name"] and "schema" in param
        declared = {p["name"] for p in params if p["in"] == "path"}
        assert declared == set(re.findall(r"{(\w+)}", path)), f"{method.upper()} {path}"
        assert all(p["required"] is True for p in params if p["in"] == "path")


def test_every_reference_resolves_and_every_schema_is_used(doc):
    used = set()
    for ref in refs(doc):
        resolve(doc, ref)
        used.add(ref.rsplit("/", 1)[1])
    assert used == set(doc["components"]["schemas"])


def test_required_properties_are_declared(doc):
    def objects(node: Any) -> Iterator[dict[str, Any]]:
        if isinstance(node, dict):
            if "required" in node and isinstance(node["required"], list):
                yield node
            for value in node.values():
                yield from objects(value)

    for schema in objects(doc["components"]["schemas"]):
        assert set(schema["required"]) <= set(schema["properties"]), schema


# --- in step with the routes --------------------------------------------------------------------


def test_every_route_is_documented_and_every_documented_route_exists(app, doc):
    routes = routes_of(app)
    documented = {(method, path) for path, method, _ in operations(doc)}
    assert routes, "the app registers no routes"
    assert routes - documented == set(), "routes missing from the OpenAPI document"
    assert documented - routes == set(), "documented operations that no route serves"


def test_the_batch_limit_is_the_nodes(doc):
    assert doc["components"]["schemas"]["JobBatch"]["properties"]["jobs"]["maxItems"] == BATCH_LIMIT


# --- in step with the validator and the job's JSON ----------------------------------------------


def test_the_submission_schema_has_exactly_the_accepted_fields_and_limits(doc):
    schema = doc["components"]["schemas"]["JobSubmission"]
    props = schema["properties"]
    assert set(props) == set(SUBMIT_FIELDS)
    assert schema["required"] == ["type"] and schema["additionalProperties"] is False
    number, name = props["priority"]["oneOf"]
    assert (number["minimum"], number["maximum"]) == (MIN_PRIORITY, MAX_PRIORITY)
    assert set(name["enum"]) == set(PRIORITY_NAMES)
    assert props["max_retries"]["maximum"] == MAX_RETRIES_LIMIT
    assert props["timeout_seconds"]["maximum"] == MAX_TIMEOUT_S
    assert props["type"]["maxLength"] == MAX_TYPE_LEN
    assert props["idempotency_key"]["maxLength"] == MAX_IDEMPOTENCY_KEY_LEN


JSON_TYPES = {str: "string", bool: "boolean", int: "integer", float: "number", dict: "object", list: "array",
              type(None): "null"}


def admits(schema: dict[str, Any], value: Any) -> bool:
    """Whether `schema`'s type keyword (the only part checked here) admits `value`."""
    if "type" not in schema:
        return True
    allowed = schema["type"] if isinstance(schema["type"], list) else [schema["type"]]
    actual = JSON_TYPES[type(value)]
    return actual in allowed or (actual == "integer" and "number" in allowed)


@pytest.mark.parametrize("status", STATUSES)
def test_the_job_schema_describes_job_to_json(doc, status):
    schema = doc["components"]["schemas"]["Job"]
    job = Job.new(JobSpec(type="echo", idempotency_key=None))
    job.status = status
    body = json.loads(json.dumps(job.to_json()))
    assert set(schema["properties"]) == set(body)
    assert set(schema["required"]) == set(body)
    for key, value in body.items():
        assert admits(schema["properties"][key], value), f"Job.{key} = {value!r} does not fit its schema"
    assert status in schema["properties"]["status"]["enum"]
    assert re.fullmatch(schema["properties"]["id"]["pattern"], body["id"])


# --- served -------------------------------------------------------------------------------------


async def test_a_node_serves_the_document(start_node):
    client = await start_node(WORKER_COUNT="0")
    resp = await client.get("/api/v1/openapi.json")
    assert resp.status == 200 and resp.content_type == "application/json"
    served = await resp.json()
    assert served == json.loads(json.dumps(openapi_document(client.server.app)))
    assert served["openapi"].startswith("3.1")
