"""Telling files apart: two writers of one file tear it, and fw writes several.

A crawl writes its exports, its failures file and its state, and ``--stats`` and
``--log-file`` name two more. Each must be a file of its own, whatever name it is given: a
relative path, a symbolic link, a hard link, or ``/dev/stdout`` standing for ``-o -``.
And a file written whole goes to a temporary name beside it first: ``open_new`` makes that
one anew, so that no link planted at the known name redirects the write. When SQLite cannot
write one of its files, ``no_room`` tells whether the file size limit is why.
"""

from __future__ import annotations

import errno
import os
import re
import resource
import stat
from pathlib import Path
from typing import IO, BinaryIO

__all__ = [
    "beside",
    "descriptor",
    "identity",
    "is_socket",
    "is_stream",
    "no_room",
    "open_new",
    "opened",
    "replaced",
]

#: The names of this process's own open files: /dev/stdout, /dev/fd/3, /proc/self/fd/1.
_OWN = re.compile(r"/dev/(?:std(?:in|out|err)|fd/\d+)|/proc/(?:self|thread-self)/fd/\d+")
_STANDARD = {"/dev/stdin": 0, "/dev/stdout": 1, "/dev/stderr": 2}


def descriptor(path: str | Path) -> int | None:
    """Return the file descriptor ``path`` names (``/dev/stdout`` is 1), or None.

    Such a path is written in place, through the descriptor: renaming a file over it would
    replace the system's ``/dev/stdout`` link.
    """
    name = os.path.abspath(path)  # noqa: PTH100 - not resolved: /dev/stdout is a link
    name = "/" + name.lstrip("/")  # POSIX keeps a leading "//": the same file here
    if not _OWN.fullmatch(name):
        return None
    return _STANDARD[name] if name in _STANDARD else int(name.rsplit("/", 1)[1])


def identity(path: str, *, follow: bool = True) -> object:
    """Return what tells the file at ``path`` from others.

    An existing file is its device and inode (a hard link is the same file under another
    name); a file yet to be made, its absolute path with links resolved. ``-`` is standard
    output. With ``follow`` off, a symbolic link is itself, not its target: what a rename
    replaces. A terminal or a device such as ``/dev/null`` is shared by design: only its
    path tells it apart.
    """
    fd = 1 if path == "-" else descriptor(path)
    try:
        if fd is not None:
            found = os.fstat(fd)
        else:
            found = Path(path).stat() if follow else Path(path).lstat()
    except OSError:
        return path if fd is not None else os.path.realpath(path)
    if stat.S_ISCHR(found.st_mode):
        return path
    return (found.st_dev, found.st_ino)


def opened(file: IO[bytes]) -> tuple[int, int]:
    """Return the device and inode of an open file: what ``replaced`` compares."""
    found = os.fstat(file.fileno())
    return found.st_dev, found.st_ino


def replaced(path: str | Path, file: tuple[int, int]) -> bool:
    """Tell whether ``path`` no longer names ``file`` (``opened``): removed, moved away or
    replaced while it was written, so that what goes to it reaches nobody."""
    try:
        here = Path(path).stat()
    except OSError:
        return True
    return (here.st_dev, here.st_ino) != file


def is_stream(path: Path) -> bool:
    """Tell whether ``path`` is (or links to) a FIFO or a device, written to in place."""
    try:
        mode = path.stat().st_mode
    except OSError:
        return False
    return stat.S_ISFIFO(mode) or stat.S_ISCHR(mode)


def beside(path: str | Path, kind: str) -> Path:
    """Return the hidden file ``.NAME.fw-KIND`` that goes beside the export at ``path``
    (fw's notes of it: a header copy, late columns, a mark that it is open), through a
    symbolic link: beside the file written, not the link."""
    real = Path(path).resolve()
    return real.with_name(f".{real.name}.fw-{kind}")


def is_socket(path: Path) -> bool:
    """Tell whether ``path`` is (or links to) a socket, which no ``open()`` takes."""
    try:
        return stat.S_ISSOCK(path.stat().st_mode)
    except OSError:
        return False


def open_new(path: Path, mode: int = 0o666) -> BinaryIO:
    """Open a file made anew at ``path`` for writing, never through a link planted there;
    ``mode`` as for ``os.open`` (less the umask).

    For the temporary files written beside a file and renamed over it: their names are
    known in advance, so a link planted at one would have a file elsewhere overwritten. What
    is at ``path`` (such a link, or a killed writer's leftover) is removed first.
    """
    path.unlink(missing_ok=True)
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC
    return os.fdopen(os.open(path, flags, mode), "wb")


#: How close to the file size limit a SQLite file must be for the limit to be the cause.
_NEAR = 1 << 20


def no_room(path: Path) -> OSError | None:
    """Return the error a write of SQLite's to ``path`` ran into if the file size limit
    (``ulimit -f``) is the cause: SQLite reports it as a full disk or an I/O error."""
    limit = resource.getrlimit(resource.RLIMIT_FSIZE)[0]
    if limit == resource.RLIM_INFINITY:
        return None
    files = [path, *(path.with_name(path.name + suffix) for suffix in ("-wal", "-journal"))]
    if max(map(_size, files)) + _NEAR < limit or _disk_full(path):
        return None
    return OSError(errno.EFBIG, os.strerror(errno.EFBIG), str(path))  # as any other file says


def _disk_full(path: Path) -> bool:
    """Whether the file system under ``path`` has next to no room left: a full disk."""
    try:
        room = os.statvfs(path.parent)
    except OSError:
        return False
    return room.f_bavail * room.f_frsize < _NEAR


def _size(path: Path) -> int:
    try:
        return path.stat().st_size
    except OSError:
        return 0
