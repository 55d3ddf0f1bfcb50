"""``mvspin fit-dataset`` under torchrun: two CPU processes (gloo) write one store, by rank 0 only,
whose entries equal a one-process run's."""
from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from mvspin.learning.fits_store import FitsStore
from tests.learning.train_helpers import tiny_capture, tiny_overrides

ROOT = Path(__file__).resolve().parents[2]
TORCHRUN = shutil.which("torchrun") or str(Path(sys.executable).with_name("torchrun"))

# Runs `python -m mvspin ...` with FitsStore.write_to logging the rank of every process that
# writes a store file (so the test sees who wrote, not only what is left on disk).
_LAUNCHER = """
import os, runpy, sys
from mvspin.learning import fits_store
log = sys.argv.pop(1)
original = fits_store.FitsStore.write_to
def write_to(self, path):
    with open(log, "a") as f:
        f.write(f"{os.environ.get('RANK', '0')} {path}\\n")
    return original(self, path)
fits_store.FitsStore.write_to = write_to
sys.argv[0] = "mvspin"
runpy.run_module("mvspin", run_name="__main__", alter_sys=True)
"""


def _run(command: list[str]) -> str:
    env = dict(os.environ, PYTHONPATH=str(ROOT), OMP_NUM_THREADS="1")
    done = subprocess.run(command, cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-4000:]
    return done.stdout + done.stderr


@pytest.mark.skipif(not Path(TORCHRUN).exists(), reason="torchrun not installed")
def test_two_processes_write_one_store_equal_to_one_process(tmp_path):
    # 5 bundles over 2 processes: the sampler pads rank 1 with bundle 0 again (fitted twice, kept once).
    capture = tiny_capture(tmp_path / "train.h5", num_bundles=5)
    # patience 0: every bundle runs all iterations, so its fit does not depend on its batch-mates
    # (the early stop watches the whole batch's energy).
    overrides = tiny_overrides([capture], **{"fits.fitting.patience": 0})
    launcher = tmp_path / "launch.py"
    launcher.write_text(_LAUNCHER)
    outputs = {}
    for name, prefix in (("two", [TORCHRUN, "--standalone", "--nproc-per-node", "2"]), ("one", [sys.executable])):
        out_dir = tmp_path / name
        out_dir.mkdir()
        log = tmp_path / f"{name}_writes.txt"
        text = _run([*prefix, str(launcher), str(log), "fit-dataset", "--config", str(ROOT / "configs" / "synthetic_cpu.yaml"),
                     "--set", *overrides, "--out", str(out_dir / "fits.h5"), "--no-progress"])
        writers = [line.split()[0] for line in log.read_text().splitlines()]
        assert writers == ["0"], writers  # one write, by rank 0
        assert sorted(p.name for p in out_dir.iterdir()) == ["fits.h5"]  # no per-rank or temporary files
        outputs[name] = (FitsStore.load(out_dir / "fits.h5"), text)
    (two, text2), (one, text1) = outputs["two"], outputs["one"]
    assert "5 bundles fitted" in text2 and "on 2 process(es)" in text2 and "on 1 process(es)" in text1
    # Every bundle was fitted (rank 1's in rank 0's file) before training (step 0).
    assert (two.step == 0).all() and np.isfinite(two.error).all() and np.isfinite(two.error_px).all()
    assert two.sources == one.sources
    for field in ("error", "error_px", "body_pose", "betas", "global_orient"):
        np.testing.assert_allclose(getattr(two, field), getattr(one, field), rtol=1e-5, atol=1e-5, err_msg=field)
    assert np.abs(one.body_pose - np.eye(3, dtype=np.float32)).max() > 1e-3  # the fits moved off the start
