"""How a chat completion fails: ``UpstreamError``, and which failures another attempt may fix.

Every failure reaches the caller of ``ChatClient.stream`` as ``UpstreamError``; its ``code`` is what a
run's ``last_error.code`` says. No httpx exception gets past the client:

    what happened                                       retried*   UpstreamError.code
    ──────────────────────────────────────────────────  ─────────  ───────────────────
    connect error, timeout, connection dropped          yes        server_error
    HTTP 408 or 5xx                                     yes        server_error
    HTTP 429                                            yes        rate_limit_exceeded
    HTTP 401, 403, 3xx (our key or route is wrong)      no         server_error
    other HTTP 4xx (400, 404 unknown model, 422 …)      no         invalid_prompt
    error object, bad JSON or early end in a stream     no         server_error
    other httpx errors (e.g. a body it cannot decode)   no         server_error
    any failure once an event has been yielded          no         server_error

    * only while nothing has been yielded, up to llm_max_retries times, waiting
      llm_retry_backoff_seconds * 2**n, or the upstream's retry-after when that is at most 30 s.
"""

from __future__ import annotations

from typing import Literal

import httpx

from openassistants.upstream.routes import Upstream

#: Most of a non-JSON error body quoted in UpstreamError.message.
MAX_ERROR_BODY_CHARS = 500

UpstreamErrorCode = Literal["server_error", "rate_limit_exceeded", "invalid_prompt"]


class UpstreamError(Exception):
    """The model upstream failed; ``code`` and ``message`` are fit for a run's ``last_error``."""

    def __init__(self, code: UpstreamErrorCode, message: str) -> None:
        super().__init__(message)
        self.code: UpstreamErrorCode = code
        self.message = message


class RetryableFailure(Exception):
    """An attempt failed in a way that another attempt may fix, if nothing was yielded yet."""

    def __init__(self, error: UpstreamError, retry_after: float | None = None) -> None:
        super().__init__(error.message)
        self.error = error
        self.retry_after = retry_after


def status_failure(response: httpx.Response, upstream: Upstream) -> RetryableFailure | UpstreamError:
    """What an answer other than 2xx means (see the table above)."""
    status = response.status_code
    said = f"{upstream.where} answered {status}: {_error_message(response)}"
    if status == 429:
        error = UpstreamError("rate_limit_exceeded", f"Rate limit reached: {said}")
        return RetryableFailure(error, _retry_after(response))
    message = capitalized(said)
    if status == 408 or status >= 500:
        return RetryableFailure(UpstreamError("server_error", message), _retry_after(response))
    if 400 <= status < 500 and status not in (401, 403):
        return UpstreamError("invalid_prompt", message)
    return UpstreamError("server_error", message)


def malformed_reply() -> UpstreamError:
    return UpstreamError("server_error", "The model upstream sent a malformed reply.")


def capitalized(text: str) -> str:
    return text[:1].upper() + text[1:]


def _error_message(response: httpx.Response) -> str:
    """The upstream's own words: OpenAI's ``{"error": {"message"}}``, or what other servers send instead."""
    try:
        body = response.json()
    except ValueError:
        body = None
    if isinstance(body, dict):
        error = body.get("error")
        for candidate in (
            error.get("message") if isinstance(error, dict) else error,
            body.get("detail"),  # FastAPI-based servers
            body.get("message"),
        ):
            if isinstance(candidate, str) and candidate:
                return candidate
    return response.text.strip()[:MAX_ERROR_BODY_CHARS] or response.reason_phrase


def _retry_after(response: httpx.Response) -> float | None:
    """retry-after in seconds; the HTTP-date form is ignored (our own backoff applies)."""
    try:
        return float(response.headers["retry-after"])
    except (KeyError, ValueError):
        return None
