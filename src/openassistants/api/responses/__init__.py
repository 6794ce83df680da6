"""JSON responses rendered with orjson (every router's response class: the services hand back plain
dicts ready for the wire); the package's modules are the Responses and Conversations APIs' routes."""

from __future__ import annotations

from typing import Any

import orjson
from starlette.responses import Response


class JSONResponse(Response):
    media_type = "application/json"

    def render(self, content: Any) -> bytes:
        return orjson.dumps(content)
