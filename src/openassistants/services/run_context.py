"""What one model turn of a run needs to know, loaded fresh before each turn: the prompt (thread
messages plus this run's own messages and answered tool calls), and what the run's tools read from
their tool_resources and kept from the run's earlier calls (``tools/base.RunToolState``)."""

from __future__ import annotations

import asyncio
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import bindparam, func, select, true
from sqlalchemy.dialects.postgresql import ARRAY

from openassistants.services.messages import message_to_wire
from openassistants.services.prompt import Prompt, PromptInput, build_prompt, message_to_chat, prompt_budget
from openassistants.services.responses.hooks import is_replayed, is_response_run, thread_history
from openassistants.services.tool_turns import call_output, tool_calls_turn
from openassistants.statuses import StepStatus
from openassistants.storage import tables
from openassistants.storage.db import Database
from openassistants.storage.group_commit import GroupCommit
from openassistants.storage.prepared import Prepared, Row
from openassistants.tokens import count_chat_message
from openassistants.tools.base import RunToolState, Tool, ToolHost
from openassistants.tools.registry import TOOLS


@dataclass
class RunContext:
    prompt: Prompt
    #: The offered tools by the name the model's calls give (``tools/base.Registry.by_call_name``).
    tools_by_call_name: dict[str, Tool]
    #: What the run's tools keep across its turns.
    tools: RunToolState = field(default_factory=RunToolState)


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


def _first_pages() -> Prepared:
    """For each thread of the ``thread_ids`` array, ``o`` its place in it, its first page (the newest
    PROMPT_PAGE_MESSAGES messages): one statement for every turn starting meanwhile."""
    wanted = (
        func.unnest(bindparam("thread_ids", type_=ARRAY(M.c.thread_id.type)))
        .table_valued("thread_id", with_ordinality="o")
        .render_derived(name="wanted")
    )
    page = (
        select(M)
        .where(M.c.thread_id == wanted.c.thread_id)
        .order_by(M.c.seq.desc())
        .limit(PROMPT_PAGE_MESSAGES)
        .lateral("page")
    )
    return Prepared(
        select(wanted.c.o, *page.c)
        .select_from(wanted.join(page, true()))
        .order_by(wanted.c.o, page.c.seq.desc())
    )


_FIRST_PAGES = _first_pages()
#: Threads whose first page one statement reads, at most.
FIRST_PAGES_MOST = 128


async def _read_first_pages(db: Database, thread_ids: list[str]) -> list[list[Row]]:
    """``GroupCommit``'s batch for reads: each thread's first page, in one round trip."""
    async with db.reader() as reader:
        rows = await reader.rows(_FIRST_PAGES, {"thread_ids": thread_ids})
    pages: list[list[Row]] = [[] for _ in thread_ids]
    for row in rows:
        pages[row.pop("o") - 1].append(row)
    return pages


#: On PostgreSQL, the first pages of turns starting while one such read is out are read together by
#: the next: a burst of runs once took a round trip, and a pooled connection, each (500 runs queued
#: for the 8 read connections for up to a second, and run creations' own reads queued behind them).
_FIRST_PAGE_READS: GroupCommit[Database, str, list[Row]] = GroupCommit(
    _read_first_pages, most=FIRST_PAGES_MOST
)

#: Prompts up to this many characters are built on the event loop (tokenizing them takes well under
#: a millisecond), longer ones in a thread.
INLINE_PROMPT_CHARS = 8000


async def wait_for_tools(db: Database, run: Mapping[str, Any]) -> None:
    """Before a run's first turn: each offered tool waits (a bounded time) until its resources are
    usable (file_search: until files just attached finished ingesting, as the hosted API does)."""
    for definition in TOOLS.offered(run["tools"]):
        await TOOLS[definition["type"]].wait_ready(db, run)


def offered_tools(run: Mapping[str, Any]) -> list[dict[str, Any]]:
    return TOOLS.offered(run["tools"])


