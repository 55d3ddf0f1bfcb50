"""The blazepose33 keypoint set: its maps to COCO-17 and BODY_25, its points on the free model,
and the fitter leaving its hips out of the body stage."""
from __future__ import annotations

import warnings

import numpy as np
import pytest
import torch

from mvspin.body import BodyModel, get_keypoint_set, keypoint_index_map


@pytest.fixture(scope="module")
def body():
    return BodyModel.free("low")


def _names(source, target):
    s, t = get_keypoint_set(source), get_keypoint_set(target)
    return {s.names[i]: t.names[j] for i, j in keypoint_index_map(source, target)}


def test_maps_to_and_from_coco17_and_body25():
    to_coco = _names("blazepose33", "coco17")
    assert len(to_coco) == 17  # every COCO point is a BlazePose point
    assert all(a == b for a, b in to_coco.items())
    assert _names("coco17", "blazepose33") == {b: a for a, b in to_coco.items()}
    to_body25 = _names("blazepose33", "openpose25")
    assert to_body25["left_heel"] == "left_heel" and to_body25["right_hip"] == "right_hip"
    # neither the foot tip (BODY_25 has toes) nor the eye corners coincide with a BODY_25 point
    assert not {"left_foot_index", "left_eye_inner", "mouth_left", "left_index"} & set(to_body25)
    assert len(to_body25) == 19
    assert len(_names("openpose25", "blazepose33")) == 19  # BODY_25 lacks neck/mid-hip/toes there


def test_flip_swaps_sides():
    s = get_keypoint_set("blazepose33")
    flipped = [s.names[i] for i in s.flip_permutation]
    assert flipped[s.index("mouth_left")] == "mouth_right"
    assert flipped[s.index("left_foot_index")] == "right_foot_index"
    assert flipped[s.index("nose")] == "nose"


def test_points_sit_where_blazepose_puts_them(body):
    kp = body(keypoints="blazepose33").keypoints[0].numpy()  # rest pose, metres, y up
    s = get_keypoint_set("blazepose33")
    p = {n: kp[i] for i, n in enumerate(s.names)}
    eye_dist = np.linalg.norm(p["left_eye"] - p["right_eye"])
    assert 0.04 < eye_dist < 0.09
    # inner corners lie between the eye centres, outer ones outside
    assert np.linalg.norm(p["left_eye_inner"] - p["right_eye_inner"]) < eye_dist
    assert np.linalg.norm(p["left_eye_outer"] - p["right_eye_outer"]) > eye_dist
    # the mouth is below the nose and above the chin-level, its corners apart
    assert p["mouth_left"][1] < p["nose"][1]
    assert 0.02 < np.linalg.norm(p["mouth_left"] - p["mouth_right"]) < 0.08
    # hand points lie beyond the wrist, foot tips ahead of the heels
    for side in ("left", "right"):
        arm = p[f"{side}_wrist"] - p[f"{side}_elbow"]
        for finger in ("pinky", "index", "thumb"):
            assert np.dot(p[f"{side}_{finger}"] - p[f"{side}_wrist"], arm) > 0
        foot = p[f"{side}_foot_index"] - p[f"{side}_heel"]
        assert 0.12 < np.linalg.norm(foot) < 0.35


def test_fitter_ignores_the_blazepose_hips_in_the_body_stage(body):
    from mvspin.fitting.keypoint_targets import KeypointTargets

    with warnings.catch_warnings():
        warnings.simplefilter("error")  # the model places every point: nothing is ignored
        t = KeypointTargets.build(body, "blazepose33")
    assert t.model_set == "blazepose33" and not t.ignored
    w = dict(zip(t.names, t.weights.tolist()))
    assert w["left_hip"] == 0.0 and w["right_hip"] == 0.0 and w["left_knee"] == 1.0
    torso = {n for n, flag in zip(t.names, t.torso.tolist()) if flag}
    assert torso == {"left_hip", "right_hip", "left_shoulder", "right_shoulder"}
    assert torch.isfinite(t.weights).all()
