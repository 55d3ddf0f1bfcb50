"""A signal whose exception a library swallows, or turns into another error, still ends the command."""
from __future__ import annotations

import os
import signal

import pytest

from mvspin.cli.common import TqdmProgress
from mvspin.cli.signals import Interrupted, SignalGuard


def test_a_swallowed_interrupt_is_raised_again_at_the_next_progress_report():
    with SignalGuard() as guard:
        try:
            os.kill(os.getpid(), signal.SIGTERM)
            for _ in range(1000):  # the handler runs at the next bytecode boundary
                pass
        except KeyboardInterrupt:
            pass  # what a C extension's initialisation does (PyErr_Clear)
        assert guard.signum == signal.SIGTERM
        with pytest.raises(Interrupted) as err, TqdmProgress(enabled=False) as progress:
            progress("work", 1, 10)
        assert err.value.signum == signal.SIGTERM


def test_an_error_raised_from_the_interrupt_ends_as_the_interrupt(monkeypatch, capsys):
    """open3d's import turns a KeyboardInterrupt into ImportError("initialization failed")."""
    import mvspin.cli.info as info
    from mvspin.cli.main import main

    def interrupted_import(args):
        try:
            raise Interrupted(signal.SIGINT)
        except KeyboardInterrupt as err:
            raise ImportError("initialization failed") from err

    monkeypatch.setattr(info, "run", interrupted_import)
    assert main(["info"]) == 130
    err = capsys.readouterr().err.strip()
    assert err == "mvspin info: interrupted (SIGINT); partial outputs were removed"
