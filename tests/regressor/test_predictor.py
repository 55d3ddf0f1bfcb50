"""Inference library: full-image camera, whole-image box, batching, view fusion, SMPLify refinement."""
from __future__ import annotations

import cv2
import numpy as np
import pytest
import torch

from mvspin.body import BodyModel
from mvspin.fitting import SMPLifyConfig
from mvspin.geometry import (
    axis_angle_to_matrix,
    crop_cam_to_translation,
    crop_intrinsics,
    crop_to_image_points,
    geodesic_distance,
    perspective_projection,
)
from mvspin.regressor.hmr import HMRRegressor
from mvspin.regressor.predictor import (
    Prediction,
    Predictor,
    crop_camera_to_image_camera,
    fuse_view_predictions,
    refine_with_smplify,
    whole_image_box,
)
from mvspin.regressor.preprocess import crop_image


@pytest.fixture(scope="module")
def body() -> BodyModel:
    return BodyModel.free("low")


@pytest.fixture(scope="module")
def predictor(body: BodyModel) -> Predictor:
    torch.manual_seed(0)
    # 96-px inputs: batching does not depend on the input size, and the test stays fast.
    return Predictor(HMRRegressor(18, mean_params=body.mean_params), body, batch_size=16, input_size=96)


def test_image_camera_reproduces_the_crop_projection_at_every_depth():
    """Points 1 m in front of and behind the body project onto the same image pixels through
    (K_img, transl) as through the crop camera mapped back to the image (cv2 as reference)."""
    gen = torch.Generator().manual_seed(0)
    cam = torch.tensor([[0.9, 0.1, -0.2], [0.4, -0.3, 0.25], [1.6, 0.0, 0.05]], dtype=torch.float64)
    center = torch.tensor([[420.0, 130.0], [35.5, 700.25], [960.0, 540.0]], dtype=torch.float64)
    scale = torch.tensor([1.3, 4.7, 0.6], dtype=torch.float64)
    K, transl = crop_camera_to_image_camera(cam, center, scale)
    assert torch.allclose(transl, crop_cam_to_translation(cam))
    assert torch.allclose(K[:, 0, 0], 5000 * scale * 200 / 224) and torch.equal(K[:, :2, 2], center)
    body_points = torch.randn(3, 50, 3, generator=gen, dtype=torch.float64)  # +-1 m around the root
    camera_points = body_points + transl[:, None]
    crop_px = perspective_projection(camera_points, crop_intrinsics(dtype=torch.float64))
    expected = crop_to_image_points(crop_px, center, scale)
    for i in range(3):
        ref, _ = cv2.projectPoints(camera_points[i].numpy(), np.zeros(3), np.zeros(3), K[i].numpy(), None)
        np.testing.assert_allclose(ref[:, 0], expected[i].numpy(), atol=1e-6)


def test_image_centre_principal_point_would_miss_by_pixels():
    """Why K keeps the box centre as principal point: the image-centre variant (translation
    shifted by 2 (center - image centre) / (s b)) is right only at the root's depth; an arm 0.5 m
    nearer the camera, 800 px from the centre of a 1920x1080 image, lands ~8 px off."""
    cam = torch.tensor([0.9, 0.0, 0.0], dtype=torch.float64)
    center, scale, box = torch.tensor([1760.0, 540.0], dtype=torch.float64), torch.tensor(2.0, dtype=torch.float64), 400.0
    K, transl = crop_camera_to_image_camera(cam, center, scale)
    hand = torch.tensor([[0.0, 0.0, -0.5]], dtype=torch.float64) + transl
    exact = crop_to_image_points(perspective_projection(hand, crop_intrinsics(dtype=torch.float64)), center, scale)
    assert float((perspective_projection(hand, K) - exact).abs().max()) < 1e-9
    K_centre = K.clone()
    K_centre[:2, 2] = torch.tensor([959.5, 539.5], dtype=torch.float64)
    shift = torch.cat([2 * (center - K_centre[:2, 2]) / (cam[0] * box), torch.zeros(1, dtype=torch.float64)])
    miss = float((perspective_projection(hand + shift, K_centre) - exact).norm())
    assert 6 < miss < 10, miss


def test_crop_camera_conversion_rejects_mismatched_shapes():
    with pytest.raises(ValueError, match="equal leading dims"):
        crop_camera_to_image_camera(torch.zeros(2, 3), torch.zeros(3, 2), torch.ones(2))


