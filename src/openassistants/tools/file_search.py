"""The ``file_search`` tool: the model's query in, ranked chunks of the run's vector stores out — to
the model as text with source markers it is told to cite, and to the run step as ``file_search``
results; the markers in the reply then become ``file_citation`` annotations.

Markers follow the hosted API's convention, ``【{search}:{result}†{file name}】``: ``search`` counts
this run's file_search calls, ``result`` the chunk within that call.
"""

from __future__ import annotations

import asyncio
import json
import re
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, ClassVar, Protocol

from pydantic import TypeAdapter
from sqlalchemy import func, select

from openassistants.retrieval.ranking import DEFAULT_RANKING, Ranking
from openassistants.schemas.vector_stores import ComparisonFilter, CompoundFilter
from openassistants.statuses import FileStatus
from openassistants.storage import tables
from openassistants.tools.base import (
    Resource,
    RunToolState,
    Searcher,
    ServerTool,
    ToolCall,
    ToolContext,
    ToolHost,
    one_string,
    resource_ids,
    without_private,
)

if TYPE_CHECKING:
    from sqlalchemy.ext.asyncio import AsyncConnection

    from openassistants.storage.db import Database

DEFAULT_MAX_RESULTS = 20
MARKER = re.compile(r"【(\d+):(\d+)†([^】]*)】")
#: How long a run waits for its vector stores' files to finish ingesting before it searches them.
STORE_READY_TIMEOUT_SECONDS = 60.0

#: A stored tool's attribute filter (the Responses API's ``file_search.filters``) as search takes it.
_FILTER: TypeAdapter[ComparisonFilter | CompoundFilter] = TypeAdapter(ComparisonFilter | CompoundFilter)


class Result(Protocol):
    file_id: str
    filename: str
    score: float
    text: str


@dataclass(frozen=True)
class SearchOptions:
    """A stored file_search tool's options (its request form: ``schemas/common.FileSearchOptions``,
    or a response's ``file_search`` tool) as one search applies them."""

    max_num_results: int = DEFAULT_MAX_RESULTS
    score_threshold: float = 0.0
    ranking: Ranking = DEFAULT_RANKING
    filters: ComparisonFilter | CompoundFilter | None = None

    @classmethod
    def of(cls, definition: Mapping[str, Any]) -> SearchOptions:
        options = definition.get("file_search") or {}
        ranking = options.get("ranking_options") or {}
        return cls(
            max_num_results=options.get("max_num_results") or DEFAULT_MAX_RESULTS,
            score_threshold=ranking.get("score_threshold", 0.0),
            ranking=Ranking.from_options(ranking),
            filters=_FILTER.validate_python(options["filters"]) if options.get("filters") else None,
        )

    @classmethod
    def from_tools(cls, tools: list[dict[str, Any]]) -> SearchOptions:
        return next((cls.of(t) for t in tools if t.get("type") == "file_search"), cls())


@dataclass
class SearchState:
    """What a run's file_search keeps across its turns."""

    #: The usable vector stores of the run's assistant and thread.
    store_ids: list[str] = field(default_factory=list)
    #: (search ordinal, result index) → file id, for the markers the model cites.
    sources: dict[tuple[int, int], str] = field(default_factory=dict)
    #: How many file_search calls the run has made so far (the next call's ordinal).
    searches: int = 0


