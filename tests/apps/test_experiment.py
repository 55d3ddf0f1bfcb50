"""``mvspin experiment table7`` end to end on a tiny protocol: every run, the statistics, the files."""
from __future__ import annotations

import json

import pytest

from mvspin.apps.experiment import Table7Config, run_table7
from mvspin.config import ConfigError

TINY = ["optim.max_steps=3", "optim.checkpoint_every=1", "optim.batch_size=2", "optim.log_every=1",
        "fits.fitting.stage1_iterations=2", "fits.fitting.stage2_iterations=2"]


def test_tiny_protocol_runs_every_arm_and_writes_statistics(tmp_path):
    config = Table7Config(out=tmp_path / "t7", train_bundles=4, val_bundles=1, test_bundles=2, num_views=2,
                          image_size=64, data_seeds=[1, 2], training_seeds=[0], partial_3d_seeds=[0],
                          partial_3d_data_seeds=[1], static_fit_iterations=2, overrides=TINY, parallel_arms=1)
    results = run_table7(config)
    runs = {(a.variant, a.arm, a.data_seed, a.seed) for a in results.arms}
    assert runs == {("all_3d", "untrained", 1, 0), ("all_3d", "untrained", 2, 0),
                    ("all_3d", "ablation", 1, 0), ("all_3d", "full", 1, 0),
                    ("all_3d", "ablation", 2, 0), ("all_3d", "full", 2, 0),
                    ("partial_3d", "ablation", 1, 0), ("partial_3d", "full", 1, 0)}
    for a in results.arms:
        if a.arm != "untrained":
            assert a.steps == 3 and [s for s, _, _ in a.curve] == [1, 2, 3]
            assert 0 < a.pa_mpjpe < a.mpjpe < 5000
    full = [a for a in results.arms if a.arm == "full"]
    assert all(a.store_curve and 0.0 <= a.store_curve[-1][2] <= 1.0 for a in full)
    assert [(p.variant, p.data_seed) for p in results.paired()] == [("all_3d", 1), ("all_3d", 2), ("partial_3d", 1)]
    data = json.loads((tmp_path / "t7" / "results.json").read_text())
    assert len(data["arms"]) == 8 and len(data["paired"]) == 3 and data["cpu_s"] > 0
    assert data["config"]["out"] == str(tmp_path / "t7")
    assert (tmp_path / "t7" / "protocol.png").stat().st_size > 10_000
    assert "paired: full loop minus ablation" in results.table()


def test_seeds_must_differ_and_sizes_are_checked(tmp_path):
    with pytest.raises(ConfigError, match="train_bundles"):
        Table7Config(out=tmp_path / "x", train_bundles=0)
    assert not (tmp_path / "x").exists()
