"""Sequence fitting on the motion suite (mvspin.data.motion_suite): a plausible body shape on
every test motion, the same accuracy at any resolution and frame rate, sharp events kept while
jitter is removed. Default SequenceFitConfig throughout (chosen on the validation part)."""
from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import torch

from calibration import Camera, Rig, triangulate_points
from mvspin.body import rest_measurements
from mvspin.data.motion_suite import TEST, make_case, motion_params, suite, suite_rig
from mvspin.data.synthetic_keypoints import BodyParams
from mvspin.data.synthetic_recording import RecordingOptions, make_rig_recording
from mvspin.fitting.association import associate_subjects
from mvspin.fitting.sequence import SequenceFitConfig, fit_sequence
from mvspin.geometry import axis_angle_to_matrix


def _keypoints(body, pose, betas, orient, transl):
    return body.keypoints("openpose25", pose, betas, orient, transl)


def _gt(body, rec):
    g = rec.gt
    return _keypoints(body, g.body_pose, g.betas, axis_angle_to_matrix(g.global_orient), g.transl)


def _fit(body, rec, fps, config=None):
    kp = associate_subjects(rec.detections, rec.rig, "openpose25", fps=fps).keypoints[0]
    r = fit_sequence(body, kp, rec.rig, "openpose25", config=config, fps=fps)
    return r, _keypoints(body, r.body_pose, r.betas.expand(r.num_frames, -1), r.global_orient, r.transl)


def _mpjpe_mm(pred, gt) -> float:
    return float((pred - gt).norm(dim=-1).mean()) * 1000


def _rest_measures(body, betas):
    """Standing height and chest depth (front to back at the chest joint's height), metres."""
    height, depth = rest_measurements(body, betas[None])
    return float(height[0]), float(depth[0])


def test_the_parts_are_apart():
    val, test = suite("validation"), suite("test")
    assert not {c.seed for c in val} & {c.seed for c in test}
    assert {c.fps for c in val + test} == {30, 60, 120}
    assert {len(c.cameras) for c in test} >= {2, 4, 8}
    # choices made on validation must see the few-camera rigs the test part has
    assert sum(len(c.cameras) <= 3 for c in val) >= 4 and sum(len(c.cameras) == 2 for c in val) >= 3
    with pytest.raises(ValueError):
        suite("train")


def test_fitted_shape_is_a_plausible_person_on_every_test_motion(body):
    for case in TEST:
        rec = make_case(body, case)
        r, _ = _fit(body, rec, case.fps)
        assert float(r.betas.abs().max()) <= 3.0, (case.name, r.betas)
        h_fit, d_fit = _rest_measures(body, r.betas)
        h_gt, d_gt = _rest_measures(body, rec.gt.betas[0])
        assert abs(h_fit - h_gt) < 0.02, (case.name, h_fit, h_gt)
        # Chest depth is not seen by the keypoints; it follows from the bone lengths through the
        # shape space's correlations. tools/shape_observability.py (low mesh, 3000 prior bodies):
        # the best linear estimate from the 26 segment lengths fit-rig sees (the detector hips
        # have weight 0) leaves 1.3 cm std / 2.6 cm p95 when each length is known to 2 mm, 1.9 /
        # 3.9 cm at 5 mm (with the hips: 0.75 / 1.4 cm at 2 mm). The fit's shape prior (as many
        # frames as the data) shrinks it further towards the mean body: on the validation part (full
        # mesh) |error| 2.3 cm mean, 5.8 max (the mean body's 3.0, 7.6). So 2 cm on every body is
        # beyond these keypoints; bounded here: within 2.5 cm, or no further from the truth
        # than the mean body is, plus 1 cm (betas of -12 gave a bloated belly). Test part,
        # before this bound: +4.2, +2.0, -2.9, -5.7 cm on walk, walk_120fps, run, jump.
        d_mean = _rest_measures(body, torch.zeros_like(r.betas))[1]
        assert abs(d_fit - d_gt) < max(0.025, abs(d_mean - d_gt) + 0.01), (case.name, d_fit, d_gt, d_mean)


def _scaled_rig(rig: Rig, s: float) -> Rig:
    cams = []
    for c in rig:
        K = np.array(c.K, dtype=np.float64).copy()
        K[:2] *= s
        w, h = c.image_size
        cams.append(Camera(K=K, R=c.R, t=c.t, dist=c.dist, image_size=(round(w * s), round(h * s)), name=c.name))
    return Rig(cams)


