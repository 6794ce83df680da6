"""Helpers for the export/import tests: the CLI as a real subprocess, and whole lists through the SDK."""

from __future__ import annotations

import subprocess
import sys
from dataclasses import dataclass
from typing import Any

import openai


@dataclass
class Outcome:
    code: int
    stdout: str
    stderr: str


def cli(env: dict[str, str], *args: str) -> Outcome:
    """``python -m openassistants ARGS`` with the deployment's environment ``env``."""
    done = subprocess.run(
        [sys.executable, "-m", "openassistants", *args], env=env, capture_output=True, text=True, timeout=600
    )
    return Outcome(done.returncode, done.stdout, done.stderr)


def dump(items: Any) -> list[dict[str, Any]]:
    return [item.model_dump() for item in items]


def every_list(client: openai.OpenAI, thread_ids: list[str]) -> dict[str, Any]:
    """Every list a tenant can see, all pages (two items a page), in both orders, plus each
    object's retrieve and each file's content: what an import must reproduce exactly."""
    seen: dict[str, Any] = {}
    for order in ("asc", "desc"):
        seen[f"assistants/{order}"] = dump(client.beta.assistants.list(limit=2, order=order))
        seen[f"files/{order}"] = dump(client.files.list(limit=2, order=order))
        seen[f"vector_stores/{order}"] = dump(client.vector_stores.list(limit=2, order=order))
        for store in seen["vector_stores/asc"]:
            key = f"vector_store_files/{store['id']}/{order}"
            seen[key] = dump(client.vector_stores.files.list(store["id"], limit=2, order=order))
        for thread_id in thread_ids:
            seen[f"messages/{thread_id}/{order}"] = dump(
                client.beta.threads.messages.list(thread_id, limit=2, order=order)
            )
            runs = dump(client.beta.threads.runs.list(thread_id, limit=2, order=order))
            seen[f"runs/{thread_id}/{order}"] = runs
            for run in runs:
                seen[f"steps/{run['id']}/{order}"] = dump(
                    client.beta.threads.runs.steps.list(run["id"], thread_id=thread_id, limit=2, order=order)
                )
    for thread_id in thread_ids:
        seen[f"thread/{thread_id}"] = client.beta.threads.retrieve(thread_id).model_dump()
    for assistant in seen["assistants/asc"]:
        seen[f"assistant/{assistant['id']}"] = client.beta.assistants.retrieve(assistant["id"]).model_dump()
    for file in seen["files/asc"]:
        seen[f"content/{file['id']}"] = client.files.content(file["id"]).content
    return seen
