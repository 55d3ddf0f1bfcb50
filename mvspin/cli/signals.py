"""Signals of a running command: SIGINT (Ctrl-C) and SIGTERM (``kill``, ``timeout``, Slurm, docker)
both raise :class:`Interrupted` (a ``KeyboardInterrupt``) in the main thread, so every ``with``
block unwinds and deletes its temporary files. Further signals while cleaning up are ignored;
the third one ends the process at once."""
from __future__ import annotations

import signal
import threading
from typing import Any, Optional

__all__ = ["Interrupted", "SignalGuard", "signal_name", "raise_if_interrupted"]

_active: "Optional[SignalGuard]" = None  # the guard of the running command

_HANDLED_SIGNALS = tuple(s for s in (signal.SIGINT, getattr(signal, "SIGTERM", None)) if s is not None)


class Interrupted(KeyboardInterrupt):
    """Raised in the main thread when SIGINT or SIGTERM arrives; ``signum`` says which."""

    def __init__(self, signum: int) -> None:
        super().__init__(signum)
        self.signum = int(signum)


class SignalGuard:
    """Turn SIGINT/SIGTERM into :class:`Interrupted` for the duration of a command."""

    def __init__(self) -> None:
        self.count = 0
        self.ignore_after = False
        """Leave the signals ignored on exit (the process is about to end after an interrupt,
        and a second Ctrl-C must not print a traceback during interpreter shutdown)."""
        self._previous: dict[int, Any] = {}
        self.signum: Optional[int] = None
        """The first signal caught (None: none yet)."""

    def _handle(self, signum: int, frame: Any) -> None:
        self.count += 1
        if self.count == 1:
            self.signum = signum
            raise Interrupted(signum)
        if self.count >= 3:  # cleaning up hangs: the user insists
            import os

            os._exit(128 + signum)
        # the second signal arrives while the first one's cleanup runs: let it finish

    def __enter__(self) -> "SignalGuard":
        global _active
        _active = self
        if threading.current_thread() is threading.main_thread():
            for s in _HANDLED_SIGNALS:
                self._previous[s] = signal.signal(s, self._handle)
        return self

    def __exit__(self, *exc: Any) -> None:
        for s, handler in self._previous.items():
            signal.signal(s, signal.SIG_IGN if self.ignore_after else handler)
        self._previous.clear()


def signal_name(signum: int) -> str:
    """``SIGINT``, ``SIGTERM``, ... (``signal N`` for a number Python does not name)."""
    try:
        return signal.Signals(signum).name
    except ValueError:
        return f"signal {signum}"


def raise_if_interrupted() -> None:
    """Raise :class:`Interrupted` again if a signal was caught and the job still runs.

    The first signal raises in whatever Python code runs at that moment; code that swallows it
    (a C extension's module initialisation clears the error, e.g. during ``import open3d``)
    would otherwise let the job run on with the signal spent. The command line's progress
    adapter calls this at every update, so such a job stops at its next progress report."""
    if _active is not None and _active.signum is not None:
        raise Interrupted(_active.signum)
