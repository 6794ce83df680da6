"""A guard that the suite reads nothing beside the repository (a fresh clone has nothing there).

An audit hook (PEP 578) sees every ``open``, ``os.listdir`` and ``os.scandir`` in the test process and
its in-process servers; one whose path lies in the repository's parent folder but outside the
repository raises, so the test that did it fails where it did it. Server subprocesses are covered by
the static scan in ``tests/test_self_contained.py``.
"""

from __future__ import annotations

import os
import sys
import tempfile
from pathlib import Path

ROOT = str(Path(__file__).resolve().parent.parent)
PARENT = os.path.dirname(ROOT)
#: Where the suite's own temporary folders live (pytest's, the servers' data): allowed even when the
#: repository itself sits in it, as a clone under /tmp does; a ``shared`` folder there is still not.
TEMP = os.path.abspath(tempfile.gettempdir())
FORBIDDEN_SIBLINGS = frozenset({"shared"})
WATCHED_EVENTS = frozenset({"open", "os.listdir", "os.scandir"})


class OutsideRepositoryRead(PermissionError):
    """Raised by the audit hook for a read of a path beside the repository."""


def is_outside_repository(path: object) -> bool:
    """Whether ``path`` is the repository's parent folder or something in it outside the repository."""
    if isinstance(path, int) or path is None:
        return False
    try:
        text = os.fsdecode(os.fspath(path))  # type: ignore[arg-type]
    except TypeError:
        return False
    absolute = os.path.abspath(text)
    if absolute == PARENT:
        return PARENT != TEMP
    if not absolute.startswith(PARENT + os.sep) or absolute == ROOT or absolute.startswith(ROOT + os.sep):
        return False
    sibling = absolute[len(PARENT) + 1 :].split(os.sep, 1)[0]
    in_temp = absolute == TEMP or absolute.startswith(TEMP + os.sep)
    return sibling in FORBIDDEN_SIBLINGS or not in_temp


def _audit(event: str, args: tuple[object, ...]) -> None:
    if event in WATCHED_EVENTS and args and is_outside_repository(args[0]):
        raise OutsideRepositoryRead(f"the test suite read {args[0]!r}, outside the repository {ROOT}")


_installed = False


def install() -> None:
    """Install the hook once per process (audit hooks cannot be removed)."""
    global _installed
    if not _installed:
        sys.addaudithook(_audit)
        _installed = True
