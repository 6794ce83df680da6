"""The tool boundary: what a tool is to the run engine, and the registry that finds one by the type an
assistant's tool names (``{"type": "file_search"}``).

Every tool, built-in or a client's function, answers the same questions (``Tool``): how it is offered
to the model (a Chat Completions function tool), how a call the model makes streams into the run step
and is recorded there, whether the server runs it (and how), which ``tool_resources`` it reads, what
it keeps across a run's turns, and what it adds to the run's messages (annotations, images,
attachments). The engine (``services/run_turn.py`` and its neighbours) asks these questions through
the registry and names no tool.

A tool gets what it may use through a ``ToolHost`` (the database, settings, sandbox kernels, search,
and the few service functions it needs), never the executor, and never imports ``services``.
"""

from __future__ import annotations

import builtins
import copy
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, ClassVar, Protocol

from sqlalchemy import select

from openassistants.schemas.common import RequestModel, accept_tool_schema, refuse_tool_schema
from openassistants.storage import tables

if TYPE_CHECKING:
    from pathlib import Path

    from sqlalchemy.ext.asyncio import AsyncConnection

    from openassistants.code_interpreter.manager import KernelManager
    from openassistants.config import Settings
    from openassistants.retrieval.ranking import Ranking
    from openassistants.storage.blobs import BlobStore
    from openassistants.storage.db import Database


class Searcher(Protocol):
    """Hybrid search over vector stores (``services/search.Searcher``)."""

    # Only what file_search passes.
    async def search(
        self,
        store_ids: list[str],
        queries_: list[str],
        *,
        max_results: int,
        score_threshold: float = ...,
        filters: Any = ...,
        ranking: Ranking = ...,
    ) -> list[Any]: ...


class ToolHost(Protocol):
    """What the process executing a run lends its tools (``services/tool_host.py`` builds it)."""

    db: Database
    settings: Settings
    #: None where file_search is not served.
    searcher: Searcher | None
    #: None in a process that executes no runs.
    blobs: BlobStore | None
    kernels: KernelManager | None

    async def read_file(self, tenant: str, file_id: str) -> bytes:
        """A tenant's File's bytes."""

    async def create_output_file(self, tenant: str, path: Path, name: str) -> str:
        """Stores ``path`` as a new File (``purpose: assistants_output``) named ``name``; its id."""

    async def usable_store_ids(self, conn: AsyncConnection, tenant: str, ids: list[str]) -> list[str]:
        """The vector stores among ``ids`` that are the tenant's and not expired."""


@dataclass
class ToolCall:
    """One call the model made in a turn, as it streams in and once it ran."""

    id: str
    name: str = ""
    arguments: str = ""
    #: The assistant tool type the call is for ("function", "file_search", …).
    type: str = "function"
    #: A call the server ran: its step object (e.g. file_search's results) and the text the model gets.
    result: dict[str, Any] | None = None
    output: str | None = None
    #: Recorded with the call, never shown on the wire (stored under ``_<key>``): e.g. the files a
    #: code_interpreter call made, for the next turns' annotations.
    private: dict[str, Any] = field(default_factory=dict)
    #: What the tool keeps while the call's arguments stream (code_interpreter: its code decoder).
    streaming: Any = None


@dataclass
class RunToolState:
    """What a run's tools keep across its turns, rebuilt from the run's steps before each turn."""

    #: Each offered tool's own state, by its type (``Tool.new_state``).
    by_type: dict[str, Any] = field(default_factory=dict)
    #: Images the tools made since the run's last message: they lead the next one.
    pending_images: list[str] = field(default_factory=list)
    #: Files the tools made since the run's last message: its ``attachments``.
    pending_attachments: list[dict[str, Any]] = field(default_factory=list)
    #: The offered tools that annotate messages, with their state (most runs: none, and the turn
    #: does no annotation work per delta).
    annotating: list[tuple[Tool, Any]] = field(default_factory=list)


@dataclass
class ToolContext:
    """What one call of a server-run tool may use."""

    host: ToolHost
    run: Mapping[str, Any]
    #: This tool's state for the run (``Tool.new_state``).
    state: Any
    #: The run's tool state (pending images and attachments for its next message).
    run_state: RunToolState
    #: Streams a delta of the call's step: the call's entries (``{"index", "type", <type>: …}``).
    step_delta: Callable[[list[dict[str, Any]]], None]


@dataclass(frozen=True)
class Resource:
    """The ``tool_resources`` a tool reads: ``tool_resources.<tool type>.<key>``, a list of ids of
    ``kind`` (a ``file`` or a ``vector_store``), checked to be the tenant's when stored."""

    key: str
    kind: str


