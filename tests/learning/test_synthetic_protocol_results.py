"""The synthetic protocol's bookkeeping: checkpoints found by step, store statistics, table, plot, JSON."""
from __future__ import annotations

import json

import numpy as np
import pytest

from mvspin.learning.synthetic_protocol import (
    ArmResult,
    ProtocolResults,
    SyntheticProtocolConfig,
    _checkpoints,
    _store_summary,
    plot_results,
)


def test_checkpoints_are_found_by_step(tmp_path):
    folder = tmp_path / "checkpoints"
    folder.mkdir()
    for step in (200, 40, 1000):
        (folder / f"step_{step:07d}.pt").write_bytes(b"x")
    (folder / "step_0000040_fits.h5").write_bytes(b"x")  # not a checkpoint
    (folder / ".step_0000080.tmp.pt").write_bytes(b"x")  # a temporary of an unfinished write
    assert [s for s, _ in _checkpoints(tmp_path)] == [40, 200, 1000]
    assert _checkpoints(tmp_path / "nothing") == []


def test_store_summary_takes_first_and_last_finite_values():
    metrics = [{"step": 10, "store/mean_error_px": float("nan"), "store/accepted_share": 0.0},
               {"step": 20, "store/mean_error_px": 3.5, "store/accepted_share": 0.25},
               {"step": 30, "store/mean_error_px": 2.5, "store/accepted_share": 0.5, "fits/accepted_share": 0.75}]
    summary = _store_summary(metrics)
    assert summary["store/mean_error_px"] == {"first": (20, 3.5), "last": (30, 2.5)}
    assert summary["store/accepted_share"] == {"first": (10, 0.0), "last": (30, 0.5)}
    assert summary["fits/accepted_share"] == {"first": (30, 0.75), "last": (30, 0.75)}


def _results(tmp_path) -> ProtocolResults:
    arms = [ArmResult("untrained", "all_3d", 0, 0, 0.0, 300.0, 200.0, curve=[(0, 310.0, 205.0)]),
            ArmResult("full", "all_3d", 0, 40, 61.0, 150.0, 90.0, curve=[(20, 180.0, 120.0), (40, 160.0, 95.0)],
                      losses=[(10, {"loss/total": 40.0}), (20, {"loss/total": 20.0})]),
            ArmResult("ablation", "all_3d", 0, 40, 50.0, 170.0, 110.0, curve=[(20, 190.0, 130.0), (40, 175.0, 115.0)],
                      losses=[(10, {"loss/total": 41.0}), (20, {"loss/total": 25.0})]),
            ArmResult("full", "partial_3d", 0, 40, 60.0, 180.0, 120.0, curve=[(40, 185.0, 125.0)])]
    return ProtocolResults(arms=arms, data={"test": str(tmp_path / "t.h5")}, config=SyntheticProtocolConfig())


def test_table_orders_untrained_ablation_full(tmp_path):
    lines = _results(tmp_path).table().splitlines()
    assert [line.split()[2] for line in lines[1:]] == ["untrained", "ablation", "full", "full"]
    assert lines[3].split()[4:6] == ["150.0", "90.0"]  # full: MPJPE, PA-MPJPE


def test_plot_and_json(tmp_path):
    results = _results(tmp_path)
    path = plot_results(results, tmp_path / "protocol.png")
    import cv2

    image = cv2.imread(str(path))
    assert image is not None and image.shape[0] > 300 and image.shape[1] > 800
    assert image.std() > 10  # lines and text, not a blank canvas
    data = json.loads(json.dumps(results.to_dict()))
    assert [a["arm"] for a in data["arms"]] == ["untrained", "full", "ablation", "full"]
    assert data["arms"][1]["curve"] == [[20, 180.0, 120.0], [40, 160.0, 95.0]]
    assert data["config"]["training_seeds"] == [0, 1]
