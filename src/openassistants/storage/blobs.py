"""File bytes ("blobs"): the ``BlobStore`` boundary and its local-disk implementation.

Blobs are named by our own ids (``<tenant>/file-…``), never by a user's filename, so no request can
name a path outside the store. A new blob is staged in a hidden temporary file in the store's
directory, streamed there chunk by chunk, flushed to disk and only then renamed to its key (same
filesystem, so the rename is atomic): a crash mid-upload leaves a ``.part`` file that no key names,
never half a blob.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import re
import tempfile
import time
from collections.abc import AsyncIterator
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from pathlib import Path
from typing import BinaryIO, Protocol

#: Bytes per read when streaming a blob out, and how much a staged blob buffers before each disk write
#: (one thread hop per MiB rather than one per network read of a few KiB).
CHUNK_BYTES = 1024 * 1024
#: Keys are made of our own ids (``<tenant>/<file id>``); anything else is a bug, refused before it can
#: become a path.
_KEY = re.compile(r"[A-Za-z0-9_-]{1,64}(/[A-Za-z0-9_-]{1,64})?")
_STAGING_PREFIX = ".upload-"
#: A staged file untouched this long was left by an upload whose process died (a live upload writes
#: at least every CHUNK_BYTES); it is removed when a store opens.
STALE_STAGING_SECONDS = 24 * 3600


class StagedBlob(Protocol):
    """A blob being written; visible under a key only once committed."""

    @property
    def size(self) -> int:
        """Bytes written so far."""

    async def write(self, data: bytes) -> None: ...

    async def commit(self, key: str) -> None:
        """Makes the bytes written so far the blob ``key``, all at once."""


class BlobStore(Protocol):
    def stage(self) -> AbstractAsyncContextManager[StagedBlob]:
        """A new blob to write; discarded when the block ends without ``commit``."""

    async def open(self, key: str) -> AsyncIterator[bytes]:
        """The blob's bytes in chunks; raises FileNotFoundError (now, not while iterating) if absent."""

    async def read(self, key: str) -> bytes:
        """The whole blob; raises FileNotFoundError if absent."""

    async def delete(self, key: str) -> None:
        """Removes the blob; an absent one is already removed."""


class LocalBlobStore:
    """Blobs as files under one directory (``<data_dir>/files/<tenant>/<file id>``)."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.root.mkdir(parents=True, exist_ok=True)
        self._remove_stale_staging()

    def path(self, key: str) -> Path:
        if not _KEY.fullmatch(key):
            raise ValueError(f"not a blob key: {key!r}")
        return self.root / key

    @asynccontextmanager
    async def stage(self) -> AsyncIterator[StagedBlob]:
        # In the store's directory, so the final rename never crosses a filesystem.
        fd, name = await asyncio.to_thread(
            tempfile.mkstemp, dir=self.root, prefix=_STAGING_PREFIX, suffix=".part"
        )
        staged = _LocalStagedBlob(self, os.fdopen(fd, "wb"), Path(name))
        try:
            yield staged
        finally:
            staged.discard()

    async def open(self, key: str) -> AsyncIterator[bytes]:
        handle = await asyncio.to_thread(self.path(key).open, "rb")
        return _chunks(handle)

    async def read(self, key: str) -> bytes:
        return await asyncio.to_thread(self.path(key).read_bytes)

    async def delete(self, key: str) -> None:
        await asyncio.to_thread(self.path(key).unlink, missing_ok=True)

    def _remove_stale_staging(self) -> None:
        cutoff = time.time() - STALE_STAGING_SECONDS
        for staged in self.root.glob(f"{_STAGING_PREFIX}*.part"):
            with contextlib.suppress(FileNotFoundError):  # another process got there first
                if staged.stat().st_mtime < cutoff:
                    staged.unlink()


class _LocalStagedBlob:
    def __init__(self, store: LocalBlobStore, handle: BinaryIO, path: Path) -> None:
        self._store = store
        self._handle = handle
        self._path = path
        self._buffer = bytearray()
        self._committed = False
        self.size = 0

    async def write(self, data: bytes) -> None:
        self._buffer += data
        self.size += len(data)
        if len(self._buffer) >= CHUNK_BYTES:
            await self._flush()

    async def commit(self, key: str) -> None:
        target = self._store.path(key)
        await self._flush()
        await asyncio.to_thread(_persist, self._handle, self._path, target)
        self._committed = True

    def discard(self) -> None:
        # Synchronous: it runs while a request is being cancelled, where anyio cancels every await.
        self._handle.close()
        if not self._committed:
            self._path.unlink(missing_ok=True)

    async def _flush(self) -> None:
        if self._buffer:
            data, self._buffer = bytes(self._buffer), bytearray()
            await asyncio.to_thread(self._handle.write, data)


def _persist(handle: BinaryIO, staged: Path, target: Path) -> None:
    """fsync, rename into place, and fsync the directory so the rename itself survives a crash."""
    os.fsync(handle.fileno())
    handle.close()
    target.parent.mkdir(exist_ok=True)
    os.replace(staged, target)
    directory = os.open(target.parent, os.O_RDONLY)
    try:
        os.fsync(directory)
    finally:
        os.close(directory)


async def _chunks(handle: BinaryIO) -> AsyncIterator[bytes]:
    try:
        while chunk := await asyncio.to_thread(handle.read, CHUNK_BYTES):
            yield chunk
    finally:
        # Synchronous: a client that has all Content-Length bytes may hang up before our last, empty
        # read; Starlette then cancels the stream, and anyio's cancellation interrupts every await.
        handle.close()