class Tool(Protocol):
    """An assistant tool type. ``ServerTool`` gives the defaults a new built-in tool starts from."""

    #: The assistant tool's ``type``, and the name of the function the model calls (but for
    #: ``function``, whose name is the client's).
    type: ClassVar[str]
    #: Whether the server runs its calls; else the client does, and the run stops for them.
    runs_on_server: ClassVar[bool]
    #: The tool_resources it reads, if any.
    resource: ClassVar[Resource | None]
    #: Whether its results annotate messages (``annotations``).
    annotates: ClassVar[bool]
    #: The request body form of the assistant tool, for a tool registered beyond the built-in ones
    #: (theirs are in ``schemas/common.py``'s ``Tool`` union, which the OpenAPI document shows).
    request_model: ClassVar[builtins.type[RequestModel] | None]

    def for_model(self, definition: Mapping[str, Any]) -> dict[str, Any]:
        """The Chat Completions function tool the model is offered for the assistant tool ``definition``."""

    def call_name(self, definition: Mapping[str, Any]) -> str:
        """The function name the model's calls to it have."""

    def announce(self, index: int, call: ToolCall) -> dict[str, Any]:
        """The call's entry in the step delta announcing it (its first arguments are in ``call``)."""

    def stream(self, index: int, call: ToolCall, fragment: str, name: str | None) -> dict[str, Any] | None:
        """The call's entry in a step delta for more of its arguments (``fragment``; a function's
        ``name`` may also grow); None: nothing to stream."""

    def recorded(self, call: ToolCall) -> dict[str, Any]:
        """The call as its run step stores it (private keys start with ``_``)."""

    def public(self, recorded: Mapping[str, Any], *, include_content: bool) -> dict[str, Any]:
        """A recorded call as the API shows it (``include_content``: file_search's ``include[]``)."""

    def new_state(self) -> Any:
        """What the tool keeps across a run's turns (None: nothing)."""

    async def prepare(
        self, host: ToolHost, conn: AsyncConnection, run: Mapping[str, Any], state: Any
    ) -> None:
        """Before a turn: load what the run's tool_resources give the tool into ``state``."""

    async def wait_ready(self, db: Database, run: Mapping[str, Any]) -> None:
        """Before a run's first turn: wait (a bounded time) until its resources are usable."""

    def replay(self, recorded: Mapping[str, Any], state: Any, run_state: RunToolState) -> None:
        """Before a turn: take up what an earlier call of this run (as recorded) left in the state."""

    async def execute(self, context: ToolContext, index: int, call: ToolCall) -> None:
        """Runs call number ``index`` of the turn: fills in ``call.result`` and ``call.output``."""

    def annotations(self, state: Any, text: str) -> list[dict[str, Any]]:
        """The annotations the tool's results give a message with ``text``."""

    def streams_annotations(self, state: Any, piece: str, text: str) -> bool:
        """While ``text`` streams (``piece`` its newest part): whether the piece may have settled one
        of the tool's annotations (else the turn computes none for this delta)."""

    def unsettled_from(self, state: Any, text: str) -> int:
        """Where the first of the tool's annotations that later text could still change (or that
        could still appear and sort first) may begin; ``len(text)``: none."""


class ToolBase:
    """What a tool without resources, state or annotations answers: nothing to do."""

    resource: ClassVar[Resource | None] = None
    request_model: ClassVar[builtins.type[RequestModel] | None] = None
    annotates: ClassVar[bool] = False
    #: What the tool keeps across a run's turns, made empty for each turn (None: nothing).
    state_type: ClassVar[builtins.type | None] = None

    def public(self, recorded: Mapping[str, Any], *, include_content: bool) -> dict[str, Any]:
        return without_private(recorded)

    def new_state(self) -> Any:
        return self.state_type() if self.state_type is not None else None

    async def prepare(
        self, host: ToolHost, conn: AsyncConnection, run: Mapping[str, Any], state: Any
    ) -> None:
        return None

    async def wait_ready(self, db: Database, run: Mapping[str, Any]) -> None:
        return None

    def replay(self, recorded: Mapping[str, Any], state: Any, run_state: RunToolState) -> None:
        return None

    def annotations(self, state: Any, text: str) -> list[dict[str, Any]]:
        return []

    def streams_annotations(self, state: Any, piece: str, text: str) -> bool:
        return False

    def unsettled_from(self, state: Any, text: str) -> int:
        return len(text)


