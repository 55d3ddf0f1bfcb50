"""Signals end a command cleanly: exit 128 + signal, one line, no partial or temporary files.

These run the real ``mvspin`` command in a subprocess (a signal cannot be tested in-process).
"""
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from mvspin.atomic import TEMPORARY_MARK, check_output_location

ROOT = Path(__file__).resolve().parents[1]
SYNTHETIC = ["data", "synthetic", "--bundles", "2000", "--resolution", "low", "--set", "options.num_views=2",
             "options.image_size=[48,48]"]


def _start(args, cwd):
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    return subprocess.Popen([sys.executable, "-m", "mvspin", *args], cwd=cwd, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def _wait_for(predicate, proc, timeout=90.0):
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if predicate():
            return
        if proc.poll() is not None:
            pytest.fail(f"command ended early ({proc.returncode}): {proc.communicate()[1][-2000:]}")
        time.sleep(0.02)
    proc.kill()
    pytest.fail("timed out waiting for the command to start working")


def _temporaries(folder):
    return [p for p in folder.iterdir() if TEMPORARY_MARK in p.name]


def _output_temporary(out: Path):
    """Whether the temporary of output ``out`` exists. Not any temporary: every command first
    checks that its output folder is writable with a probe temporary it removes at once, and a
    poll that sees the probe would signal the command before it writes (rarely: a flaky test)."""
    return lambda: any(p.name.startswith(f".{out.name}.{TEMPORARY_MARK}.") for p in out.parent.iterdir())


def _catches(pid: int, signum: int) -> bool:
    """Whether process ``pid`` has a handler installed for ``signum`` (Linux /proc)."""
    try:
        status = Path(f"/proc/{pid}/status").read_text()
    except OSError:
        return False
    mask = int(next(line.split()[1] for line in status.splitlines() if line.startswith("SigCgt:")), 16)
    return bool(mask & (1 << (signum - 1)))


@pytest.mark.parametrize("signum, code", [(signal.SIGTERM, 143), (signal.SIGINT, 130)])
def test_signal_during_work_cleans_up_and_exits(tmp_path, signum, code):
    out = tmp_path / "capture.h5"
    proc = _start([*SYNTHETIC, "--out", str(out)], tmp_path)
    _wait_for(_output_temporary(out), proc)  # the bundle file is being written
    time.sleep(0.3)
    proc.send_signal(signum)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == code, err
    lines = [line for line in err.splitlines() if "interrupted" in line]
    assert lines == [f"mvspin data: interrupted ({signal.Signals(signum).name}); partial outputs were removed"]
    assert "Traceback" not in err
    assert list(tmp_path.iterdir()) == []  # neither capture.h5 nor a temporary


@pytest.mark.skipif(not Path("/proc/self/status").exists(), reason="needs Linux /proc to see the handler")
def test_ctrl_c_while_torch_imports_exits_130_with_one_line(tmp_path):
    proc = _start([*SYNTHETIC, "--out", str(tmp_path / "x.h5")], tmp_path)
    # The handler is installed before the sub-commands (and torch) are imported.
    _wait_for(lambda: _catches(proc.pid, signal.SIGTERM), proc, timeout=30)
    proc.send_signal(signal.SIGINT)
    out, err = proc.communicate(timeout=60)
    assert proc.returncode == 130, err
    assert "Traceback" not in err and err.strip().splitlines()[-1].startswith("mvspin: interrupted (SIGINT)")
    assert list(tmp_path.iterdir()) == []


def test_sigkill_leftovers_are_removed_by_the_next_run(tmp_path):
    out = tmp_path / "capture.h5"
    proc = _start([*SYNTHETIC, "--out", str(out)], tmp_path)
    _wait_for(_output_temporary(out), proc)
    proc.kill()  # SIGKILL: no handler runs, the temporary stays
    proc.communicate(timeout=30)
    left = _temporaries(tmp_path)
    assert len(left) == 1 and f".{proc.pid}@" in left[0].name
    keep = tmp_path / "results.h5"
    keep.write_bytes(b"a user's file")
    # What every command does before its work (check_output): the stale temporary goes, the rest stays.
    check_output_location(tmp_path / "again.h5", what="--out")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["results.h5"]
