"""The host side of a kernel's /mnt/data: input files in, changed files out, moved to a new kernel.

The sandbox can write anything there, symlinks to host files included, and change it at any moment.
So every path below the data directory is opened one component at a time with O_NOFOLLOW from a
directory fd, only regular files are read, and what the integrator gets is our own copy of each file.
"""

from __future__ import annotations

import ctypes
import errno
import os
import shutil
import stat
import tempfile
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

#: A scan of /mnt/data stops after this many entries, and this many levels of directories.
MAX_SCANNED_ENTRIES = 10_000
MAX_DEPTH = 16
MAX_NAME_BYTES = 200

#: relative path -> (mtime_ns, size, inode) of each regular file
Snapshot = dict[str, tuple[int, int, int]]

_LIBC = ctypes.CDLL(None, use_errno=True)
_MS_NOSUID, _MS_NODEV, _MNT_DETACH = 2, 4, 2

_DIR_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC


def make_data_dir(path: Path, uid: int | None, quota_bytes: int | None) -> None:
    """An empty directory only its kernel (and the server) can use; with ``quota_bytes``, a tmpfs of
    that size (the server must be root), so a kernel filling it gets ENOSPC and the disk stays free.
    Raises OSError if the tmpfs cannot be mounted."""
    path.mkdir(mode=0o700, parents=True)
    if quota_bytes is not None:
        owner = "" if uid is None else f",uid={uid},gid={uid}"
        _mount_tmpfs(path, f"size={quota_bytes},mode=0700{owner}")
    elif uid is not None:
        os.chown(path, uid, uid)


def can_mount_quota(scratch: Path) -> str | None:
    """None if a size-limited tmpfs can be mounted here (root, CAP_SYS_ADMIN), else why not."""
    if os.geteuid() != 0:
        return "the server does not run as root, so it cannot mount a tmpfs"
    scratch.mkdir(mode=0o700, parents=True, exist_ok=True)
    try:
        _mount_tmpfs(scratch, "size=4096,mode=0700")
    except OSError as exc:
        return f"mounting a tmpfs failed ({exc.strerror})"
    unmount(scratch)
    scratch.rmdir()
    return None


def unmount(path: Path) -> None:
    """Detach a data directory's tmpfs, if it has one (its memory is freed once nothing uses it)."""
    if _LIBC.umount2(os.fsencode(path), _MNT_DETACH) != 0 and ctypes.get_errno() not in (
        errno.EINVAL,  # not a mount point
        errno.ENOENT,
    ):
        raise OSError(ctypes.get_errno(), f"umount {path}")


def unmount_under(root: Path) -> None:
    """Detach every mount below ``root`` (the data directories a dead server process left mounted)."""
    prefix = os.fsencode(root) + b"/"
    with open("/proc/self/mountinfo", "rb") as mounts:
        points = [line.split()[4] for line in mounts]
    for point in sorted(points, reverse=True):
        decoded = point.replace(b"\\040", b" ").replace(b"\\011", b"\t").replace(b"\\012", b"\n")
        if decoded.startswith(prefix):
            unmount(Path(os.fsdecode(decoded)))


def _mount_tmpfs(path: Path, options: str) -> None:
    # nosuid, nodev: nothing the kernel writes there can gain privileges or reach a device.
    flags = ctypes.c_ulong(_MS_NOSUID | _MS_NODEV)
    if _LIBC.mount(b"openassistants-data", os.fsencode(path), b"tmpfs", flags, options.encode()) != 0:
        code = ctypes.get_errno()
        raise OSError(code, f"mount tmpfs on {path}: {os.strerror(code)}")


def safe_name(name: str) -> str:
    """A file's original name as a single, harmless path component (the extension kept)."""
    base = name.replace("\\", "/").rsplit("/", 1)[-1]
    base = "".join(ch for ch in base if ch.isprintable()).strip()
    if base in ("", ".", ".."):
        base = "file"
    while len(base.encode("utf-8")) > MAX_NAME_BYTES:
        stem, dot, extension = base.rpartition(".")
        base = f"{stem[:-1]}{dot}{extension}" if dot and len(stem) > 1 else base[1:]
    return base


