"""SPIN's crop conventions: the one crop-box rule and the one "inside the image" rule."""
import numpy as np
import pytest
import torch

from mvspin.geometry import (
    KEYPOINT_MIN_CONFIDENCE,
    SPIN_BBOX_SCALE_FACTOR,
    keypoint_crop_box,
    keypoint_crop_boxes,
    points_inside_image,
)


def test_constants_are_spins():
    assert SPIN_BBOX_SCALE_FACTOR == 1.2 and KEYPOINT_MIN_CONFIDENCE == 0.1


def test_keypoint_crop_boxes_batched(device, dtype):
    kp = torch.zeros(2, 3, 4, 3, dtype=dtype, device=device)
    # view (0, 0): box 100 x 40 around two confident points; a weak (0.05) and a NaN point are ignored
    kp[0, 0] = torch.tensor([[10.0, 20.0, 1.0], [110.0, 60.0, 0.9], [900.0, 900.0, 0.05], [float("nan"), 5.0, 1.0]])
    # view (0, 1): nobody; view (0, 2): one point; view (1, 0): two points on one spot
    kp[0, 2, 0] = torch.tensor([50.0, 50.0, 1.0])
    kp[1, 0, :2] = torch.tensor([[7.0, 8.0, 1.0], [7.0, 8.0, 1.0]])
    # view (1, 1): a tall box, 30 x 300 -> side 300
    kp[1, 1, :2] = torch.tensor([[100.0, 0.0, 0.5], [130.0, 300.0, 0.5]])
    box = keypoint_crop_boxes(kp)
    assert box.center.shape == (2, 3, 2) and box.scale.shape == (2, 3) and box.valid.dtype == torch.bool
    expect_valid = torch.tensor([[True, False, False], [False, True, False]], device=device)
    assert torch.equal(box.valid, expect_valid)
    torch.testing.assert_close(box.center[0, 0], torch.tensor([60.0, 40.0], dtype=dtype, device=device))
    torch.testing.assert_close(box.center[1, 1], torch.tensor([115.0, 150.0], dtype=dtype, device=device))
    torch.testing.assert_close(box.scale[0, 0], torch.tensor(1.2 * 100 / 200, dtype=dtype, device=device))
    torch.testing.assert_close(box.scale[1, 1], torch.tensor(1.2 * 300 / 200, dtype=dtype, device=device))
    # invalid boxes: finite placeholders (centre 0, scale 1)
    assert torch.all(box.center[~box.valid] == 0) and torch.all(box.scale[~box.valid] == 1)
    # other factor and threshold: the weak point joins at min_confidence 0.01
    box = keypoint_crop_boxes(kp[0, 0], min_confidence=0.01, scale_factor=1.0)
    torch.testing.assert_close(box.center, torch.tensor([455.0, 460.0], dtype=dtype, device=device))
    torch.testing.assert_close(box.scale, torch.tensor(890.0 / 200, dtype=dtype, device=device))  # x extent 10..900


def test_keypoint_crop_box_numpy_matches_batched_and_raises():
    rng = np.random.default_rng(0)
    kp = np.concatenate([rng.uniform(0, 640, size=(5, 17, 2)), rng.uniform(0, 1, size=(5, 17, 1))], axis=-1)
    batched = keypoint_crop_boxes(torch.from_numpy(kp))
    for i in range(5):
        center, scale = keypoint_crop_box(kp[i])
        np.testing.assert_allclose(center, batched.center[i].numpy(), rtol=0, atol=0)
        assert scale == float(batched.scale[i])
        conf = kp[i, kp[i, :, 2] > 0.1, :2]
        np.testing.assert_allclose(center, (conf.min(0) + conf.max(0)) / 2)
        assert scale == pytest.approx(1.2 * (conf.max(0) - conf.min(0)).max() / 200)
    # (K, 2): every point counts
    center, scale = keypoint_crop_box(np.array([[50.0, 0.0], [50.0, 100.0]]), scale_factor=1.0)
    np.testing.assert_allclose(center, [50, 50])
    assert scale == pytest.approx(0.5)
    with pytest.raises(ValueError, match="at least 2 keypoints with confidence > 0.1"):
        keypoint_crop_box(np.array([[1, 1, 0.9], [5, 5, 0.01]]))
    with pytest.raises(ValueError, match="all lie on one point"):
        keypoint_crop_box(np.array([[1, 1, 0.9], [1, 1, 0.9]]))
    with pytest.raises(ValueError, match=r"\(K, 3\)"):
        keypoint_crop_box(np.zeros((5, 4)))


def test_points_inside_image_pixel_centre_rule(device):
    # A 100 x 10 image covers [-0.5, 99.5) x [-0.5, 9.5): each pixel i covers [i - 0.5, i + 0.5).
    uv = np.array([[0.0, 0.0], [-0.5, -0.5], [99.49, 9.49], [99.5, 5.0], [5.0, 9.5], [-0.51, 5.0],
                   [np.nan, 1.0], [np.inf, 1.0], [1.0, -np.inf]])
    expected = np.array([True, True, True, False, False, False, False, False, False])
    np.testing.assert_array_equal(points_inside_image(uv, (100, 10)), expected)
    inside = points_inside_image(torch.tensor(uv, device=device), (100, 10))
    assert isinstance(inside, torch.Tensor) and inside.tolist() == expected.tolist()
    # per-view sizes broadcast: (V, 1, 2) against (V, K, 2)
    sizes = torch.tensor([[[100, 10]], [[50, 50]]], device=device)
    pts = torch.tensor([[[60.0, 5.0]], [[60.0, 5.0]]], device=device)
    assert points_inside_image(pts, sizes).tolist() == [[True], [False]]
    with pytest.raises(ValueError, match=r"uv must have shape \(\.\.\., 2\)"):
        points_inside_image(np.zeros((4, 3)), (10, 10))
