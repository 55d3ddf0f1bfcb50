"""The synthetic protocol's bookkeeping: checkpoints found by step, store statistics, table, plot, JSON."""
from __future__ import annotations

import json

import numpy as np
import pytest

from mvspin.learning.protocol_results import (
    ArmResult,
    ProtocolResults,
    checkpoint_jitter,
    checkpoint_noise,
    plot_results,
    read_results,
    store_curve,
    store_summary,
)
from mvspin.learning.synthetic_protocol import SyntheticProtocolConfig, _checkpoints


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
    summary = store_summary(metrics)
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


def test_summary_orders_untrained_ablation_full_and_takes_mean_and_std(tmp_path):
    results = _results(tmp_path)
    results.arms.append(ArmResult("full", "all_3d", 1, 40, 61.0, 160.0, 100.0, data_seed=0))
    rows = results.summary()
    assert [(r["variant"], r["arm"]) for r in rows] == [("all_3d", "untrained"), ("all_3d", "ablation"),
                                                       ("all_3d", "full"), ("partial_3d", "full")]
    full = rows[2]
    assert full["runs"] == 2 and full["pa_mpjpe"] == pytest.approx(95.0)
    assert full["pa_mpjpe_std"] == pytest.approx(np.std([90.0, 100.0], ddof=1))
    assert np.isnan(rows[1]["pa_mpjpe_std"])  # one run: no spread
    text = results.table()
    assert "95.0 +- 7.1" in text


def test_checkpoint_noise_is_the_mean_change_from_the_middle_checkpoint_on():
    curve = [(s, 0.0, pa) for s, pa in zip(range(100, 700, 100), [200.0, 150.0, 120.0, 118.0, 122.0, 119.0])]
    assert checkpoint_noise(curve) == pytest.approx((2 + 4 + 3) / 3)  # from index 2: 120, 118, 122, 119
    curve5 = curve[:5]  # 200 150 120 118 122 -> from index 2: 120, 118, 122
    assert checkpoint_noise(curve5) == pytest.approx((2 + 4) / 2)
    assert np.isnan(checkpoint_noise(curve[:2]))


def test_checkpoint_jitter_is_the_scatter_around_a_trend_not_the_trend():
    falling = [(s, 0.0, 200.0 - 3.0 * i) for i, s in enumerate(range(100, 1300, 100))]  # 12 checkpoints, 3 mm each
    assert checkpoint_noise(falling) == pytest.approx(3.0)  # the fall itself counts as noise
    assert checkpoint_jitter(falling) == pytest.approx(0.0, abs=1e-12)
    # +-1 mm alternating around the same line: every second difference is 4 mm in size
    zigzag = [(s, 0.0, pa + (-1.0) ** i) for i, (s, _, pa) in enumerate(falling)]
    assert checkpoint_jitter(zigzag) == pytest.approx(4.0 / (np.sqrt(6) * np.sqrt(2 / np.pi)))
    # white noise of known std around a line: the estimate is close to it
    rng = np.random.default_rng(0)
    noisy = [(i, 0.0, 100.0 - 0.5 * i + 2.0 * e) for i, e in enumerate(rng.standard_normal(4001))]
    assert checkpoint_jitter(noisy) == pytest.approx(2.0, rel=0.05)
    assert np.isnan(checkpoint_jitter(falling[:3]))  # from the middle on only 2 checkpoints


def test_paired_differences_and_wins():
    def arm(kind, seed, pa, tail):
        curve = [(100 * (i + 1), 0.0, v) for i, v in enumerate([200.0, 160.0, *tail])]
        return ArmResult(kind, "all_3d", seed, 400, 1.0, pa + 50, pa, curve=curve, data_seed=7)

    results = ProtocolResults(arms=[arm("ablation", 0, 120.0, [121.0, 120.0, 121.0]),
                                    arm("full", 0, 100.0, [101.0, 100.0, 101.0]),
                                    arm("ablation", 1, 120.0, [110.0, 130.0, 110.0]),
                                    arm("full", 1, 110.0, [111.0, 110.0, 111.0]),
                                    arm("full", 2, 90.0, [91.0, 90.0, 91.0])],  # no ablation of seed 2: no pair
                              data={}, config=None)
    pairs = results.paired()
    assert [(p.data_seed, p.seed) for p in pairs] == [(7, 0), (7, 1)]
    assert pairs[0].d_pa_mpjpe == pytest.approx(-20.0) and pairs[0].d_mpjpe == pytest.approx(-20.0)
    assert pairs[0].noise == pytest.approx(1.0) and pairs[0].win
    # seed 1: ahead by 10 mm, but the ablation's curve swings by 20 mm between checkpoints
    assert pairs[1].noise == pytest.approx(20.0) and not pairs[1].win
    # jitter: the tails 121 120 121 (seed 0's both arms) and 110 130 110 (seed 1's ablation)
    scale = np.sqrt(6) * np.sqrt(2 / np.pi)
    assert pairs[0].jitter == pytest.approx(2 / scale) and pairs[0].jitter_win
    assert pairs[1].jitter == pytest.approx(40 / scale) and not pairs[1].jitter_win
    assert "yes" in results.table() and " no" in results.table()
    (summary,) = results.paired_summary()  # seed 2 has no pair: two pairs, -20 and -10
    assert (summary.variant, summary.pairs, summary.ahead, summary.wins, summary.jitter_wins) == ("all_3d", 2, 2, 1, 1)
    assert summary.d_pa_mpjpe == pytest.approx(-15.0)
    assert summary.d_pa_mpjpe_se == pytest.approx(np.std([-20.0, -10.0], ddof=1) / np.sqrt(2))
    assert "over 2 pairs: dMPJPE -15.0 +- 5.0, dPA-MPJPE -15.0 +- 5.0" in results.table()
    assert "ahead on 2, wins on 1 (ahead by more than twice the jitter on 1)" in results.table()


def test_store_curve_reads_logged_store_statistics():
    metrics = [{"step": 10, "store/mean_error_px": 9.0, "store/accepted_share": 0.4},
               {"step": 20, "store/mean_error_px": float("nan"), "store/accepted_share": 0.5},
               {"step": 30, "loss/total": 1.0},
               {"step": 40, "store/mean_error_px": 8.0, "store/accepted_share": 0.6}]
    assert store_curve(metrics) == [(10, 9.0, 0.4), (40, 8.0, 0.6)]


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
    assert data["config"]["training_seeds"] == [0, 1, 2]
    assert data["paired"][0]["d_pa_mpjpe"] == pytest.approx(-20.0) and data["paired"][0]["win"] is False
    assert data["paired_summary"][0]["pairs"] == 1 and np.isnan(data["paired_summary"][0]["d_pa_mpjpe_se"])
    path = tmp_path / "results.json"
    path.write_text(json.dumps(data))
    back = read_results(path)
    assert back.table() == results.table()


def test_table7_config_results_are_json(tmp_path):
    """The command's config (with a Path field) is written into results.json as plain JSON."""
    from mvspin.apps.experiment import Table7Config

    results = _results(tmp_path)
    results.config = Table7Config(out=tmp_path / "t7", quick=True)
    data = json.loads(json.dumps(results.to_dict()))
    assert data["config"]["out"] == str(tmp_path / "t7") and data["config"]["quick"] is True
