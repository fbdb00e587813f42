"""Property-based API test against the service's own OpenAPI schema: no request, valid or not,
ever produces a 5xx -- for the fitted baseline and for the trained engine.

Bodies are generated from ``/schema/openapi.json`` (``ForecastRequest``: types, bounds, lengths,
required fields), then mutated: a field replaced by an arbitrary JSON value, a required field
dropped, an unknown field added, a number pushed past its bound, or a body that is not an object
or not JSON at all. Every answer must be 200, 400, 404, 413 or 422; errors must name the field
(or list the known assets), and successes must be coherent cones.
"""

from __future__ import annotations

import json

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

ALLOWED_STATUS = {200, 400, 404, 413, 422}
JSON = st.recursive(
    st.none() | st.booleans() | st.integers(-10**6, 10**6) | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=12),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=6), inner, max_size=4),
    max_leaves=8,
)


def resolve(schema: dict, root: dict) -> dict:
    while "$ref" in schema:
        name = schema["$ref"].split("/")[-1]
        schema = root["components"]["schemas"][name]
    return schema


def from_schema(schema: dict, root: dict, hints: dict | None = None, name: str | None = None) -> st.SearchStrategy:
    """A strategy of values valid for ``schema`` (the subset of JSON Schema Litestar emits)."""
    schema = resolve(schema, root)
    hints = hints or {}
    for key in ("oneOf", "anyOf"):
        if key in schema:  # sibling keywords (bounds, lengths) apply to every branch
            siblings = {k: v for k, v in schema.items() if k != key}
            return st.one_of([from_schema({**siblings, **resolve(s, root)}, root, hints, name) for s in schema[key]])
    kind = schema.get("type")
    if isinstance(kind, list):
        return st.one_of([from_schema({**schema, "type": k}, root, hints, name) for k in kind])
    base: st.SearchStrategy
    if kind == "null":
        return st.none()
    if kind == "boolean":
        return st.booleans()
    if kind == "integer":
        lo, hi = schema.get("minimum"), schema.get("maximum")
        base = st.integers(None if lo is None else int(lo), None if hi is None else int(hi))
    elif kind == "number":
        lo = schema.get("minimum", schema.get("exclusiveMinimum"))
        hi = schema.get("maximum", schema.get("exclusiveMaximum"))
        base = st.floats(lo, hi, exclude_min="exclusiveMinimum" in schema, exclude_max="exclusiveMaximum" in schema,
                         allow_nan=False, allow_infinity=False)
    elif kind == "string":
        base = st.text(min_size=schema.get("minLength", 0), max_size=schema.get("maxLength", 40))
    elif kind == "array":
        base = st.lists(from_schema(schema.get("items", {}), root, hints), min_size=schema.get("minItems", 0),
                        max_size=min(schema.get("maxItems", 8), 8))
    elif kind == "object" and "properties" in schema:
        required = set(schema.get("required", []))
        props = {k: from_schema(v, root, hints, k) for k, v in schema["properties"].items()}
        optional = {k: v for k, v in props.items() if k not in required}
        base = st.fixed_dictionaries({k: props[k] for k in required}, optional=optional)
    elif kind == "object":
        base = st.dictionaries(st.text(min_size=1, max_size=12), from_schema(
            schema.get("additionalProperties", {"type": "number"}) or {"type": "number"}, root, hints), max_size=3)
    else:
        base = JSON
    return st.one_of(base, hints[name]) if name in hints else base


def mutate(body: dict, draw) -> object:
    how = draw(st.sampled_from(["replace", "drop", "extra", "bound", "top", "none"]))
    body = dict(body)
    if how == "replace" and body:
        body[draw(st.sampled_from(sorted(body)))] = draw(JSON)
    elif how == "drop":
        body.pop("asset_id", None)
    elif how == "extra":
        body[draw(st.text(min_size=1, max_size=8))] = draw(JSON)
    elif how == "bound":
        field = draw(st.sampled_from(["horizon", "num_paths", "quantiles", "thresholds"]))
        body[field] = draw(st.sampled_from([0, 15, -1, 10**9, 2**70, [0.0], [1.0], [0.5, 0.5], [-3.0], [], 1.5]))
    elif how == "top":
        return draw(JSON)
    return body


