"""JSON responses rendered with orjson (every router's response class: the services hand back plain
dicts ready for the wire); the package's modules are the Responses and Conversations APIs' routes."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import orjson
from starlette.responses import Response


class JSONResponse(Response):
    media_type = "application/json"

    def render(self, content: Any) -> bytes:
        return orjson.dumps(content)

    def init_headers(self, headers: Mapping[str, str] | None = None) -> None:
        if headers is None:
            # Most answers (and every one of the fast lane's): the two headers Starlette's general
            # version would add, in its order, without its checks; it costs a request ~0.5 µs.
            self.raw_headers = [
                (b"content-length", str(len(self.body)).encode()),
                (b"content-type", b"application/json"),
            ]
        else:
            super().init_headers(headers)
