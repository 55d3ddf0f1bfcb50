"""Network input preparation as in SPIN: square crops, ImageNet normalisation, boxes.

Box and keypoint *files* are read by :mod:`mvspin.data.keypoint_files`.

A crop is described by SPIN's ``center`` (2,) and ``scale`` (box side / 200 px): the square box of
side ``scale * 200`` centred at ``center`` is resampled to ``crop_size`` x ``crop_size`` (224). The
image -> crop map is the exact continuous affine of
:func:`mvspin.geometry.image_to_crop_transform` (pixel centres at integer coordinates, as in
OpenCV), optionally rotated about the crop centre for augmentation; the same matrix maps
keypoints (:func:`transform_points`), so image and keypoints stay consistent to sub-pixel level.
SPIN itself rounds the box corners to integers, which shifts its crops by up to a pixel.

Example:
    >>> import numpy as np
    >>> image = np.zeros((480, 640, 3), np.uint8)
    >>> center, scale = bbox_to_center_scale(np.array([200., 100., 400., 420.]))
    >>> crop, M = crop_image(image, center, scale)
    >>> crop.shape, transform_points(center, M)
    ((224, 224, 3), array([112., 112.]))
"""
from __future__ import annotations

import math
import os
from pathlib import Path

import cv2
import numpy as np
import torch

from mvspin.geometry import SPIN_BBOX_SCALE_FACTOR, SPIN_CROP_SIZE, SPIN_SCALE_UNIT, image_to_crop_transform

__all__ = [
    "IMAGENET_MEAN",
    "IMAGENET_STD",
    "bbox_to_center_scale",
    "crop_image",
    "normalize_crop",
    "read_image",
    "transform_points",
]

# ImageNet statistics the torchvision/SPIN ResNet was trained with (RGB, on [0, 1] values).
IMAGENET_MEAN: tuple[float, float, float] = (0.485, 0.456, 0.406)
IMAGENET_STD: tuple[float, float, float] = (0.229, 0.224, 0.225)


def crop_image(image: np.ndarray, center: np.ndarray | tuple[float, float], scale: float,
               crop_size: int = SPIN_CROP_SIZE, scale_unit: float = SPIN_SCALE_UNIT,
               rotation: float = 0.0, antialias: bool = True) -> tuple[np.ndarray, np.ndarray]:
    """Cut SPIN's square crop out of an image.

    Args:
        image: (H, W, 3) uint8 RGB image.
        center: (2,) box centre (x, y), image pixels.
        scale: box side / ``scale_unit``.
        crop_size: output side in pixels (SPIN: 224).
        scale_unit: pixels per unit of ``scale`` (SPIN: 200).
        rotation: degrees; positive turns the crop content counter-clockwise as displayed (the
            sense of ``cv2.getRotationMatrix2D`` and of SPIN's ``rot`` augmentation), about the
            crop centre.
        antialias: when shrinking, blur the source first (Gaussian, sigma = (1/ratio - 1) / 2)
            so the bilinear resampling does not alias; SPIN's PIL resize also filters.

    Returns:
        (crop (crop_size, crop_size, 3) uint8, M (2, 3) float64 affine image -> crop pixels).
        Parts of the box outside the image are black.
    """
    image = np.asarray(image)
    if image.ndim != 3 or image.shape[2] != 3 or image.dtype != np.uint8:
        raise ValueError(f"expected an (H, W, 3) uint8 RGB image, got shape {image.shape} and "
                         f"dtype {image.dtype}")
    center_arr = np.asarray(center, dtype=np.float64).reshape(-1)
    if center_arr.shape != (2,) or not np.isfinite(center_arr).all():
        raise ValueError(f"center must be 2 finite numbers (x, y), got {center!r}")
    if not (math.isfinite(scale) and scale > 0):
        raise ValueError(f"scale must be a positive finite number, got {scale!r}")
    to_crop = image_to_crop_transform(torch.from_numpy(center_arr),
                                      torch.tensor(float(scale), dtype=torch.float64),
                                      crop_size, scale_unit).numpy()
    half = crop_size / 2.0
    turn = np.eye(3)
    turn[:2] = cv2.getRotationMatrix2D((half, half), float(rotation), 1.0)
    M = (turn @ to_crop)[:2]

    ratio = crop_size / (scale * scale_unit)
    source, offset = image, np.zeros(2)
    if antialias and ratio < 1.0:
        sigma = (1.0 / ratio - 1.0) / 2.0
        # Blur only the part of the image the crop reads (plus the filter's reach).
        corners = np.array([[0, 0], [crop_size, 0], [0, crop_size], [crop_size, crop_size]], float)
        in_image = transform_points(corners, cv2.invertAffineTransform(M))
        pad = math.ceil(3 * sigma) + 2
        x0, y0 = np.maximum(np.floor(in_image.min(axis=0)).astype(int) - pad, 0)
        x1, y1 = np.minimum(np.ceil(in_image.max(axis=0)).astype(int) + pad,
                            (image.shape[1], image.shape[0]))
        if x1 <= x0 or y1 <= y0:
            return np.zeros((crop_size, crop_size, 3), np.uint8), M
        source = cv2.GaussianBlur(image[y0:y1, x0:x1], (0, 0), sigmaX=sigma, sigmaY=sigma)
        offset = np.array([x0, y0], dtype=np.float64)
    # Points of the cut-out region are shifted by -offset: fold that into the translation.
    M_source = M.copy()
    M_source[:, 2] += M[:, :2] @ offset
    crop = cv2.warpAffine(source, M_source, (crop_size, crop_size), flags=cv2.INTER_LINEAR,
                          borderMode=cv2.BORDER_CONSTANT, borderValue=(0, 0, 0))
    return crop, M


