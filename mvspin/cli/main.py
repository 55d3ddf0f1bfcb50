"""The ``mvspin`` command: one sub-command per job."""
from __future__ import annotations

import argparse
import logging
import sys
from typing import Callable, Optional, Sequence

from mvspin._version import __version__
from mvspin.errors import MvspinError
from mvspin.cli import calibrate, data, demo, eval as eval_cmd, infer, info, render_model

# Each sub-command module provides add_parser(subparsers) -> parser with a `run` default.
_COMMANDS = (info, render_model, infer, demo, data, eval_cmd, calibrate)

# Errors that mean "the input is wrong", reported as one line instead of a traceback: the
# library's own (MvspinError), file-system errors and ValueError (Python's "bad argument value").
# KeyError, TypeError and the rest are programming errors and keep their traceback.
USER_ERRORS: tuple[type[BaseException], ...] = (MvspinError, OSError, ValueError)


def build_parser() -> argparse.ArgumentParser:
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
    for module in _COMMANDS:
        module.add_parser(sub)
    return parser


def main(argv: Optional[Sequence[str]] = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.DEBUG if args.verbose else logging.INFO, format="%(message)s")
    run: Optional[Callable[[argparse.Namespace], int]] = getattr(args, "run", None)
    if run is None:
        parser.print_help()
        return 2
    try:
        return int(run(args) or 0)
    except USER_ERRORS as err:
        if args.verbose:
            raise
        message = err.args[0] if isinstance(err, KeyError) and err.args else err
        if isinstance(err, OSError) and not isinstance(err, MvspinError) and err.filename and err.strerror:
            message = f"{err.filename}: {err.strerror}"
        print(f"mvspin {args.command}: error: {message}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"mvspin {args.command}: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
