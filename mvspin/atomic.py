"""Atomic file output: write under a temporary name beside the target, then rename.

Readers never see half a file, an interrupted job never leaves a truncated output, and a failed
write leaves the previous file (if any) untouched. Files get the usual permissions (``0o666``
minus the process umask), not ``mkstemp``'s private ``0o600``.
"""
from __future__ import annotations

import contextlib
import os
import tempfile
from pathlib import Path
from typing import Iterator

__all__ = ["atomic_path", "write_bytes_atomic", "temporary_path_for", "commit_temporary", "OutputGroup"]


def _default_mode() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return 0o666 & ~mask


_MODE = _default_mode()


def temporary_path_for(path: str | os.PathLike) -> Path:
    """A fresh, empty file beside ``path`` with the same suffix (writers that pick the format by
    suffix keep working). Pair with :func:`commit_temporary`; prefer :func:`atomic_path`."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, name = tempfile.mkstemp(dir=path.parent, prefix=f".{path.stem}.", suffix=f".tmp{path.suffix}")
    os.close(fd)
    return Path(name)


def commit_temporary(tmp: Path, path: str | os.PathLike, fsync: bool = False) -> Path:
    """Give ``tmp`` normal permissions and rename it onto ``path`` (deleting it on failure)."""
    try:
        if not tmp.exists():
            raise FileNotFoundError(f"nothing was written for {path}")
        os.chmod(tmp, _MODE)
        if fsync:
            with open(tmp, "rb") as f:
                os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return Path(path)


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike, fsync: bool = False) -> Iterator[Path]:
    """Yield a temporary path beside ``path`` (same suffix, so format-by-suffix writers work);
    when the block succeeds it is renamed onto ``path``, when it raises it is deleted.

    Example:
        >>> with atomic_path(out / "mesh.ply") as tmp:   # doctest: +SKIP
        ...     open3d.io.write_triangle_mesh(str(tmp), mesh)
    """
    tmp = temporary_path_for(path)
    try:
        yield tmp
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    commit_temporary(tmp, path, fsync=fsync)


def write_bytes_atomic(path: str | os.PathLike, data: bytes) -> Path:
    """Write ``data`` to ``path`` atomically; returns ``path``."""
    with atomic_path(path) as tmp:
        tmp.write_bytes(bytes(data))
    return Path(path)


class OutputGroup:
    """Files that belong together (one input's ``.npz``, mesh and overlay) appear together or
    not at all.

    Each :meth:`path` call gives a temporary path beside its final name; when the ``with`` block
    succeeds every temporary is committed (checked and renamed) in order, when it raises, or a
    commit fails, every temporary and every file already committed by this group is removed, so
    no lone ``.npz`` is left next to a missing mesh.

    Example:
        >>> import tempfile
        >>> out = Path(tempfile.mkdtemp())
        >>> with OutputGroup() as group:
        ...     group.path(out / "a.txt").write_text("a")
        ...     group.path(out / "b.txt").write_text("b")
        1
        1
        >>> sorted(p.name for p in out.iterdir())
        ['a.txt', 'b.txt']
    """

    def __init__(self, fsync: bool = False) -> None:
        self._fsync = fsync
        self._pending: list[tuple[Path, Path]] = []
        self.committed: list[Path] = []
        """Final paths written by the group (after a successful block)."""

    def path(self, final: str | os.PathLike) -> Path:
        """A temporary path (same suffix) that becomes ``final`` when the group commits."""
        tmp = temporary_path_for(final)
        self._pending.append((tmp, Path(final)))
        return tmp

    def __enter__(self) -> "OutputGroup":
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        if exc_type is None:
            try:
                for tmp, final in self._pending:
                    commit_temporary(tmp, final, fsync=self._fsync)
                    self.committed.append(final)
                return
            except BaseException:
                self._discard()
                raise
        self._discard()

    def _discard(self) -> None:
        for tmp, _ in self._pending:
            tmp.unlink(missing_ok=True)
        for final in self.committed:
            final.unlink(missing_ok=True)
        self.committed = []