def transform_points(points: np.ndarray, M: np.ndarray) -> np.ndarray:
    """Apply a (2, 3) affine to points (..., 2) -> (..., 2), e.g. image keypoints -> crop."""
    points = np.asarray(points, dtype=np.float64)
    M = np.asarray(M, dtype=np.float64)
    if M.shape != (2, 3) or points.shape[-1:] != (2,):
        raise ValueError(f"expected points (..., 2) and M (2, 3), got {points.shape} and {M.shape}")
    return points @ M[:, :2].T + M[:, 2]


def normalize_crop(crop: np.ndarray) -> torch.Tensor:
    """uint8 RGB crop (H, W, 3) -> float32 tensor (3, H, W): /255, ImageNet mean/std."""
    crop = np.asarray(crop)
    if crop.ndim != 3 or crop.shape[2] != 3 or crop.dtype != np.uint8:
        raise ValueError(f"expected an (H, W, 3) uint8 RGB crop, got shape {crop.shape} and "
                         f"dtype {crop.dtype}")
    tensor = torch.from_numpy(np.ascontiguousarray(crop)).permute(2, 0, 1).to(torch.float32) / 255
    mean = torch.tensor(IMAGENET_MEAN).reshape(3, 1, 1)
    std = torch.tensor(IMAGENET_STD).reshape(3, 1, 1)
    return (tensor - mean) / std


def bbox_to_center_scale(bbox: np.ndarray | list[float], rescale: float = SPIN_BBOX_SCALE_FACTOR,
                         scale_unit: float = SPIN_SCALE_UNIT) -> tuple[np.ndarray, float]:
    """Box ``[x1, y1, x2, y2]`` (pixels) -> (center (2,), scale = longer side * rescale / 200).

    SPIN's demo uses a user-given box as is (``rescale=1.0``) and enlarges keypoint boxes by 1.2;
    boxes from keypoints come from :func:`mvspin.geometry.keypoint_crop_box`.
    """
    box = np.asarray(bbox, dtype=np.float64).reshape(-1)
    if box.shape != (4,) or not np.isfinite(box).all():
        raise ValueError(f"bbox must be 4 finite numbers [x1, y1, x2, y2], got {bbox!r}")
    width, height = box[2] - box[0], box[3] - box[1]
    if width <= 0 or height <= 0:
        raise ValueError(f"bbox [x1, y1, x2, y2] must have x2 > x1 and y2 > y1, got {box.tolist()}")
    if not rescale > 0:
        raise ValueError(f"rescale must be positive, got {rescale!r}")
    center = np.array([(box[0] + box[2]) / 2, (box[1] + box[3]) / 2])
    return center, float(max(width, height) * rescale / scale_unit)


def read_image(path: str | os.PathLike[str]) -> np.ndarray:
    """Read an image file as (H, W, 3) uint8 RGB (cv2.imread returns None silently; this raises)."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"image not found: {path}")
    image = cv2.imread(str(path), cv2.IMREAD_COLOR)
    if image is None:
        raise ValueError(f"{path}: not an image OpenCV can read")
    return cv2.cvtColor(image, cv2.COLOR_BGR2RGB)
