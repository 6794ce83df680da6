"""Each kernel's own uid, unique on the host: leased from a range no account uses.

RLIMIT_NPROC counts processes per uid host-wide, and processes of one uid may signal and trace each
other; so two kernels must never share a uid, whether they belong to one server process or to two
servers on the same host. A uid is leased by holding an exclusive ``flock`` on its lease file under
LEASE_DIR: the lock goes when the holder closes it (the kernel is gone) or dies (the kernel's sandbox
dies with it, ``--die-with-parent``), so a dead holder's uid is free again without any clean-up.
Lease files are never deleted (deleting one could let two holders lock two different files of one
name); there are as many as kernels ever ran at once on the host. Servers in separate containers
on one host (one kernel, one uid space) must share LEASE_DIR, e.g. as a bind-mounted volume.
"""

from __future__ import annotations

import fcntl
import os
from pathlib import Path

#: Kernels run as uids FIRST_SANDBOX_UID .. FIRST_SANDBOX_UID + UID_RANGE - 1 (only when the server is root).
FIRST_SANDBOX_UID = 1_700_000_000
UID_RANGE = 1_000_000
#: Shared by every server process on the host; root's alone (0700).
LEASE_DIR = Path("/run/openassistants/sandbox-uids")


class UidLease:
    """A uid held for one kernel until ``release``."""

    def __init__(self, uid: int, fd: int) -> None:
        self.uid = uid
        self._fd: int | None = fd

    def release(self) -> None:
        """Free the uid (once the kernel's processes are gone); a second call does nothing."""
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None


def lease_uid(directory: Path = LEASE_DIR) -> UidLease:
    """The lowest uid of the range that no live kernel on this host holds. Raises OSError."""
    directory.mkdir(mode=0o700, parents=True, exist_ok=True)
    for uid in range(FIRST_SANDBOX_UID, FIRST_SANDBOX_UID + UID_RANGE):
        fd = os.open(directory / str(uid), os.O_RDWR | os.O_CREAT | os.O_CLOEXEC | os.O_NOFOLLOW, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            continue
        except BaseException:
            os.close(fd)
            raise
        # Who holds it, for an operator reading the directory (the lock itself is what counts).
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
        return UidLease(uid, fd)
    raise OSError("every sandbox uid is in use on this host")
