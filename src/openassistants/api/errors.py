"""Exception handlers: every failure leaves as OpenAI's ``{"error": {...}}`` envelope.

Pydantic's validation errors are translated into the hosted API's wording and codes
(``Invalid 'limit': integer above maximum value. …`` / ``integer_above_max_value``), one error at a
time, with ``param`` naming the field as the SDK user wrote it (``tools[0].function.name``).
"""

from __future__ import annotations

import logging
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from pydantic import ValidationError
from starlette.exceptions import HTTPException as StarletteHTTPException

from openassistants.api.responses import JSONResponse
from openassistants.errors import APIError, InvalidRequest, NotFound, ServiceUnavailable
from openassistants.storage.db import UNAVAILABLE, is_connectivity_error

logger = logging.getLogger("openassistants.errors")

_MISSING = object()


def _locate(loc: tuple[Any, ...], body: Any, *, missing: bool) -> tuple[str | None, int | None]:
    """``param`` as the SDK user wrote it (``tools[0].function.name``), and where a union branch begins.

    Pydantic's locations mix the user's keys and indexes with its own labels (union branches such as
    ``tagged-union[...]`` or ``literal['auto']``, discriminator tags). Walking the request body along
    the location tells them apart: a key or index the body has is the user's, anything else is a
    label, except a missing field's name at the very end. The second value is the position of the
    first label (None if there is none), so errors from one union's branches can be compared.
    """
    items = list(loc)
    if items and items[0] in ("query", "path", "header"):
        return (str(items[1]) if len(items) > 1 else None), None
    offset = 1 if items and items[0] == "body" else 0
    items = items[offset:]
    parts: list[str] = []
    value: Any = body
    first_label: int | None = None
    for position, item in enumerate(items):
        is_last = position == len(items) - 1
        if isinstance(item, int) and isinstance(value, list) and 0 <= item < len(value):
            parts.append(f"[{item}]")
            value = value[item]
        elif isinstance(item, str) and isinstance(value, dict) and item in value:
            parts.append(("." if parts else "") + item)
            value = value[item]
        elif isinstance(item, str) and is_last and missing and isinstance(value, dict):
            parts.append(("." if parts else "") + item)
            value = _MISSING
        elif first_label is None:
            first_label = position + offset
    return "".join(parts) or None, first_label


def _is_type_mismatch(error: dict[str, Any]) -> bool:
    """An error that only says "this branch takes another JSON type", the least telling of a union's."""
    kind = str(error.get("type", ""))
    if kind == "literal_error":
        return not isinstance(error.get("input"), str | int)
    return kind.endswith(("_type", "_parsing"))


def _most_telling(errors: list[dict[str, Any]], body: Any) -> dict[str, Any]:
    """The error to report: the first, unless it is one branch of a union whose other branches say more.

    For ``response_format: {"type": "xml"}`` pydantic reports the ``"auto"`` literal branch first; the
    branch that took an object and got as far as ``type`` is the one the user meant.
    """
    first = errors[0]
    loc = tuple(first.get("loc", ()))
    _, label = _locate(loc, body, missing=first.get("type") == "missing")
    if label is None:
        return first
    prefix = loc[:label]
    siblings = [e for e in errors if tuple(e.get("loc", ()))[: len(prefix)] == prefix]
    return min(siblings, key=lambda e: (_is_type_mismatch(e), -len(e.get("loc", ()))))