def check(r, expect_ok: bool = False) -> None:
    assert r.status_code in ALLOWED_STATUS, (r.status_code, r.text[:500])
    if expect_ok:
        assert r.status_code == 200, r.text[:500]
    out = r.json()
    if r.status_code == 200:
        assert len(out["quantiles"]) == out["horizon"]
        for row in out["quantiles"]:
            vals = list(row["quantiles"].values())
            assert vals == sorted(vals)
    else:
        assert out["status_code"] == r.status_code and out["detail"]
        assert out.get("field") or out.get("known"), out


@st.composite
def requests(draw, schema: dict, valid: bool):
    hints = {
        "asset_id": st.sampled_from(["SPX", "NDX", "BTC-USD"]),
        "as_of": st.sampled_from([None, "2018-06-01T00:00:00Z", "2031-01-01", "1990-01-01", "2018-06-01 12:00"]),
        "num_paths": st.integers(900, 6000),
        "horizon": st.integers(1, 14),
    }
    body = draw(from_schema(schema["components"]["schemas"]["ForecastRequest"], schema, hints))
    if not valid:
        return mutate(body, draw)
    # within the schema and the server's configuration: a known asset, a served as-of, the path cap,
    # increasing levels and prices, no scenario (the baseline has none)
    body["asset_id"] = draw(st.just("SPX"))
    body["as_of"] = draw(st.sampled_from([None, "2018-06-01T00:00:00Z", "2018-06-01 12:00"]))
    body["num_paths"] = draw(st.integers(1000, 5000) | st.none())
    # the element bounds (levels in (0, 1), prices > 0) are in the types but not in the schema
    if body.get("quantiles") is not None:
        body["quantiles"] = sorted({q for q in body["quantiles"] if 0 < q < 1}) or None
    if body.get("thresholds") is not None:
        body["thresholds"] = sorted({k for k in body["thresholds"] if k > 0})
    body.pop("scenario_overrides", None)
    return body


@pytest.mark.parametrize("which", ["spx_app", "engine_app"])
def test_no_request_from_the_schema_or_beside_it_is_a_server_error(which, request):
    """Against the baseline service and the engine service (the smoke engine)."""
    client = request.getfixturevalue(which).client
    schema = client.get("/schema/openapi.json").json()

    @settings(max_examples=45, deadline=None, suppress_health_check=list(HealthCheck), derandomize=True)
    @given(requests(schema, valid=True))
    def valid_bodies(body):
        check(client.post("/forecast", json=body), expect_ok=True)

    @settings(max_examples=45, deadline=None, suppress_health_check=list(HealthCheck), derandomize=True)
    @given(requests(schema, valid=False))
    def invalid_bodies(body):
        check(client.post("/forecast", json=body))

    @settings(max_examples=15, deadline=None, suppress_health_check=list(HealthCheck), derandomize=True)
    @given(st.lists(requests(schema, valid=False), min_size=1, max_size=4), st.binary(max_size=40))
    def batches_and_bytes(items, raw):
        r = client.post("/forecast/batch", json={"items": items})
        check_batch(r, len(items))
        r = client.post("/forecast", content=raw, headers={"content-type": "application/json"})
        assert r.status_code in ALLOWED_STATUS, r.text

    valid_bodies()
    invalid_bodies()
    batches_and_bytes()


def check_batch(r, n: int) -> None:
    assert r.status_code in ALLOWED_STATUS, r.text[:500]
    if r.status_code == 200:
        out = r.json()
        assert len(out["items"]) == n and out["succeeded"] + out["failed"] == n
        for item in out["items"]:
            assert item["status_code"] in ALLOWED_STATUS, json.dumps(item)[:500]
