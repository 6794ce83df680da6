"""The main Assistants flows through one release of the Python ``openai`` SDK, as an app pinned to it
would call them. tests/test_sdk_versions.py runs this file in a venv per release, with ``OA_FLOWS``
(JSON: server, key, scripted models and their texts, see tests/sdk_flows/__init__.py).

It imports nothing but the SDK and the standard library, and must run on every tested release: the
oldest is openai 1.21 (April 2024), where vector stores still lived under ``client.beta``.
"""

from __future__ import annotations

import json
import os
import sys
import tempfile
import time
import traceback
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

import openai
from openai.lib.streaming import AssistantEventHandler

FLOWS: dict[str, Any] = json.loads(os.environ["OA_FLOWS"])
MODELS: dict[str, str] = FLOWS["models"]
TEXTS: dict[str, str] = FLOWS["texts"]

# As in the suite: warnings are errors, except the SDK's deprecation of the API we serve.
warnings.simplefilter("error")
warnings.filterwarnings("ignore", ".*(deprecated|Assistants API).*", DeprecationWarning)

client = openai.OpenAI(
    base_url=FLOWS["base_url"],
    api_key=FLOWS["api_key"],
    max_retries=0,
    # The release's own models check every response field's presence and type, where they still
    # describe today's API (see RELEASES in tests/test_sdk_versions.py).
    _strict_response_validation=os.environ.get("OA_STRICT") == "1",
)
# Vector stores left `beta` in openai 1.66.
vector_stores: Any = getattr(client, "vector_stores", None) or client.beta.vector_stores  # type: ignore[attr-defined]

WEATHER_TOOL: Any = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "description": "Weather for a city",
        "parameters": {"type": "object", "properties": {"city": {"type": "string"}}},
    },
}


class Recorder(AssistantEventHandler):
    """Records what the SDK's event handler sees."""

    def __init__(self) -> None:
        super().__init__()
        self.events: list[str] = []
        self.text = ""
        self.text_done: str | None = None
        self.text_done_annotations: list[Any] = []
        self.tool_calls_created: list[str | None] = []
        self.arguments = ""

    def on_event(self, event: Any) -> None:
        self.events.append(event.event)

    def on_text_delta(self, delta: Any, snapshot: Any) -> None:
        self.text += delta.value or ""

    def on_text_done(self, text: Any) -> None:
        self.text_done = text.value
        self.text_done_annotations = text.annotations

    def on_tool_call_created(self, tool_call: Any) -> None:
        self.tool_calls_created.append(tool_call.id)

    def on_tool_call_delta(self, delta: Any, snapshot: Any) -> None:
        if delta.type == "function" and delta.function is not None:
            self.arguments += delta.function.arguments or ""


def assistants_crud() -> None:
    created = client.beta.assistants.create(
        model=MODELS["chat"],
        name="py",
        instructions="Be brief.",
        tools=[WEATHER_TOOL],
        metadata={"sdk": "py"},
    )
    assert created.id.startswith("asst_") and created.object == "assistant"
    assert created.tools[0].type == "function" and created.tools[0].function.name == "get_weather"
    assert client.beta.assistants.retrieve(created.id) == created
    updated = client.beta.assistants.update(created.id, name="py-2", temperature=0.5)
    assert updated.name == "py-2" and updated.temperature == 0.5
    page = client.beta.assistants.list(limit=100, order="desc")
    assert created.id in [a.id for a in page.data]
    deleted = client.beta.assistants.delete(created.id)
    assert deleted.id == created.id and deleted.deleted is True and deleted.object == "assistant.deleted"
    try:
        client.beta.assistants.retrieve(created.id)
    except openai.NotFoundError as exc:
        assert exc.status_code == 404
    else:
        raise AssertionError("a deleted assistant was found")