def place_file(data_dir: Path, name: str, source: Path, uid: int | None) -> None:
    """Copy ``source`` into the data directory as ``name`` (from ``safe_name``), replacing whatever
    is there: the copy is written to a new file and renamed over it, so a symlink planted under that
    name is replaced, never followed. Raises OSError (e.g. IsADirectoryError)."""
    fd, temporary = tempfile.mkstemp(dir=data_dir, prefix=".incoming-")
    try:
        with os.fdopen(fd, "wb") as out, source.open("rb") as inp:
            shutil.copyfileobj(inp, out, 1024 * 1024)
            os.fchmod(out.fileno(), 0o644)
            if uid is not None:
                os.fchown(out.fileno(), uid, uid)
        os.replace(temporary, data_dir / name)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise


def snapshot(data_dir: Path) -> Snapshot:
    """Every regular file under the data directory (links are not followed)."""
    files: Snapshot = {}

    def record(_directory: int, _name: str, relative: str, status: os.stat_result) -> None:
        if stat.S_ISREG(status.st_mode):
            files[relative] = (status.st_mtime_ns, status.st_size, status.st_ino)

    _walk(data_dir, record)
    return files


def changed_files(before: Snapshot, after: Snapshot) -> list[str]:
    """Files created or modified between two snapshots, by name."""
    return sorted(name for name, signature in after.items() if before.get(name) != signature)


def copy_out(data_dir: Path, relative: str, destination: Path, max_bytes: int) -> int | None:
    """Copy one file out of the data directory (at most ``max_bytes``); its size, or None if it is not
    (or no longer) a regular file reachable without links."""
    try:
        with _open_beneath(data_dir, relative) as fd:
            if not stat.S_ISREG(os.fstat(fd).st_mode):
                return None
            destination.parent.mkdir(parents=True, exist_ok=True)
            size = 0
            with destination.open("wb") as out:
                while size < max_bytes and (chunk := os.read(fd, min(1024 * 1024, max_bytes - size))):
                    out.write(chunk)
                    size += len(chunk)
            return size
    except OSError:
        return None


def adopt(old_data_dir: Path, new_data_dir: Path, uid: int | None) -> None:
    """Move a dead kernel's files to its successor's data directory, owned by the successor's uid
    (copied, links as links, when each is a tmpfs of its own; what does not fit is left behind)."""
    for entry in os.listdir(old_data_dir):
        try:
            shutil.move(old_data_dir / entry, new_data_dir / entry)
        except (OSError, shutil.Error):
            continue
    if uid is not None:
        _walk(new_data_dir, lambda directory, name, _relative, _status: _chown(directory, name, uid))


def _chown(directory: int, name: str, uid: int) -> None:
    os.chown(name, uid, uid, dir_fd=directory, follow_symlinks=False)


def _walk(data_dir: Path, visit: Callable[[int, str, str, os.stat_result], None]) -> None:
    """Call ``visit(dir_fd, name, relative path, lstat)`` for each entry below ``data_dir``, depth
    first, never through a link, for at most MAX_SCANNED_ENTRIES entries and MAX_DEPTH levels."""
    budget = [MAX_SCANNED_ENTRIES]

    def walk_directory(directory: int, prefix: str, depth: int) -> None:
        with os.scandir(directory) as entries:
            for entry in entries:
                budget[0] -= 1
                if budget[0] < 0:
                    return
                try:
                    status = entry.stat(follow_symlinks=False)
                    visit(directory, entry.name, prefix + entry.name, status)
                    if not stat.S_ISDIR(status.st_mode) or depth >= MAX_DEPTH:
                        continue
                    child = os.open(entry.name, _DIR_FLAGS, dir_fd=directory)
                except OSError:
                    continue
                try:
                    walk_directory(child, f"{prefix}{entry.name}/", depth + 1)
                finally:
                    os.close(child)

    try:
        root = os.open(data_dir, _DIR_FLAGS)
    except OSError:
        return
    try:
        walk_directory(root, "", 0)
    finally:
        os.close(root)


@contextmanager
def _open_beneath(data_dir: Path, relative: str) -> Iterator[int]:
    parts = relative.split("/")
    directory = os.open(data_dir, _DIR_FLAGS)
    try:
        for part in parts[:-1]:
            child = os.open(part, _DIR_FLAGS, dir_fd=directory)
            os.close(directory)
            directory = child
        flags = os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC
        fd = os.open(parts[-1], flags, dir_fd=directory)
    finally:
        os.close(directory)
    try:
        yield fd
    finally:
        os.close(fd)
