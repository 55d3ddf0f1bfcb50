"""Two CPU processes under torchrun train like one process and write one consistent fits store."""
from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from mvspin.learning.fits_store import FitsStore
from mvspin.learning.train_config import load_train_config
from mvspin.learning.trainer import build_body_model, build_regressor, checkpoint_paths
from tests.learning.train_helpers import tiny_capture, tiny_overrides

ROOT = Path(__file__).resolve().parents[2]


def _run(command: list[str], tmp_path: Path) -> None:
    env = dict(os.environ, PYTHONPATH=str(ROOT), OMP_NUM_THREADS="1")
    done = subprocess.run(command, cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-4000:]


@pytest.mark.skipif(shutil.which("torchrun") is None and not Path(sys.executable).with_name("torchrun").exists(),
                    reason="torchrun not installed")
def test_two_processes_match_one(tmp_path):
    capture = tiny_capture(tmp_path / "train.h5", num_bundles=4)
    # Frozen BatchNorm and no dropout: a crop's prediction does not depend on which process or
    # batch it is in, so the two runs differ only by float summation order.
    overrides = tiny_overrides([capture], **{"optim.max_steps": 2, "model.dropout": 0.0,
                                             "model.freeze_batchnorm": True})
    args = ["-m", "mvspin", "train", "--config", str(ROOT / "configs" / "synthetic_cpu.yaml"), "--set", *overrides,
            "--no-progress", "--out"]
    torchrun = shutil.which("torchrun") or str(Path(sys.executable).with_name("torchrun"))
    _run([torchrun, "--standalone", "--nproc-per-node", "2", *args, str(tmp_path / "two")], tmp_path)
    _run([sys.executable, *args, str(tmp_path / "one")], tmp_path)

    two, one = checkpoint_paths(tmp_path / "two", 2), checkpoint_paths(tmp_path / "one", 2)
    files = sorted(p.name for p in (tmp_path / "two" / "checkpoints").iterdir())
    assert files == ["step_0000002.pt", "step_0000002.yaml", "step_0000002_fits.h5"]  # one store, no per-rank files
    s2, s1 = FitsStore.load(two["fits"]), FitsStore.load(one["fits"])
    # Every bundle was fitted once (4 bundles, 2 steps of 2): rank 1's bundles are in rank 0's file.
    assert sorted(s2.step.tolist()) == sorted(s1.step.tolist()) == [1, 1, 2, 2]
    assert np.isfinite(s2.error).all()
    # the errors are fitting losses of an untrained network (up to ~2000): float32 summation order
    # moves them by ~1e-6 of their value
    np.testing.assert_allclose(s2.error, s1.error, rtol=1e-5, atol=1e-3)
    np.testing.assert_allclose(s2.body_pose, s1.body_pose, atol=1e-3)
    np.testing.assert_allclose(s2.global_orient, s1.global_orient, atol=1e-3)
    np.testing.assert_allclose(s2.betas, s1.betas, atol=1e-3)
    w2 = torch.load(two["checkpoint"], weights_only=True)["model"]
    w1 = torch.load(one["checkpoint"], weights_only=True)["model"]
    meta = torch.load(two["checkpoint"], weights_only=True)
    assert meta["batch_size"] == 2 and meta["train_state"]["world_size"] == 2
    # Both runs moved the weights the same way: their difference is small against the move.
    config = load_train_config(None, overrides)
    w0 = build_regressor(config, build_body_model(config, torch.device("cpu"))).state_dict()
    keys = [k for k in w1 if w1[k].is_floating_point() and "running" not in k]
    moved = sum(float(((w1[k] - w0[k]).double() ** 2).sum()) for k in keys) ** 0.5
    apart = sum(float(((w2[k] - w1[k]).double() ** 2).sum()) for k in keys) ** 0.5
    assert moved > 0.1 and apart < 0.01 * moved, (moved, apart)