class FileSearch(ServerTool):
    type = "file_search"
    annotates = True
    state_type = SearchState
    resource: ClassVar[Resource | None] = Resource(key="vector_store_ids", kind="vector_store")
    description = (
        "Search the files the user has uploaded or attached to this conversation and return the most "
        "relevant passages. Use it whenever the answer may be in those files, and cite what you use."
    )
    parameters: ClassVar[dict[str, Any]] = one_string(
        "query", "What to look for, as a self-contained natural-language search query."
    )

    async def prepare(
        self, host: ToolHost, conn: AsyncConnection, run: Mapping[str, Any], state: SearchState
    ) -> None:
        named = await resource_ids(conn, run, self.type, "vector_store_ids")
        state.store_ids = await host.usable_store_ids(conn, run["tenant_id"], named)

    async def wait_ready(self, db: Database, run: Mapping[str, Any]) -> None:
        """Files just attached may still be ingesting; as the hosted API does, a run with file_search
        waits (a bounded time) until its vector stores are ready, so a search sees every file."""
        vf = tables.vector_store_files
        deadline = time.monotonic() + STORE_READY_TIMEOUT_SECONDS
        while time.monotonic() < deadline:
            async with db.read() as conn:
                store_ids = await resource_ids(conn, run, self.type, "vector_store_ids")
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

    def replay(self, recorded: Mapping[str, Any], state: SearchState, run_state: RunToolState) -> None:
        for index, result in enumerate(recorded["file_search"].get("results") or []):
            state.sources[(state.searches, index)] = result["file_id"]
        state.searches += 1

    async def execute(self, context: ToolContext, index: int, call: ToolCall) -> None:
        state: SearchState = context.state
        options = SearchOptions.from_tools(context.run["tools"])
        call.result, call.output = await run_file_search(
            context.host.searcher, state.store_ids, call.arguments, options, state.searches
        )
        state.searches += 1

    def public(self, recorded: Mapping[str, Any], *, include_content: bool) -> dict[str, Any]:
        """Result content only when asked for with ``include[]``."""
        call = without_private(recorded)
        results = call.get("file_search", {}).get("results")
        if not results or include_content:
            return call
        contentless = [{k: v for k, v in r.items() if k != "content"} for r in results]
        return {**call, "file_search": {**call["file_search"], "results": contentless}}

    def annotations(self, state: SearchState, text: str) -> list[dict[str, Any]]:
        return citations(text, state.sources)

    def streams_annotations(self, state: SearchState, piece: str, text: str) -> bool:
        # A citation settles when its closing 】 arrives.
        return bool(state.sources) and "】" in piece

    def unsettled_from(self, state: SearchState, text: str) -> int:
        # A citation yet to close starts at the first 【 after the last 】: it could sort first.
        if not state.sources:
            return len(text)
        pending = text.find("【", text.rfind("】") + 1)
        return len(text) if pending < 0 else pending


def query_of(arguments: str) -> str | None:
    """The ``query`` the model asked for, or None when its arguments are not usable."""
    try:
        value = json.loads(arguments or "{}")
    except json.JSONDecodeError:
        return None
    query = value.get("query") if isinstance(value, dict) else None
    return query if isinstance(query, str) and query.strip() else None


async def run_file_search(
    searcher: Searcher | None, store_ids: list[str], arguments: str, options: SearchOptions, ordinal: int
) -> tuple[dict[str, Any], str]:
    """Runs one call; returns (the step's ``file_search`` object, the text the model receives)."""
    query = query_of(arguments)
    step: dict[str, Any] = {
        # The Assistants API names one ranker, whatever chose the ranking ("auto", or a Responses
        # request's "none"/"default-2024-11-15": see ``options.ranking``).
        "ranking_options": {"ranker": "default_2024_08_21", "score_threshold": options.score_threshold},
        "results": [],
    }
    if query is None:
        return step, 'Error: file_search needs arguments like {"query": "what to look for"}.'
    if not store_ids or searcher is None:
        return step, "No files are available to search."
    results = await searcher.search(
        store_ids,
        [query],
        max_results=options.max_num_results,
        score_threshold=options.score_threshold,
        ranking=options.ranking,
        filters=options.filters,
    )
    step["results"] = [_result_to_step(r) for r in results]
    return step, _text_for_model(results, ordinal)


def _result_to_step(result: Result) -> dict[str, Any]:
    return {
        "file_id": result.file_id,
        "file_name": result.filename,
        "score": round(result.score, 6),
        "content": [{"type": "text", "text": result.text}],
    }


def _text_for_model(results: list[Result], ordinal: int) -> str:
    if not results:
        return "No results found in the files."
    blocks = [
        "Search results from the user's files. When you use a result, cite it by copying its "
        f"marker exactly as shown, e.g. {marker(ordinal, 0, results[0].filename)}."
    ]
    for index, result in enumerate(results):
        blocks.append(f"{marker(ordinal, index, result.filename)}\n{result.text}")
    return "\n\n".join(blocks)


def marker(ordinal: int, index: int, filename: str) -> str:
    return f"【{ordinal}:{index}†{filename.replace('】', '')}】"


def citations(text: str, sources: dict[tuple[int, int], str]) -> list[dict[str, Any]]:
    """``file_citation`` annotations for the markers in ``text`` that name a known result."""
    annotations = []
    for match in MARKER.finditer(text):
        file_id = sources.get((int(match.group(1)), int(match.group(2))))
        if file_id is None:
            continue
        annotations.append(
            {
                "type": "file_citation",
                "text": match.group(0),
                "start_index": match.start(),
                "end_index": match.end(),
                "file_citation": {"file_id": file_id},
            }
        )
    return annotations
