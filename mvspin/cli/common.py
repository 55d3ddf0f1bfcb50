"""What every sub-command shares: the ``mvspin`` logger and the progress bars."""
from __future__ import annotations

import logging

log = logging.getLogger("mvspin")


class TqdmProgress:
    """The CLI's one adapter of :class:`mvspin.progress.Progress` to tqdm: one bar per stage,
    shown only on a terminal (``disable=None``); ``unit`` names what is counted. Use as a
    context manager so the bars close (and the terminal is tidy) however the job ends.

    Example:
        >>> with TqdmProgress(unit="frame", enabled=False) as progress:
        ...     progress("fit", 3, 10)
    """

    def __init__(self, unit: str = "it", enabled: bool = True) -> None:
        self.unit = unit
        self.enabled = enabled
        self._bars: dict[str, object] = {}

    def __call__(self, stage: str, done: int, total: int) -> None:
        from mvspin.cli.signals import raise_if_interrupted

        raise_if_interrupted()  # a signal whose exception a library swallowed stops the job here
        if not self.enabled:
            return
        from tqdm import tqdm

        bar = self._bars.get(stage)
        if bar is None:
            bar = self._bars[stage] = tqdm(total=total or None, desc=stage, unit=self.unit, disable=None)
        if total and bar.total != total:  # type: ignore[attr-defined]
            bar.total = total  # type: ignore[attr-defined]
        bar.update(done - bar.n)  # type: ignore[attr-defined]

    def close(self) -> None:
        for bar in self._bars.values():
            bar.close()  # type: ignore[attr-defined]
        self._bars.clear()

    def __enter__(self) -> "TqdmProgress":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