def test_whole_image_box_covers_the_image():
    center, scale = whole_image_box(640, 480)
    np.testing.assert_allclose(center, [319.5, 239.5])
    assert scale == pytest.approx(3.2)
    image = np.full((480, 640, 3), 200, np.uint8)
    crop, M = crop_image(image, center, scale)
    # The image's outer pixel edges map inside the crop: every image pixel is seen.
    corners = np.array([[-0.5, -0.5], [639.5, 479.5]]) @ M[:, :2].T + M[:, 2]
    assert corners.min() >= -1e-9 and corners.max() <= 224 + 1e-9
    # The middle row crosses the full image width (pixel 0 samples the image edge at x = -0.5).
    assert (crop[112, 1:] == 200).all()
    with pytest.raises(ValueError, match="positive"):
        whole_image_box(0, 10)


def test_batched_prediction_equals_one_by_one(predictor: Predictor):
    rng = np.random.default_rng(0)
    images = [rng.integers(0, 255, size=(120, 90 + 10 * i, 3), dtype=np.uint8) for i in range(5)]
    centers = np.array([[40.0 + i, 60.0] for i in range(5)])
    scales = np.array([0.5, 0.6, 0.7, 0.55, 0.65])
    whole = predictor.predict_images(images, centers, scales)
    predictor.batch_size = 2
    try:
        timings: dict[str, float] = {}
        parts = predictor.predict_images(images, centers, scales, timings=timings)
    finally:
        predictor.batch_size = 16
    assert set(timings) == {"crop", "network", "body model"} and all(t > 0 for t in timings.values())
    assert len(whole) == 5 and whole.vertices.shape == (5, predictor.body.num_vertices, 3)
    for name in ("rotmat", "betas", "cam_crop", "K", "transl", "vertices"):
        torch.testing.assert_close(getattr(parts, name), getattr(whole, name), atol=1e-4, rtol=1e-5)
    # Posed joints are the body model's with the returned parameters (translation included).
    posed = predictor.body(body_pose=whole.body_pose, betas=whole.betas, global_orient=whole.global_orient,
                           transl=whole.transl)
    torch.testing.assert_close(posed.joints, whole.joints, atol=1e-4, rtol=1e-5)


def test_predict_crops_checks_its_inputs(predictor: Predictor):
    crops = torch.zeros(2, 3, 96, 96)
    with pytest.raises(ValueError, match="2 crops but 1 centres"):
        predictor.predict_crops(crops, np.zeros((1, 2)), np.ones(1))
    with pytest.raises(ValueError, match="scales positive"):
        predictor.predict_crops(crops, np.zeros((2, 2)), np.array([1.0, 0.0]))


def _rotations(axis_angle: list[list[float]]) -> torch.Tensor:
    return axis_angle_to_matrix(torch.tensor(axis_angle, dtype=torch.float64))


def test_fuse_views_averages_rotations_on_so3_not_axis_angle():
    """Two views of one joint, 0.6 rad either side of a 2.9 rad rotation about z: the rotation
    mean is the 2.9 rad rotation; averaging axis-angle vectors would wrap through the identity."""
    base = torch.eye(3, dtype=torch.float64).expand(2, 24, 3, 3).clone()
    base[0, 5] = _rotations([[0.0, 0.0, 2.9 + 0.3]])[0]
    base[1, 5] = _rotations([[0.0, 0.0, -(2 * torch.pi - 2.9 + 0.3)]])[0]  # = 2.6 rad about +z
    base[:, 0] = _rotations([[0.0, 1.0, 0.0], [0.0, -1.0, 0.0]])  # roots differ per view: ignored
    betas = torch.tensor([[1.0] * 10, [3.0] * 10], dtype=torch.float64)
    body_rot, mean_betas = fuse_view_predictions(base[None], betas[None])
    assert body_rot.shape == (1, 23, 3, 3) and mean_betas.shape == (1, 10)
    expected = _rotations([[0.0, 0.0, 2.9]])[0]  # halfway between 3.2 and 2.6 rad about z
    angle = geodesic_distance(body_rot[0, 4], expected)
    assert float(angle) < 1e-6, float(angle)
    torch.testing.assert_close(mean_betas[0], torch.full((10,), 2.0, dtype=torch.float64))
    assert float(geodesic_distance(body_rot[0, 0], torch.eye(3, dtype=torch.float64))) < 1e-9
    # A zero weight ignores a view.
    body_rot, mean_betas = fuse_view_predictions(base[None], betas[None], torch.tensor([[0.0, 1.0]],
                                                                                       dtype=torch.float64))
    assert float(geodesic_distance(body_rot[0, 4], base[1, 5])) < 1e-6
    torch.testing.assert_close(mean_betas[0], betas[1])
    with pytest.raises(ValueError, match="positive sum"):
        fuse_view_predictions(base[None], betas[None], torch.zeros(1, 2, dtype=torch.float64))