def test_same_accuracy_at_540p_1080p_and_2160p(body):
    case = dataclasses.replace(TEST[0], duration_s=1.5)
    rec = make_case(body, case)
    gt = _gt(body, rec)
    errors = []
    for s in (0.5, 1.0, 2.0):  # the same recording rendered at another resolution
        scaled = dataclasses.replace(rec, rig=_scaled_rig(rec.rig, s),
                                     detections=rec.detections * torch.tensor([s, s, 1.0]))
        _, pred = _fit(body, scaled, case.fps)
        errors.append(_mpjpe_mm(pred, gt))
    assert max(errors) <= 1.05 * min(errors), errors


def _walk(body, cameras: int, seed: int, seconds: float, noise_px, betas_std: float = 1.0, motion: str = "walk",
          **options):
    """A 60 fps walk (or another of the suite's motions) seen by ``cameras`` of the suite's tripods."""
    rng = np.random.default_rng(seed)
    betas = torch.as_tensor(np.clip(betas_std * rng.normal(size=body.num_betas), -2, 2), dtype=torch.float32)
    params = motion_params(body, motion, 60, seconds, betas, rng)
    opt = RecordingOptions(num_frames=len(params), num_views=cameras, noise_px=noise_px, flip_view=None,
                           outlier_view=None, bystander_rate=0.0, **options)
    return make_rig_recording(body, opt, seed=seed, motion=params, rig=suite_rig(("tripod",) * cameras, rng))


def test_two_cameras_get_more_refinement_steps_and_four_the_same(body):
    """``refine_reference_cameras``: a subject seen by 2 cameras gets twice the refinement steps
    (here 8.6 mm against 9.6 with the 4-camera count), one seen by 4 exactly the configured ones."""
    def error(rec, **change):
        return _mpjpe_mm(_fit(body, rec, 60, SequenceFitConfig(**change))[1], _gt(body, rec))

    two = _walk(body, 2, 31, 1.5, (1.5, 3.0))
    scaled, fixed = error(two), error(two, refine_reference_cameras=0)
    assert scaled < 0.95 * fixed, (scaled, fixed)
    assert error(two, refine_reference_cameras=0, refine_iterations=12) == pytest.approx(scaled, rel=1e-6)
    four = _walk(body, 4, 5, 1.0, (2.0, 3.0), betas_std=0.0, drop_rate=0.0)
    assert error(four) == error(four, refine_reference_cameras=0)


def test_key_frames_by_lm_with_three_or_more_cameras_and_by_adam_with_two(body):
    """``keyframe_lm_cameras``: a subject seen by 4 cameras gets Levenberg-Marquardt key frames
    (the fit equals one with ``keyframe.optimizer="lm"``), here 5.7 mm against Adam's 9.7 on a
    jump (fresh seeds, not in the suite); one seen by 2 keeps Adam's exactly."""
    def fit(rec, config=None):
        return _mpjpe_mm(_fit(body, rec, 60, config)[1], _gt(body, rec))

    adam = SequenceFitConfig(keyframe_lm_cameras=None)
    lm = SequenceFitConfig(keyframe_lm_cameras=None,
                           keyframe=dataclasses.replace(SequenceFitConfig().keyframe, optimizer="lm"))
    four = _walk(body, 4, 6, 1.5, (2.0, 3.0), motion="jump")
    default = fit(four)
    assert default == fit(four, lm)
    assert default < 0.8 * fit(four, adam), default
    two = _walk(body, 2, 31, 1.5, (1.5, 3.0))
    assert fit(two) == fit(two, adam)


def test_two_cameras_fit_the_same_at_any_resolution(body):
    """Two opposite cameras leave depth to the priors, so the key frames' balance of data and
    priors decides the fit. With the key frames in image pixels (``keyframe_frame_px=None``) this
    recording at 540p / 1080p / 2160p fitted 11.3 / 10.4 / 9.6 mm (18% apart); in frame pixels (the
    default) the three are equal."""
    rec = _walk(body, 2, 31, 1.5, (1.5, 3.0))
    gt = _gt(body, rec)
    errors = []
    for s in (0.5, 1.0, 2.0):
        scaled = dataclasses.replace(rec, rig=_scaled_rig(rec.rig, s),
                                     detections=rec.detections * torch.tensor([s, s, 1.0]))
        errors.append(_mpjpe_mm(_fit(body, scaled, 60)[1], gt))
    assert max(errors) <= 1.01 * min(errors), errors