def threads_messages_and_polled_run() -> None:
    thread = client.beta.threads.create(messages=[{"role": "user", "content": "first"}], metadata={"k": "v"})
    assert thread.id.startswith("thread_")
    message = client.beta.threads.messages.create(thread.id, role="user", content="Hello")
    assert message.content[0].type == "text" and message.content[0].text.value == "Hello"
    assert client.beta.threads.messages.retrieve(message.id, thread_id=thread.id).id == message.id
    assert client.beta.threads.update(thread.id, metadata={"k": "w"}).metadata == {"k": "w"}

    assistant = client.beta.assistants.create(model=MODELS["chat"])
    run = client.beta.threads.runs.create_and_poll(thread_id=thread.id, assistant_id=assistant.id)
    assert run.status == "completed", run
    assert run.usage is not None and run.usage.total_tokens > 0
    listed = client.beta.threads.messages.list(thread.id, order="asc")
    assert [(m.role, _text(m).value) for m in listed.data] == [
        ("user", "first"),
        ("user", "Hello"),
        ("assistant", "echo: Hello"),
    ]
    # Auto-pagination follows the `after` cursors.
    assert len(list(client.beta.threads.messages.list(thread.id, limit=1))) == 3
    steps = client.beta.threads.runs.steps.list(run.id, thread_id=thread.id)
    assert [s.type for s in steps.data] == ["message_creation"]
    assert client.beta.threads.delete(thread.id).deleted is True


def function_calling_with_polling() -> None:
    assistant = client.beta.assistants.create(model=MODELS["tools"], tools=[WEATHER_TOOL])
    thread = client.beta.threads.create(messages=[{"role": "user", "content": "Weather?"}])
    run = client.beta.threads.runs.create_and_poll(thread_id=thread.id, assistant_id=assistant.id)
    assert run.status == "requires_action" and run.required_action is not None, run
    [call] = run.required_action.submit_tool_outputs.tool_calls
    assert call.function.name == "get_weather" and json.loads(call.function.arguments) == {"city": "Paris"}
    done = client.beta.threads.runs.submit_tool_outputs_and_poll(
        thread_id=thread.id, run_id=run.id, tool_outputs=[{"tool_call_id": call.id, "output": "21C"}]
    )
    assert done.status == "completed", done
    assert client.beta.threads.runs.retrieve(run.id, thread_id=thread.id).status == "completed"
    [reply] = client.beta.threads.messages.list(thread.id, limit=1).data
    assert _text(reply).value == TEXTS["tools"]


def streaming_text_with_event_handler() -> None:
    assistant = client.beta.assistants.create(model=MODELS["stream"])
    thread = client.beta.threads.create(messages=[{"role": "user", "content": "hi"}])
    handler = Recorder()
    with client.beta.threads.runs.stream(
        thread_id=thread.id, assistant_id=assistant.id, event_handler=handler
    ) as stream:
        stream.until_done()
        run = stream.get_final_run()
        [message] = stream.get_final_messages()
    assert run.status == "completed", run
    assert handler.text == handler.text_done == _text(message).value == TEXTS["stream"]
    assert handler.events[:7] == [
        "thread.run.created",
        "thread.run.queued",
        "thread.run.in_progress",
        "thread.run.step.created",
        "thread.run.step.in_progress",
        "thread.message.created",
        "thread.message.in_progress",
    ]
    assert handler.events[-3:] == [
        "thread.message.completed",
        "thread.run.step.completed",
        "thread.run.completed",
    ]
    stored = client.beta.threads.messages.retrieve(message.id, thread_id=thread.id)
    assert _text(stored).value == handler.text


