"""Which kind of input a path is, opened and checked whole: an openassistants archive, an
``assistants-thread-export/v1`` export (a folder or one thread record), or a folder of SDK dumps."""

from __future__ import annotations

from pathlib import Path

from openassistants.portability.archive import ArchiveSource, is_archive
from openassistants.portability.foreign import (
    THREAD_EXPORT,
    is_thread_export,
    read_sdk_dumps,
    read_thread_export,
)
from openassistants.portability.importer import Source
from openassistants.portability.records import BadInput


def open_source(path: Path) -> Source:
    """The input at ``path``, checked; raises BadInput naming what is wrong."""
    if not path.exists():
        raise BadInput(f"{path}: no such file or directory")
    if path.is_dir() and is_archive(path):
        return ArchiveSource(path)
    if is_thread_export(path):
        return read_thread_export(path)
    if path.is_dir():
        return read_sdk_dumps(path)
    raise BadInput(
        f"{path}: not an openassistants archive (a folder with manifest.json), an {THREAD_EXPORT} "
        "export, or a folder of SDK JSON dumps"
    )
