"""The process's Prometheus metrics: request latency, open event streams, the model upstream.

They are per process, like the event loop they measure: each ``serve`` process is scraped on its own
``/metrics`` (api/metrics.py), which adds the database-wide run counts at scrape time. Prometheus'
multiprocess mode is not used.
"""

from __future__ import annotations

import time
from collections.abc import AsyncGenerator, AsyncIterator
from contextlib import aclosing
from typing import TypeVar, get_args

from prometheus_client import (
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    ProcessCollector,
    disable_created_metrics,
)

from openassistants.upstream import UpstreamError, UpstreamErrorCode

T = TypeVar("T")

# No ``*_created`` series: Prometheus' text format takes each for a metric of its own.
disable_created_metrics()  # type: ignore[no-untyped-call]
#: This process's metrics (not prometheus_client's global registry: nothing else registers here).
REGISTRY = CollectorRegistry()
ProcessCollector(registry=REGISTRY)

#: Seconds; the default buckets plus two for long requests such as event streams.
HTTP_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0)
UPSTREAM_BUCKETS = (0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0)

HTTP_REQUEST_SECONDS = Histogram(
    "openassistants_http_request_duration_seconds",
    "Time from a request's arrival to its response's last byte (event streams: the whole stream).",
    ["method", "route", "status"],
    buckets=HTTP_BUCKETS,
    registry=REGISTRY,
)
SSE_STREAMS_ACTIVE = Gauge(
    "openassistants_sse_streams_active",
    "Server-sent event streams of runs being written to clients now.",
    registry=REGISTRY,
)
UPSTREAM_FIRST_TOKEN_SECONDS = Histogram(
    "openassistants_upstream_time_to_first_token_seconds",
    "Time from asking the model for a reply to its first streamed piece (retries included).",
    buckets=UPSTREAM_BUCKETS,
    registry=REGISTRY,
)
UPSTREAM_SECONDS = Histogram(
    "openassistants_upstream_duration_seconds",
    "Time from asking the model for a reply to the reply's end, for replies that completed.",
    buckets=UPSTREAM_BUCKETS,
    registry=REGISTRY,
)
UPSTREAM_ERRORS = Counter(
    "openassistants_upstream_errors",
    "Model calls that failed (after retries), by the code the run's last_error gets.",
    ["code"],
    registry=REGISTRY,
)
for _code in get_args(UpstreamErrorCode):  # every code from 0, so that rate() sees the first error
    UPSTREAM_ERRORS.labels(code=_code)


async def count_stream(body: AsyncIterator[bytes]) -> AsyncGenerator[bytes]:
    """``body`` unchanged, counted in ``SSE_STREAMS_ACTIVE`` while it is being sent."""
    SSE_STREAMS_ACTIVE.inc()
    try:
        async for chunk in body:
            yield chunk
    finally:
        SSE_STREAMS_ACTIVE.dec()


async def time_upstream(events: AsyncGenerator[T]) -> AsyncIterator[T]:
    """A model reply's events (or batches of them) unchanged, timed (first one, whole reply) and its
    failure counted."""
    started = time.perf_counter()
    first = True
    try:
        async with aclosing(events):
            async for event in events:
                if first:
                    UPSTREAM_FIRST_TOKEN_SECONDS.observe(time.perf_counter() - started)
                    first = False
                yield event
    except UpstreamError as exc:
        UPSTREAM_ERRORS.labels(code=exc.code).inc()
        raise
    UPSTREAM_SECONDS.observe(time.perf_counter() - started)
