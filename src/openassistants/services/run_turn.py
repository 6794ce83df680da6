"""One model turn of a run: build the prompt, stream the model's reply, record it as steps and
messages, and publish each piece as it arrives."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Coroutine, Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

from sqlalchemy.ext.asyncio import AsyncConnection

from openassistants import run_events
from openassistants.events import Event
from openassistants.ids import new_id
from openassistants.metrics import time_upstream
from openassistants.services import run_records as records
from openassistants.services.code_interpreter_tool import PartialCode, file_path_annotations
from openassistants.services.completion_budget import CompletionBudget
from openassistants.services.file_search_tool import citations
from openassistants.services.messages import message_to_wire, text_part
from openassistants.services.prompt import (
    CONTEXT_LENGTH_EXCEEDED,
    Prompt,
    PromptTooLarge,
    response_format_for_model,
    tool_choice_for_model,
)
from openassistants.services.responses.hooks import is_response_run
from openassistants.services.run_context import BUILTIN_TOOLS, RunContext, load_run_context, offered_tools
from openassistants.services.run_status import Closing
from openassistants.services.runs import step_to_wire
from openassistants.services.tool_calls import ToolCall, ToolContext, run_builtin_calls
from openassistants.services.turn_host import TurnHost
from openassistants.statuses import MessageStatus
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


def _is_piece(event: object) -> bool:
    """A piece of the reply a client sees: text, or a tool call's."""
    return isinstance(event, ToolCallDelta) or (isinstance(event, TextDelta) and bool(event.text))


def _fit(budget: CompletionBudget | None, text: str) -> str:
    return text if budget is None else budget.fit(text)


def _stored() -> asyncio.Future[None]:
    """What ``_Open.storing`` holds for a message stored before the turn began."""
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