def test_smplify_refinement_moves_the_body_onto_the_keypoints(body: BodyModel):
    """Keypoints of a known body in a 640x480 image; the network's guess is a different pose:
    the refined body's reprojection error in image pixels is a fraction of the guess's."""
    g = torch.Generator().manual_seed(3)
    true_pose = 0.25 * torch.randn(1, 69, generator=g)
    true_orient = torch.tensor([[torch.pi, 0.2, 0.0]])  # upright, facing the camera
    center, scale = np.array([[400.0, 250.0]]), np.array([1.8])
    cam_true = torch.tensor([[0.85, 0.02, -0.05]])
    K, transl = crop_camera_to_image_camera(cam_true.double(), torch.tensor(center), torch.tensor(scale))
    with torch.no_grad():
        kp3d = body.keypoints("openpose25", true_pose, torch.zeros(1, 10), true_orient, transl.float())
    uv = perspective_projection(kp3d.double(), K)
    keypoints = torch.cat([uv, torch.ones(1, uv.shape[1], 1, dtype=torch.float64)], -1).numpy()

    guess_rot = torch.cat([axis_angle_to_matrix(true_orient)[:, None],
                           torch.eye(3).expand(1, 23, 3, 3)], dim=1)
    cam_guess = torch.tensor([[0.8, 0.0, 0.0]])
    K_guess, transl_guess = crop_camera_to_image_camera(cam_guess.double(), torch.tensor(center),
                                                        torch.tensor(scale))
    guess = Prediction(rotmat=guess_rot, betas=torch.zeros(1, 10), cam_crop=cam_guess,
                       center=torch.tensor(center, dtype=torch.float32),
                       scale=torch.tensor(scale, dtype=torch.float32), K=K_guess,
                       transl=transl_guess.float(), joints=torch.zeros(1, 24, 3))
    with torch.no_grad():
        guess_kp = body.keypoints("openpose25", guess_rot[:, 1:], torch.zeros(1, 10), guess_rot[:, :1],
                                  transl_guess.float())
    guess_error = (perspective_projection(guess_kp.double(), K_guess) - uv).norm(dim=-1).mean()

    config = SMPLifyConfig(stage1_iterations=20, stage2_iterations=40)
    refined, error = refine_with_smplify(guess, keypoints, body, config=config)
    assert refined.vertices is not None and refined.vertices.shape[0] == 1
    refit = perspective_projection(body.keypoints("openpose25", refined.rotmat[:, 1:], refined.betas,
                                                  refined.rotmat[:, :1], refined.transl).double(),
                                   refined.K)
    measured = (refit - uv).norm(dim=-1).mean()
    assert float(error[0]) == pytest.approx(float(measured), rel=0.05)
    assert float(measured) < 0.35 * float(guess_error), (float(measured), float(guess_error))


def _three_views_of_one_body(body: BodyModel):
    """A known body seen by three crop cameras with different root orientations: keypoints in
    each view's image pixels, and a network-like guess (right roots, rest pose, cameras off)."""
    from mvspin.geometry import axis_angle_to_matrix

    g = torch.Generator().manual_seed(11)
    true_pose = 0.25 * torch.randn(1, 69, generator=g)
    orient = axis_angle_to_matrix(torch.tensor([[np.pi, 0.0, 0.0], [np.pi, 0.6, 0.0], [np.pi, -0.7, 0.1]]))
    center = torch.tensor([[320.0, 240.0], [300.0, 260.0], [350.0, 230.0]], dtype=torch.float64)
    scale = torch.tensor([1.8, 2.0, 1.6], dtype=torch.float64)
    K, transl = crop_camera_to_image_camera(torch.tensor([[0.85, 0.02, -0.05], [0.8, -0.03, 0.0],
                                                          [0.9, 0.0, 0.04]], dtype=torch.float64), center, scale)
    with torch.no_grad():
        kp3d = body.keypoints("openpose25", true_pose.expand(3, 69), torch.zeros(3, 10), orient, transl.float())
    uv = perspective_projection(kp3d.double(), K)
    keypoints = torch.cat([uv, torch.full((3, uv.shape[1], 1), 0.9, dtype=torch.float64)], -1).numpy()
    guess_rot = torch.cat([orient[:, None], torch.eye(3).expand(3, 23, 3, 3)], dim=1)
    cam_guess = torch.tensor([[0.8, 0.0, 0.0]] * 3)
    K_guess, transl_guess = crop_camera_to_image_camera(cam_guess.double(), center, scale)
    guess = Prediction(rotmat=guess_rot, betas=torch.zeros(3, 10), cam_crop=cam_guess, center=center.float(),
                       scale=scale.float(), K=K_guess, transl=transl_guess.float(), joints=torch.zeros(3, 24, 3))
    return guess, keypoints, uv


