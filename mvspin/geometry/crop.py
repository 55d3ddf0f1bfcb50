"""SPIN's crop conventions, in one place: the crop box around keypoints and the "inside the
image" rule.

Pixels follow OpenCV: pixel centres at integer coordinates, so pixel ``(i, j)`` covers
``[i - 0.5, i + 0.5) x [j - 0.5, j + 0.5)`` and a ``w x h`` image covers
``[-0.5, w - 0.5) x [-0.5, h - 0.5)``.

- **Inside the image** (:func:`points_inside_image`): a point is inside when it falls on one of
  the image's pixels, ``-0.5 <= x < w - 0.5`` and ``-0.5 <= y < h - 0.5`` (NaN and inf are
  outside). SPIN's dataset scripts test ``0 <= x < w``, the same rule shifted by half a pixel
  (they do not fix a pixel-centre convention); only points within half a pixel of the border
  are judged differently.
- **Crop box from keypoints** (:func:`keypoint_crop_boxes`, batched torch;
  :func:`keypoint_crop_box`, one numpy box that raises): the square around the bounding box of
  the keypoints with confidence above :data:`KEYPOINT_MIN_CONFIDENCE`, centred on the bounding
  box's centre, side = the box's longer side x :data:`SPIN_BBOX_SCALE_FACTOR`, stored as SPIN's
  ``center (2,)`` and ``scale = side / 200``. It needs at least two such keypoints spanning a
  box of positive size. (SPIN's demo centres its OpenPose box on the keypoints' mean and uses
  confidence > 0.2; its dataset preprocessing takes the bounding-box centre of the visible
  joints, as here.)
"""
from __future__ import annotations

from typing import NamedTuple, Sequence, Union, overload

import numpy as np
import torch
from torch import Tensor

from mvspin.errors import check_shape
from mvspin.geometry.cameras import SPIN_SCALE_UNIT

__all__ = [
    "SPIN_BBOX_SCALE_FACTOR",
    "KEYPOINT_MIN_CONFIDENCE",
    "CropBoxes",
    "keypoint_crop_boxes",
    "keypoint_crop_box",
    "points_inside_image",
]

SPIN_BBOX_SCALE_FACTOR: float = 1.2
"""Enlargement of a keypoints' bounding box to its crop (SPIN: demo ``bbox_from_openpose`` and
the MPI-INF-3DHP / 3DPW preprocessing, ``rescale=1.2``): margin for the head top, hands and feet,
which lie beyond the joints."""

KEYPOINT_MIN_CONFIDENCE: float = 0.1
"""Keypoints with confidence above this place crop boxes. Ground-truth keypoints (confidence
0 or 1) are unaffected by its value; for detector output it drops OpenPose's near-zero guesses."""


class CropBoxes(NamedTuple):
    """SPIN crop boxes with leading dims ``(*)``.

    Attributes:
        center: ``(*, 2)`` box centres, image pixels.
        scale: ``(*)`` box sides / 200 px.
        valid: ``(*)`` bool: at least two confident keypoints spanning a box of positive size.
            Invalid boxes have centre 0 and scale 1 (a 200 px box at the origin): finite
            placeholders to mask out, not crops.
    """

    center: Tensor
    scale: Tensor
    valid: Tensor


def keypoint_crop_boxes(
    keypoints: Tensor,
    min_confidence: float = KEYPOINT_MIN_CONFIDENCE,
    scale_factor: float = SPIN_BBOX_SCALE_FACTOR,
    scale_unit: float = SPIN_SCALE_UNIT,
) -> CropBoxes:
    """SPIN crop boxes around the confident keypoints of every view, batched (the rule in the
    module docstring).

    Args:
        keypoints: ``(*, K, 3)`` pixels and confidence.
        min_confidence: keypoints with confidence ``> min_confidence`` (and finite) count.
        scale_factor: box enlargement (SPIN: 1.2).
        scale_unit: pixels per unit of ``scale`` (SPIN: 200).

    Returns:
        :class:`CropBoxes` with leading dims ``(*)``.

    Example:
        >>> kp = torch.tensor([[[100., 50., 1.], [140., 250., 0.9], [900., 900., 0.]]])
        >>> keypoint_crop_boxes(kp)  # box 40 x 200 px -> side 240 px
        CropBoxes(center=tensor([[120., 150.]]), scale=tensor([1.2000]), valid=tensor([True]))
    """
    check_shape("keypoint_crop_boxes: keypoints", keypoints, ["*", None, 3])
    xy = keypoints[..., :2]
    use = (keypoints[..., 2] > min_confidence) & torch.isfinite(xy).all(-1)
    big = torch.finfo(keypoints.dtype).max
    lo = torch.where(use[..., None], xy, torch.full_like(xy, big)).amin(-2)
    hi = torch.where(use[..., None], xy, torch.full_like(xy, -big)).amax(-2)
    enough = use.sum(-1) >= 2
    side = torch.where(enough, (hi - lo).amax(-1), torch.zeros_like(lo[..., 0]))
    valid = enough & (side > 0)
    center = torch.where(valid[..., None], (lo + hi) / 2, torch.zeros_like(lo))
    scale = torch.where(valid, side * (scale_factor / scale_unit), torch.ones_like(side))
    return CropBoxes(center, scale, valid)


