"""Which directories of a kernels work root belong to a live manager.

Several processes share one work root (compose's API and worker containers mount the same data
volume), each in its own pid namespace, so a pid in a directory's name says nothing about whether its
owner lives: another container's live manager looks gone, and a restarted container's new process may
carry a dead one's pid. So each manager holds an exclusive ``flock`` on a lock file in its directory
for as long as it lives; the kernel drops the lock when the process ends, however it ends. A directory
whose lock can be taken is abandoned, and whoever takes it holds it while removing the directory, so
that two cleaners never work on one directory at once.

flock, not fcntl's record locks: a flock belongs to the open file description, so a second open of the
same lock file, even in the owning process, cannot take it (record locks belong to the process, which
would find its own directory abandoned and lose all of them when it closes any descriptor of the file).
"""

from __future__ import annotations

import contextlib
import fcntl
import os
from collections.abc import Iterator
from pathlib import Path

#: In each manager's directory; its owner holds an exclusive flock on it while it lives.
LOCK_FILE = "owner.lock"


class Ownership:
    """Makes ``directory`` (``<work root>/<pid>-<random>``, not yet there) and holds its lock until
    ``release``."""

    def __init__(self, directory: Path) -> None:
        # Made and locked under a name cleaners never consider, then renamed into place: under its own
        # name it is never seen unlocked, when another container's cleaner would judge it by its pid.
        # (A process killed between the two leaves that empty staging directory behind.)
        staging = directory.with_name(f".{directory.name}")
        staging.mkdir(mode=0o700)
        self._lock = os.open(staging / LOCK_FILE, os.O_RDWR | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o600)
        fcntl.flock(self._lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        staging.rename(directory)

    def release(self) -> None:
        """Give up the directory (after removing it, so that no cleaner races the removal)."""
        if self._lock >= 0:
            os.close(self._lock)
            self._lock = -1


@contextlib.contextmanager
def claim_if_abandoned(directory: Path) -> Iterator[bool]:
    """Yields whether ``directory``, in a kernels work root, is a manager's that is gone: only then may
    its kernels' mounts and files be removed (a live manager's kernels keep using them). When it is, its
    lock is held until the block ends, so no other cleaner takes it meanwhile.

    Directories without a lock file (made by versions before the lock, or mid-removal) are judged by
    the pid in their name, as those versions did; names not of the form ``<pid>-…`` are never abandoned."""
    pid, _, _ = directory.name.partition("-")
    if not pid.isdigit():
        yield False
        return
    try:
        # Opened for writing: NFS clients emulate flock with byte-range write locks, which need it.
        lock = os.open(directory / LOCK_FILE, os.O_RDWR | os.O_CLOEXEC)
    except FileNotFoundError:
        yield not _process_exists(int(pid))
        return
    except OSError:  # not ours to judge (another user's, or the directory went away)
        yield False
        return
    try:
        try:
            fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:  # held (BlockingIOError): its manager lives; any other failure: keep it too
            yield False
        else:
            yield True
    finally:
        os.close(lock)


def is_abandoned(directory: Path) -> bool:
    """Whether ``directory`` is a gone manager's (see ``claim_if_abandoned``), its lock not kept."""
    with claim_if_abandoned(directory) as abandoned:
        return abandoned


def _process_exists(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True
