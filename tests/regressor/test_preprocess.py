"""SPIN-style crops, normalisation and boxes."""
from __future__ import annotations

import cv2
import numpy as np
import pytest
import torch

from mvspin.geometry import crop_to_image_transform, image_to_crop_transform
from mvspin.regressor.preprocess import (
    IMAGENET_MEAN,
    IMAGENET_STD,
    bbox_to_center_scale,
    crop_image,
    normalize_crop,
    read_image,
    transform_points,
)


def _blob_image(points: np.ndarray, shape=(600, 800), sigma=2.5) -> np.ndarray:
    """One Gaussian dot per channel at sub-pixel positions (pixel centres at integers)."""
    ys, xs = np.mgrid[0:shape[0], 0:shape[1]].astype(np.float64)
    image = np.zeros((*shape, 3), np.uint8)
    for channel, (x, y) in enumerate(points):
        blob = np.exp(-((xs - x) ** 2 + (ys - y) ** 2) / (2 * sigma ** 2))
        image[..., channel] = np.round(255 * blob).astype(np.uint8)
    return image


def _centroids(crop: np.ndarray) -> np.ndarray:
    ys, xs = np.mgrid[0:crop.shape[0], 0:crop.shape[1]].astype(np.float64)
    out = []
    for channel in range(3):
        w = crop[..., channel].astype(np.float64)
        out.append([(w * xs).sum() / w.sum(), (w * ys).sum() / w.sum()])
    return np.array(out)


def test_box_centre_and_corners_map_to_crop_centre_and_corners():
    center, scale = np.array([321.3, 207.9]), 1.7
    crop, M = crop_image(np.zeros((480, 640, 3), np.uint8), center, scale)
    assert crop.shape == (224, 224, 3) and crop.dtype == np.uint8
    half = scale * 200 / 2
    corners = center + np.array([[-half, -half], [half, -half], [-half, half], [half, half]])
    np.testing.assert_allclose(transform_points(center, M), [112, 112], atol=1e-9)
    np.testing.assert_allclose(transform_points(corners, M),
                               [[0, 0], [224, 0], [0, 224], [224, 224]], atol=1e-9)


def test_affine_equals_geometry_transforms():
    center, scale = np.array([410.0, 95.5]), 0.83
    _, M = crop_image(np.zeros((300, 500, 3), np.uint8), center, scale)
    A = image_to_crop_transform(torch.tensor(center), torch.tensor(scale, dtype=torch.float64))
    np.testing.assert_allclose(M, A[:2].numpy(), atol=1e-12)
    back = crop_to_image_transform(torch.tensor(center), torch.tensor(scale, dtype=torch.float64))
    np.testing.assert_allclose(back.numpy() @ np.vstack([M, [0, 0, 1]]), np.eye(3), atol=1e-12)


@pytest.mark.parametrize("box_side, rotation", [(100.0, 0.0), (560.0, 0.0), (300.0, 25.0),
                                                (480.0, -60.0)])
def test_keypoints_follow_the_pixels(box_side, rotation):
    """A drawn dot lands where the affine sends its keypoint (zoom in, zoom out, rotated)."""
    center = np.array([412.4, 287.6])
    offsets = np.array([[0.30, -0.21], [-0.17, 0.35], [0.05, 0.12]]) * box_side
    points = center + offsets
    image = _blob_image(points)
    crop, M = crop_image(image, center, box_side / 200.0, rotation=rotation)
    np.testing.assert_allclose(_centroids(crop), transform_points(points, M), atol=1.0)


def test_rotation_sense_is_counter_clockwise_as_displayed():
    center = np.array([100.0, 100.0])
    _, M = crop_image(np.zeros((200, 200, 3), np.uint8), center, 1.0, rotation=90.0)
    # A point right of the centre ends up above it (smaller y) in the crop.
    np.testing.assert_allclose(transform_points(center + [50.0, 0.0], M), [112, 112 - 56],
                               atol=1e-9)


def test_without_antialias_the_crop_is_a_plain_warp():
    rng = np.random.default_rng(0)
    image = rng.integers(0, 256, size=(240, 320, 3), dtype=np.uint8)
    crop, M = crop_image(image, (150.0, 130.0), 1.6, antialias=False)
    expected = cv2.warpAffine(image, M, (224, 224), flags=cv2.INTER_LINEAR,
                              borderMode=cv2.BORDER_CONSTANT, borderValue=0)
    assert np.array_equal(crop, expected)
    # Enlarging needs no filter, so the default gives the same pixels.
    crop_up, M_up = crop_image(image, (150.0, 130.0), 0.5)
    assert np.array_equal(crop_up, cv2.warpAffine(image, M_up, (224, 224)))


def test_outside_the_image_is_black():
    image = np.full((100, 100, 3), 200, np.uint8)
    crop, _ = crop_image(image, (0.0, 0.0), 1.0)  # box 200 px around the top-left corner
    # Image pixels span crop [112, 224): black before, image inside (its last pixel blends out).
    assert (crop[:110, :110] == 0).all() and (crop[114:220, 114:220] == 200).all()
    far, _ = crop_image(image, (-5000.0, 40.0), 3.0)
    assert not far.any()


def test_crop_input_errors():
    with pytest.raises(ValueError, match="uint8 RGB"):
        crop_image(np.zeros((10, 10), np.uint8), (5, 5), 1.0)
    with pytest.raises(ValueError, match="scale"):
        crop_image(np.zeros((10, 10, 3), np.uint8), (5, 5), 0.0)
    with pytest.raises(ValueError, match="center"):
        crop_image(np.zeros((10, 10, 3), np.uint8), (5, 5, 5), 1.0)


def test_normalize_crop_uses_imagenet_statistics_in_rgb_order():
    crop = np.zeros((4, 5, 3), np.uint8)
    crop[..., 0] = 255
    tensor = normalize_crop(crop)
    assert tensor.shape == (3, 4, 5) and tensor.dtype == torch.float32
    expected = [(1 - IMAGENET_MEAN[0]) / IMAGENET_STD[0], -IMAGENET_MEAN[1] / IMAGENET_STD[1],
                -IMAGENET_MEAN[2] / IMAGENET_STD[2]]
    np.testing.assert_allclose(tensor[:, 2, 3].numpy(), expected, rtol=1e-6)
    with pytest.raises(ValueError, match="uint8"):
        normalize_crop(crop.astype(np.float32))


def test_bbox_to_center_scale():
    center, scale = bbox_to_center_scale([100, 50, 300, 450])
    np.testing.assert_allclose(center, [200, 250])
    assert scale == pytest.approx(400 * 1.2 / 200)
    _, scale_spin_demo = bbox_to_center_scale([100, 50, 300, 450], rescale=1.0)
    assert scale_spin_demo == pytest.approx(2.0)
    with pytest.raises(ValueError, match="x2 > x1"):
        bbox_to_center_scale([10, 10, 5, 20])
    with pytest.raises(ValueError, match="4 finite numbers"):
        bbox_to_center_scale([0, 0, 1])


def test_read_image_returns_rgb(tmp_path):
    rgb = np.zeros((8, 9, 3), np.uint8)
    rgb[..., 0] = 250  # red
    path = tmp_path / "red.png"
    cv2.imwrite(str(path), cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR))
    assert np.array_equal(read_image(path), rgb)
    with pytest.raises(FileNotFoundError, match="gone.png"):
        read_image(tmp_path / "gone.png")
    not_image = tmp_path / "text.png"
    not_image.write_text("hello")
    with pytest.raises(ValueError, match="text.png: not an image"):
        read_image(not_image)