class ServerTool(ToolBase):
    """Defaults for a tool the server runs: offered as ``{name: type, description, parameters}``,
    announced once, its arguments not streamed, recorded as ``{id, type, <type>: result}``. A new
    tool sets ``type``, ``description`` and ``parameters`` (and a ``request_model`` unless it is in
    ``schemas/common.py``), and writes ``execute``."""

    runs_on_server: ClassVar[bool] = True
    type: ClassVar[str]
    description: ClassVar[str]
    parameters: ClassVar[dict[str, Any]]
    #: The call's step object before (or without) a result.
    empty_result: ClassVar[dict[str, Any]] = {}

    def for_model(self, definition: Mapping[str, Any]) -> dict[str, Any]:
        function = {"name": self.type, "description": self.description, "parameters": self.parameters}
        return {"type": "function", "function": copy.deepcopy(function)}

    def call_name(self, definition: Mapping[str, Any]) -> str:
        return self.type

    def announce(self, index: int, call: ToolCall) -> dict[str, Any]:
        # The arguments are ours to run, not to stream.
        return {"index": index, "id": call.id, "type": self.type, self.type: {}}

    def stream(self, index: int, call: ToolCall, fragment: str, name: str | None) -> dict[str, Any] | None:
        return None

    def recorded(self, call: ToolCall) -> dict[str, Any]:
        recorded: dict[str, Any] = {
            "id": call.id,
            "type": self.type,
            self.type: call.result or copy.deepcopy(self.empty_result),
            # Ours: kept for the next prompt, never sent on the wire.
            "_arguments": call.arguments,
            "_output": call.output or "",
        }
        recorded.update({f"_{key}": value for key, value in call.private.items()})
        return recorded

    async def execute(self, context: ToolContext, index: int, call: ToolCall) -> None:
        raise NotImplementedError


def one_string(name: str, description: str) -> dict[str, Any]:
    """The JSON schema of a function's parameters that are one required string, ``name``."""
    return {
        "type": "object",
        "properties": {name: {"type": "string", "description": description}},
        "required": [name],
    }


def without_private(recorded: Mapping[str, Any]) -> dict[str, Any]:
    return {key: value for key, value in recorded.items() if not key.startswith("_")}


async def resource_ids(conn: AsyncConnection, run: Mapping[str, Any], tool: str, key: str) -> list[str]:
    """The ids ``tool_resources.<tool>.<key>`` lists on the run's assistant and its thread, in order."""
    ids: list[str] = []
    for table, row_id in ((tables.assistants, run["assistant_id"]), (tables.threads, run["thread_id"])):
        resources = (await conn.execute(select(table.c.tool_resources).where(table.c.id == row_id))).scalar()
        ids.extend(((resources or {}).get(tool) or {}).get(key) or [])
    return list(dict.fromkeys(ids))


class Registry:
    """The tools this server knows, by type. Built with the built-in ones (``tools/registry.py``);
    ``register`` adds one more at start-up (or in a test), its request body accepted from then on."""

    def __init__(self, tools: Iterable[Tool]) -> None:
        self._tools: dict[str, Tool] = {tool.type: tool for tool in tools}

    def register(self, tool: Tool) -> None:
        if tool.request_model is not None:
            accept_tool_schema(tool.type, tool.request_model)
        self._tools[tool.type] = tool

    def unregister(self, kind: str) -> None:
        self._tools.pop(kind, None)
        refuse_tool_schema(kind)

    def get(self, kind: str) -> Tool | None:
        return self._tools.get(kind)

    def __getitem__(self, kind: str) -> Tool:
        return self._tools[kind]

    def offered(self, definitions: Iterable[dict[str, Any]]) -> list[dict[str, Any]]:
        """The assistant tools among ``definitions`` this server offers the model (those it knows)."""
        return [d for d in definitions if d.get("type") in self._tools]

    def by_call_name(self, definitions: Iterable[Mapping[str, Any]]) -> dict[str, Tool]:
        """The offered tools by the name the model's calls give; a tool the server runs wins over a
        client's function of the same name."""
        found: dict[str, Tool] = {}
        for definition in sorted(definitions, key=lambda d: d.get("type") != "function"):
            tool = self._tools.get(str(definition.get("type")))
            if tool is not None:
                found[tool.call_name(definition)] = tool
        return found

    def with_resources(self) -> list[tuple[str, Resource]]:
        """The tool types that read tool_resources, and what they read."""
        return [(kind, tool.resource) for kind, tool in self._tools.items() if tool.resource is not None]
