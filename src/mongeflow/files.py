"""Files of saved maps and run directories: atomic writes, named read errors, content
hashes and a single-writer lock.

Every file mongeflow writes into a run directory or a saved map (and every output file of
``apply``, ``sample`` and ``density``) goes through :func:`atomic_write`: it is written to
a temporary file beside its destination, flushed to disk and renamed over it, so a reader
(or a resumed fit) sees either the previous version or the new one, never a cut one,
whatever moment the process is killed at. A write that fails (a full disk, a lost
permission) removes its temporary file, leaves the previous version in place and raises
:class:`WriteError` naming the file.
"""

from __future__ import annotations

import contextlib
import errno
import hashlib
import json
import os
import shutil
import stat
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import IO, Any

#: temporary files of :func:`atomic_write` start with this (left over only by a killed process)
TEMPORARY_PREFIX = ".mongeflow-tmp-"


class WriteError(ValueError):
    """A file could not be written; its previous version, if any, is intact."""


class ReadError(ValueError):
    """A file of a saved map or run directory could not be read: the message names it and
    says what to do."""


def atomic_write(path: str | Path, write: Callable[[IO[bytes]], Any] | bytes | str) -> Path:
    """Write ``path`` all at once: into a temporary file beside it, flushed to disk
    (``fsync``) and renamed over ``path`` (``os.replace``, atomic on POSIX and Windows).

    Args:
        path: the destination (its folder must exist).
        write: the content (``bytes`` or ``str``, UTF-8), or a function that writes it to the
            binary file object it is given.

    Raises:
        WriteError: the file could not be written (the message names it; no temporary file
            is left, and the previous version of ``path`` is untouched).
    """
    path = Path(path)
    tmp = path.with_name(f"{TEMPORARY_PREFIX}{os.getpid()}-{path.name}")
    try:
        with open(tmp, "wb") as f:
            if callable(write):
                write(f)
            else:
                f.write(write.encode() if isinstance(write, str) else write)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException as err:
        with contextlib.suppress(OSError):
            tmp.unlink()
        cause = _os_error(err)
        if cause is None:
            raise
        full = cause.errno == errno.ENOSPC or (cause.errno is None and _full(path.parent))
        why = "the disk is full" if full else (cause.strerror or str(cause))
        raise WriteError(
            f"cannot write {str(path)!r}: {why}; its previous version, if any, is intact"
        ) from None
    _sync_folder(path.parent)
    return path


def _os_error(err: BaseException) -> OSError | None:
    """The operating system's error behind ``err`` (a library may wrap it), or ``None``."""
    seen = 0
    while err is not None and seen < 10:
        if isinstance(err, OSError):
            return err
        err, seen = err.__cause__ or err.__context__, seen + 1
    return None


def _full(folder: Path) -> bool:
    """Whether ``folder``'s disk has less than 1 MiB left (a short write without an error
    number, as NumPy reports it, is then a full disk)."""
    try:
        return shutil.disk_usage(folder).free < 1 << 20
    except OSError:
        return False


def _sync_folder(folder: Path) -> None:
    """Make a rename in ``folder`` durable (POSIX; a no-op where folders cannot be opened)."""
    with contextlib.suppress(OSError, AttributeError):
        fd = os.open(folder, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


def write_json(path: str | Path, value: Any, **dumps) -> Path:
    """:func:`atomic_write` of ``json.dumps(value, indent=2, **dumps)`` and a newline."""
    return atomic_write(path, json.dumps(value, indent=2, **dumps) + "\n")


def read_json(path: str | Path, what: str, remedy: str = "") -> Any:
    """The JSON value in ``path``.

    Raises:
        ReadError: the file is missing, unreadable or not valid JSON; the message names the
            file, says what it is (``what``) and what to do (``remedy``).
    """
    path = Path(path)
    hint = f"; {remedy}" if remedy else ""
    try:
        text = path.read_text()
    except FileNotFoundError:
        raise ReadError(f"{what} {str(path)!r} does not exist{hint}") from None
    except (OSError, UnicodeDecodeError) as err:
        raise ReadError(f"cannot read {what} {str(path)!r}: {err}{hint}") from None
    try:
        return json.loads(text)
    except json.JSONDecodeError as err:
        empty = " (the file is empty)" if not text.strip() else ""
        raise ReadError(f"{what} {str(path)!r} is not valid JSON{empty}: {err}{hint}") from None


def sha256(path: str | Path) -> str:
    """The SHA-256 of a file's bytes, in hex."""
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def confined(base: str | Path, name: str | Path, what: str) -> Path:
    """``base / name``, refused unless it stays inside ``base`` once links are followed (no
    absolute ``name``, no ``..``, no link pointing out).

    Raises:
        ReadError: ``name`` leads outside ``base``.
    """
    base = Path(base)
    name = Path(name)
    path = base / name
    inside = not name.is_absolute() and ".." not in name.parts
    if inside:
        try:
            path.resolve().relative_to(base.resolve())
        except ValueError:
            inside = False
    if not inside:
        raise ReadError(
            f"{what} {str(name)!r} lies outside {str(base)!r}: a saved map reads only the files "
            "in its own folder"
        )
    return path


#: the lock file of a run directory (it stays after the run; only the lock on it matters)
LOCK_FILE = ".lock"


class LockedError(ValueError):
    """Another process holds the run directory."""


@contextlib.contextmanager
def locked(folder: str | Path) -> Iterator[Path]:
    """Hold ``folder``'s lock (``folder/.lock``, created with the folder if needed) for the
    duration: one process at a time writes a run directory. The lock is an ``fcntl``
    advisory lock, released by the operating system when the process ends, even on
    ``kill -9``, so it never goes stale. Where ``fcntl`` is missing (Windows) the file is
    created but nothing is locked.

    Raises:
        LockedError: another process holds the lock (its process id is said).
    """
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / LOCK_FILE
    flags = os.O_RDWR | os.O_CREAT | getattr(os, "O_NOFOLLOW", 0)  # never through a link
    try:
        fd = os.open(path, flags, 0o644)
    except OSError as err:
        raise LockedError(
            f"cannot open the lock file {str(path)!r} ({err.strerror or err}): a run "
            "directory's .lock must be a plain file"
        ) from None
    try:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            raise LockedError(f"{str(path)!r} is not a plain file; remove it")
        try:
            import fcntl
        except ImportError:  # pragma: no cover - Windows
            fcntl = None
        if fcntl is not None:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except OSError:
                os.lseek(fd, 0, os.SEEK_SET)
                holder = os.read(fd, 32).decode(errors="replace").strip() or "?"
                raise LockedError(
                    f"{str(folder)!r} is in use by another mongeflow process (pid {holder}): "
                    "wait for it to end, or choose another --out"
                ) from None
        os.ftruncate(fd, 0)
        os.lseek(fd, 0, os.SEEK_SET)
        os.write(fd, f"{os.getpid()}\n".encode())
        yield path
    finally:
        os.close(fd)  # releases the lock
