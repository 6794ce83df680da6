"""Per-key request rate limits, as the hosted API reports them: ``x-ratelimit-*`` headers on every
``/v1`` response, and 429 ``rate_limit_exceeded`` with ``retry-after`` once a key's bucket is empty.

Each API key (tenant) has a token bucket of ``rate_limit_per_minute`` tokens, refilled continuously at
that rate per minute; a request takes one. Buckets are per process: N API processes allow a key N times
the limit. See https://platform.openai.com/docs/guides/rate-limits for the headers' meaning.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass

from starlette.responses import Response
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from openassistants.api.errors import error_response
from openassistants.errors import RateLimited


@dataclass
class TokenBucket:
    capacity: float
    per_second: float
    tokens: float
    updated: float

    def take(self, now: float) -> bool:
        """Refill for the time since the last call, then take one token if there is one."""
        self.tokens = min(self.capacity, self.tokens + (now - self.updated) * self.per_second)
        self.updated = now
        if self.tokens < 1:
            return False
        self.tokens -= 1
        return True

    def seconds_until_token(self) -> float:
        return max(0.0, (1 - self.tokens) / self.per_second)

    def seconds_until_full(self) -> float:
        return (self.capacity - self.tokens) / self.per_second


class RateLimits:
    """One process's buckets, a key each: taken from by every ``/v1`` request and by every
    ``response.create`` sent over a WebSocket (api/responses/websocket.py), so a key's limit holds
    however its requests arrive."""

    def __init__(self, per_minute: int) -> None:
        self.per_minute = per_minute
        self.buckets: dict[str, TokenBucket] = {}

    def bucket(self, tenant: str, now: float) -> TokenBucket:
        bucket = self.buckets.get(tenant)
        if bucket is None:
            full = float(self.per_minute)
            bucket = self.buckets[tenant] = TokenBucket(full, per_second=full / 60, tokens=full, updated=now)
        return bucket

    def refusal(self, bucket: TokenBucket) -> RateLimited:
        wait = bucket.seconds_until_token()
        message = (
            f"Rate limit reached for requests per min (RPM): Limit {self.per_minute}, "
            f"Used {self.per_minute}, Requested 1. Please try again in {format_duration(wait)}."
        )
        return RateLimited(message, code="rate_limit_exceeded")

    def refused(self, tenant: str) -> RateLimited | None:
        """Takes a token of ``tenant``'s bucket: None if there was one, else the error to answer."""
        now = time.monotonic()
        bucket = self.bucket(tenant, now)
        return None if bucket.take(now) else self.refusal(bucket)


class RateLimitMiddleware:
    """Applies the limit to every ``/v1`` request; runs inside AuthMiddleware, which names the tenant."""

    def __init__(self, app: ASGIApp, *, limits: RateLimits) -> None:
        self.app = app
        self.limits = limits

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        tenant = scope.get("state", {}).get("tenant") if scope["type"] == "http" else None
        if tenant is None:  # not /v1, or refused by auth already
            await self.app(scope, receive, send)
            return
        now = time.monotonic()
        bucket = self.limits.bucket(tenant, now)
        allowed = bucket.take(now)
        headers = {
            "x-ratelimit-limit-requests": str(self.limits.per_minute),
            "x-ratelimit-remaining-requests": str(math.floor(bucket.tokens)),
            "x-ratelimit-reset-requests": format_duration(bucket.seconds_until_full()),
        }
        if not allowed:
            await self._refusal(bucket, headers)(scope, receive, send)
            return
        raw_headers = [(name.encode(), value.encode()) for name, value in headers.items()]

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                message["headers"] = [*message.get("headers", []), *raw_headers]
            await send(message)

        await self.app(scope, receive, send_with_headers)

    def _refusal(self, bucket: TokenBucket, headers: dict[str, str]) -> Response:
        wait_ms = max(1, math.ceil(bucket.seconds_until_token() * 1000))
        waits = {"retry-after": str(math.ceil(wait_ms / 1000)), "retry-after-ms": str(wait_ms)}
        return error_response(self.limits.refusal(bucket), headers={**waits, **headers})


def format_duration(seconds: float) -> str:
    """OpenAI's way of writing a wait, rounded up to the millisecond: ``250ms``, ``12.5s``, ``6m0s``."""
    ms = math.ceil(seconds * 1000)
    if ms < 1000:
        return f"{ms}ms"
    minutes, rest = divmod(ms, 60_000)
    return f"{minutes}m{rest / 1000:g}s" if minutes else f"{rest / 1000:g}s"
