"""Small secret files: written atomically with their mode, made once, read again on change.

The key-encryption key file (ADR 0017) and the token signing key file (ADR 0019) share
these rules: a reader sees the old file or the new one, never half of one; processes
racing to make the file agree on one winner; a long-running reader notices a rotation by
the file's inode, modification time and size, without reading it on every use. The
stack's server records use ``replace_atomically`` too, read while a supervisor rewrites them.
"""

from __future__ import annotations

import contextlib
import os
import secrets
from typing import TYPE_CHECKING, TypeVar

if TYPE_CHECKING:
    from collections.abc import Callable
    from pathlib import Path

T = TypeVar("T")

__all__ = ("ChangedFile", "create_once", "replace_atomically")


def _written_beside(path: Path, body: bytes, mode: int) -> Path:
    """``body`` in a new file beside ``path`` (``mode``), flushed to disk; its path."""
    temporary = path.with_name(f".{path.name}.{secrets.token_hex(6)}.tmp")
    descriptor = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_EXCL, mode)
    try:
        os.write(descriptor, body)
        os.fsync(descriptor)
    except BaseException:
        os.close(descriptor)
        with contextlib.suppress(OSError):
            temporary.unlink()
        raise
    os.close(descriptor)
    return temporary


def replace_atomically(path: Path, body: bytes, *, mode: int = 0o600) -> None:
    """``path`` now holds ``body``: readers see the old content or the new, nothing between."""
    os.replace(_written_beside(path, body, mode), path)


def create_once(path: Path, body: bytes, *, mode: int = 0o600) -> None:
    """Make ``path`` with ``body`` unless it exists; of racing processes exactly one wins."""
    if path.exists():
        return
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = _written_beside(path, body, mode)
    try:
        os.link(temporary, path)  # fails if another process made it first
    except FileExistsError:
        pass
    finally:
        temporary.unlink(missing_ok=True)


class ChangedFile:
    """A file whose text is read again only when it changed since the last read."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._stamp: tuple[int, int, int] | None = None

    def parse_if_changed(self, parse: Callable[[str], T]) -> T | None:
        """``parse`` of the file's text if it changed since the last parse, else None.

        A file that ``parse`` refuses is read (and refused) again at the next call.

        Raises:
            OSError: the file cannot be read; and whatever ``parse`` raises.
        """
        info = self.path.stat()
        stamp = (info.st_ino, info.st_mtime_ns, info.st_size)
        if stamp == self._stamp:
            return None
        parsed = parse(self.path.read_text())
        self._stamp = stamp
        return parsed

    def forget(self) -> None:
        """Read the file at the next call, changed or not (after this process wrote it)."""
        self._stamp = None
