"""Keys never reach a log record or a printed Settings: our API keys, a rejected caller's key, and the
model upstream's key."""

from __future__ import annotations

import logging
import threading

import openai
import pytest

from openassistants.config import Settings
from tests.conftest import TENANT_A_KEY, TENANT_B_KEY, ServerFactory, sdk_client
from tests.upstream import Reply, scripted_upstream

UPSTREAM_KEY = "sk-upstream-0123456789abcdef"
WRONG_KEY = "sk-stranger-0123456789abcdef"
EMBEDDINGS_KEY = "sk-embeddings-0123456789abcdef"


def test_settings_never_show_keys(monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture) -> None:
    monkeypatch.setenv("OPENASSISTANTS_API_KEYS", f"{TENANT_A_KEY}, {TENANT_B_KEY}")
    monkeypatch.setenv("OPENASSISTANTS_LLM_API_KEY", UPSTREAM_KEY)
    monkeypatch.setenv("OPENASSISTANTS_EMBEDDINGS_API_KEY", EMBEDDINGS_KEY)
    settings = Settings()
    with caplog.at_level(logging.INFO):
        logging.getLogger("openassistants.test").info("settings: %s %r", settings, settings)
    shown = [repr(settings), str(settings), settings.model_dump_json(), str(settings.model_dump())]
    shown += [record.getMessage() for record in caplog.records]
    for secret in (TENANT_A_KEY, TENANT_B_KEY, UPSTREAM_KEY, EMBEDDINGS_KEY):
        assert not any(secret in text for text in shown)
    # Still there for the code that needs them.
    assert [key.get_secret_value() for key in settings.api_keys] == [TENANT_A_KEY, TENANT_B_KEY]
    assert settings.llm_api_key is not None and settings.llm_api_key.get_secret_value() == UPSTREAM_KEY


async def test_no_key_in_any_server_log_record(
    server_factory: ServerFactory, model: str, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)  # every logger, at every level: ours, uvicorn, httpx, SQLAlchemy
    # This upstream answers only requests bearing UPSTREAM_KEY: a completed run proves the key was used.
    with scripted_upstream(api_key=UPSTREAM_KEY) as guarded:
        guarded.script(model, Reply("one"), Reply("two", chunks=["t", "wo"]))
        with server_factory(access_log=True, llm_base_url=guarded.url, llm_api_key=UPSTREAM_KEY) as server:
            async with sdk_client(server, TENANT_A_KEY) as client:
                assistant = await client.beta.assistants.create(model=model)
                thread = await client.beta.threads.create(messages=[{"role": "user", "content": "hi"}])
                run = await client.beta.threads.runs.create_and_poll(
                    thread_id=thread.id, assistant_id=assistant.id
                )
                async with client.beta.threads.runs.stream(
                    thread_id=thread.id, assistant_id=assistant.id
                ) as stream:
                    await stream.until_done()
                    streamed = await stream.get_final_run()
            async with sdk_client(server, TENANT_B_KEY) as other:
                with pytest.raises(openai.NotFoundError):
                    await other.beta.threads.retrieve(thread.id)
            async with sdk_client(server, WRONG_KEY) as stranger:
                with pytest.raises(openai.AuthenticationError) as refused:
                    await stranger.beta.assistants.list()
    assert run.status == "completed" and streamed.status == "completed"
    assert WRONG_KEY not in refused.value.message

    # The test's own thread runs the SDK clients, which hold the keys by design; the servers run in
    # threads of their own.
    main = threading.main_thread().ident
    server_records = [r for r in caplog.records if r.thread != main]
    access = [r.getMessage() for r in server_records if r.name == "openassistants.access"]
    assert any(f"/v1/threads/{thread.id}/runs" in line for line in access), "the access log was not captured"
    formatter = logging.Formatter("%(name)s %(levelname)s %(message)s")
    logged = "\n".join(formatter.format(r) for r in server_records)  # messages, arguments, tracebacks
    for secret in (TENANT_A_KEY, TENANT_B_KEY, WRONG_KEY, UPSTREAM_KEY):
        assert secret not in logged