def streaming_function_calling() -> None:
    assistant = client.beta.assistants.create(model=MODELS["stream_tools"], tools=[WEATHER_TOOL])
    thread = client.beta.threads.create(messages=[{"role": "user", "content": "Weather?"}])
    first = Recorder()
    with client.beta.threads.runs.stream(
        thread_id=thread.id, assistant_id=assistant.id, event_handler=first
    ) as s:
        s.until_done()
        run = s.get_final_run()
        steps = s.get_final_run_steps()
    assert run.status == "requires_action" and run.required_action is not None, run
    assert first.events[-1] == "thread.run.requires_action"
    [call] = run.required_action.submit_tool_outputs.tool_calls
    assert first.tool_calls_created == [call.id]
    assert json.loads(first.arguments) == {"city": "Oslo"}
    # The step snapshot the SDK built from the deltas has the whole arguments.
    [snapshot_call] = steps[0].step_details.tool_calls  # type: ignore[union-attr]
    assert json.loads(snapshot_call.function.arguments) == {"city": "Oslo"}  # type: ignore[union-attr]

    second = Recorder()
    with client.beta.threads.runs.submit_tool_outputs_stream(
        thread_id=thread.id,
        run_id=run.id,
        tool_outputs=[{"tool_call_id": call.id, "output": "-3C"}],
        event_handler=second,
    ) as s:
        s.until_done()
        final = s.get_final_run()
    assert final.status == "completed", final
    assert second.events[:3] == ["thread.run.step.completed", "thread.run.queued", "thread.run.in_progress"]
    assert second.events[-1] == "thread.run.completed"
    assert second.text == TEXTS["stream_tools"]


def create_and_run_stream_cancel_and_attachments() -> None:
    assistant = client.beta.assistants.create(model=MODELS["chat"])
    handler = Recorder()
    with client.beta.threads.create_and_run_stream(
        assistant_id=assistant.id,
        thread={"messages": [{"role": "user", "content": "hello"}]},
        event_handler=handler,
    ) as stream:
        stream.until_done()
        assert stream.get_final_run().status == "completed"
    assert handler.events[:2] == ["thread.created", "thread.run.created"]
    assert handler.text == "echo: hello"

    waiting = client.beta.assistants.create(model=MODELS["cancel"], tools=[WEATHER_TOOL])
    thread = client.beta.threads.create(messages=[{"role": "user", "content": "Weather?"}])
    run = client.beta.threads.runs.create_and_poll(thread_id=thread.id, assistant_id=waiting.id)
    assert run.status == "requires_action", run
    cancelling = client.beta.threads.runs.cancel(run.id, thread_id=thread.id)
    assert cancelling.status in ("cancelling", "cancelled"), cancelling
    assert client.beta.threads.runs.poll(run.id, thread_id=thread.id).status == "cancelled"

    file = client.files.create(file=("fact.md", FLOWS["fact"].encode()), purpose="assistants")
    attachment: Any = {"file_id": file.id, "tools": [{"type": "file_search"}]}
    with_attachment = client.beta.threads.create(
        messages=[{"role": "user", "content": "see file", "attachments": [attachment]}]
    )
    resources = with_attachment.tool_resources
    assert resources is not None and resources.file_search is not None
    assert len(resources.file_search.vector_store_ids or []) == 1
    [message] = client.beta.threads.messages.list(with_attachment.id).data
    assert [a.model_dump(exclude_none=True) for a in message.attachments or []] == [attachment]


def errors_are_openai_shaped() -> None:
    try:
        client.beta.assistants.create(model=MODELS["chat"], temperature=5)
    except openai.BadRequestError as exc:
        assert exc.status_code == 400 and exc.type == "invalid_request_error" and exc.param == "temperature"
    else:
        raise AssertionError("temperature 5 was accepted")
    try:
        client.beta.threads.runs.create_and_poll(thread_id="thread_nope", assistant_id="asst_nope")
    except openai.NotFoundError as exc:
        assert exc.status_code == 404
    else:
        raise AssertionError("a run on a missing thread was created")


def files_upload_retrieve_content_delete() -> None:
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp, "notes.txt")
        path.write_text("notes from disk")
        with path.open("rb") as handle:
            from_disk = client.files.create(file=handle, purpose="assistants")
    assert from_disk.filename == "notes.txt" and from_disk.bytes == 15 and from_disk.purpose == "assistants"
    from_memory = client.files.create(file=("data.json", b'{"a": 1}'), purpose="assistants")
    assert from_memory.filename == "data.json"
    assert client.files.retrieve(from_memory.id).bytes == 8
    assert client.files.content(from_disk.id).text == "notes from disk"
    assert client.files.delete(from_disk.id).deleted is True
    client.files.delete(from_memory.id)


