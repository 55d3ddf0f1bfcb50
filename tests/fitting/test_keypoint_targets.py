"""Mapping named keypoint sets onto the body model's keypoints, with weights."""
import warnings

import pytest
import torch

from mvspin.body import BodyModel, get_keypoint_set
from mvspin.fitting import KeypointTargets
from tests.body.fake_smpl import write_smpl_dir


def test_own_set_maps_one_to_one_with_ignored_points_and_custom_weights(body):
    t = KeypointTargets.build(body, "openpose25", {"nose": 0.5, "left_hip": 3.0}, ignored_points=("neck", "left_hip"))
    names = get_keypoint_set("openpose25").names
    assert t.model_set == "openpose25" and not t.gather_model and t.ignored == ()
    assert t.data_index.tolist() == list(range(25))
    w = dict(zip(t.names, t.weights.tolist()))
    assert w["nose"] == 0.5 and w["left_hip"] == 0.0 and w["neck"] == 0.0 and w["right_hip"] == 1.0
    assert w["mid_hip"] == 1.0
    torso = {n for n, flag in zip(names, t.torso.tolist()) if flag}
    assert torso == {"left_shoulder", "right_shoulder", "left_hip", "right_hip"}
    assert torch.equal(t.torso_primary, t.torso) and not t.torso_fallback.any()  # no ground-truth torso here


def test_spin49_torso_groups_and_spin_ignored_joints(body):
    from mvspin.fitting.config import SPIN_IGNORED_POINTS

    t = KeypointTargets.build(body, "spin49", ignored_points=SPIN_IGNORED_POINTS)
    primary = {n for n, f in zip(t.names, t.torso_primary.tolist()) if f}
    fallback = {n for n, f in zip(t.names, t.torso_fallback.tolist()) if f}
    assert primary == {"op_right_hip", "op_left_hip", "op_right_shoulder", "op_left_shoulder"}
    assert fallback == {"right_hip", "left_hip", "right_shoulder", "left_shoulder"}
    zero = {n for n, w in zip(t.names, t.weights.tolist()) if w == 0}
    assert zero == {"op_neck", "op_right_hip", "op_left_hip", "right_hip", "left_hip"}  # SPIN's ign_joints


def test_select_and_shape_guard(body):
    t = KeypointTargets.build(body, "coco17")
    kp = torch.arange(2 * 3 * 17 * 3, dtype=torch.float32).view(2, 3, 17, 3)
    assert t.select(kp).shape == (2, 3, len(t.names), 3)
    with pytest.raises(ValueError, match=r"coco17 keypoints must have shape \(\.\.\., 17, \?\)"):
        t.select(torch.zeros(2, 3, 25, 3))


def test_unknown_names_raise(body):
    with pytest.raises(KeyError, match="not in coco17"):
        KeypointTargets.build(body, "coco17", {"neck": 1.0})
    with pytest.raises(KeyError, match="unknown keypoint set"):
        KeypointTargets.build(body, "body99")


def test_set_the_model_cannot_make_falls_back_and_ignores_missing(tmp_path):
    # SMPL without SPIN's regressor files cannot make spin49's LSP/H36M points (head top, ...).
    write_smpl_dir(tmp_path, spin_files=False)
    smpl = BodyModel.from_smpl_dir(tmp_path)
    assert "spin49" not in smpl.available_keypoint_sets
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        t = KeypointTargets.build(smpl, "spin49")
    assert any("cannot place" in str(w.message) for w in caught)
    assert t.model_set != "spin49" and t.gather_model
    assert {"head_top", "jaw_h36m", "head_h36m", "neck", "spine_h36m"} <= set(t.ignored)
    assert "op_nose" in t.names and "right_ankle" in t.names
    # every matched pair sits on the same anatomical point
    data, model = get_keypoint_set("spin49"), get_keypoint_set(t.model_set)
    for i, j in zip(t.data_index.tolist(), t.model_index.tolist()):
        assert data.points[i] == model.points[j]