def test_same_accuracy_at_30_and_120_fps(body):
    errors = []
    for fps in (30, 120):
        rng = np.random.default_rng(7)  # the same motion parameters, body and rig at both rates
        betas = torch.as_tensor(np.clip(rng.normal(size=body.num_betas), -2, 2), dtype=torch.float32)
        motion = motion_params(body, "walk", fps, 2.0, betas, rng)
        rig = suite_rig(("tripod",) * 4, rng)
        opt = RecordingOptions(num_frames=len(motion), num_views=4, noise_px=(2.0, 3.0), flip_view=None,
                               outlier_view=None, bystander_rate=0.0)
        rec = make_rig_recording(body, opt, seed=3, motion=motion, rig=rig)
        _, pred = _fit(body, rec, fps)
        errors.append(_mpjpe_mm(pred, _gt(body, rec)))
    assert max(errors) <= 1.05 * min(errors), errors


def _acceleration(x, fps):
    return (x[2:] - 2 * x[1:-1] + x[:-2]).norm(dim=-1) * fps ** 2


def test_a_landing_keeps_its_peak_and_a_still_pose_loses_its_jitter(body):
    fps = 60
    rng = np.random.default_rng(11)
    betas = torch.zeros(body.num_betas)
    motion = motion_params(body, "jump", fps, 2.0, betas, rng)
    n = len(motion)
    # a still pose after it: the jump's first frame held for a second
    still = BodyParams(*(torch.cat([x, x[:1].expand(fps, -1)]) for x in
                         (motion.global_orient, motion.body_pose, motion.betas, motion.transl)))
    rig = suite_rig(("tripod",) * 4, rng)
    opt = RecordingOptions(num_frames=n + fps, num_views=4, noise_px=(2.0, 3.0), flip_view=None, outlier_view=None,
                           bystander_rate=0.0)
    rec = make_rig_recording(body, opt, seed=5, motion=still, rig=rig)
    _, pred = _fit(body, rec, fps)
    gt = _gt(body, rec)
    ankles = [11, 14]  # OpenPose right and left ankle
    a_fit, a_gt = _acceleration(pred[:n, ankles], fps), _acceleration(gt[:n, ankles], fps)
    peak_gt, peak_fit = float(a_gt.max()), float(a_fit.max())
    assert peak_gt > 30  # the landing stops the feet dead: tens of m/s^2
    assert abs(peak_fit - peak_gt) <= 0.3 * peak_gt, (peak_fit, peak_gt)
    # on the still second the detections' jitter (2-3 px) is gone from the fit: its keypoints'
    # acceleration is a small share of plain triangulation's (the truth's is 0)
    det = rec.detections[n:, :, 0]
    tri = triangulate_points(det[..., :2], det[..., 2], rec.rig.to_torch(), threshold_px=None)
    jitter_tri = float(_acceleration(tri.points.float(), fps)[tri.valid[2:] & tri.valid[1:-1] & tri.valid[:-2]].mean())
    jitter_fit = float(_acceleration(pred[n:], fps).mean())
    assert jitter_fit < 0.1 * jitter_tri, (jitter_fit, jitter_tri)


def test_ankles_swapped_in_two_of_four_cameras_do_not_make_the_fit_jump(body):
    """Two cameras label the ankles the other way round (a detector's left/right confusion, as
    in one camera of the real Pose2Sim demo): the consensus then splits two views against two,
    and dropping the losing pair frame by frame made the ankle flip between two places (the
    fit's acceleration up to 1.8x the truth's peak; 1.2x when every view is kept)."""
    fps = 30
    rng = np.random.default_rng(11)
    motion = motion_params(body, "walk", fps, 1.0, torch.zeros(body.num_betas), rng)
    rig = suite_rig(("tripod",) * 4, rng)
    opt = RecordingOptions(num_frames=len(motion), num_views=4, noise_px=(2.0, 3.0), flip_view=None,
                           outlier_view=None, bystander_rate=0.0)
    rec = make_rig_recording(body, opt, seed=5, motion=motion, rig=rig)
    ankles = [11, 14]  # OpenPose right and left ankle
    rec.detections[:, :2, 0, ankles] = rec.detections[:, :2, 0, ankles[::-1]].clone()
    _, pred = _fit(body, rec, fps)
    a_fit, a_gt = _acceleration(pred, fps), _acceleration(_gt(body, rec), fps)
    assert float(a_fit.max()) <= 1.5 * float(a_gt.max()), (float(a_fit.max()), float(a_gt.max()))
