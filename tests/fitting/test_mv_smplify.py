"""MV-SMPLify (both camera modes) and SMPLify on the synthetic 4-camera capture.

Setting (conftest): 8 bundles, 4 views, 1000x1000 px, focal 1000 px, 2 px noise, 10% dropped,
openpose25 keypoints, the low-resolution free model. Errors are means over bundles in mm (14 LSP
joints, pelvis-centred).
"""
import numpy as np
import pytest
import torch

from calibration import Camera, Rig
from mvspin.data.synthetic_keypoints import SyntheticOptions, make_capture, random_rig
from mvspin.fitting import MVSMPLify, MVSMPLifyConfig, PerViewEstimate, SMPLify, pose_errors
from mvspin.geometry import axis_angle_to_matrix, geodesic_distance

CALIBRATED = MVSMPLifyConfig(mode="calibrated")
PER_VIEW = MVSMPLifyConfig(mode="per_view")


def world_errors(body, result, capture):
    gt = capture.gt
    m, pa = pose_errors(body, result.body_pose, result.betas, result.world_orient, gt.body_pose, gt.betas,
                        axis_angle_to_matrix(gt.global_orient))
    return float(m.mean()), float(pa.mean())


def crop_errors(body, result, capture, views):
    gt, v = capture.gt, len(views)
    rep = lambda x: x.repeat_interleave(v, 0)  # noqa: E731
    m, pa = pose_errors(body, rep(result.body_pose), rep(result.betas), result.global_orient.flatten(0, 1),
                        rep(gt.body_pose), rep(gt.betas), capture.crop_orient[:, views].flatten(0, 1))
    return float(m.mean()), float(pa.mean())


@pytest.fixture(scope="module")
def calibrated_fit(body, capture):
    return MVSMPLify(body, CALIBRATED).fit(capture.keypoints, init=capture.estimate, cameras=capture.cameras)


def test_calibrated_accuracy(body, capture, calibrated_fit):
    r = calibrated_fit
    mpjpe, pa = world_errors(body, r, capture)
    assert pa <= 20.0 and mpjpe <= 25.0, (mpjpe, pa)
    assert r.fitted.all() and r.view_used.all()
    assert float(r.reprojection_error.mean()) < 3.0  # about the 2 px noise
    # the per-view parameters are the same world body seen from each camera
    kp_views = body.keypoints_multiview("openpose25", r.body_pose, r.betas, r.global_orient, r.transl)
    kp_world = body.keypoints("openpose25", r.body_pose, r.betas, r.world_orient, r.world_transl)
    cams = capture.cameras
    expected = torch.einsum("bvij,bkj->bvki", cams.R, kp_world) + cams.t[:, :, None]
    torch.testing.assert_close(kp_views, expected, atol=1e-4, rtol=0)


def test_per_view_mode_and_single_view_comparison(body, capture, calibrated_fit):
    mv = MVSMPLify(body, PER_VIEW).fit(capture.crop_keypoints, init=capture.estimate)
    mv_mpjpe, mv_pa = crop_errors(body, mv, capture, [0, 1, 2, 3])
    assert mv_pa <= 35.0, mv_pa
    assert mv.body_pose.shape == (8, 23, 3, 3) and mv.global_orient.shape == (8, 4, 3, 3) and mv.cam.shape == (8, 4, 3)
    single = SMPLify(body).fit(capture.crop_keypoints[:, 0], capture.estimate.rotmat[:, 0],
                               capture.estimate.betas[:, 0], capture.estimate.cam[:, 0])
    sv_mpjpe, sv_pa = crop_errors(body, single, capture, [0])
    _, cal_pa = world_errors(body, calibrated_fit, capture)
    est, gt = capture.estimate, capture.gt
    _, est_pa = pose_errors(body, est.rotmat[:, 0, 1:], est.betas[:, 0], est.rotmat[:, 0, 0], gt.body_pose, gt.betas)
    est_pa = float(est_pa.mean())
    errors = (f"PA-MPJPE mm: calibrated {cal_pa:.1f}, per-view {mv_pa:.1f}, single-view {sv_pa:.1f}, "
              f"network estimate {est_pa:.1f}")
    assert sv_pa > mv_pa > cal_pa, errors  # more views, better; known cameras, best
    assert est_pa > sv_pa, errors  # every fit improves on its start


def test_calibrated_from_mean_pose_without_network(body, capture):
    r = MVSMPLify(body, CALIBRATED).fit_calibrated(capture.keypoints, capture.cameras)
    _, pa = world_errors(body, r, capture)
    assert pa <= 40.0, pa
    assert float(r.reprojection_error.mean()) < 5.0


def test_calibrated_with_a_wrong_person_view(body, gt_bodies, calibrated_fit, capture):
    bad = make_capture(body, gt_bodies, 4, seed=1, options=SyntheticOptions(outlier_views=1))
    r = MVSMPLify(body, CALIBRATED).fit(bad.keypoints, init=bad.estimate, cameras=bad.cameras)
    _, clean_pa = world_errors(body, calibrated_fit, capture)
    _, pa = world_errors(body, r, bad)
    assert pa <= 2.0 * clean_pa, (pa, clean_pa)
    assert torch.equal(~r.view_used, bad.outlier_views)  # the wrong views were found and ignored


def test_calibrated_with_lens_distortion(body, gt_bodies):
    rng = np.random.default_rng(7)
    dist = (-0.2, 0.05, 0.001, -0.001, 0.0)  # strong barrel distortion: ~25 px at the image corners
    rigs = [Rig([Camera(K=c.K, R=c.R, t=c.t, dist=dist, image_size=c.image_size, name=c.name)
                 for c in random_rig(4, rng)]) for _ in range(3)]
    cap = make_capture(body, gt_bodies.index(slice(0, 3)), seed=3, rigs=rigs)
    r = MVSMPLify(body, CALIBRATED).fit(cap.keypoints, cameras=cap.cameras)
    _, pa = world_errors(body, r, cap)
    assert pa <= 20.0, pa
    assert float(r.reprojection_error.mean()) < 3.5


def test_network_init_maps_crop_orientations_to_the_world(body, gt_bodies):
    exact = SyntheticOptions(estimate_pose_deg=0.0, estimate_orient_deg=0.0, estimate_betas_std=0.0)
    cap = make_capture(body, gt_bodies, 4, seed=2, options=exact)
    start = MVSMPLifyConfig(mode="calibrated", stage1_iterations=0, stage2_iterations=0)
    r = MVSMPLify(body, start).fit(cap.keypoints, init=cap.estimate, cameras=cap.cameras)
    gt = axis_angle_to_matrix(cap.gt.global_orient)
    angle = torch.rad2deg(geodesic_distance(r.world_orient, gt))
    assert float(angle.max()) < 0.1  # crop camera -> real camera -> world, averaged over views
    torch.testing.assert_close(r.betas, cap.gt.betas, atol=1e-5, rtol=0)
    # without the crop centres each view's estimate is off by its crop's ray angle
    est = cap.estimate
    no_centres = PerViewEstimate(est.rotmat, est.betas, est.cam)
    plain = MVSMPLify(body, start).fit(cap.keypoints, init=no_centres, cameras=cap.cameras)
    off = torch.rad2deg(geodesic_distance(plain.world_orient, gt))
    assert float(off.max()) > 0.5