def _view_errors(body: BodyModel, pred: Prediction, uv: torch.Tensor) -> torch.Tensor:
    with torch.no_grad():
        kp = body.keypoints("openpose25", pred.rotmat[:, 1:], pred.betas, pred.rotmat[:, :1], pred.transl)
    return (perspective_projection(kp.double(), pred.K) - uv).norm(dim=-1).mean(-1)


def test_mvsmplify_refinement_fits_one_body_to_all_views(body: BodyModel):
    from mvspin.fitting import MVSMPLifyConfig
    from mvspin.regressor.predictor import refine_views_with_mvsmplify

    guess, keypoints, uv = _three_views_of_one_body(body)
    before = _view_errors(body, guess, uv)
    config = MVSMPLifyConfig(mode="per_view", stage1_iterations=20, stage2_iterations=40)
    refined, error = refine_views_with_mvsmplify(guess, keypoints, body, config=config)
    assert error.shape == (3,) and refined.vertices.shape == (3, body.num_vertices, 3)
    # One body: pose and shape shared by the views, roots and cameras per view.
    assert torch.allclose(refined.rotmat[1:, 1:], refined.rotmat[:1, 1:].expand(2, 23, 3, 3), atol=1e-6)
    assert torch.allclose(refined.betas[1:], refined.betas[:1].expand(2, 10), atol=1e-6)
    assert not torch.allclose(refined.rotmat[0, 0], refined.rotmat[1, 0], atol=0.1)
    after = _view_errors(body, refined, uv)
    np.testing.assert_allclose(error.numpy(), after.numpy(), rtol=0.1)
    assert float(after.max()) < 0.35 * float(before.min()), (after, before)
    with pytest.raises(ValueError, match="mode='per_view'"):
        refine_views_with_mvsmplify(guess, keypoints, body, config=MVSMPLifyConfig(mode="calibrated"))


def test_posed_prediction_of_the_networks_own_parameters_is_the_prediction(predictor: Predictor, body: BodyModel):
    """Re-posing a prediction with its own parameters gives it back (camera, joints, mesh); a
    new body pose moves the joints but not the camera, and wrong shapes are named."""
    from mvspin.regressor.predictor import posed_prediction

    gen = torch.Generator().manual_seed(3)
    crops = torch.randn(3, 3, 96, 96, generator=gen)
    pred = predictor.predict_crops(crops, np.array([[50.0, 60.0], [200.0, 100.0], [10.0, 5.0]]),
                                   np.array([0.5, 1.2, 0.3]))
    again = posed_prediction(pred, body, pred.rotmat, pred.betas)
    for name in ("K", "transl", "cam_crop", "rotmat", "betas"):
        torch.testing.assert_close(getattr(again, name), getattr(pred, name), atol=1e-6, rtol=1e-6)
    assert float((again.joints - pred.joints).abs().max()) < 1e-5
    assert float((again.vertices - pred.vertices).abs().max()) < 1e-5
    bent = pred.rotmat.clone()
    bent[:, 18] = axis_angle_to_matrix(torch.tensor([[0.0, 0.0, 1.2]])).expand(3, 3, 3)  # left elbow
    moved = posed_prediction(pred, body, bent, pred.betas)
    torch.testing.assert_close(moved.K, pred.K)
    assert float((moved.joints - pred.joints).norm(dim=-1).max()) > 0.05  # the hand moves centimetres
    with pytest.raises(ValueError, match=r"rotmat must be \(3, 24, 3, 3\)"):
        posed_prediction(pred, body, pred.rotmat[:2], pred.betas)


def test_timed_adds_seconds_per_stage_even_when_the_block_fails():
    from mvspin.regressor.predictor import timed

    seconds: dict[str, float] = {"crop": 1.0}
    with timed(seconds, "crop"):
        sum(range(1000))
    with pytest.raises(RuntimeError), timed(seconds, "network"):
        raise RuntimeError("out of memory")
    assert seconds["crop"] > 1.0 and seconds["network"] >= 0.0 and set(seconds) == {"crop", "network"}
    with timed(None, "crop"):  # no timings wanted: nothing to record into
        pass
