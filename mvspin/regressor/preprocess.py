"""Network input preparation as in SPIN: square crops, ImageNet normalisation, boxes.

Box and keypoint *files* are read by :mod:`mvspin.data.keypoint_files`.

A crop is described by SPIN's ``center`` (2,) and ``scale`` (box side / 200 px): the square box of
side ``scale * 200`` centred at ``center`` is resampled to ``crop_size`` x ``crop_size`` (224). The
image -> crop map is the exact continuous affine of
:func:`mvspin.geometry.image_to_crop_transform` (pixel centres at integer coordinates, as in
OpenCV), optionally rotated about the crop centre for augmentation; the same matrix maps
keypoints (:func:`transform_points`), so image and keypoints stay consistent to sub-pixel level.
SPIN itself rounds the box corners to integers, which shifts its crops by up to a pixel.

Two preprocessing modes (:data:`PREPROCESSING_MODES`) make the network input:

- ``"exact"`` (default for mvspin's own checkpoints): the continuous affine above, bilinear
  resampling with an anti-aliasing blur when shrinking, pixel values unchanged; OpenPose boxes
  are centred on the middle of the confident keypoints' box (:func:`mvspin.geometry.keypoint_crop_box`).
- ``"spin"`` (default for SPIN's own checkpoints, :func:`preprocessing_for_checkpoint`): what
  SPIN's ``utils/imutils.py`` ``crop()`` and ``demo.py`` do, so its published weights see the
  inputs they were trained on. The box corners are truncated to integers, the box is cut out
  (black outside the image) and resized with ``scipy.misc.imresize``, which first stretches the
  cut-out's own min..max range to 0..255 (scipy's ``bytescale``) and then resizes with PIL's
  bilinear filter (:func:`spin_crop`); OpenPose boxes are centred on the *mean* of the keypoints
  with confidence > 0.2 (:func:`spin_openpose_center_scale`).

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
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import torch

from mvspin.geometry import SPIN_BBOX_SCALE_FACTOR, SPIN_CROP_SIZE, SPIN_SCALE_UNIT, image_to_crop_transform

__all__ = [
    "PREPROCESSING_MODES",
    "crop_for_network",
    "preprocessing_for_checkpoint",
    "spin_crop",
    "spin_crop_box",
    "spin_openpose_center_scale",
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
# SPIN's demo.py bbox_from_openpose: keypoints with confidence above this place the box.
SPIN_OPENPOSE_THRESHOLD = 0.2
PREPROCESSING_MODES: tuple[str, ...] = ("exact", "spin")
"""``exact``: mvspin's sub-pixel crop; ``spin``: SPIN's own crop, resize and box centring."""
# A SPIN-mode cut-out is an array of the box's full size: refuse boxes that could not fit in memory
# rather than allocating them (an absurd box file).
_MAX_SPIN_BOX_PIXELS = 20000 * 20000


def _check_crop_inputs(image: np.ndarray, center, scale: float) -> np.ndarray:
    image = np.asarray(image)
    if image.ndim != 3 or image.shape[2] != 3 or image.dtype != np.uint8:
        raise ValueError(f"expected an (H, W, 3) uint8 RGB image, got shape {image.shape} and "
                         f"dtype {image.dtype}")
    center_arr = np.asarray(center, dtype=np.float64).reshape(-1)
    if center_arr.shape != (2,) or not np.isfinite(center_arr).all():
        raise ValueError(f"center must be 2 finite numbers (x, y), got {center!r}")
    if not (math.isfinite(scale) and scale > 0):
        raise ValueError(f"scale must be a positive finite number, got {scale!r}")
    return center_arr


def spin_crop_box(center: np.ndarray | tuple[float, float], scale: float, crop_size: int = SPIN_CROP_SIZE,
                  scale_unit: float = SPIN_SCALE_UNIT) -> tuple[np.ndarray, np.ndarray]:
    """SPIN's integer box: upper-left and bottom-right corners ``(2,)`` (x, y), pixels.

    SPIN maps the crop's corner pixels back through the inverse of its crop matrix and truncates
    the result towards zero (``astype(int)``), with its 1-based pixel offsets; the inverse is
    taken numerically as SPIN does, so corners on exact integers round the same way.
    """
    side = scale_unit * float(scale)
    c = np.asarray(center, dtype=np.float64).reshape(2)
    to_crop = np.array([[crop_size / side, 0.0, crop_size * (0.5 - c[0] / side)],
                        [0.0, crop_size / side, crop_size * (0.5 - c[1] / side)],
                        [0.0, 0.0, 1.0]])
    to_image = np.linalg.inv(to_crop)

    def corner(crop_pixel_1based: float) -> np.ndarray:
        # SPIN works in 1-based pixels: it subtracts 1 going in, truncates, adds 1 coming out and
        # its crop() subtracts that 1 again.
        p = to_image @ np.array([crop_pixel_1based - 1.0, crop_pixel_1based - 1.0, 1.0])
        return p[:2].astype(np.int64)

    return corner(1.0), corner(crop_size + 1.0)


def spin_crop(image: np.ndarray, center: np.ndarray | tuple[float, float], scale: float,
              crop_size: int = SPIN_CROP_SIZE, scale_unit: float = SPIN_SCALE_UNIT) -> tuple[np.ndarray, np.ndarray]:
    """SPIN's crop of an RGB image, as its ``utils/imutils.py`` ``crop()`` makes it (no rotation).

    The integer box (:func:`spin_crop_box`) is cut out into a black canvas, the canvas's value
    range ``[min, max]`` is stretched to ``[0, 255]`` (``scipy.misc.imresize`` converts float
    arrays with ``bytescale``), and it is resized to ``crop_size`` with PIL's bilinear filter.

    Returns:
        (crop (crop_size, crop_size, 3) uint8, M (2, 3) float64 affine image -> crop pixels of the
        integer box; pixel centres at integers).

    Raises:
        ValueError: bad inputs, or a box too large to cut out (over 20,000 x 20,000 pixels).
    """
    from PIL import Image

    image = np.asarray(image)
    center_arr = _check_crop_inputs(image, center, scale)
    ul, br = spin_crop_box(center_arr, scale, crop_size, scale_unit)
    w, h = int(br[0] - ul[0]), int(br[1] - ul[1])
    if w < 1 or h < 1:
        raise ValueError(f"the crop box of scale {scale} is smaller than a pixel")
    if w * h > _MAX_SPIN_BOX_PIXELS:
        raise ValueError(f"the crop box ({w} x {h} pixels, scale {scale}) is far larger than any image")
    height, width = image.shape[:2]
    canvas = np.zeros((h, w, 3), dtype=np.float64)
    x0, x1 = max(0, int(ul[0])), min(width, int(br[0]))
    y0, y1 = max(0, int(ul[1])), min(height, int(br[1]))
    if x1 > x0 and y1 > y0:
        canvas[y0 - ul[1]:y1 - ul[1], x0 - ul[0]:x1 - ul[0]] = image[y0:y1, x0:x1]
    low, high = canvas.min(), canvas.max()
    stretch = 255.0 / ((high - low) if high > low else 1.0)
    as_bytes = (np.clip((canvas - low) * stretch, 0, 255) + 0.5).astype(np.uint8)
    crop = np.array(Image.fromarray(as_bytes, "RGB").resize((crop_size, crop_size), Image.Resampling.BILINEAR))
    # PIL samples output pixel i at input (i + 0.5) * w / S - 0.5 of the cut-out.
    M = np.array([[crop_size / w, 0.0, (0.5 - ul[0]) * crop_size / w - 0.5],
                  [0.0, crop_size / h, (0.5 - ul[1]) * crop_size / h - 0.5]])
    return crop, M


def crop_for_network(image: np.ndarray, center: np.ndarray | tuple[float, float], scale: float,
                     mode: str = "exact", crop_size: int = SPIN_CROP_SIZE) -> tuple[np.ndarray, np.ndarray]:
    """The network's crop in a preprocessing ``mode`` (``"exact"``: :func:`crop_image`;
    ``"spin"``: :func:`spin_crop`). Returns ``(crop uint8 (S, S, 3), M (2, 3))``."""
    if mode == "exact":
        return crop_image(image, center, scale, crop_size=crop_size)
    if mode == "spin":
        return spin_crop(image, center, scale, crop_size=crop_size)
    raise ValueError(f"preprocessing must be one of {', '.join(PREPROCESSING_MODES)}, got {mode!r}")


def preprocessing_for_checkpoint(meta: Mapping[str, Any] | None) -> str:
    """The default preprocessing mode for a checkpoint, from its metadata (the non-weight entries
    :func:`mvspin.regressor.checkpoint.load_regressor_checkpoint` returns).

    mvspin's checkpoints carry an ``mvspin`` entry (and may name their ``preprocessing``); a
    checkpoint without one is SPIN's own ``model_checkpoint.pt`` (or a bare state dict from SPIN's
    code) and gets ``"spin"``. No metadata (an untrained network) gets ``"exact"``.
    """
    if meta is None:
        return "exact"
    own = meta.get("mvspin")
    if not isinstance(own, Mapping):
        return "spin"
    mode = own.get("preprocessing", "exact")
    return mode if mode in PREPROCESSING_MODES else "exact"


def spin_openpose_center_scale(keypoints: np.ndarray, conf_threshold: float = SPIN_OPENPOSE_THRESHOLD,
                               rescale: float = SPIN_BBOX_SCALE_FACTOR,
                               scale_unit: float = SPIN_SCALE_UNIT) -> tuple[np.ndarray, float]:
    """SPIN's box from OpenPose keypoints (its ``demo.py`` ``bbox_from_openpose``): centre at the
    *mean* of the keypoints with confidence > ``conf_threshold`` (0.2), scale = their box's longer
    side * ``rescale`` / 200.

    Raises:
        ValueError: keypoints not (K, 3), or fewer than 2 confident ones, or all on one point.
    """
    keypoints = np.asarray(keypoints, dtype=np.float64)
    if keypoints.ndim != 2 or keypoints.shape[1] != 3:
        raise ValueError(f"expected keypoints of shape (K, 3) (x, y, confidence), got {keypoints.shape}")
    confident = keypoints[keypoints[:, 2] > conf_threshold, :2]
    confident = confident[np.isfinite(confident).all(axis=1)]
    if len(confident) < 2:
        raise ValueError(f"need at least 2 keypoints with confidence > {conf_threshold} to place "
                         f"a box, got {len(confident)}")
    side = float((confident.max(axis=0) - confident.min(axis=0)).max())
    if side <= 0:
        raise ValueError("the confident keypoints all lie on one point; cannot size a box")
    return confident.mean(axis=0), side / scale_unit * rescale



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
    center_arr = _check_crop_inputs(image, center, scale)
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
