"""One model turn of a run: build the prompt, stream the model's reply, record it as steps and
messages, and publish each piece as it arrives."""

from __future__ import annotations

import asyncio
import logging
import time
from collections import deque
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Literal

from sqlalchemy.ext.asyncio import AsyncConnection

from openassistants import run_events
from openassistants.bus.waiters import Waiters
from openassistants.events import Event
from openassistants.metrics import time_upstream
from openassistants.services import run_records as records
from openassistants.services.completion_budget import CompletionBudget
from openassistants.services.messages import message_to_wire
from openassistants.services.prompt import (
    CONTEXT_LENGTH_EXCEEDED,
    Prompt,
    PromptTooLarge,
    response_format_for_model,
    tool_choice_for_model,
)
from openassistants.services.responses.hooks import is_response_run
from openassistants.services.run_context import RunContext, load_run_context
from openassistants.services.run_status import Closing
from openassistants.services.runs import step_to_wire
from openassistants.services.tool_host import ServicesToolHost
from openassistants.services.turn_calls import TurnCalls, both, unless_stopped
from openassistants.services.turn_host import TurnHost
from openassistants.services.turn_message import OpenMessage, image_part
from openassistants.storage.queries import insert_rows
from openassistants.tokens import count_text
from openassistants.upstream.chat import (
    ChatRequest,
    Finish,
    TextDelta,
    ToolCallDelta,
    UpstreamError,
    UsageReport,
)

logger = logging.getLogger(__name__)

_CANCEL = object()
_END = object()


class _Inbox:
    """What the turn's reader (and a stop) hand the turn, in order; one reader of it, the turn.

    ``asyncio.Queue`` did the same with more per item (its getters' deque, its ``maxsize`` checks, a
    loop lookup on each wait), for every read of every run's model stream."""

    __slots__ = ("_arrived", "_items")

    def __init__(self) -> None:
        self._items: deque[object] = deque()
        self._arrived = Waiters()

    def put_nowait(self, item: object) -> None:
        self._items.append(item)
        self._arrived.wake()

    async def get(self) -> object:
        while not self._items:
            await self._arrived.wait()
        return self._items.popleft()


def _is_piece(event: object) -> bool:
    """A piece of the reply a client sees: text, or a tool call's."""
    return isinstance(event, ToolCallDelta) or (isinstance(event, TextDelta) and bool(event.text))


def _fit(budget: CompletionBudget | None, text: str) -> str:
    return text if budget is None else budget.fit(text)


def _stored() -> asyncio.Future[None]:
    """What ``OpenMessage.storing`` holds for a message stored before the turn began."""
    done = asyncio.get_running_loop().create_future()
    done.set_result(None)
    return done


@dataclass
class TurnOutcome:
    kind: Literal["completed", "requires_action", "incomplete", "failed", "cancelled", "continue"]
    required_action: dict[str, Any] | None = None
    incomplete_reason: str | None = None
    error_code: str = "server_error"
    error_message: str = ""
    #: Writes that go in the transaction applying the outcome (completing the turn's message).
    closing: Closing | None = None


