"""Files the code interpreter writes are the attachments of the assistant message that follows, as
the hosted API listed them (``[{"file_id", "tools": [{"type": "code_interpreter"}]}]``): LangChain's
``OpenAIAssistantV2Runnable`` returns generated files only from there."""

from __future__ import annotations

import json
import os
import shutil

import openai
import pytest

from tests.upstream import Reply, ScriptedUpstream, ToolCalls

if shutil.which("bwrap") is None:
    if os.environ.get("OPENASSISTANTS_TEST_REQUIRE_POSTGRES"):  # set in CI, where bwrap is installed
        raise RuntimeError("bubblewrap (bwrap) is required in CI for the code interpreter tests")
    pytest.skip("bubblewrap (bwrap) is not installed", allow_module_level=True)

CODE = "open('/mnt/data/report.txt', 'w').write('all good')\nprint('written')"


async def test_files_written_by_code_are_the_reply_messages_attachments(
    sdk: openai.AsyncOpenAI, upstream: ScriptedUpstream, model: str
) -> None:
    reply = "Your report: [report](sandbox:/mnt/data/report.txt)"
    upstream.script(model, ToolCalls([("code_interpreter", json.dumps({"code": CODE}))]), Reply(reply))
    assistant = await sdk.beta.assistants.create(model=model, tools=[{"type": "code_interpreter"}])
    thread = await sdk.beta.threads.create(messages=[{"role": "user", "content": "write a report"}])
    created = []
    async with sdk.beta.threads.runs.stream(thread_id=thread.id, assistant_id=assistant.id) as stream:
        async for event in stream:
            if event.event == "thread.message.created":
                created.append(event.data)
        run = await stream.get_final_run()
    assert run.status == "completed"

    message = (await sdk.beta.threads.messages.list(thread.id, limit=1)).data[0]
    assert message.role == "assistant" and message.run_id == run.id
    [attachment] = message.attachments or []
    assert [tool.type for tool in attachment.tools or []] == ["code_interpreter"]
    assert attachment.file_id is not None
    assert (await sdk.files.content(attachment.file_id)).read() == b"all good"
    annotation = message.content[0].text.annotations[0]  # type: ignore[union-attr]
    assert annotation.file_path.file_id == attachment.file_id  # type: ignore[union-attr]
    # Streamed as stored, from the message's first event.
    assert [m.attachments for m in created] == [message.attachments]

    # The next reply made no file: it lists none.
    upstream.script(model, Reply("anything else?"))
    run = await sdk.beta.threads.runs.create_and_poll(thread_id=thread.id, assistant_id=assistant.id)
    newest = (await sdk.beta.threads.messages.list(thread.id, limit=1)).data[0]
    assert newest.run_id == run.id and newest.attachments == []
