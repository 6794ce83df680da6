"""The baseline: a bare FastAPI ``GET /hello`` served exactly as ``openassistants serve`` serves the API.

Same uvicorn settings as ``openassistants.cli.serve`` (uvloop, httptools, one worker, uvicorn's access
log off, same log level), so the ratio to it measures our own per-request work.

    python -m bench.hello_server --port 8001
"""

from __future__ import annotations

import argparse
import logging

import uvicorn
from fastapi import FastAPI

app = FastAPI(docs_url=None, redoc_url=None, openapi_url=None)


@app.get("/hello")
async def hello() -> dict[str, str]:
    return {"message": "hello"}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, required=True)
    args = parser.parse_args()
    logging.basicConfig(level="INFO", format="%(message)s")
    uvicorn.run(
        app,
        host=args.host,
        port=args.port,
        loop="uvloop",
        http="httptools",
        access_log=False,
        log_level="info",
        timeout_graceful_shutdown=10,
    )


if __name__ == "__main__":
    main()
