"""Complete-or-nothing file writes for calibration files.

The same contract as ``mvspin.atomic`` (which this package cannot import): each file is written
under a temporary name beside its target, flushed to the disk, checked (not empty; re-read where
the writer gives a check) and renamed only when complete; files that belong together
(EasyMocap's ``intri.yml`` + ``extri.yml``) are renamed only after all of them passed.

Temporaries are named exactly as ``mvspin.atomic`` names its own
(``.<final name>.mvspin-tmp.<pid>@<host>.<random><suffix>``), so the stale-temporary cleanup of
``mvspin.atomic.remove_stale_temporaries`` also removes the ones a killed calibration left.
"""
from __future__ import annotations

import contextlib
import os
import re
import socket
import tempfile
from pathlib import Path
from typing import Callable, Iterator, Optional, Sequence

from mvspin.errors import IncompleteWriteError

__all__ = ["atomic_paths", "write_text_atomic", "IncompleteWriteError", "TEMPORARY_MARK", "temporary_prefix"]

TEMPORARY_MARK = "mvspin-tmp"
"""Part of every temporary name: the same mark as ``mvspin.atomic.TEMPORARY_MARK``."""

# The host part as mvspin.atomic writes it (its cleanup matches [A-Za-z0-9_-]+ there).
_HOST = re.sub(r"[^A-Za-z0-9-]", "_", socket.gethostname()) or "host"

Verify = Callable[[Path], object]
"""A re-reading check, called with the temporary file: raising or returning ``False`` rejects it."""


def _default_mode() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return 0o666 & ~mask


_MODE = _default_mode()


def temporary_prefix(path: str | os.PathLike) -> str:
    """The name prefix of this process's temporaries for ``path``:
    ``.<name>.mvspin-tmp.<pid>@<host>.`` (a random part and ``path``'s suffix follow)."""
    return f".{Path(path).name}.{TEMPORARY_MARK}.{os.getpid()}@{_HOST}."


def _check(tmp: Path, path: Path, verify: Optional[Verify]) -> None:
    try:
        fd = os.open(tmp, os.O_RDONLY)
        try:
            os.fsync(fd)  # a full disk may fail only here
        finally:
            os.close(fd)
    except OSError as err:
        raise IncompleteWriteError(f"{path}: could not be written to the disk ({err.strerror or err})") from err
    if tmp.stat().st_size == 0:
        raise IncompleteWriteError(f"{path}: nothing was written (is the disk full?)")
    if verify is not None:
        try:
            ok = verify(tmp)
        except Exception as err:  # the re-read failed: the file is not what was written
            raise IncompleteWriteError(f"{path}: the written file does not read back ({err}); is the disk full?") from err
        if ok is False:
            raise IncompleteWriteError(f"{path}: the written file does not read back complete (is the disk full?)")


@contextlib.contextmanager
def atomic_paths(paths: Sequence[str | os.PathLike],
                 verify: Optional[Sequence[Optional[Verify]]] = None) -> Iterator[list[Path]]:
    """Yield one temporary path beside each of ``paths`` (same suffix, so writers that pick the
    format by suffix work); when the block succeeds each is flushed, checked (non-empty, and
    ``verify[i](tmp)`` when given) and then all are renamed onto their targets; when the block
    raises or a check fails all are deleted and the targets stay as they were.

    Raises:
        IncompleteWriteError: a file is empty, could not be flushed, or fails its re-read check.
    """
    paths = [Path(p) for p in paths]
    checks = list(verify) if verify is not None else [None] * len(paths)
    if len(checks) != len(paths):
        raise ValueError(f"atomic_paths: {len(paths)} paths but {len(checks)} verify entries")
    temps: list[Path] = []
    try:
        for path in paths:
            path.parent.mkdir(parents=True, exist_ok=True)
            fd, name = tempfile.mkstemp(dir=path.parent, prefix=temporary_prefix(path), suffix=path.suffix)
            os.close(fd)
            temps.append(Path(name))
        yield temps
        for tmp, path, check in zip(temps, paths, checks):
            if not tmp.exists():
                raise IncompleteWriteError(f"{path}: nothing was written")
            _check(tmp, path, check)
            os.chmod(tmp, _MODE)
        for tmp, path in zip(temps, paths):
            os.replace(tmp, path)
    finally:
        for tmp in temps:
            tmp.unlink(missing_ok=True)


def write_text_atomic(path: str | os.PathLike, text: str) -> Path:
    """Write ``text`` (UTF-8) to ``path`` atomically, re-reading it before the rename (calibration
    files are small: the byte comparison is cheap); returns ``path``.

    Raises:
        IncompleteWriteError: the file on disk is not ``text`` (short write, full disk).
    """
    data = text.encode("utf-8")
    with atomic_paths([path], verify=[lambda tmp: tmp.read_bytes() == data]) as (tmp,):
        with open(tmp, "wb") as f:
            f.write(data)
    return Path(path)
