"""Tiny training set-ups shared by the trainer tests (a few synthetic bundles, ResNet-18, short fits)."""
from __future__ import annotations

from pathlib import Path

from mvspin.body import BodyModel
from mvspin.data.synthetic_capture import generate_capture_file
from mvspin.data.synthetic_options import SyntheticOptions
from mvspin.learning.train_config import load_train_config


def tiny_capture(path: Path, num_bundles: int = 4, seed: int = 0, num_views: int = 2) -> Path:
    generate_capture_file(path, num_bundles, seed=seed, body=BodyModel.free("low"),
                          options=SyntheticOptions.preset("capture", num_views=num_views, image_size=(64, 64), focal=100.0,
                                                 background="plain"))
    return path


def tiny_overrides(files: list[Path], **extra: object) -> list[str]:
    base = {
        "data.files": "[" + ",".join(str(f) for f in files) + "]", "data.crop_size": 32, "model.depth": 18,
        "model.body_resolution": "low", "optim.batch_size": 2, "optim.log_every": 1, "optim.checkpoint_every": 2,
        "optim.lr": 1e-3, "fits.fitting.stage1_iterations": 3, "fits.fitting.stage2_iterations": 3,
        "fits.use_ground_truth_smpl": False, "fits.reject_loss": 1.0e6,
    }
    base.update(extra)
    return [f"{k}={v}" for k, v in base.items()]


def tiny_config(files: list[Path], **extra: object):
    return load_train_config(None, tiny_overrides(files, **extra))
