"""What one model turn of a run needs to know, loaded fresh before each turn: the prompt (thread
messages plus this run's own messages and answered tool calls), the vector stores file_search may
search, and the sources earlier file_search calls returned (for citations)."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import bindparam, func, select

from openassistants.config import Settings
from openassistants.services.messages import message_to_wire
from openassistants.services.prompt import Prompt, PromptInput, build_prompt, message_to_chat, prompt_budget
from openassistants.services.responses.hooks import is_replayed, is_response_run, thread_history
from openassistants.services.tool_turns import call_output, tool_calls_turn
from openassistants.services.vector_stores import usable_store_ids
from openassistants.statuses import FileStatus, StepStatus
from openassistants.storage import tables
from openassistants.storage.db import Database
from openassistants.storage.prepared import Prepared
from openassistants.tokens import count_chat_message

#: Built-in tools this server executes itself (others are offered only once implemented).
BUILTIN_TOOLS = frozenset({"file_search", "code_interpreter"})


@dataclass
class RunContext:
    prompt: Prompt
    vector_store_ids: list[str]
    #: (file_search ordinal, result index) → file id, for the markers the model cites.
    sources: dict[tuple[int, int], str] = field(default_factory=dict)
    #: How many file_search calls the run has made so far (the next call's ordinal).
    file_searches: int = 0
    #: Files this run's code produced: sandbox name → file id (for file_path annotations).
    code_files: dict[str, str] = field(default_factory=dict)
    #: Images this run's code produced since its last message: shown in the next one.
    pending_images: list[str] = field(default_factory=list)
    #: Files this run's code produced since its last message: that message's attachments.
    pending_files: list[str] = field(default_factory=list)
    #: Files the code interpreter gets: the assistant's, the thread's and attached ones.
    code_input_file_ids: list[str] = field(default_factory=list)


M = tables.messages
#: Read before every model turn (storage/prepared.py: straight on sqlite3 on SQLite): the thread's
#: messages newest first, a page at a time, only until the prompt's budget is surely spent.
_THREAD_PAGE = Prepared(
    select(M)
    .where(M.c.thread_id == bindparam("thread_id"), M.c.seq < bindparam("before"))
    .order_by(M.c.seq.desc())
    .limit(bindparam("limit"))
)
_OWN_MESSAGES = Prepared(
    select(M)
    .where(M.c.thread_id == bindparam("thread_id"), M.c.run_id == bindparam("run_id"))
    .order_by(M.c.seq)
)
#: Thread messages read, converted and counted in one go. Each page is a few milliseconds of work on
#: the event loop, which serves other requests between pages: a 50,000-message thread once held it
#: for most of a second, reading and converting every message though only the newest could fit.
PROMPT_PAGE_MESSAGES = 200
#: Above any message's ``seq``: the first page starts at the newest message.
_NEWEST = 2**62
_THREAD_MESSAGES = Prepared(
    select(tables.messages)
    .where(tables.messages.c.thread_id == bindparam("thread_id"))
    .order_by(tables.messages.c.seq)
)
_RUN_STEPS = Prepared(
    select(tables.run_steps)
    .where(tables.run_steps.c.run_id == bindparam("run_id"))
    .order_by(tables.run_steps.c.seq)
)

#: Prompts up to this many characters are built on the event loop (tokenizing them takes well under
#: a millisecond), longer ones in a thread.
INLINE_PROMPT_CHARS = 8000
#: How long a run waits for its vector stores' files to finish ingesting before it searches them.
STORE_READY_TIMEOUT_SECONDS = 60.0


async def wait_for_stores(db: Database, run: Mapping[str, Any]) -> None:
    """Files just attached may still be ingesting; as the hosted API does, a run with file_search
    waits (a bounded time) until its vector stores are ready, so a search sees every file."""
    if not _has_tool(run, "file_search"):
        return
    vf = tables.vector_store_files
    deadline = time.monotonic() + STORE_READY_TIMEOUT_SECONDS
    while time.monotonic() < deadline:
        async with db.read() as conn:
            store_ids = await _store_ids(conn, run)
            if not store_ids:
                return
            waiting = (
                await conn.execute(
                    select(func.count()).where(
                        vf.c.vector_store_id.in_(store_ids), vf.c.status == FileStatus.in_progress.value
                    )
                )
            ).scalar()
        if not waiting:
            return
        await asyncio.sleep(0.2)


def offered_tools(run: Mapping[str, Any]) -> list[dict[str, Any]]:
    return [t for t in run["tools"] if t.get("type") == "function" or t.get("type") in BUILTIN_TOOLS]


async def load_run_context(
    db: Database, settings: Settings, run: Mapping[str, Any], *, has_steps: bool = True
) -> RunContext:
    """``has_steps`` False: the run has none yet (its first turn), so they are not queried."""
    max_completion = run["max_completion_tokens"]
    reserve = settings.completion_reserve_tokens
    if max_completion is not None:
        reserve = min(reserve, int(max_completion))
    context_window = settings.model_context_windows.get(run["model"], settings.default_context_window)
    budget = prompt_budget(context_window, reserve, run["max_prompt_tokens"])
    async with db.reader() as runner:
        own_rows = await runner.rows(_OWN_MESSAGES, {"thread_id": run["thread_id"], "run_id": run["id"]})
        steps: Sequence[Any] = await runner.rows(_RUN_STEPS, {"run_id": run["id"]}) if has_steps else []
    thread_message_tokens: list[int] | None = None
    truncation_strategy = run["truncation_strategy"]
    if is_response_run(run):
        # A response's history spans its chain's threads and the calls a client replayed
        # (services/responses/hooks.py): read whole, as it places steps among the messages.
        async with db.reader() as runner:
            rows = await runner.rows(_THREAD_MESSAGES, {"thread_id": run["thread_id"]})
        thread_messages, truncation = await thread_history(db, run, rows)
        if truncation == "disabled":
            truncation_strategy = {"type": "disabled"}
        steps = [s for s in steps if not is_replayed(s)]
    else:
        thread_messages, thread_message_tokens = await _thread_messages(db, run, budget)
    store_ids: list[str] = []
    code_inputs: list[str] = []
    if _has_tool(run, "file_search") or _has_tool(run, "code_interpreter"):
        async with db.read() as conn:
            if _has_tool(run, "file_search"):
                store_ids = await usable_store_ids(conn, run["tenant_id"], await _store_ids(conn, run))
            if _has_tool(run, "code_interpreter"):
                code_inputs = await _code_file_ids(conn, run)
    own = {m["id"]: m for m in own_rows}
    prompt_input = PromptInput(
        instructions=run["instructions"],
        additional_instructions=run["additional_instructions"],
        thread_messages=thread_messages,
        run_turns=run_turns(steps, own),
        tools=offered_tools(run),
        truncation_strategy=truncation_strategy,
        max_prompt_tokens=run["max_prompt_tokens"],
        context_window=context_window,
        completion_reserve=reserve,
        thread_message_tokens=thread_message_tokens,
    )
    # Off the event loop when counting the thread's tokens takes milliseconds of CPU; a short one
    # costs less than the hand-off to a thread (which, with hundreds of runs starting, also queues).
    if _text_size(prompt_input) <= INLINE_PROMPT_CHARS:
        prompt = build_prompt(prompt_input)
    else:
        prompt = await asyncio.to_thread(build_prompt, prompt_input)
    context = RunContext(prompt=prompt, vector_store_ids=store_ids, code_input_file_ids=code_inputs)
    for step in steps:
        if step["type"] == "message_creation":
            context.pending_images, context.pending_files = [], []
            continue
        for call in step["step_details"]["tool_calls"]:
            if call.get("type") == "file_search":
                for index, result in enumerate(call["file_search"].get("results") or []):
                    context.sources[(context.file_searches, index)] = result["file_id"]
                context.file_searches += 1
            elif call.get("type") == "code_interpreter":
                context.code_files.update(call.get("_files") or {})
                context.pending_files += (call.get("_files") or {}).values()
                outputs = call["code_interpreter"].get("outputs") or []
                context.pending_images += [o["image"]["file_id"] for o in outputs if o["type"] == "image"]
    return context


async def _thread_messages(
    db: Database, run: Mapping[str, Any], budget: int
) -> tuple[list[dict[str, Any]], list[int]]:
    """The thread's messages, other than the run's own, that a prompt within ``budget`` tokens can
    hold (wire dicts, oldest first), and the tokens of each: read newest first, a page at a time,
    until they alone exceed the budget (build_prompt keeps the newest that fit, so older ones could
    never be in it), or until ``last_messages`` of them when the run truncates so."""
    strategy = run["truncation_strategy"] or {}
    last_n = strategy.get("last_messages") if strategy.get("type") == "last_messages" else None
    newest_first: list[dict[str, Any]] = []
    costs: list[int] = []
    spent = 0
    before = _NEWEST
    while True:
        values = {"thread_id": run["thread_id"], "before": before, "limit": PROMPT_PAGE_MESSAGES}
        async with db.reader() as runner:
            page = await runner.rows(_THREAD_PAGE, values)
        for row in page:
            if row["run_id"] != run["id"]:
                message = message_to_wire(row)
                newest_first.append(message)
                costs.append(count_chat_message(message_to_chat(message)))
                spent += costs[-1]
        if len(page) < PROMPT_PAGE_MESSAGES or spent > budget:
            break
        if last_n is not None and len(newest_first) >= last_n:
            break
        before = page[-1]["seq"]
        # A SQLite read never suspends: without this, the pages would run back to back.
        await asyncio.sleep(0)
    newest_first.reverse()
    costs.reverse()
    return newest_first, costs


def _text_size(prompt: PromptInput) -> int:
    size = len(prompt.instructions or "") + len(prompt.additional_instructions or "")
    for message in prompt.thread_messages:
        for part in message["content"]:
            if part.get("type") == "text":
                size += len(part["text"]["value"])
    for turn in prompt.run_turns:
        size += len(str(turn.get("content") or "")) + len(str(turn.get("tool_calls") or ""))
    return size


async def _store_ids(conn: Any, run: Mapping[str, Any]) -> list[str]:
    """The assistant's and the thread's file_search vector stores."""
    ids: list[str] = []
    for table, key in ((tables.assistants, run["assistant_id"]), (tables.threads, run["thread_id"])):
        resources = (await conn.execute(select(table.c.tool_resources).where(table.c.id == key))).scalar()
        ids.extend(((resources or {}).get("file_search") or {}).get("vector_store_ids") or [])
    return list(dict.fromkeys(ids))


def _has_tool(run: Mapping[str, Any], kind: str) -> bool:
    return any(t.get("type") == kind for t in run["tools"])


async def _code_file_ids(conn: Any, run: Mapping[str, Any]) -> list[str]:
    """The assistant's and the thread's code_interpreter files, and files attached for it."""
    ids: list[str] = []
    for table, key in ((tables.assistants, run["assistant_id"]), (tables.threads, run["thread_id"])):
        resources = (await conn.execute(select(table.c.tool_resources).where(table.c.id == key))).scalar()
        ids.extend(((resources or {}).get("code_interpreter") or {}).get("file_ids") or [])
    m = tables.messages
    rows = await conn.execute(select(m.c.attachments).where(m.c.thread_id == run["thread_id"]))
    for (attachments,) in rows:
        for attachment in attachments or []:
            if any(t.get("type") == "code_interpreter" for t in attachment.get("tools") or []):
                ids.append(attachment["file_id"])
    return list(dict.fromkeys(ids))


def run_turns(steps: Any, own_messages: dict[str, Any]) -> list[dict[str, Any]]:
    """The chat history this run has produced so far, in order: its messages and answered tool calls."""
    turns: list[dict[str, Any]] = []
    for step in steps:
        details = step["step_details"]
        if step["type"] == "message_creation":
            message = own_messages.get(details["message_creation"]["message_id"])
            if message is not None and message["content"]:
                text = "".join(p["text"]["value"] for p in message["content"] if p.get("type") == "text")
                turns.append({"role": "assistant", "content": text})
        elif step["status"] == StepStatus.completed and details["tool_calls"]:
            calls = details["tool_calls"]
            turns.append(tool_calls_turn(calls))
            turns.extend(
                {"role": "tool", "tool_call_id": c["id"], "content": call_output(c) or ""} for c in calls
            )
    return turns
