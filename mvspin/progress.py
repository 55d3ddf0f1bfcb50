"""The one progress protocol of every long job.

A job reports progress by calling ``progress(stage, done, total)``: ``stage`` names the part of
the job (``"fit"``, ``"overlays"``, ``"camera cam01"``), ``done`` counts finished units of that
stage and ``total`` is how many there are (0 when not known yet). Calls for one stage have
non-decreasing ``done``; a job may run several stages, one after the other or interleaved.
The library never draws anything: the command line turns these calls into progress bars
(``mvspin.cli.common.TqdmProgress``), a notebook or a GUI can do what it likes, and the default
:func:`no_progress` ignores them.

Example:
    >>> seen = []
    >>> def record(stage: str, done: int, total: int) -> None:
    ...     seen.append((stage, done, total))
    >>> record("fit", 1, 10)
    >>> seen
    [('fit', 1, 10)]
"""
from __future__ import annotations

from typing import Protocol

__all__ = ["Progress", "no_progress", "stage_progress"]


class Progress(Protocol):
    """``progress(stage, done, total)``: ``done`` of ``total`` units of ``stage`` are finished."""

    def __call__(self, stage: str, done: int, total: int) -> None: ...


def no_progress(stage: str, done: int, total: int) -> None:
    """The default :class:`Progress`: ignores every call."""


def stage_progress(progress: Progress, stage: str, total: int):
    """A one-argument callback ``update(done)`` reporting ``done`` of ``total`` for one ``stage``
    of ``progress`` (for loops that know their stage and size up front).

    Example:
        >>> seen = []
        >>> update = stage_progress(lambda s, d, t: seen.append((s, d, t)), "frames", 3)
        >>> update(2)
        >>> seen
        [('frames', 2, 3)]
    """
    def update(done: int) -> None:
        progress(stage, int(done), int(total))

    return update
