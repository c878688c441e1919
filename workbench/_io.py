"""Small file helpers shared by the whole library.

Everything the workbench writes for a user (masks, annotations, reports, caches, models)
goes through :func:`atomic_write`, so a crash or a kill leaves either the old file or the
new one, never a half-written one.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import tempfile
from pathlib import Path
from typing import IO, Iterator

__all__ = ["atomic_write", "atomic_write_bytes", "atomic_write_json", "file_sha256"]


@contextlib.contextmanager
def atomic_write(path: str | os.PathLike, mode: str = "wb") -> Iterator[IO]:
    """Open a temporary file beside ``path``; on success fsync and rename it over ``path``.

    The temporary file lives in the same directory (same file system), so the final
    ``os.replace`` is atomic. On any exception the temporary file is removed and ``path``
    is left untouched.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        # mkstemp creates 0600 files; give the result the mode a plain open() would have
        os.chmod(tmp, 0o666 & ~_umask())
        with os.fdopen(fd, mode) as fh:
            yield fh
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def atomic_write_bytes(path: str | os.PathLike, data: bytes) -> None:
    """Write ``data`` to ``path`` atomically."""
    with atomic_write(path, "wb") as fh:
        fh.write(data)


def atomic_write_json(path: str | os.PathLike, obj, **kwargs) -> None:
    """Write ``obj`` as indented JSON to ``path`` atomically."""
    kwargs.setdefault("indent", 2)
    text = json.dumps(obj, **kwargs) + "\n"
    with atomic_write(path, "w") as fh:
        fh.write(text)


def file_sha256(path: str | os.PathLike, chunk: int = 1 << 20) -> str:
    """Hex SHA-256 of a file's content, read in chunks."""
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(chunk), b""):
            h.update(block)
    return h.hexdigest()
