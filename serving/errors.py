"""Every failure becomes an :class:`ErrorBody` with a status code; nothing a client sends is a 500.

* typed errors of ``aurora_jax.errors`` keep their ``status`` (InvalidParameterError 422 with
  field and allowed range, UnknownAssetError 404 with the known assets, DataRangeError 422 with
  the last available timestamp, ModelUnavailableError 503 with the reason);
* body validation (msgspec) is 422 naming the field and its allowed values, a body that is not
  JSON at all is 400, a body over ``serving.max_body_bytes`` is 413 (Litestar), unknown routes
  404 and wrong methods 405;
* anything else is a 503 "model or data failure" with the reason (and ``/ready`` reflects it).
"""

from __future__ import annotations

import re

import msgspec
from litestar.exceptions import HTTPException, ValidationException

from aurora_jax.errors import (
    AuroraError,
    DataRangeError,
    InvalidParameterError,
    ModelUnavailableError,
    UnknownAssetError,
)
from serving.schemas import (
    MAX_HORIZON,
    MAX_LEVELS,
    MAX_OVERRIDES,
    MAX_THRESHOLDS,
    ErrorBody,
    ForecastRequest,
)

ALLOWED: dict[str, str] = {
    "asset_id": "a known asset id (1..64 characters)",
    "horizon": f"an integer in [1, {MAX_HORIZON}] (days)",
    "as_of": "null or an ISO-8601 timestamp in UTC (at most 40 characters)",
    "quantiles": f"null or 1..{MAX_LEVELS} levels strictly between 0 and 1, strictly increasing",
    "thresholds": f"null or at most {MAX_THRESHOLDS} positive, strictly increasing prices",
    "num_paths": "null or an integer (range set by forecast.min_paths and serving.max_paths)",
    "scenario_overrides": f"null or an object of at most {MAX_OVERRIDES} feature -> number overrides",
    "items": "a non-empty list of forecast request objects",
}
FIELDS = list(ForecastRequest.__struct_fields__)
_AT = re.compile(r"^(?P<msg>.*?)(?: - at `\$(?P<path>[^`]*)`)?$", re.DOTALL)
_UNKNOWN = re.compile(r"unknown field `(?P<name>[^`]+)`")
_MISSING = re.compile(r"missing required field `(?P<name>[^`]+)`")


def _allowed_for(path: str) -> str:
    base = re.split(r"[.\[]", path.lstrip("."), maxsplit=1)[0]
    return ALLOWED.get(base, f"the fields {FIELDS}")


def validation_body(message: str, path: str | None, request_id: str | None = None) -> ErrorBody:
    """422 body for a msgspec validation message at ``path`` (``horizon``, ``quantiles[1]``)."""
    m = _UNKNOWN.search(message)
    if m:
        return ErrorBody(status_code=422, error="invalid_parameter", field=m["name"],
                         allowed=f"no such field: the fields are {FIELDS}",
                         detail=f"{m['name']}: {message}", request_id=request_id)
    m = _MISSING.search(message)
    if m:
        return ErrorBody(status_code=422, error="invalid_parameter", field=m["name"],
                         allowed=ALLOWED.get(m["name"], "required"),
                         detail=f"{m['name']}: {message}", request_id=request_id)
    field = (path or "").lstrip(".") or "body"
    allowed = _allowed_for(field) if field != "body" else "a JSON object with the fields " + str(FIELDS)
    return ErrorBody(status_code=422, error="invalid_parameter", field=field, allowed=allowed,
                     detail=f"{field}: {message}; allowed {allowed}", request_id=request_id)


def msgspec_error_body(exc: msgspec.ValidationError, request_id: str | None = None,
                       prefix: str = "") -> ErrorBody:
    m = _AT.match(str(exc))
    path = (m["path"] if m and m["path"] else "")
    body = validation_body(m["msg"] if m else str(exc), path, request_id)
    if prefix and body.field:
        body.field = f"{prefix}.{body.field}" if body.field != "body" else prefix
    return body


def error_body(exc: BaseException, request_id: str | None = None) -> ErrorBody:
    """The response body and status for any exception (see module docstring)."""
    if isinstance(exc, InvalidParameterError):
        return ErrorBody(status_code=exc.status, error="invalid_parameter", field=exc.field,
                         allowed=str(exc.allowed), detail=str(exc), request_id=request_id)
    if isinstance(exc, UnknownAssetError):
        return ErrorBody(status_code=404, error="unknown_asset", field="asset_id", known=list(exc.known),
                         allowed=f"one of {list(exc.known)}", detail=str(exc), request_id=request_id)
    if isinstance(exc, DataRangeError):
        return ErrorBody(status_code=exc.status, error="data_range", field=exc.field,
                         allowed=f"{exc.first} .. {exc.last}", last_available=str(exc.last),
                         detail=str(exc), request_id=request_id)
    if isinstance(exc, ModelUnavailableError):
        return ErrorBody(status_code=503, error="unavailable", detail=str(exc), request_id=request_id)
    if isinstance(exc, AuroraError):
        return ErrorBody(status_code=int(exc.status), error=type(exc).__name__, detail=str(exc),
                         request_id=request_id)
    if isinstance(exc, msgspec.ValidationError):
        return msgspec_error_body(exc, request_id)
    if isinstance(exc, ValidationException):
        extra = exc.extra if isinstance(exc.extra, list) else []
        first = extra[0] if extra and isinstance(extra[0], dict) else {}
        key = str(first.get("key", "body"))
        return validation_body(str(first.get("message", exc.detail)), "" if key == "data" else key, request_id)
    if isinstance(exc, HTTPException):
        code = int(exc.status_code)
        if code == 413:
            return ErrorBody(status_code=413, error="body_too_large", field="body",
                             allowed="a body within serving.max_body_bytes", detail=str(exc.detail),
                             request_id=request_id)
        if code == 400:
            return ErrorBody(status_code=400, error="malformed_body", field="body",
                             allowed="a JSON object", detail=str(exc.detail), request_id=request_id)
        return ErrorBody(status_code=code, error="http_error", detail=str(exc.detail), request_id=request_id)
    return ErrorBody(status_code=503, error="model_or_data_failure",
                     detail=f"model or data failure: {type(exc).__name__}: {exc}", request_id=request_id)
