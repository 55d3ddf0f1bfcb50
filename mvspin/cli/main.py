"""The ``mvspin`` command: one sub-command per job.

This module imports nothing heavy at import time: the console script imports it first, and a
Ctrl-C while torch is loading must still end with one line and exit status 130. The sub-command
modules (which import torch, OpenCV, open3d) are imported inside :func:`main`, under the same
signal and error handling as the work itself.

Signals: SIGINT (Ctrl-C) and SIGTERM (``kill``, ``timeout``, Slurm, docker) both raise
:class:`Interrupted` (a ``KeyboardInterrupt``) in the main thread, so every ``with`` block
unwinds and deletes its temporary files; the command prints ``interrupted`` and exits with
``128 + signal number`` (130 for SIGINT, 143 for SIGTERM). Further signals while cleaning up are
ignored; the third one ends the process at once.
"""
from __future__ import annotations

import signal
import sys
import threading
from typing import Any, Callable, Optional, Sequence

from mvspin.errors import MvspinError

# Each sub-command module provides add_parser(subparsers) -> parser with a `run` default; listed by
# module name so that importing this module stays cheap.
_COMMANDS = ("info", "render_model", "infer", "demo", "experiment", "data", "eval", "fit_rig", "train", "fit_dataset",
             "calibrate")

# Errors that mean "the input is wrong", reported as one line instead of a traceback: the
# library's own (MvspinError), file-system errors and ValueError (Python's "bad argument value").
# KeyError, TypeError and the rest are programming errors and keep their traceback.
USER_ERRORS: tuple[type[BaseException], ...] = (MvspinError, OSError, ValueError)

_HANDLED_SIGNALS = tuple(s for s in (signal.SIGINT, getattr(signal, "SIGTERM", None)) if s is not None)


class Interrupted(KeyboardInterrupt):
    """Raised in the main thread when SIGINT or SIGTERM arrives; ``signum`` says which."""

    def __init__(self, signum: int) -> None:
        super().__init__(signum)
        self.signum = int(signum)


class _SignalGuard:
    """Turn SIGINT/SIGTERM into :class:`Interrupted` for the duration of a command."""

    def __init__(self) -> None:
        self.count = 0
        self.ignore_after = False
        """Leave the signals ignored on exit (the process is about to end after an interrupt,
        and a second Ctrl-C must not print a traceback during interpreter shutdown)."""
        self._previous: dict[int, Any] = {}

    def _handle(self, signum: int, frame: Any) -> None:
        self.count += 1
        if self.count == 1:
            raise Interrupted(signum)
        if self.count >= 3:  # cleaning up hangs: the user insists
            import os

            os._exit(128 + signum)
        # the second signal arrives while the first one's cleanup runs: let it finish

    def __enter__(self) -> "_SignalGuard":
        if threading.current_thread() is threading.main_thread():
            for s in _HANDLED_SIGNALS:
                self._previous[s] = signal.signal(s, self._handle)
        return self

    def __exit__(self, *exc: Any) -> None:
        for s, handler in self._previous.items():
            signal.signal(s, signal.SIG_IGN if self.ignore_after else handler)
        self._previous.clear()


def _command_module(name: Any) -> Any:
    """The sub-command module ``name`` (a module name in ``mvspin.cli``, or the module itself)."""
    if not isinstance(name, str):
        return name
    import importlib

    return importlib.import_module(f"mvspin.cli.{name}")


def build_parser() -> Any:
    """The ``mvspin`` argument parser with every sub-command (imports the command modules)."""
    import argparse

    from mvspin._version import __version__

    parser = argparse.ArgumentParser(
        prog="mvspin",
        description=(
            "Multi-view human capture and collaborative learning of SMPL pose and shape (MV-SPIN). "
            "Every command uses the bundled free SMPL-layout body model unless --smpl-dir (or "
            "$MVSPIN_SMPL_DIR) points at official SMPL files."
        ),
    )
    parser.add_argument("--version", action="version", version=f"mvspin {__version__}")
    parser.add_argument("-v", "--verbose", action="store_true", help="show debug logging and full tracebacks")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name in _COMMANDS:
        _command_module(name).add_parser(sub)
    return parser


def error_line(err: BaseException) -> str:
    """The one line the CLI prints for a user-facing error (naming the file where known; a config
    field at fault is named by its flag, ``batch_size`` -> ``--batch-size``)."""
    message: Any = err.args[0] if isinstance(err, KeyError) and err.args else err
    fields = [getattr(err, "field", None), *getattr(err, "related", ())]
    for field in fields:
        if isinstance(field, str) and field and "." not in field:
            import re

            from mvspin.cli.options import flag_for

            message = re.sub(rf"(?<![\w.-]){re.escape(field)}(?![\w-])", flag_for(field), str(message), count=1)
    if isinstance(err, OSError) and not isinstance(err, MvspinError) and err.strerror:
        if err.filename:
            message = f"{err.filename}: {err.strerror}"
            if getattr(err, "filename2", None):
                message = f"{err.filename} -> {err.filename2}: {err.strerror}"
        else:
            message = err.strerror
    text = str(message).strip()
    return text.splitlines()[0] if text else type(err).__name__


def _signal_name(signum: int) -> str:
    try:
        return signal.Signals(signum).name
    except ValueError:
        return f"signal {signum}"


def main(argv: Optional[Sequence[str]] = None) -> int:
    command = "mvspin"
    verbose = False
    with _SignalGuard() as guard:
        try:
            import logging

            parser = build_parser()
            args = parser.parse_args(argv)
            verbose = bool(args.verbose)
            if args.command:
                command = f"mvspin {args.command}"
            logging.basicConfig(level=logging.DEBUG if args.verbose else logging.INFO, format="%(message)s")
            run: Optional[Callable[[Any], int]] = getattr(args, "run", None)
            if run is None:
                parser.print_help()
                return 2
            return int(run(args) or 0)
        except KeyboardInterrupt as err:
            guard.count = max(guard.count, 1)  # from here on a signal does not interrupt the exit
            guard.ignore_after = argv is None  # a real command line: the process ends now
            signum = err.signum if isinstance(err, Interrupted) else int(signal.SIGINT)
            print(f"{command}: interrupted ({_signal_name(signum)}); partial outputs were removed",
                  file=sys.stderr)
            return 128 + signum
        except USER_ERRORS as err:
            if verbose:
                raise
            print(f"{command}: error: {error_line(err)}", file=sys.stderr)
            return 2


if __name__ == "__main__":
    sys.exit(main())
