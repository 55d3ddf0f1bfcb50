"""Bad and partial input: clear errors, or unfitted bundles and ignored views, never NaN."""
from dataclasses import replace

import pytest
import torch

from mvspin.fitting import MVSMPLify, MVSMPLifyConfig, PerViewEstimate, SMPLify, SMPLifyConfig

FAST = dict(stage1_iterations=15, stage2_iterations=15)


def _subset(capture, n=3):
    est = capture.estimate
    return (capture.keypoints[:n].clone(), capture.crop_keypoints[:n].clone(),
            PerViewEstimate(est.rotmat[:n], est.betas[:n], est.cam[:n]), capture.cameras._replace(
                K=capture.cameras.K[:n], R=capture.cameras.R[:n], t=capture.cameras.t[:n],
                image_size=capture.cameras.image_size[:n]))


def _finite(result):
    for name in ("body_pose", "betas", "global_orient", "transl"):
        assert torch.isfinite(getattr(result, name)).all(), name


def test_wrong_shapes_and_counts_raise(body, capture):
    kp, crop, est, cams = _subset(capture)
    fitter = MVSMPLify(body, MVSMPLifyConfig(mode="calibrated", **FAST))
    with pytest.raises(ValueError, match=r"openpose25 keypoints .*must have shape \(B, V, 25, 3\), got \(3, 4, 17, 3\)"):
        fitter.fit(kp[..., :17, :], cameras=cams)
    with pytest.raises(ValueError, match="4 views but there are 3 cameras"):
        fitter.fit(kp, cameras=cams._replace(K=cams.K[:, :3], R=cams.R[:, :3], t=cams.t[:, :3]))
    with pytest.raises(ValueError, match="cameras are given for 2 bundles but keypoints for 3"):
        fitter.fit(kp, cameras=cams._replace(K=cams.K[:2], R=cams.R[:2], t=cams.t[:2]))
    with pytest.raises(ValueError, match="needs cameras"):
        fitter.fit(kp)
    per_view = MVSMPLify(body, MVSMPLifyConfig(**FAST))
    with pytest.raises(ValueError, match="needs per-view estimates"):
        per_view.fit(crop)
    with pytest.raises(ValueError, match=r"estimate betas must have shape \(3, 4, 10\)"):
        per_view.fit(crop, init=PerViewEstimate(est.rotmat, est.betas[:, :2], est.cam))
    with pytest.raises(ValueError, match=r"keypoints .*must have shape \(B, 25, 3\)"):
        SMPLify(body).fit(crop, est.rotmat[:, 0], est.betas[:, 0], est.cam[:, 0])
    with pytest.raises(ValueError, match="optimizer must be one of adam, lbfgs"):
        MVSMPLify(body, MVSMPLifyConfig(optimizer="sgd"))
    with pytest.raises(ValueError, match="mode must be one of per_view, calibrated"):
        MVSMPLify(body, MVSMPLifyConfig(mode="rig"))


@pytest.mark.parametrize("mode", ["calibrated", "per_view"])
def test_empty_bundle_is_reported_unfitted_and_unchanged(body, capture, mode):
    kp, crop, est, cams = _subset(capture)
    data = kp if mode == "calibrated" else crop
    data[1, ..., 2] = 0.0  # bundle 1: nothing detected
    data[2, 3] = float("nan")  # bundle 2, view 3: garbage, treated as missing
    fitter = MVSMPLify(body, MVSMPLifyConfig(mode=mode, calibrated_init="network", **FAST))
    r = fitter.fit(data, init=est, cameras=cams)
    _finite(r)
    assert r.fitted.tolist() == [True, False, True]
    assert r.view_used[2].tolist() == [True, True, True, False] and not r.view_used[1].any()
    assert torch.isinf(r.reprojection_error[1]) and torch.isinf(r.energy[1])
    assert torch.isfinite(r.reprojection_error[[0, 2]]).all() and torch.isinf(r.view_reprojection_error[2, 3])
    # the unfitted bundle keeps its initial body (the rotation average of its views' estimates)
    other = MVSMPLify(body, MVSMPLifyConfig(mode=mode, calibrated_init="network", stage1_iterations=0,
                                            stage2_iterations=0))
    start = other.fit(data, init=est, cameras=cams)
    torch.testing.assert_close(r.body_pose[1], start.body_pose[1])
    torch.testing.assert_close(r.betas[1], start.betas[1])
    torch.testing.assert_close(r.global_orient[1], start.global_orient[1])
    if mode == "per_view":  # an ignored view keeps its own start
        torch.testing.assert_close(r.global_orient[2, 3], est.rotmat[2, 3, 0])
        torch.testing.assert_close(r.cam[2, 3], est.cam[2, 3], atol=1e-4, rtol=1e-4)


