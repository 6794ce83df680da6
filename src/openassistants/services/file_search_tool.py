"""The ``file_search`` tool: the model's query in, ranked chunks out — to the model as text with
source markers it is told to cite, and to the run step as ``file_search`` results; the markers in the
reply then become ``file_citation`` annotations.

Markers follow the hosted API's convention, ``【{search}:{result}†{file name}】``: ``search`` counts
this run's file_search calls, ``result`` the chunk within that call.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from pydantic import TypeAdapter

from openassistants.schemas.vector_stores import ComparisonFilter, CompoundFilter

if TYPE_CHECKING:
    from openassistants.services.search import Searcher, SearchResult

from openassistants.retrieval.ranking import DEFAULT_RANKING, Ranking

DEFAULT_MAX_RESULTS = 20
MARKER = re.compile(r"【(\d+):(\d+)†([^】]*)】")


#: A stored tool's attribute filter (the Responses API's ``file_search.filters``) as search takes it.
_FILTER: TypeAdapter[ComparisonFilter | CompoundFilter] = TypeAdapter(ComparisonFilter | CompoundFilter)


@dataclass(frozen=True)
class FileSearchOptions:
    max_num_results: int = DEFAULT_MAX_RESULTS
    score_threshold: float = 0.0
    ranking: Ranking = DEFAULT_RANKING
    filters: ComparisonFilter | CompoundFilter | None = None

    @classmethod
    def from_tools(cls, tools: list[dict[str, Any]]) -> FileSearchOptions:
        for tool in tools:
            if tool.get("type") == "file_search":
                options = tool.get("file_search") or {}
                ranking = options.get("ranking_options") or {}
                return cls(
                    max_num_results=options.get("max_num_results") or DEFAULT_MAX_RESULTS,
                    score_threshold=ranking.get("score_threshold", 0.0),
                    ranking=Ranking.from_options(ranking),
                    filters=_FILTER.validate_python(options["filters"]) if options.get("filters") else None,
                )
        return cls()


def query_of(arguments: str) -> str | None:
    """The ``query`` the model asked for, or None when its arguments are not usable."""
    try:
        value = json.loads(arguments or "{}")
    except json.JSONDecodeError:
        return None
    query = value.get("query") if isinstance(value, dict) else None
    return query if isinstance(query, str) and query.strip() else None


async def run_file_search(
    searcher: Searcher | None, store_ids: list[str], arguments: str, options: FileSearchOptions, ordinal: int
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


def _result_to_step(result: SearchResult) -> dict[str, Any]:
    return {
        "file_id": result.file_id,
        "file_name": result.filename,
        "score": round(result.score, 6),
        "content": [{"type": "text", "text": result.text}],
    }


def _text_for_model(results: list[SearchResult], ordinal: int) -> str:
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
