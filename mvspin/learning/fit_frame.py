"""The frame in-the-loop fits run in: SPIN's 224-px crop, whatever the network's crop size.

SMPLify's energy weights (pose prior 4.78^2, angle prior 15.2^2, shape prior 5^2, Geman-McClure
sigma = 100 px) are tuned against pixel residuals of a 224 px crop (SPIN's ``img_res``). A
training set-up with smaller crops (``data.crop_size`` = 64 on CPU) would, if it fitted in its
own pixels, weigh the priors ``(224 / S)^2`` times more against the keypoints. So the trainer and
``fit-dataset`` map the crop keypoints to a 224 px crop before fitting (:func:`to_fitting_frame`)
and fit with ``crop_size = 224`` (:func:`fitting_config`); every reprojection error and fitting
loss they store or compare is in pixels of that 224 px crop.

The map is the pure scale ``x' = x * 224 / S`` (no offset): crop pixels put the crop centre at
``S / 2`` (:func:`mvspin.geometry.image_to_crop_transform`; SPIN's normalised coordinates are
``2 x / S - 1``), so the centre goes to 112 and normalised coordinates are unchanged. SPIN's
crop camera ``[s, tx, ty]`` projects to the same normalised coordinates for any crop size (the
depth ``2 f / (S s)`` absorbs ``S``), so a fit's ``cam`` needs no conversion back; only its
``transl`` is specific to the 224 px frame.
"""
from __future__ import annotations

import dataclasses

from torch import Tensor

from mvspin.errors import check_shape
from mvspin.fitting.config import MVSMPLifyConfig
from mvspin.geometry import SPIN_CROP_SIZE

__all__ = ["FIT_CROP_SIZE", "to_fitting_frame", "fitting_config"]

FIT_CROP_SIZE: int = SPIN_CROP_SIZE
"""Side (pixels) of the crop the fits run in: SPIN's 224, what SMPLify's weights are tuned for."""


def to_fitting_frame(keypoints: Tensor, crop_size: int) -> Tensor:
    """Crop-pixel keypoints of a ``crop_size`` crop -> pixels of the 224 px fitting crop.

    Args:
        keypoints: ``(..., K, 3)`` (x, y, confidence), pixels of a ``crop_size`` crop (centre
            ``crop_size / 2``).
        crop_size: the crop's side in pixels (``data.crop_size``).

    Returns:
        ``(..., K, 3)``: x and y times ``224 / crop_size``, confidence unchanged (a new tensor).

    Example:
        >>> import torch
        >>> to_fitting_frame(torch.tensor([[32.0, 0.0, 0.7]]), 64)
        tensor([[112.0000,   0.0000,   0.7000]])
    """
    check_shape("keypoints (x, y, confidence)", keypoints, ["*", "K", 3])
    if crop_size <= 0:
        raise ValueError(f"crop_size must be positive, got {crop_size}")
    out = keypoints.clone()
    out[..., :2] = keypoints[..., :2] * (FIT_CROP_SIZE / float(crop_size))
    return out


def fitting_config(config: MVSMPLifyConfig) -> MVSMPLifyConfig:
    """``config`` with the fitting crop's size (224 px): the MV-SMPLify settings the training
    loop and ``fit-dataset`` fit with."""
    return dataclasses.replace(config, crop_size=FIT_CROP_SIZE)