def test_all_bundles_empty_and_single_view(body, capture):
    kp, crop, est, cams = _subset(capture)
    r = MVSMPLify(body, MVSMPLifyConfig(mode="calibrated", **FAST)).fit(torch.zeros_like(kp), cameras=cams)
    assert not r.fitted.any()
    _finite(r)
    one = MVSMPLify(body, MVSMPLifyConfig(**FAST)).fit(
        crop[:, :1], init=PerViewEstimate(est.rotmat[:, :1], est.betas[:, :1], est.cam[:, :1]))
    assert one.fitted.all() and one.global_orient.shape == (3, 1, 3, 3)
    smplify = SMPLify(body, SMPLifyConfig(**FAST)).fit(crop[:, 0], est.rotmat[:, 0], est.betas[:, 0], est.cam[:, 0])
    single = MVSMPLify(body, MVSMPLifyConfig(mode="calibrated", triangulation_fit_iterations=5, **FAST)).fit(
        kp[:1], cameras=cams._replace(K=cams.K[:1], R=cams.R[:1], t=cams.t[:1], image_size=cams.image_size[:1]))
    assert single.fitted.tolist() == [True] and single.world_orient.shape == (1, 3, 3)
    assert smplify.mode == "smplify" and smplify.iterations == (15, 15)


def test_meshes_only_when_asked(body, capture):
    kp, crop, est, cams = _subset(capture, 2)
    cfg = MVSMPLifyConfig(mode="calibrated", **FAST)
    r = MVSMPLify(body, cfg).fit(kp, init=est, cameras=cams)
    assert r.vertices is None and r.world_vertices is None
    r = MVSMPLify(body, cfg).fit(kp, init=est, cameras=cams, return_meshes=True)
    n = body.num_vertices
    assert r.world_vertices.shape == (2, n, 3) and r.vertices.shape == (2, 4, n, 3) and r.joints.shape == (2, 4, 24, 3)
    full = body(body_pose=r.body_pose, betas=r.betas, global_orient=r.world_orient, transl=r.world_transl)
    torch.testing.assert_close(r.world_vertices, full.vertices, atol=1e-5, rtol=0)
    pv = MVSMPLify(body, MVSMPLifyConfig(**FAST)).fit(crop, init=est, return_meshes=True)
    view2 = body(body_pose=pv.body_pose, betas=pv.betas, global_orient=pv.global_orient[:, 2], transl=pv.transl[:, 2])
    torch.testing.assert_close(pv.vertices[:, 2], view2.vertices, atol=1e-4, rtol=0)
    params = r.smpl_params()
    assert params["body_pose"].shape == (2, 69) and params["poses"].shape == (2, 72)
    with pytest.raises(ValueError, match="no world frame"):
        pv.smpl_params()
    assert pv.smpl_params(view=1)["global_orient"].shape == (2, 3)


@pytest.mark.parametrize("mode", ["per_view", "calibrated"])
def test_fast_path_fit_equals_full_forward_fit(body, capture, mode):
    kp, crop, est, cams = _subset(capture, 2)
    cfg = MVSMPLifyConfig(mode=mode, stage1_iterations=10, stage2_iterations=10, patience=0,
                          triangulation_fit_iterations=5)
    data = crop if mode == "per_view" else kp
    fast = MVSMPLify(body, cfg).fit(data, init=est if mode == "per_view" else None, cameras=cams)
    full_cfg = replace(cfg, keypoint_backend="full")
    full = MVSMPLify(body, full_cfg).fit(data, init=est if mode == "per_view" else None, cameras=cams)
    torch.testing.assert_close(fast.body_pose, full.body_pose, atol=2e-4, rtol=0)
    torch.testing.assert_close(fast.transl, full.transl, atol=2e-4, rtol=0)
    torch.testing.assert_close(fast.energy, full.energy, rtol=1e-4, atol=1e-3)


def test_lbfgs_and_early_stopping(body, capture):
    _, crop, est, _ = _subset(capture, 3)
    adam = MVSMPLify(body, MVSMPLifyConfig(patience=0)).fit(crop, init=est)  # 100 + 100 Adam steps
    fitter = MVSMPLify(body, MVSMPLifyConfig(optimizer="lbfgs", stage1_iterations=20, stage2_iterations=60))
    fitter.trace = []
    lbfgs = fitter.fit(crop, init=est)
    start = next(e for s, _, e, _ in fitter.trace if s == 2)
    # different local minima, the same quality: within 5% of Adam's energy, far below the start
    assert float(lbfgs.energy.sum()) <= 1.05 * float(adam.energy.sum()) and float(lbfgs.energy.sum()) < 0.5 * start
    stages = [s for s, *_ in fitter.trace]
    assert set(stages) == {1, 2} and stages.count(2) <= 1.1 * lbfgs.iterations[1] + 2  # ~1 evaluation per step
    stop = MVSMPLify(body, MVSMPLifyConfig(stage1_iterations=500, stage2_iterations=10, rel_tol=1e-4, patience=3))
    assert stop.fit(crop, init=est).iterations[0] < 500
