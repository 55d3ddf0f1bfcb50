"""The ``mvspin`` command: one sub-command per job.

This module imports nothing heavy at import time: the console script imports it first, and a
Ctrl-C while torch is loading must still end with one line and exit status 130. The sub-command
modules (which import torch, OpenCV, open3d) are imported inside :func:`main`, under the same
signal and error handling as the work itself.

Signals (:mod:`mvspin.cli.signals`): after SIGINT or SIGTERM the command cleans up, prints
``interrupted`` and exits with ``128 + signal number`` (130 for SIGINT, 143 for SIGTERM).
"""
from __future__ import annotations

import signal
import sys
from typing import Any, Callable, Optional, Sequence

from mvspin.atomic import remove_own_temporaries
from mvspin.cli.signals import Interrupted, SignalGuard, signal_name
from mvspin.errors import MvspinError

# Each sub-command module provides add_parser(subparsers) -> parser with a `run` default; listed by
# module name so that importing this module stays cheap.
_COMMANDS = ("info", "render_model", "infer", "demo", "experiment", "data", "eval", "fit_rig", "train", "fit_dataset",
             "calibrate", "detect", "view", "sync")

# Errors that mean "the input is wrong", reported as one line instead of a traceback: the
# library's own (MvspinError), file-system errors and ValueError (Python's "bad argument value").
# KeyError, TypeError and the rest are programming errors and keep their traceback.
USER_ERRORS: tuple[type[BaseException], ...] = (MvspinError, OSError, ValueError)

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


def main(argv: Optional[Sequence[str]] = None) -> int:
    command = "mvspin"
    verbose = False
    with SignalGuard() as guard:
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
            try:
                return int(run(args) or 0)
            except Exception as err:
                # A signal that lands inside an import or a C extension can surface as another
                # error chained to it (open3d's ImportError "initialization failed"): it is still
                # the interrupt.
                cause = _interrupt_in_chain(err)
                if cause is None:
                    raise
                raise cause from None
        except KeyboardInterrupt as err:
            guard.count = max(guard.count, 1)  # from here on a signal does not interrupt the exit
            guard.ignore_after = argv is None  # a real command line: the process ends now
            signum = err.signum if isinstance(err, Interrupted) else int(signal.SIGINT)
            # a temporary whose creation the signal interrupted before anything registered it
            remove_own_temporaries()
            print(f"{command}: interrupted ({signal_name(signum)}); partial outputs were removed",
                  file=sys.stderr)
            return 128 + signum
        except USER_ERRORS as err:
            if verbose:
                raise
            print(f"{command}: error: {error_line(err)}", file=sys.stderr)
            return 2


def _interrupt_in_chain(err: BaseException) -> Optional[KeyboardInterrupt]:
    """The KeyboardInterrupt an exception was raised from or while handling, if any."""
    seen: set[int] = set()
    link: Optional[BaseException] = err
    while link is not None and id(link) not in seen:
        if isinstance(link, KeyboardInterrupt):
            return link
        seen.add(id(link))
        link = link.__cause__ or link.__context__
    return None


if __name__ == "__main__":
    sys.exit(main())