def translate_validation_error(errors: list[dict[str, Any]], body: Any = None) -> InvalidRequest:
    """One OpenAI-worded 400 for pydantic's errors on ``body`` (the parsed JSON request body)."""
    error = _most_telling(errors, body)
    kind = error.get("type", "")
    param, _ = _locate(tuple(error.get("loc", ())), body, missing=kind == "missing")
    ctx = error.get("ctx") or {}
    value = error.get("input")
    if kind == "unstorable_value":  # schemas/common.py: the offending value's path inside the model
        inner = str(ctx.get("path", ""))
        param = ".".join(p for p in (param, inner) if p).replace(".[", "[") or None
    name = f"'{param}'" if param else "request body"
    if kind == "json_invalid":
        return _unparsable_body()
    if kind == "missing":
        return InvalidRequest(
            f"Missing required parameter: {name}.", param=param, code="missing_required_parameter"
        )
    if kind == "extra_forbidden":
        return InvalidRequest(
            f"Unrecognized request argument supplied: {param}",
            param=param,
            code="unknown_parameter",
        )
    if kind == "string_too_long":
        length = len(value) if isinstance(value, str) else "?"
        return InvalidRequest(
            f"Invalid {name}: string too long. Expected a string with maximum length "
            f"{ctx.get('max_length')}, but got a string with length {length} instead.",
            param=param,
            code="string_above_max_length",
        )
    if kind == "string_too_short":
        return InvalidRequest(
            f"Invalid {name}: string too short. Expected a string with minimum length "
            f"{ctx.get('min_length')}, but got an empty string instead.",
            param=param,
            code="string_below_min_length",
        )
    if kind == "too_long":
        return InvalidRequest(
            f"Invalid {name}: array too long. Expected an array with maximum length "
            f"{ctx.get('max_length')}, but got an array with length {ctx.get('actual_length')} "
            "instead.",
            param=param,
            code="array_above_max_length",
        )
    if kind == "too_short":
        return InvalidRequest(
            f"Invalid {name}: empty array. Expected an array with minimum length "
            f"{ctx.get('min_length')}, but got an empty array instead.",
            param=param,
            code="empty_array",
        )
    if kind in _OUT_OF_BOUNDS:
        side, code, sign, bound = _OUT_OF_BOUNDS[kind]
        word = _number_word(value)
        return InvalidRequest(
            f"Invalid {name}: {word} {side} value. Expected a value {sign} {ctx.get(bound)}, "
            f"but got {value} instead.",
            param=param,
            code=f"{word}_{code}_value",
        )
    if kind in ("literal_error", "enum"):
        return InvalidRequest(
            f"Invalid value: '{value}'. Supported values are: {ctx.get('expected')}.",
            param=param,
            code="invalid_value",
        )
    if kind == "union_tag_invalid":
        return InvalidRequest(
            f"Invalid value: '{ctx.get('tag')}'. Supported values are: {ctx.get('expected_tags')}.",
            param=f"{param}.{ctx.get('discriminator', 'type').strip(chr(39))}" if param else "type",
            code="invalid_value",
        )
    if kind == "union_tag_not_found":
        return InvalidRequest(
            f"Missing required parameter: '{param}.type'." if param else "Missing 'type'.",
            param=f"{param}.type" if param else "type",
            code="missing_required_parameter",
        )
    if kind == "string_pattern_mismatch":
        return InvalidRequest(
            f"Invalid {name}: string does not match pattern. Expected a string that matches the "
            f"pattern '{ctx.get('pattern')}'.",
            param=param,
            code="invalid_value",
        )
    if kind.endswith(("_type", "_parsing")):
        expected = _JSON_TYPE_NAMES.get(kind.split("_")[0], "value")
        return InvalidRequest(
            f"Invalid type for {name}: expected {_article(expected)} {expected}, but got "
            f"{_json_type(value)} instead.",
            param=param,
            code="invalid_type",
        )
    message = str(error.get("msg", "invalid value"))
    message = message.removeprefix("Value error, ")
    return InvalidRequest(f"Invalid {name}: {message}.", param=param, code="invalid_value")


# pydantic's bound errors: the side in the hosted API's message and code, how it writes the bound
# (``gt`` too as ``>=``), and where pydantic's context holds the bound.
_OUT_OF_BOUNDS = {
    "less_than_equal": ("above maximum", "above_max", "<=", "le"),
    "less_than": ("above maximum", "above_max", "<=", "lt"),
    "greater_than_equal": ("below minimum", "below_min", ">=", "ge"),
    "greater_than": ("below minimum", "below_min", ">=", "gt"),
}

# pydantic's error kinds (``int_parsing``, ``model_attributes_type``…) in JSON's words.
_JSON_TYPE_NAMES = {
    "string": "string",
    "int": "integer",
    "float": "number",
    "decimal": "number",
    "bool": "boolean",
    "list": "array",
    "tuple": "array",
    "dict": "object",
    "model": "object",
}


