"""mvspin.apps.train from Python; a folder holding a run is refused without resume and replaced
whole with overwrite (a later resume continues the new run)."""
from __future__ import annotations

import json

import pytest
import torch

from mvspin.apps.train import TrainJobConfig, run as train
from mvspin.cli.main import main
from mvspin.config import ConfigError, load_config
from mvspin.errors import BundleFormatError
from tests.learning.train_helpers import tiny_capture, tiny_overrides


@pytest.fixture(scope="module")
def capture(tmp_path_factory):
    return tiny_capture(tmp_path_factory.mktemp("apps_train") / "train.h5", num_bundles=4)


def _job(capture, out, **changes) -> TrainJobConfig:
    overrides = tiny_overrides([capture], **{"optim.checkpoint_every": 1, **changes})
    return load_config(TrainJobConfig, None, [*overrides, f"out={out}"])


def _metrics_steps(out) -> list[int]:
    return [json.loads(line)["step"] for line in (out / "metrics.jsonl").read_text().splitlines() if line.strip()]


def _checkpoints(out) -> list[str]:
    return sorted(p.name for p in (out / "checkpoints").glob("step_*.pt"))


def test_a_folder_holding_a_run_needs_resume_or_overwrite(capture, tmp_path, capsys):
    out = tmp_path / "run"
    calls = []
    first = train(_job(capture, out, **{"optim.max_steps": 2}), progress=lambda *c: calls.append(c))
    assert first.final_step == 2 and calls[-1] == ("train", 2, 2)
    assert _checkpoints(out) == ["step_0000001.pt", "step_0000002.pt"] and _metrics_steps(out) == [1, 2]
    before = {p: p.stat().st_mtime_ns for p in out.rglob("*") if p.is_file()}

    # Python: refused before any work, naming the folder and what to do
    with pytest.raises(ConfigError, match=rf"{out} already holds a training run \(checkpoints/, metrics.jsonl\): "
                                            "set resume to continue it, or overwrite to replace it"):
        train(_job(capture, out, **{"optim.max_steps": 1}))
    # the command line: one line, exit status 2
    argv = ["train", "--set", *tiny_overrides([capture], **{"optim.max_steps": 1}), "-o", str(out), "--no-progress"]
    assert main(argv) == 2
    lines = capsys.readouterr().err.strip().splitlines()
    assert lines == [f"mvspin train: error: {out} already holds a training run (checkpoints/, metrics.jsonl): "
                     "set --resume to continue it, or --overwrite to replace it"]
    assert {p: p.stat().st_mtime_ns for p in out.rglob("*") if p.is_file()} == before  # untouched

    # overwrite: the old run's checkpoints, stores and metrics are gone, the new run is whole
    assert main([*argv, "--overwrite"]) == 0
    assert _checkpoints(out) == ["step_0000001.pt"] and _metrics_steps(out) == [1]
    assert sorted(p.name for p in (out / "checkpoints").iterdir()) == [
        "step_0000001.pt", "step_0000001.yaml", "step_0000001_fits.h5"]
    assert not list(out.glob(".checkpoints.removing.*"))
    # resume now continues the new run, not the old one
    resumed = train(_job(capture, out, **{"optim.max_steps": 2}, resume=True))
    assert resumed.final_step == 2 and resumed.steps_run == 1 and _metrics_steps(out) == [1, 2]
    meta = torch.load(out / "checkpoints" / "step_0000002.pt", weights_only=True)
    assert meta["total_step_count"] == 2


def test_resume_and_overwrite_exclude_each_other(capture, tmp_path):
    with pytest.raises(ConfigError, match="resume and overwrite exclude each other") as err:
        _job(capture, tmp_path, resume=True, overwrite=True)
    assert err.value.field == "overwrite"
    with pytest.raises(ConfigError, match="out is required"):
        train(load_config(TrainJobConfig, None, tiny_overrides([capture])))
    with pytest.raises(ConfigError, match="optim.lr must be positive"):
        _job(capture, tmp_path, **{"optim.lr": -1})


def test_a_nan_keypoint_in_the_data_is_named_with_its_file_and_bundle(tmp_path):
    import h5py
    import numpy as np

    from tests.learning.train_helpers import tiny_capture as make

    data = make(tmp_path / "nan.h5", num_bundles=2)
    with h5py.File(data, "r+") as f:
        kp = f["keypoints_2d"][...]
        kp[1, 0, 3, 0] = np.nan  # bundle 1, view 0, keypoint 3: x
        f["keypoints_2d"][...] = kp
    config = load_config(TrainJobConfig, None, [*tiny_overrides([data], **{"optim.max_steps": 1,
                                                                           "data.augmentation": False}),
                                                f"out={tmp_path / 'run'}"])
    # named when the bundle is read, before any loss (a short line the command shows whole)
    with pytest.raises(BundleFormatError, match=rf"{data}: bundle 1: keypoints_2d holds 1 NaN or infinite values"):
        train(config)