def vector_store_batch_and_file_search_citation() -> None:
    store = vector_stores.create(name="py-kb")
    assert store.id.startswith("vs_")
    batch = vector_stores.file_batches.upload_and_poll(
        store.id, files=[("island.md", FLOWS["fact"].encode()), ("recipe.txt", FLOWS["other"].encode())]
    )
    assert batch.status == "completed", batch
    counts = batch.file_counts
    assert (counts.in_progress, counts.completed, counts.failed, counts.total) == (0, 2, 0, 2), counts
    stored = vector_stores.retrieve(store.id)
    assert stored.status == "completed" and stored.file_counts.completed == 2
    store_files = vector_stores.files.list(store.id).data
    assert len(store_files) == 2

    assistant = client.beta.assistants.create(
        model=MODELS["search"],
        tools=[{"type": "file_search"}],
        tool_resources={"file_search": {"vector_store_ids": [store.id]}},
    )
    thread = client.beta.threads.create(messages=[{"role": "user", "content": "How many cats?"}])
    run = client.beta.threads.runs.create_and_poll(thread_id=thread.id, assistant_id=assistant.id)
    assert run.status == "completed", run
    steps = client.beta.threads.runs.steps.list(run.id, thread_id=thread.id, order="asc").data
    assert [s.type for s in steps] == ["tool_calls", "message_creation"]
    assert steps[0].step_details.tool_calls[0].type == "file_search"  # type: ignore[union-attr]

    [reply] = client.beta.threads.messages.list(thread.id, limit=1).data
    text = _text(reply)
    marker = FLOWS["marker"]
    [citation] = text.annotations
    assert citation.type == "file_citation" and citation.text == marker
    assert text.value[citation.start_index : citation.end_index] == marker
    cited = citation.file_citation.file_id
    assert cited in [f.id for f in store_files]
    assert client.files.retrieve(cited).filename == "island.md"

    # Streamed, the citation arrives with the completed message (on_text_done, the final messages).
    streamed = client.beta.assistants.create(
        model=MODELS["search_stream"],
        tools=[{"type": "file_search"}],
        tool_resources={"file_search": {"vector_store_ids": [store.id]}},
    )
    asked = client.beta.threads.create(messages=[{"role": "user", "content": "Cats?"}])
    handler = Recorder()
    with client.beta.threads.runs.stream(
        thread_id=asked.id, assistant_id=streamed.id, event_handler=handler
    ) as s:
        s.until_done()
        assert s.get_final_run().status == "completed"
        [final] = s.get_final_messages()
    assert handler.text == handler.text_done == TEXTS["search_stream"]
    assert "thread.run.step.delta" in handler.events
    for done in (handler.text_done_annotations, _text(final).annotations):
        assert [(a.type, a.text, a.file_citation.file_id) for a in done] == [("file_citation", marker, cited)]
    assert vector_stores.delete(store.id).deleted is True


def _text(message: Any) -> Any:
    content = message.content[0]
    assert content.type == "text", content
    return content.text


FLOW_FUNCTIONS: list[Callable[[], None]] = [
    assistants_crud,
    threads_messages_and_polled_run,
    function_calling_with_polling,
    streaming_text_with_event_handler,
    streaming_function_calling,
    create_and_run_stream_cancel_and_attachments,
    errors_are_openai_shaped,
    files_upload_retrieve_content_delete,
    vector_store_batch_and_file_search_citation,
]


def main() -> int:
    print(f"openai {openai.__version__} on Python {sys.version.split()[0]}")
    failed = []
    for flow in FLOW_FUNCTIONS:
        started = time.perf_counter()
        try:
            flow()
        except Exception:
            failed.append(flow.__name__)
            print(f"FAIL {flow.__name__}")
            traceback.print_exc(file=sys.stdout)
        else:
            print(f"ok   {flow.__name__} ({time.perf_counter() - started:.2f} s)")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