def query_error(exc: ValidationError) -> InvalidRequest:
    """A query parameter model's refusal (``ListParams``), worded as when FastAPI validates the same
    model for a route: its locations then start with ``query``."""
    return translate_validation_error([{**error, "loc": ("query", *error["loc"])} for error in exc.errors()])


def _unparsable_body() -> InvalidRequest:
    return InvalidRequest(
        "We could not parse the JSON body of your request. (HINT: This likely means you "
        "aren't using your HTTP library correctly. The OpenAI API expects a JSON payload.)",
        param=None,
        code=None,
    )


def _number_word(value: object) -> str:
    return "integer" if isinstance(value, int) or str(value).lstrip("-").isdigit() else "decimal"


def _article(word: str) -> str:
    return "an" if word[:1] in "aeiou" else "a"


def _json_type(value: object) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, int | float):
        return "a number"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, list):
        return "an array"
    return "an object"


#: ``retry-after`` on a 503: the database is restarting or briefly unreachable; the SDK waits this long.
RETRY_AFTER_SECONDS = "1"


def error_response(exc: APIError, headers: dict[str, str] | None = None) -> JSONResponse:
    body = exc.to_body()
    # Messages quote the user's input, which may hold what UTF-8 (and so orjson) cannot encode.
    body["error"] = {key: _encodable(value) for key, value in body["error"].items()}
    if isinstance(exc, ServiceUnavailable):
        headers = {**(headers or {}), "retry-after": RETRY_AFTER_SECONDS}
    return JSONResponse(body, status_code=exc.status_code, headers=headers)


def as_api_error(exc: Exception) -> APIError:
    """What a client is told about any exception: its own status for an APIError; 400 for a stray
    pydantic ValidationError (a model a service builds from the request's values); 503 for a lost or
    refused database connection, however the driver words it; 500, logged, for anything else."""
    if isinstance(exc, APIError):
        return exc
    if isinstance(exc, ValidationError):
        return translate_validation_error([dict(error) for error in exc.errors()])
    if is_connectivity_error(exc):
        logger.warning("database unreachable: %s: %s", type(exc).__name__, exc)
        return ServiceUnavailable(UNAVAILABLE)
    logger.exception("unhandled error", exc_info=exc)
    return APIError("The server had an error while processing your request. Sorry about that!")


def _encodable(value: Any) -> Any:
    if isinstance(value, str) and not value.isascii():
        return value.encode("utf-8", "backslashreplace").decode("utf-8")
    return value


async def _api_error(_: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, APIError)
    return error_response(exc)


async def _validation_error(_: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, RequestValidationError)
    return error_response(translate_validation_error(list(exc.errors()), exc.body))


async def _http_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, StarletteHTTPException)
    if isinstance(exc.__cause__, APIError):
        # FastAPI turns any failure while reading the body into a 400 "There was an error parsing
        # the body"; ours (a body over the limit while it streams in: 413) keep their own status.
        return error_response(exc.__cause__)
    if exc.status_code == 400 and exc.__cause__ is not None:
        # The rest are bodies json.loads gave up on in other ways: not UTF-8, nested too deep.
        return error_response(_unparsable_body())
    if exc.status_code in (404, 405):
        # OpenAI answers an unknown path or method alike: 404 "Invalid URL (GET /v1/…)".
        return error_response(NotFound(f"Invalid URL ({request.method} {request.url.path})", param=None))
    return JSONResponse(
        {
            "error": {
                "message": str(exc.detail),
                "type": "invalid_request_error",
                "param": None,
                "code": None,
            }
        },
        status_code=exc.status_code,
    )


async def _unexpected_error(request: Request, exc: Exception) -> JSONResponse:
    """The last resort, for an exception raised in middleware outside RequestContextMiddleware's guard
    (which renders every other one with ``as_api_error`` and keeps the connection open)."""
    # Starlette runs this handler outside all middleware, past the one that adds x-request-id.
    request_id = request.scope.get("state", {}).get("request_id")
    return error_response(as_api_error(exc), headers={"x-request-id": request_id} if request_id else None)


def install_error_handlers(app: FastAPI) -> None:
    app.add_exception_handler(APIError, _api_error)
    app.add_exception_handler(RequestValidationError, _validation_error)
    app.add_exception_handler(StarletteHTTPException, _http_error)
    app.add_exception_handler(Exception, _unexpected_error)
