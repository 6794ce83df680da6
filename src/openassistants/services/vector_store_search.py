"""POST /vector_stores/{id}/search: the search results page."""

from __future__ import annotations

import time
from typing import Any

from openassistants.errors import ServiceUnavailable
from openassistants.retrieval.ranking import Ranking
from openassistants.schemas.vector_stores import SearchRequest
from openassistants.services.lookup import load_vector_store
from openassistants.services.runtime import Runtime
from openassistants.services.vector_stores import touch
from openassistants.upstream.embeddings import EmbeddingError

#: A store's last_active_at moves at most this often: expiry counts in days, and a write per search
#: would queue every search behind SQLite's single writer.
TOUCH_EVERY_SECONDS = 60.0
_last_touched: dict[str, float] = {}


async def touch_soon(rt: Runtime, vector_store_id: str) -> None:
    now = time.monotonic()
    if now - _last_touched.get(vector_store_id, -TOUCH_EVERY_SECONDS) < TOUCH_EVERY_SECONDS:
        return
    _last_touched[vector_store_id] = now
    if len(_last_touched) > 10_000:
        _last_touched.clear()
    async with rt.db.write() as conn:
        await touch(conn, [vector_store_id])


async def search_vector_store(
    rt: Runtime, tenant: str, vector_store_id: str, body: SearchRequest
) -> dict[str, Any]:
    async with rt.db.read() as conn:
        store = await load_vector_store(conn, tenant, vector_store_id)
    await touch_soon(rt, vector_store_id)
    queries = [body.query] if isinstance(body.query, str) else list(body.query)
    options = body.ranking_options
    threshold = options.score_threshold if options else 0.0
    try:
        results = await rt.searcher.search(
            [vector_store_id],
            queries,
            max_results=body.max_num_results,
            score_threshold=threshold,
            filters=body.filters,
            versions={vector_store_id: store["chunks_version"]},
            ranking=Ranking.from_options(options.model_dump(exclude_none=True) if options else None),
        )
    except EmbeddingError as exc:
        raise ServiceUnavailable(f"The query could not be embedded: {exc.message}") from exc
    return {
        "object": "vector_store.search_results.page",
        # rewrite_query is accepted; the query is used as written.
        "search_query": queries,
        "data": [
            {
                "file_id": r.file_id,
                "filename": r.filename,
                "score": r.score,
                "attributes": r.attributes,
                "content": [{"type": "text", "text": r.text}],
            }
            for r in results
        ],
        "has_more": False,
        "next_page": None,
    }