def keypoint_crop_box(
    keypoints: Union[np.ndarray, Sequence[Sequence[float]]],
    min_confidence: float = KEYPOINT_MIN_CONFIDENCE,
    scale_factor: float = SPIN_BBOX_SCALE_FACTOR,
    scale_unit: float = SPIN_SCALE_UNIT,
) -> tuple[np.ndarray, float]:
    """One SPIN crop box around keypoints, numpy in and out (:func:`keypoint_crop_boxes`'s rule,
    float64).

    Args:
        keypoints: ``(K, 3)`` pixels and confidence, or ``(K, 2)`` pixels (all used).
        min_confidence, scale_factor, scale_unit: as in :func:`keypoint_crop_boxes`.

    Returns:
        ``center (2,)`` pixels and ``scale`` (box side / 200 px).

    Raises:
        ValueError: a wrong shape, fewer than two confident keypoints, or all of them on one point.

    Example:
        >>> center, scale = keypoint_crop_box([[100, 50, 1], [140, 250, 0.9], [900, 900, 0]])
        >>> center.tolist(), round(scale, 6)
        ([120.0, 150.0], 1.2)
    """
    kp = np.asarray(keypoints, dtype=np.float64)
    if kp.ndim != 2 or kp.shape[1] != 2:
        check_shape("keypoints ((K, 3) with confidence, or (K, 2))", kp, [None, 3])
    if kp.shape[1] == 2:
        kp = np.concatenate([kp, np.ones((len(kp), 1))], axis=1)
        min_confidence = min(min_confidence, 0.0)
    box = keypoint_crop_boxes(torch.from_numpy(kp), min_confidence, scale_factor, scale_unit)
    if not bool(box.valid):
        count = int(((kp[:, 2] > min_confidence) & np.isfinite(kp[:, :2]).all(1)).sum())
        if count < 2:
            raise ValueError(f"need at least 2 keypoints with confidence > {min_confidence} to place a "
                             f"crop box, got {count}")
        raise ValueError("the confident keypoints all lie on one point; cannot size a crop box")
    return box.center.numpy(), float(box.scale)


@overload
def points_inside_image(uv: Tensor, image_size: Union[Sequence[int], np.ndarray, Tensor]) -> Tensor: ...


@overload
def points_inside_image(uv: np.ndarray, image_size: Union[Sequence[int], np.ndarray, Tensor]) -> np.ndarray: ...


def points_inside_image(
    uv: Union[np.ndarray, Tensor], image_size: Union[Sequence[int], np.ndarray, Tensor]
) -> Union[np.ndarray, Tensor]:
    """Mask of the points that fall on a pixel of the image (the rule in the module docstring):
    ``-0.5 <= x < w - 0.5`` and ``-0.5 <= y < h - 0.5``; NaN and inf are outside.

    Args:
        uv: ``(*, 2)`` pixel coordinates, numpy array or tensor.
        image_size: ``(width, height)``, or per-item sizes broadcastable to ``uv``'s shape
            (e.g. ``(V, 1, 2)`` for ``uv (V, K, 2)``).

    Returns:
        ``(*)`` bool mask, the same kind (numpy / torch) as ``uv``.

    Example:
        >>> points_inside_image(np.array([[0.0, 0.0], [-0.5, 9.4], [99.5, 5.0], [np.nan, 1.0]]), (100, 10))
        array([ True,  True, False, False])
    """
    # NaN fails both comparisons and inf one of them, so non-finite points are outside.
    if isinstance(uv, Tensor):
        size = torch.as_tensor(image_size, dtype=uv.dtype, device=uv.device)
        check_shape("points_inside_image: uv", uv, ["*", 2])
        return ((uv >= -0.5) & (uv < size - 0.5)).all(-1)
    points = np.asarray(uv, dtype=np.float64)
    check_shape("points_inside_image: uv", points, ["*", 2])
    return np.asarray(((points >= -0.5) & (points < np.asarray(image_size, dtype=np.float64) - 0.5)).all(-1))
