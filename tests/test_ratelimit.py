"""Per-key rate limits as the hosted API reports them: x-ratelimit-* headers on every /v1 response,
429 rate_limit_exceeded with retry-after once a key's bucket is empty; other keys and the operations
endpoints unaffected."""

from __future__ import annotations

import httpx
import httpx2  # the SDK's own HTTP client
import openai
import pytest

from openassistants.api.ratelimit import TokenBucket, format_duration
from tests.conftest import TENANT_A_KEY, TENANT_B_KEY, ServerFactory, sdk_client
from tests.upstream import Reply, ScriptedUpstream

LIMIT = 5


def _headers(key: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}", "OpenAI-Beta": "assistants=v2"}


async def test_sixth_request_in_a_minute_is_429_with_openai_headers_and_envelope(
    server_factory: ServerFactory,
) -> None:
    with server_factory(rate_limit_per_minute=LIMIT) as server:
        async with httpx.AsyncClient(base_url=server.base_url, headers=_headers(TENANT_A_KEY)) as http:
            allowed = [await http.get("/assistants") for _ in range(LIMIT)]
            refused = await http.get("/assistants")
            async with httpx.AsyncClient(base_url=server.url) as ops:
                health = [await ops.get(path) for path in ("/healthz", "/readyz", "/metrics") * 3]
        async with sdk_client(server) as client:
            with pytest.raises(openai.RateLimitError) as sdk_error:
                await client.beta.assistants.list()

    assert [r.status_code for r in allowed] == [200] * LIMIT
    assert [r.headers["x-ratelimit-limit-requests"] for r in allowed] == [str(LIMIT)] * LIMIT
    assert [r.headers["x-ratelimit-remaining-requests"] for r in allowed] == ["4", "3", "2", "1", "0"]
    assert all(r.headers["x-ratelimit-reset-requests"].endswith("s") for r in allowed)

    assert refused.status_code == 429
    assert refused.json() == {
        "error": {
            "message": refused.json()["error"]["message"],
            "type": "requests",
            "param": None,
            "code": "rate_limit_exceeded",
        }
    }
    assert refused.json()["error"]["message"].startswith(
        f"Rate limit reached for requests per min (RPM): Limit {LIMIT}, Used {LIMIT}, Requested 1. "
        "Please try again in "
    )
    # One token comes back every 60 / LIMIT = 12 s; the 5 requests before took some of that.
    retry_after_ms = int(refused.headers["retry-after-ms"])
    assert 0 < retry_after_ms <= 12_000
    assert int(refused.headers["retry-after"]) == -(-retry_after_ms // 1000)
    assert refused.headers["x-ratelimit-limit-requests"] == str(LIMIT)
    assert refused.headers["x-ratelimit-remaining-requests"] == "0"
    assert refused.headers["x-request-id"].startswith("req_")

    # The operations endpoints need no key and are never limited.
    assert [r.status_code for r in health] == [200] * 9
    assert not any("x-ratelimit-limit-requests" in r.headers for r in health)

    assert sdk_error.value.status_code == 429
    assert sdk_error.value.code == "rate_limit_exceeded" and sdk_error.value.type == "requests"


async def test_each_key_has_its_own_bucket_and_streams_carry_the_headers(
    server_factory: ServerFactory, upstream: ScriptedUpstream, model: str
) -> None:
    upstream.script(model, Reply("streamed through", chunks=["stream", "ed ", "through"]))
    with server_factory(rate_limit_per_minute=LIMIT) as server:
        async with httpx.AsyncClient(base_url=server.base_url, headers=_headers(TENANT_A_KEY)) as http:
            for _ in range(LIMIT):
                await http.get("/assistants")
            assert (await http.get("/assistants")).status_code == 429
        # Tenant B's bucket is full: an assistant, a thread and a streamed run.
        async with httpx.AsyncClient(base_url=server.base_url, headers=_headers(TENANT_B_KEY)) as http:
            assistant = (await http.post("/assistants", json={"model": model})).json()
            thread = (await http.post("/threads", json={})).json()
            request = {"assistant_id": assistant["id"], "stream": True}
            async with http.stream("POST", f"/threads/{thread['id']}/runs", json=request) as response:
                assert response.headers["content-type"].startswith("text/event-stream")
                assert response.headers["x-ratelimit-remaining-requests"] == "2"
                body = "".join([line async for line in response.aiter_lines()])
    assert "event: thread.run.completed" in body and body.endswith("data: [DONE]")


async def test_the_sdk_waits_out_a_429_as_retry_after_says(server_factory: ServerFactory) -> None:
    statuses: list[int] = []

    async def record(response: httpx2.Response) -> None:
        statuses.append(response.status_code)

    # 60 a minute: a token back every second, so the SDK's wait is short.
    with server_factory(rate_limit_per_minute=60) as server:
        http_client = openai.DefaultAsyncHttpxClient(event_hooks={"response": [record]})
        async with openai.AsyncOpenAI(
            base_url=server.base_url, api_key=TENANT_A_KEY, max_retries=2, http_client=http_client
        ) as client:
            for _ in range(200):  # until the bucket runs dry: each call still succeeds
                await client.beta.assistants.list()
                if 429 in statuses:
                    break
    assert 429 in statuses, "the bucket never ran dry"
    assert statuses[-1] == 200 and statuses[statuses.index(429) - 1] == 200


async def test_requests_refused_by_auth_take_no_token(server_factory: ServerFactory) -> None:
    with server_factory(rate_limit_per_minute=LIMIT) as server:
        async with httpx.AsyncClient(base_url=server.base_url, headers=_headers("sk-wrong")) as stranger:
            assert [(await stranger.get("/assistants")).status_code for _ in range(LIMIT + 1)] == [401] * 6
        async with sdk_client(server, TENANT_A_KEY) as client:
            page = await client.beta.assistants.with_raw_response.list()
    assert page.headers["x-ratelimit-remaining-requests"] == str(LIMIT - 1)


async def test_no_rate_limit_headers_when_off(server_factory: ServerFactory) -> None:
    with server_factory() as server:
        async with httpx.AsyncClient(base_url=server.base_url, headers=_headers(TENANT_A_KEY)) as http:
            response = await http.get("/assistants")
    assert response.status_code == 200
    assert not any(name.startswith("x-ratelimit") for name in response.headers)


# The bucket itself, on a clock the test sets.


def test_bucket_refills_one_token_per_sixtieth_of_the_limit() -> None:
    bucket = TokenBucket(capacity=LIMIT, per_second=LIMIT / 60, tokens=LIMIT, updated=100.0)
    assert [bucket.take(100.0) for _ in range(LIMIT + 1)] == [True] * LIMIT + [False]
    assert bucket.seconds_until_token() == pytest.approx(12.0)
    assert bucket.seconds_until_full() == pytest.approx(60.0)
    assert not bucket.take(111.9)
    assert bucket.take(112.0)
    assert not bucket.take(112.0)
    # Idle for long: the bucket holds at most LIMIT tokens.
    assert [bucket.take(10_000.0) for _ in range(LIMIT + 1)] == [True] * LIMIT + [False]


@pytest.mark.parametrize(
    ("seconds", "written"),
    [(0.0, "0ms"), (0.0174, "18ms"), (1.0, "1s"), (12.5, "12.5s"), (59.9995, "1m0s"), (360.0, "6m0s")],
)
def test_durations_are_written_as_openai_writes_them(seconds: float, written: str) -> None:
    assert format_duration(seconds) == written
