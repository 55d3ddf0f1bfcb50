"""Output folders a job made for itself are removed again when the job fails before writing."""
from __future__ import annotations

import contextlib
import os
from pathlib import Path
from typing import Iterator, Optional

__all__ = ["removed_if_unused"]


@contextlib.contextmanager
def removed_if_unused(folder: Optional[str | os.PathLike]) -> Iterator[None]:
    """Within the block, ``folder`` and any missing parents may be created (by
    :func:`mvspin.atomic.check_output_location`); if the block raises, those of them that did not
    exist before and are still empty are removed, so a job refused after its output check (a bad
    input, an interruption) leaves nothing on disk. Folders that existed stay, as does anything
    with a file in it.
    """
    if folder is None:
        yield
        return
    folder = Path(folder).absolute()
    missing = []
    for path in (folder, *folder.parents):
        if path.exists():
            break
        missing.append(path)
    try:
        yield
    except BaseException:
        for path in missing:  # deepest first
            try:
                path.rmdir()
            except OSError:  # not empty (something was written), or gone already
                break
        raise