@dataclass
class _Open:
    """What the turn has open: at most one message (with its step) and one tool_calls step."""

    message: dict[str, Any] | None = None
    message_step: dict[str, Any] | None = None
    #: Whether the message's events went out (its text began).
    announced: bool = False
    #: Storing the message and its step ahead of the reply's text, when the turn does that.
    storing: asyncio.Future[None] | None = None
    text: str = ""
    #: How many of the message's annotations went out in its deltas (a prefix of them, in order).
    annotated: int = 0
    tool_step: dict[str, Any] | None = None
    calls: dict[int, ToolCall] = field(default_factory=dict)


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
        self.inbox: asyncio.Queue[object] = asyncio.Queue()
        self.builtins = {t["type"] for t in offered_tools(run)} & BUILTIN_TOOLS
        self.code_inputs: dict[int, PartialCode] = {}
        #: Images shown at the start of the message this turn writes (content index of its text).
        self.images: list[str] = []
        self.open = _Open()
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
            self.context = await load_run_context(
                self.db, self.executor.settings, run, has_steps=self.has_steps
            )
        except PromptTooLarge as exc:
            await self._discard_reply()
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
            calls = "".join(c.name + c.arguments for c in self.open.calls.values())
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

    # --- prompt -----------------------------------------------------------------------------

    # --- streaming pieces -------------------------------------------------------------------

    async def _on_text(self, text: str) -> None:
        if not text:
            return
        message = self.open.message
        if message is None:
            message, _ = self._new_message()
        self.open.text += text
        part: dict[str, Any] = {"index": len(self.images), "type": "text", "text": {"value": text}}
        annotations = self._settled_annotations(text)
        if annotations or not self.open.announced:
            part["text"]["annotations"] = annotations
        delta = run_events.message_delta(message["id"], [part])
        if self.open.announced:
            self.executor.bus.publish(self.run_id, delta)
        else:
            await self._announce_message(delta)

    def _settled_annotations(self, piece: str) -> list[dict[str, Any]]:
        """The annotations the text just streamed (``piece``) settled, numbered by their place among
        the completed message's annotations, for its delta (as the hosted API streamed them).

        Annotations go out in order, each once (the SDKs add up a re-sent one's offsets), and only
        once nothing streamed later can move or change them: a citation when its closing 】 arrives;
        a ``sandbox:`` link once a character after it ends it; neither while an unclosed 【 before
        it could still become a citation that sorts first. The rest go out when the message closes.
        """
        text = self.open.text
        cited = bool(self.context.sources) and "】" in piece
        linked = bool(self.context.code_files) and "sandbox:" in text
        if not (cited or linked):
            return []
        annotations = self._annotations()
        # A citation yet to close starts at the first 【 after the last 】.
        pending = text.find("【", text.rfind("】") + 1)
        boundary = len(text) if pending < 0 else pending
        settled = 0
        for annotation in annotations:
            done = annotation["type"] == "file_citation" or annotation["end_index"] < len(text)
            if annotation["start_index"] >= boundary or not done:
                break
            settled += 1
        return self._numbered(annotations, settled)

    def _numbered(self, annotations: list[dict[str, Any]], settled: int) -> list[dict[str, Any]]:
        """``annotations[annotated:settled]`` with their delta ``index``; marks them sent."""
        start = self.open.annotated
        if settled <= start:
            return []
        self.open.annotated = settled
        return [{"index": i, **annotations[i]} for i in range(start, settled)]

    def _annotations(self) -> list[dict[str, Any]]:
        """The open message's annotations, in the order its text has them."""
        annotations = citations(self.open.text, self.context.sources)
        annotations += file_path_annotations(self.open.text, self.context.code_files)
        return sorted(annotations, key=lambda a: a["start_index"])

    def _new_message(self, reply: records.Reply | None = None) -> tuple[dict[str, Any], dict[str, Any]]:
        """The message this turn's text goes to and its step, not stored yet (unless ``reply``, stored
        with the run); images the run's code just made lead it, and the files it wrote are its
        ``attachments``, as with the hosted tool (clients such as LangChain's assistant runnable
        find generated files only there)."""
        reply = reply or records.Reply.new(self.run_row)
        message, step = reply.message, reply.step
        self.open.message, self.open.message_step = message, step
        self.images, self.context.pending_images = self.context.pending_images, []
        files, self.context.pending_files = self.context.pending_files, []
        if files:
            tools = [{"type": "code_interpreter"}]
            message["attachments"] = [{"file_id": file_id, "tools": tools} for file_id in files]
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
        if self.images:
            parts = [{"index": i, **_image_part(f)} for i, f in enumerate(self.images)]
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
        (after ``_settle_storing``). A message stored ahead but never begun is removed instead."""
        message, step, announced = self.open.message, self.open.message_step, self.open.announced
        stored = announced or self.open.storing is not None
        content: list[dict[str, Any]] = []
        last: list[Event] = []
        if announced and message is not None:
            content = self._content()
            # Annotations the deltas could not settle yet (a link ending the text) go out last.
            annotations = content[-1]["text"]["annotations"]
            rest = self._numbered(annotations, len(annotations))
            if rest:
                part = {"index": len(self.images), "type": "text", "text": {"annotations": rest}}
                last.append(run_events.message_delta(message["id"], [part]))
        # Text that follows (after tool calls, say) starts a message of its own.
        self.closed_text += self.open.text
        self.open = _Open(tool_step=self.open.tool_step, calls=self.open.calls)

        async def close(conn: AsyncConnection) -> list[Event]:
            if message is None or step is None or not stored:
                return []
            if not announced:
                await records.delete_message(conn, message, step)
                return []
            now = int(time.time())
            if incomplete_reason is None:
                await records.update_message(
                    conn, message, status=MessageStatus.completed.value, completed_at=now, content=content
                )
            else:
                await records.update_message(
                    conn,
                    message,
                    status=MessageStatus.incomplete.value,
                    incomplete_at=now,
                    incomplete_details={"reason": incomplete_reason},
                    content=content,
                )
            step_completed = await records.complete_step(conn, step, now=now, usage=usage)
            return [
                *last,
                run_events.message_moved(message_to_wire(message)),
                step_completed,
            ]

        return close

    async def _save_partial(self) -> None:
        """Store what streamed so far, so the run's end closes the message and step with it."""
        await self._settle_storing()
        message, step = self.open.message, self.open.tool_step
        if message is not None and not self.open.announced:
            # Stored ahead, never begun: the run's end must not find it open.
            async with self.db.write(inline=True) as conn:
                await self._message_closing({})(conn)
            message = None
        if message is None and step is None:
            return
        async with self.db.write(inline=True) as conn:
            if message is not None:
                await records.update_message(conn, message, content=self._content())
            if step is not None:
                await records.update_step(conn, step, step_details=self._tool_call_details())

    def _content(self) -> list[dict[str, Any]]:
        """The message's content: images first, then the text with its annotations."""
        text = text_part(self.open.text)
        text["text"]["annotations"] = self._annotations()
        return [_image_part(f) for f in self.images] + [text]

    def _tool_call_details(self) -> dict[str, Any]:
        calls = [self.open.calls[i] for i in sorted(self.open.calls)]
        return {"type": "tool_calls", "tool_calls": [c.to_step() for c in calls]}

    async def _on_tool_call(self, delta: ToolCallDelta) -> None:
        if self.open.message is not None:
            # Text before tool calls is its own message; finish it before the tool_calls step.
            produced = count_text(self.open.text)
            await self._close_message(
                {"prompt_tokens": 0, "completion_tokens": produced, "total_tokens": produced}
            )
        if self.open.tool_step is None:
            step = records.new_step(self.run_row, "tool_calls", {"type": "tool_calls", "tool_calls": []})
            async with self.db.write(inline=True) as conn:
                await records.insert_step(conn, step)
            self.open.tool_step = step
            for event in run_events.step_created(step_to_wire(step)):
                self.executor.bus.publish(self.run_id, event)
        step = self.open.tool_step
        call = self.open.calls.get(delta.index)
        function: dict[str, Any] = {"arguments": delta.arguments}
        payload: dict[str, Any] = {"index": delta.index, "type": "function", "function": function}
        if call is None:
            builtin = delta.name if delta.name in self.builtins else None
            call = ToolCall(id=delta.id or new_id("call"), name=delta.name or "", type=builtin or "function")
            self.open.calls[delta.index] = call
            call.arguments = delta.arguments
            if builtin == "code_interpreter":
                # The code streams as the step's input, decoded from the JSON arguments as they come.
                decoder = self.code_inputs[delta.index] = PartialCode()
                details = {"input": decoder.feed(delta.arguments), "outputs": []}
                payload = {"index": delta.index, "id": call.id, "type": builtin, builtin: details}
            elif builtin is not None:
                # file_search is announced once; its arguments are ours to run, not to stream.
                payload = {"index": delta.index, "id": call.id, "type": builtin, builtin: {}}
            else:
                payload["id"] = call.id
                function["name"] = call.name
                function["output"] = None
        else:
            call.arguments += delta.arguments
            if call.type == "code_interpreter":
                piece = self.code_inputs[delta.index].feed(delta.arguments)
                if not piece:
                    return
                payload = {
                    "index": delta.index,
                    "type": "code_interpreter",
                    "code_interpreter": {"input": piece},
                }
            elif call.type != "function":
                return
            elif delta.name:
                call.name += delta.name
                function["name"] = delta.name
        self._publish(run_events.step_delta(step["id"], [payload]))

    async def _finish(
        self, finish_reason: str, usage: dict[str, int], completion_budget: int | None
    ) -> TurnOutcome:
        hit_limit = finish_reason == "length" and completion_budget is not None
        if self.open.calls and not hit_limit:
            if self.open.message is not None:
                await self._close_message(usage)
            if not await self._unless_stopped(self._run_builtin_calls()):
                await self._save_partial()
                return TurnOutcome("cancelled")
            if any(c.type == "function" for c in self.open.calls.values()):
                return self._require_action(usage)
            return await self._complete_tool_step(usage)
        # The message is completed in the transaction that ends the run: one commit fewer.
        await self._settle_storing()
        closing = self._message_closing(usage, incomplete_reason="max_tokens" if hit_limit else None)
        if hit_limit:
            closing = self._cut_calls_closing(closing, usage)
            return TurnOutcome("incomplete", incomplete_reason="max_completion_tokens", closing=closing)
        return TurnOutcome("completed", closing=closing)

    async def _unless_stopped(self, work: Coroutine[Any, Any, None]) -> bool:
        """Does ``work`` (built-in tool calls, which may take long), unless the run is stopped (a
        cancel, or its expiry) meanwhile: then ``work`` is cancelled (a code cell's kernel is
        killed) and False returned. The model's stream has ended: only a stop can be in the inbox."""
        task = asyncio.ensure_future(work)
        stop = asyncio.ensure_future(self.inbox.get())
        await asyncio.wait((task, stop), return_when=asyncio.FIRST_COMPLETED)
        if not stop.done():
            stop.cancel()
            task.result()  # its exception, if it failed
            return True
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
        return False

    def _cut_calls_closing(self, closing: Closing, usage: dict[str, int]) -> Closing:
        """``closing``, and the tool_calls step the limit cut short (if any) completed with the calls
        as far as they came: the run ends ``incomplete``, and no step of it stays in progress."""
        step = self.open.tool_step
        if step is None:
            return closing
        details = self._tool_call_details()

        async def close(conn: AsyncConnection) -> list[Event]:
            events = await closing(conn)
            return [*events, await records.complete_step(conn, step, step_details=details, usage=usage)]

        return close

    async def _run_builtin_calls(self) -> None:
        step_id = self.open.tool_step["id"] if self.open.tool_step is not None else None
        tools = ToolContext(self.executor, self.run_row, self.context, self._publish, step_id)
        await run_builtin_calls(tools, self.open.calls)

    async def _complete_tool_step(self, usage: dict[str, int]) -> TurnOutcome:
        """Only built-in calls: the step is done, and the model goes on with their results."""
        step = self.open.tool_step
        assert step is not None
        async with self.db.write(inline=True) as conn:
            completed = await records.complete_step(
                conn, step, step_details=self._tool_call_details(), usage=usage
            )
        self._publish(completed)
        return TurnOutcome("continue")

    def _require_action(self, usage: dict[str, int]) -> TurnOutcome:
        step = self.open.tool_step
        assert step is not None
        calls = [self.open.calls[i] for i in sorted(self.open.calls) if self.open.calls[i].type == "function"]
        details = self._tool_call_details()

        if is_response_run(self.run_row):
            # A response that calls functions is complete: their outputs come with the next one.
            async def complete_calls(conn: AsyncConnection) -> list[Event]:
                return [await records.complete_step(conn, step, step_details=details, usage=usage)]

            return TurnOutcome("completed", closing=complete_calls)

        async def record_calls(conn: AsyncConnection) -> list[Event]:
            await records.update_step(conn, step, step_details=details, usage=usage)
            return []

        required = {
            "type": "submit_tool_outputs",
            "submit_tool_outputs": {
                "tool_calls": [
                    {"id": c.id, "type": "function", "function": {"name": c.name, "arguments": c.arguments}}
                    for c in calls
                ]
            },
        }
        return TurnOutcome("requires_action", required_action=required, closing=record_calls)


def _image_part(file_id: str) -> dict[str, Any]:
    return {"type": "image_file", "image_file": {"file_id": file_id, "detail": "auto"}}
