"""What a model turn needs from the process executing it: the database, settings, event bus, model
client, the built-in tools' searcher, sandbox kernels and blob store, and the pause that coalesces
deltas under load.

``Executor`` is the one host. ``ModelTurn`` depends on this protocol, not on the executor, so that
the two do not import each other (the executor starts turns; a turn only uses what it is given).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Protocol

if TYPE_CHECKING:
    from openassistants.bus.base import EventBus
    from openassistants.code_interpreter.manager import KernelManager
    from openassistants.config import Settings
    from openassistants.services.search import Searcher
    from openassistants.storage.blobs import BlobStore
    from openassistants.storage.db import Database
    from openassistants.upstream.chat import ChatClient


class TurnHost(Protocol):
    db: Database
    settings: Settings
    bus: EventBus
    chat: ChatClient
    #: None where file_search is not served (no embeddings configured).
    searcher: Searcher | None
    #: None in a process that executes no runs.
    blobs: BlobStore | None
    kernels: KernelManager | None

    def coalescing_pause(self) -> float:
        """Seconds a model stream's reader waits before its next read (0: none)."""
