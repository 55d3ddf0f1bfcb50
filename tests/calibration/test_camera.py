"""Camera and Rig: validation, projection against OpenCV, scaling, tensors."""
import cv2
import numpy as np
import pytest
import torch

from calibration import Camera, Rig, stack_rigs


def _camera(dist=(0.05, -0.02, 0.001, 0.002, 0.01), name="c0") -> Camera:
    return Camera.look_at(eye=(3.0, 1.5, 2.0), target=(0.0, 1.0, 0.0), focal=900.0, image_size=(800, 600),
                          dist=dist, name=name)


def test_look_at_centres_target_and_is_upright():
    cam = Camera.look_at(eye=(0, 1, 4), target=(0, 1, 0), focal=1000, image_size=(1000, 1000))
    np.testing.assert_allclose(cam.project(np.array([[0.0, 1.0, 0.0]])), [[499.5, 499.5]], atol=1e-9)
    up, down = cam.project(np.array([[0.0, 1.5, 0.0], [0.0, 0.5, 0.0]]))
    assert up[1] < 499.5 < down[1]  # world +Y is up in the image
    right = cam.project(np.array([[0.5, 1.0, 0.0]]))[0]
    assert right[0] > 499.5  # looking along -Z with +Y up, +X is on the right
    assert np.linalg.det(cam.R) > 0.999
    np.testing.assert_allclose(cam.center, [0, 1, 4], atol=1e-12)


def test_project_matches_opencv():
    cam = _camera()
    pts = np.random.default_rng(0).normal(size=(50, 3)) * 0.5 + [0.0, 1.0, 0.0]
    rvec, _ = cv2.Rodrigues(cam.R)
    ref, _ = cv2.projectPoints(pts, rvec, cam.t, cam.K, cam.dist)
    np.testing.assert_allclose(cam.project(pts), ref[:, 0], atol=1e-8)


def test_scaled_camera_maps_pixel_centres():
    cam = _camera(dist=())
    half = cam.scaled(0.5)
    pts = np.array([[0.1, 1.2, 0.3], [-0.2, 0.8, 0.1]])
    full_px, half_px = cam.project(pts), half.project(pts)
    np.testing.assert_allclose(half_px, 0.5 * (full_px + 0.5) - 0.5, atol=1e-9)
    assert half.image_size == (400, 300)


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"K": np.eye(2)}, r"K must have shape \(3, 3\), got \(2, 2\)"),
        ({"R": np.diag([1.0, 1.0, -1.0])}, "not a rotation"),
        ({"t": np.zeros(2)}, r"t must have shape \(3\), got \(2,\)"),
        ({"dist": np.zeros(3)}, "distortion must have"),
        ({"t": np.array([0.0, np.nan, 0.0])}, "NaN"),
    ],
)
def test_invalid_camera_raises(kwargs, match):
    base = dict(K=np.array([[500.0, 0, 320], [0, 500, 240], [0, 0, 1]]), R=np.eye(3), t=np.zeros(3))
    base.update(kwargs)
    with pytest.raises(ValueError, match=match):
        Camera(**base)


def test_rig_to_torch_and_stack():
    rig = Rig([_camera(name="a"), _camera(dist=(), name="b")])
    ct = rig.to_torch(torch.float64)
    assert ct.K.shape == (2, 3, 3) and ct.dist.shape == (2, 5) and ct.image_size.tolist() == [[800, 600]] * 2
    assert torch.all(ct.dist[1] == 0)
    stacked = stack_rigs([rig, rig])
    assert stacked.R.shape == (2, 2, 3, 3) and stacked.num_views == 2
    with pytest.raises(ValueError, match="unique"):
        Rig([_camera(name="a"), _camera(name="a")])
    with pytest.raises(ValueError, match="same number of cameras"):
        stack_rigs([rig, rig.subset([0])])
    assert Rig([_camera(dist=())]).to_torch().dist is None