async def load_run_context(host: ToolHost, run: Mapping[str, Any], *, has_steps: bool = True) -> RunContext:
    """``has_steps`` False: the run has none yet (its first turn), so they are not queried."""
    db, settings = host.db, host.settings
    max_completion = run["max_completion_tokens"]
    reserve = settings.completion_reserve_tokens
    if max_completion is not None:
        reserve = min(reserve, int(max_completion))
    context_window = settings.model_context_windows.get(run["model"], settings.default_context_window)
    budget = prompt_budget(context_window, reserve, run["max_prompt_tokens"])
    response = is_response_run(run)
    # One connection for the turn's first reads (each checkout costs about as much as a statement on
    # PostgreSQL). The run's own messages matter only with its steps (``run_turns``): a first turn,
    # which has none, reads neither. On PostgreSQL the thread's first page is read with other turns'
    # (``_FIRST_PAGE_READS``).
    own_rows: Sequence[Any] = []
    steps: Sequence[Any] = []
    first_page: Sequence[Any] = []
    batched = not db.is_sqlite and not response
    if has_steps or not batched:
        async with db.reader() as runner:
            if has_steps:
                own_rows = await runner.rows(
                    _OWN_MESSAGES, {"thread_id": run["thread_id"], "run_id": run["id"]}
                )
                steps = await runner.rows(_RUN_STEPS, {"run_id": run["id"]})
            if not (response or batched):
                first_page = await runner.rows(_THREAD_PAGE, _page_values(run, _NEWEST))
    if batched:
        first_page = await _FIRST_PAGE_READS.submit(db, run["thread_id"])
    thread_message_tokens: list[int] | None = None
    truncation_strategy = run["truncation_strategy"]
    if response:
        # A response's history spans its chain's threads and the calls a client replayed
        # (services/responses/hooks.py): read whole, as it places steps among the messages.
        async with db.reader() as runner:
            rows = await runner.rows(_THREAD_MESSAGES, {"thread_id": run["thread_id"]})
        thread_messages, truncation = await thread_history(db, run, rows)
        if truncation == "disabled":
            truncation_strategy = {"type": "disabled"}
        steps = [s for s in steps if not is_replayed(s)]
    else:
        thread_messages, thread_message_tokens = await _thread_messages(db, run, budget, first_page)
    offered = offered_tools(run)
    state = RunToolState({d["type"]: TOOLS[d["type"]].new_state() for d in offered})
    state.annotating = [
        (TOOLS[kind], kind_state) for kind, kind_state in state.by_type.items() if TOOLS[kind].annotates
    ]
    with_resources = [d["type"] for d in offered if TOOLS[d["type"]].resource is not None]
    if with_resources:
        async with db.read() as conn:
            for kind in with_resources:
                await TOOLS[kind].prepare(host, conn, run, state.by_type[kind])
    own = {m["id"]: m for m in own_rows}
    prompt_input = PromptInput(
        instructions=run["instructions"],
        additional_instructions=run["additional_instructions"],
        thread_messages=thread_messages,
        run_turns=run_turns(steps, own),
        tools=offered,
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
    for step in steps:
        if step["type"] == "message_creation":
            # What the tools made before a message went with it.
            state.pending_images, state.pending_attachments = [], []
            continue
        for call in step["step_details"]["tool_calls"]:
            tool = TOOLS.get(call.get("type"))
            if tool is not None and call.get("type") in state.by_type:
                tool.replay(call, state.by_type[call["type"]], state)
    return RunContext(prompt=prompt, tools_by_call_name=TOOLS.by_call_name(offered), tools=state)


def _page_values(run: Mapping[str, Any], before: int) -> dict[str, Any]:
    return {"thread_id": run["thread_id"], "before": before, "limit": PROMPT_PAGE_MESSAGES}


async def _thread_messages(
    db: Database, run: Mapping[str, Any], budget: int, first_page: Sequence[Any]
) -> tuple[list[dict[str, Any]], list[int]]:
    """The thread's messages, other than the run's own, that a prompt within ``budget`` tokens can
    hold (wire dicts, oldest first), and the tokens of each: read newest first, a page at a time
    (``first_page``, the newest, read already), until they alone exceed the budget (build_prompt
    keeps the newest that fit, so older ones could never be in it), or until ``last_messages`` of
    them when the run truncates so."""
    strategy = run["truncation_strategy"] or {}
    last_n = strategy.get("last_messages") if strategy.get("type") == "last_messages" else None
    newest_first: list[dict[str, Any]] = []
    costs: list[int] = []
    spent = 0
    page = first_page
    while True:
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
        # A SQLite read never suspends: without this, the pages would run back to back.
        await asyncio.sleep(0)
        async with db.reader() as runner:
            page = await runner.rows(_THREAD_PAGE, _page_values(run, page[-1]["seq"]))
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