class ModelTurn:
    #: Loaded at the start of ``run``.
    context: RunContext

    def __init__(
        self,
        executor: TurnHost,
        run: Mapping[str, Any],
        usage: dict[str, int],
        *,
        has_steps: bool = True,
        reply: records.Reply | None = None,
    ) -> None:
        self.executor = executor
        #: The text reply's message and step, stored with the run (services/run_actions.py).
        self.reply = reply
        self.db = executor.db
        self.run_row = run
        self.run_id: str = run["id"]
        self.usage = usage
        self.has_steps = has_steps
        self.inbox = _Inbox()
        self.tool_host = ServicesToolHost.of(executor)
        self.calls = TurnCalls(self.db, run, self.tool_host, self._publish)
        self.open = OpenMessage()
        #: Text of the messages this turn already closed, for usage when the upstream reports none.
        self.closed_text = ""

    def cancel(self) -> None:
        self.inbox.put_nowait(_CANCEL)

    def _publish(self, event: Event) -> None:
        self.executor.bus.publish(self.run_id, event)

    # --- the turn -----------------------------------------------------------------------------

    async def run(self) -> TurnOutcome:
        run = self.run_row
        completion_budget = self._completion_budget()
        if completion_budget is not None and completion_budget <= 0:
            await self._discard_reply()
            return TurnOutcome("incomplete", incomplete_reason="max_completion_tokens")
        try:
            self.context = await load_run_context(self.tool_host, run, has_steps=self.has_steps)
        except PromptTooLarge as exc:
            await self._discard_reply()
            return _too_large(run, exc)
        prompt = self.context.prompt
        request = ChatRequest(
            model=run["model"],
            messages=prompt.messages,
            tools=prompt.tools,
            tool_choice=tool_choice_for_model(run["tool_choice"]) if prompt.tools else None,
            parallel_tool_calls=run["parallel_tool_calls"] if prompt.tools else None,
            temperature=run["temperature"],
            top_p=run["top_p"],
            response_format=response_format_for_model(run["response_format"]),
            max_completion_tokens=completion_budget,
        )
        reader = asyncio.create_task(self._read(request))
        if prompt.tools:
            await self._discard_reply()
        elif self.reply is not None:
            # Stored with the run: the turn takes it up as stored ahead (below).
            self._new_message(self.reply)
            self.open.storing, self.reply = _stored(), None
        else:
            # Without tools the reply can only be text: its message is stored while the model
            # thinks, so the first token waits for no write.
            message, step = self._new_message()
            self.open.storing = asyncio.create_task(self._store_message(message, step))
        finish_reason = "stop"
        reported: dict[str, int] | None = None
        budget = CompletionBudget(completion_budget) if completion_budget is not None else None
        try:
            while budget is None or not budget.exhausted:
                item = await self.inbox.get()
                if item is _CANCEL:
                    await self._save_partial()
                    return TurnOutcome("cancelled")
                if item is _END:
                    break
                if isinstance(item, UpstreamError):
                    upstream = self.executor.chat.routes.resolve(request.model).upstream
                    logger.warning(
                        "run %s failed: model %r at %s: %s: %s",
                        self.run_id,
                        request.model,
                        upstream.display_url,
                        item.code,
                        item.message,
                    )
                    self._add_usage(prompt, reported)
                    await self._save_partial()
                    return TurnOutcome("failed", error_code=item.code, error_message=item.message)
                assert isinstance(item, list)
                text: list[str] = []  # consecutive pieces of text in a batch go out as one delta
                for event in item:
                    if isinstance(event, TextDelta):
                        text.append(event.text)
                        continue
                    if text:
                        await self._on_text(_fit(budget, "".join(text)))
                        text = []
                    if budget is not None and budget.exhausted:
                        break
                    if isinstance(event, ToolCallDelta):
                        if budget is not None:
                            budget.fit((event.name or "") + event.arguments)
                            if budget.exhausted:
                                break  # the call ends where it was cut: the rest is not sent
                        await self._on_tool_call(event)
                    elif isinstance(event, Finish):
                        finish_reason = event.reason
                    elif isinstance(event, UsageReport):
                        reported = {
                            "prompt_tokens": event.usage.prompt_tokens,
                            "completion_tokens": event.usage.completion_tokens,
                            "total_tokens": event.usage.total_tokens,
                        }
                if text and not (budget is not None and budget.exhausted):
                    await self._on_text(_fit(budget, "".join(text)))
        finally:
            if not reader.done():
                reader.cancel()  # also ends the model's stream when it was cut at the budget
        if budget is not None and budget.exhausted:
            finish_reason = "length"
        turn_usage = self._add_usage(prompt, reported)
        return await self._finish(finish_reason, turn_usage, completion_budget)

    async def _read(self, request: ChatRequest) -> None:
        begun = False
        try:
            async for batch in time_upstream(self.executor.chat.stream_batches(request)):
                self.inbox.put_nowait(batch)
                # Not before the reply's first piece: models send a chunk with only the role first,
                # and pausing after it held every run's first token back by the pause (up to 100 ms).
                begun = begun or any(_is_piece(event) for event in batch)
                if begun and (pause := self.executor.coalescing_pause()):
                    # Under load: what arrives meanwhile is read, and relayed, as one batch.
                    await asyncio.sleep(pause)
        except UpstreamError as exc:
            self.inbox.put_nowait(exc)
            return
        self.inbox.put_nowait(_END)

    def _completion_budget(self) -> int | None:
        limit = self.run_row["max_completion_tokens"]
        if limit is None:
            return None
        return int(limit) - self.usage["completion_tokens"]

    def _add_usage(self, prompt: Prompt, reported: dict[str, int] | None) -> dict[str, int]:
        if reported is None:
            # Upstreams that don't report usage: count it ourselves with the same tokenizer.
            calls = "".join(c.name + c.arguments for c in self.calls.calls.values())
            produced = self.closed_text + self.open.text + calls
            completion = count_text(produced)
            reported = {
                "prompt_tokens": prompt.prompt_tokens,
                "completion_tokens": completion,
                "total_tokens": prompt.prompt_tokens + completion,
            }
        for key in ("prompt_tokens", "completion_tokens", "total_tokens"):
            self.usage[key] += reported[key]
        return reported

    # --- streaming pieces -------------------------------------------------------------------

    async def _on_text(self, text: str) -> None:
        if not text:
            return
        message = self.open.message
        if message is None:
            message, _ = self._new_message()
        self.open.text += text
        part: dict[str, Any] = {"index": len(self.open.images), "type": "text", "text": {"value": text}}
        annotations = self.open.settled_annotations(self.context.tools, text)
        if annotations or not self.open.announced:
            part["text"]["annotations"] = annotations
        delta = run_events.message_delta(message["id"], [part])
        if self.open.announced:
            self.executor.bus.publish(self.run_id, delta)
        else:
            await self._announce_message(delta)

    def _new_message(self, reply: records.Reply | None = None) -> tuple[dict[str, Any], dict[str, Any]]:
        """The message this turn's text goes to and its step, not stored yet (unless ``reply``, stored
        with the run); images the run's code just made lead it, and the files it wrote are its
        ``attachments``, as with the hosted tool (clients such as LangChain's assistant runnable
        find generated files only there)."""
        reply = reply or records.Reply.new(self.run_row)
        message, step = reply.message, reply.step
        self.open.message, self.open.message_step = message, step
        tools = self.context.tools
        self.open.images, tools.pending_images = tools.pending_images, []
        if tools.pending_attachments:
            message["attachments"], tools.pending_attachments = tools.pending_attachments, []
        return message, step

    async def _discard_reply(self) -> None:
        """The turn will not write its text to the reply stored with the run: remove it, unseen."""
        reply, self.reply = self.reply, None
        if reply is not None:
            async with self.db.write(inline=True) as conn:
                await reply.discard(conn)

    async def _store_message(self, message: dict[str, Any], step: dict[str, Any]) -> None:
        async with self.db.write(inline=True) as conn:
            await insert_rows(conn, records.Reply(message, step).rows())

    async def _announce_message(self, first_delta: Event) -> None:
        """Publishes the new message and its step with the reply's first piece; stores them first,
        in the same transaction, unless that was done ahead."""
        message, step = self.open.message, self.open.message_step
        assert message is not None and step is not None
        events = [
            *run_events.step_created(step_to_wire(step)),
            *run_events.message_created(message_to_wire(message)),
        ]
        if self.open.images:
            parts = [{"index": i, **image_part(f)} for i, f in enumerate(self.open.images)]
            events.append(run_events.message_delta(message["id"], parts))
        events.append(first_delta)
        self.open.announced = True
        if self.open.storing is not None:
            await self.open.storing
            for event in events:
                self.executor.bus.publish(self.run_id, event)
            return
        async with self.db.write(inline=True) as conn:
            await insert_rows(conn, records.Reply(message, step).rows())
            await self.executor.bus.publish_in(conn, self.run_id, events)

    async def _settle_storing(self) -> None:
        """Wait for the message stored ahead, if any, before a transaction that may remove it (on
        SQLite that write needs the lock the transaction would hold)."""
        if self.open.storing is not None:
            await self.open.storing

    async def _close_message(self, usage: dict[str, int]) -> None:
        """Completes the open message now, in a transaction of its own (more of the turn follows)."""
        await self._settle_storing()
        async with self.db.write(inline=True) as conn:
            events = await self._message_closing(usage)(conn)
            await self.executor.bus.publish_in(conn, self.run_id, events)

    def _message_closing(self, usage: dict[str, int], *, incomplete_reason: str | None = None) -> Closing:
        """The writes that complete the open message and its step, for a transaction to make
        (after ``_settle_storing``): ``records.RowChanges``, which the run's end can make in its one
        statement (services/run_end.py). A message stored ahead but never begun is removed instead."""
        message, step, announced = self.open.message, self.open.message_step, self.open.announced
        stored = announced or self.open.storing is not None
        content: list[dict[str, Any]] = []
        last: list[Event] = []
        if announced and message is not None:
            content = self.open.content(self.context.tools)
            # Annotations the deltas could not settle yet (a link ending the text) go out last.
            annotations = content[-1]["text"]["annotations"]
            rest = self.open.numbered(annotations, len(annotations))
            if rest:
                part = {"index": len(self.open.images), "type": "text", "text": {"annotations": rest}}
                last.append(run_events.message_delta(message["id"], [part]))
        # Text that follows (after tool calls, say) starts a message of its own.
        self.closed_text += self.open.text
        self.open = OpenMessage()

        if message is None or step is None or not stored:
            return records.RowChanges()
        if not announced:

            async def discard(conn: AsyncConnection) -> list[Event]:
                await records.delete_message(conn, message, step)
                return []

            return discard
        now = int(time.time())
        return records.finish_reply(
            message, step, content, now=now, usage=usage, incomplete_reason=incomplete_reason, first=last
        )

    async def _save_partial(self) -> None:
        """Store what streamed so far, so the run's end closes the message and step with it."""
        await self._settle_storing()
        message, step = self.open.message, self.calls.step
        if message is not None and not self.open.announced:
            # Stored ahead, never begun: the run's end must not find it open.
            async with self.db.write(inline=True) as conn:
                await self._message_closing({})(conn)
            message = None
        if message is None and step is None:
            return
        async with self.db.write(inline=True) as conn:
            if message is not None:
                await records.update_message(conn, message, content=self.open.content(self.context.tools))
            if step is not None:
                await records.update_step(conn, step, step_details=self.calls.details())

    async def _on_tool_call(self, delta: ToolCallDelta) -> None:
        if self.open.message is not None:
            # Text before tool calls is its own message; finish it before the tool_calls step.
            produced = count_text(self.open.text)
            await self._close_message(
                {"prompt_tokens": 0, "completion_tokens": produced, "total_tokens": produced}
            )
        await self.calls.on_delta(self.context, delta)

    async def _finish(
        self, finish_reason: str, usage: dict[str, int], completion_budget: int | None
    ) -> TurnOutcome:
        hit_limit = finish_reason == "length" and completion_budget is not None
        if self.calls.calls and not hit_limit:
            if self.open.message is not None:
                await self._close_message(usage)
            # The model's stream has ended: only a stop can be in the inbox.
            if not await unless_stopped(self.calls.run_on_server(self.context), self.inbox.get()):
                await self._save_partial()
                return TurnOutcome("cancelled")
            if self.calls.for_client():
                return self._require_action(usage)
            # Only calls the server ran: the step is done, and the model goes on with their results.
            async with self.db.write(inline=True) as conn:
                completed = await self.calls.completing(usage)(conn)
            for event in completed:
                self._publish(event)
            return TurnOutcome("continue")
        # The message is completed in the transaction that ends the run: one commit fewer.
        await self._settle_storing()
        closing = self._message_closing(usage, incomplete_reason="max_tokens" if hit_limit else None)
        if hit_limit:
            # The tool_calls step the limit cut short (if any) completes with the calls as far as
            # they came: the run ends ``incomplete``, and no step of it stays in progress.
            closing = both(closing, self.calls.completing(usage))
            return TurnOutcome("incomplete", incomplete_reason="max_completion_tokens", closing=closing)
        return TurnOutcome("completed", closing=closing)

    def _require_action(self, usage: dict[str, int]) -> TurnOutcome:
        if is_response_run(self.run_row):
            # A response that calls functions is complete: their outputs come with the next one.
            return TurnOutcome("completed", closing=self.calls.completing(usage))
        required = self.calls.required_action()
        return TurnOutcome("requires_action", required_action=required, closing=self.calls.recording(usage))


def _too_large(run: Mapping[str, Any], exc: PromptTooLarge) -> TurnOutcome:
    """The outcome of a turn whose prompt cannot fit."""
    if run["max_prompt_tokens"] is not None:
        return TurnOutcome("incomplete", incomplete_reason="max_prompt_tokens")
    if exc.untruncated:
        return TurnOutcome(
            "failed",
            error_code=CONTEXT_LENGTH_EXCEEDED,
            error_message="Your input exceeds the context window of this model. Please adjust your "
            f"input and try again (it needs {exc.needed} tokens; the model allows {exc.budget}).",
        )
    return TurnOutcome(
        "failed",
        error_code="invalid_prompt",
        error_message=f"The thread's newest message needs {exc.needed} prompt tokens; the "
        f"model's context allows {exc.budget}.",
    )
