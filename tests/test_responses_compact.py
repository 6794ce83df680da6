"""POST /v1/responses/compact through the SDK (``client.responses.compact``): the model's summary
of a chain comes back as one compaction item after the user's messages, and a later response that
gets that item as input hands the summary to the model instead of the whole chain."""

from __future__ import annotations

import httpx
import openai
import pytest

from tests.upstream import Fail, Reply, ScriptedUpstream

SUMMARY = "Ada asked about Paris weather; it is sunny, 24C."


async def test_a_chain_is_compacted_and_the_summary_carries_on(
    client: openai.AsyncOpenAI, upstream: ScriptedUpstream, model: str
) -> None:
    # Not through the spec-checked client: its strict models type the output as output items only,
    # where the OpenAPI document (and its own example) has the user's input messages there.
    upstream.script(model, Reply("Sunny, 24C."), Reply(SUMMARY), Reply("Take sunglasses."))
    first = await client.responses.create(model=model, input="Weather in Paris?", instructions="Be brief.")

    compacted = await client.responses.compact(
        model=model, previous_response_id=first.id, input="What should I take?"
    )

    assert compacted.object == "response.compaction" and compacted.id.startswith("resp_")
    assert [o.type for o in compacted.output] == ["message", "message", "compaction"]
    texts = [o.content[0].text for o in compacted.output[:2]]  # type: ignore[union-attr]
    assert texts == ["Weather in Paris?", "What should I take?"]
    assert all(o.role == "user" for o in compacted.output[:2])  # type: ignore[union-attr]
    usage = compacted.usage
    assert usage.input_tokens > 0 and usage.output_tokens > 0
    assert usage.total_tokens == usage.input_tokens + usage.output_tokens
    asked = upstream.requests(model)[1]["messages"]
    assert [m["role"] for m in asked] == ["user", "assistant", "user", "user"]
    assert asked[0]["content"] == "Weather in Paris?" and asked[1]["content"] == "Sunny, 24C."

    # As the hosted docs have it: the compacted output is the next request's whole context.
    # (the SDK's types read the user's input_text parts as output_text: quiet its serializer about it)
    items = [o.model_dump(exclude_none=True, warnings=False) for o in compacted.output]
    after = await client.responses.create(model=model, input=items)  # type: ignore[arg-type]

    assert after.output_text == "Take sunglasses."
    sent = upstream.requests(model)[2]["messages"]
    assert sent[0] == {"role": "system", "content": SUMMARY}
    assert [m["content"] for m in sent[1:]] == ["Weather in Paris?", "What should I take?"]


async def test_compact_errors_are_shaped_as_hosted(
    client: openai.AsyncOpenAI, upstream: ScriptedUpstream, model: str
) -> None:
    with pytest.raises(openai.NotFoundError) as missing:
        await client.responses.compact(model=model, previous_response_id="resp_nope")
    assert missing.value.body["param"] == "previous_response_id"  # type: ignore[index]
    with pytest.raises(openai.BadRequestError) as empty:
        await client.responses.compact(model=model)
    assert empty.value.body["param"] == "input"  # type: ignore[index]
    with pytest.raises(openai.BadRequestError) as bad_item:
        await client.responses.compact(model=model, input=[{"type": "nope"}])  # type: ignore[list-item]
    assert bad_item.value.body["param"] == "input[0].type"  # type: ignore[index]
    with pytest.raises(openai.BadRequestError) as forged:
        await client.responses.create(
            model=model, input=[{"type": "compaction", "encrypted_content": "gAAAA-not-ours"}]
        )
    assert forged.value.body["param"] == "input[0].encrypted_content"  # type: ignore[index]
    conversation = await client.conversations.create()
    with pytest.raises(openai.BadRequestError) as in_conversation:
        await client.conversations.items.create(
            conversation.id,
            items=[{"type": "compaction", "encrypted_content": "oa1.c3VtbWFyeQ=="}],  # type: ignore[list-item]
        )
    assert in_conversation.value.body["param"] == "items[0].type"  # type: ignore[index]
    upstream.script(model, Fail(400, message="model does not exist"))
    with pytest.raises(openai.BadRequestError) as upstream_refused:
        await client.responses.compact(model=model, input="hi")
    assert "model does not exist" in upstream_refused.value.body["message"]  # type: ignore[index]


async def test_the_compacted_response_is_as_the_spec_has_it(
    raw: httpx.AsyncClient, upstream: ScriptedUpstream, model: str
) -> None:
    upstream.script(model, Reply(SUMMARY))
    response = await raw.post("/responses/compact", json={"model": model, "input": "hi"})
    assert response.status_code == 200  # and the spec checker has read it against CompactResource

    missing = await raw.post("/responses/compact", json={"input": "hi"})
    assert missing.status_code == 400 and missing.json()["error"]["param"] == "model"
