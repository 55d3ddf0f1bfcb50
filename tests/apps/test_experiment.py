"""``mvspin experiment table7`` end to end on a tiny protocol: every run, the statistics, the files."""
from __future__ import annotations

import json

import pytest
import torch

from mvspin.apps.experiment import Table7Config, run_table7
from mvspin.config import ConfigError
from mvspin.learning.trainer import checkpoint_paths

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
    # the cost: the main process's own work (data, static fits) + every run's (untrained ones too)
    assert data["main_cpu_s"] > 0 and all(a["cpu_s"] > 0 for a in data["arms"])
    assert data["cpu_s"] == pytest.approx(data["main_cpu_s"] + sum(a["cpu_s"] for a in data["arms"]))
    assert data["config"]["out"] == str(tmp_path / "t7")
    assert (tmp_path / "t7" / "protocol.png").stat().st_size > 10_000
    assert "paired: full loop minus ablation" in results.table()


def test_seeds_must_differ_and_sizes_are_checked(tmp_path):
    with pytest.raises(ConfigError, match="train_bundles"):
        Table7Config(out=tmp_path / "x", train_bundles=0)
    assert not (tmp_path / "x").exists()


def test_an_interrupted_protocol_resumes_to_the_same_results(tmp_path, caplog):
    """A run stopped part-way continues from its checkpoint, finished runs are kept, and the
    results equal an uninterrupted protocol's; other settings are refused."""
    sizes = dict(train_bundles=4, val_bundles=1, test_bundles=2, num_views=2, image_size=64, data_seeds=[1],
                 training_seeds=[0], partial_3d_seeds=[], static_fit_iterations=2, overrides=TINY, parallel_arms=1)
    straight = run_table7(Table7Config(out=tmp_path / "a", **sizes))
    # interrupted during the full arm, its last: results.json holds the untrained and ablation
    # runs, the full arm's folder its checkpoints of steps 1 and 2
    run_table7(Table7Config(out=tmp_path / "b", **sizes))
    path = tmp_path / "b" / "results.json"
    data = json.loads(path.read_text())
    data["arms"] = [a for a in data["arms"] if a["arm"] != "full"]
    path.write_text(json.dumps(data))
    full_dir = tmp_path / "b" / "runs" / "all_3d_full_data1_seed0"
    for f in checkpoint_paths(full_dir, 3).values():
        f.unlink(missing_ok=True)
    with caplog.at_level("INFO", logger="mvspin"):
        resumed = run_table7(Table7Config(out=tmp_path / "b", resume=True, **sizes))
    lines = [r.getMessage() for r in caplog.records]
    assert any("resuming: 2 runs done, 1 to go" in x for x in lines)
    assert any("continuing from step 2" in x for x in lines)
    key = lambda a: (a.arm, a.variant, a.data_seed, a.seed)  # noqa: E731
    assert sorted(map(key, resumed.arms)) == sorted(map(key, straight.arms))
    for a, b in zip(sorted(straight.arms, key=key), sorted(resumed.arms, key=key)):
        assert (a.mpjpe, a.pa_mpjpe, a.curve) == (b.mpjpe, b.pa_mpjpe, b.curve)
    # the resumed run's CPU time includes its first invocation's (carried by the checkpoint)
    full_b = next(a for a in resumed.arms if a.arm == "full")
    at_2 = torch.load(checkpoint_paths(full_dir, 2)["checkpoint"], weights_only=True)["train_state"]["cpu_seconds"]
    assert full_b.cpu_s > at_2 > 0
    assert resumed.cpu_s == pytest.approx(resumed.main_cpu_s + sum(a.cpu_s for a in resumed.arms))
    with pytest.raises(ConfigError, match=r"other settings \(test_bundles\)"):
        run_table7(Table7Config(out=tmp_path / "b", resume=True, **{**sizes, "test_bundles": 3}))
