"""Complete-or-nothing file writes for calibration files.

The same contract as ``mvspin.atomic`` (which this package cannot import): each file is written
under a temporary name beside its target and renamed only when complete; files that belong
together (EasyMocap's ``intri.yml`` + ``extri.yml``) are renamed only after all of them were written.
"""
from __future__ import annotations

import contextlib
import os
import tempfile
from pathlib import Path
from typing import Iterator, Sequence

__all__ = ["atomic_paths", "write_text_atomic"]


def _default_mode() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return 0o666 & ~mask


_MODE = _default_mode()


@contextlib.contextmanager
def atomic_paths(paths: Sequence[str | os.PathLike]) -> Iterator[list[Path]]:
    """Yield one temporary path beside each of ``paths`` (same suffix, so writers that pick the
    format by suffix work); when the block succeeds all are renamed onto their targets, when it
    raises all are deleted and the targets stay as they were."""
    temps: list[Path] = []
    try:
        for path in map(Path, paths):
            path.parent.mkdir(parents=True, exist_ok=True)
            fd, name = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=f".tmp{path.suffix}")
            os.close(fd)
            temps.append(Path(name))
        yield temps
        for tmp in temps:
            if not tmp.exists() or tmp.stat().st_size == 0:
                raise OSError(f"nothing was written for {paths[temps.index(tmp)]}")
            os.chmod(tmp, _MODE)
        for tmp, path in zip(temps, paths):
            os.replace(tmp, path)
    finally:
        for tmp in temps:
            tmp.unlink(missing_ok=True)


def write_text_atomic(path: str | os.PathLike, text: str) -> Path:
    """Write ``text`` (UTF-8) to ``path`` atomically; returns ``path``."""
    with atomic_paths([path]) as (tmp,):
        tmp.write_text(text, encoding="utf-8")
    return Path(path)
