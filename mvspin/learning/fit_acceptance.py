"""SPIN's fit acceptance: the fitting loss that ranks fits, the threshold, and the betas rule.

SPIN (Kolotouros, Pavlakos, Black, Daniilidis, *Learning to Reconstruct 3D Human Pose and Shape
via Model-fitting in the Loop*, ICCV 2019; its code https://github.com/nkolot/SPIN,
``train/trainer.py`` and ``smplify/smplify.py``, ``get_fitting_loss``)
scores a fit by its **fitting loss**, per sample::

    loss = mean over the K keypoints of  conf_k^2 * sum_{x,y} GMoF(residual_k, sigma = 100)

with residuals in pixels of the 224 px crop, the ignored joints (SPIN's ``ign_joints``; here
the fitter's ``stage2_ignored_points``) at confidence 0 and zero-confidence keypoints counted
in the mean (``.mean(dim=-1)`` over all 49). Then:

- a new fit replaces the stored one only when its loss is lower (``new < stored``);
- a fit whose loss is not below ``smplify_threshold`` (100) supervises no pose / betas / mesh
  term (``valid_fit = loss < 100``; the keypoint losses still apply);
- a fit with any ``|beta| > 3`` keeps supervising, with its betas target set to zero
  (``opt_betas[(opt_betas.abs() > 3).any(dim=-1)] = 0.``). ``extreme_betas="reject"`` instead
  makes such a fit supervise nothing (what the issue text first said; not SPIN).

The per-view mode fits several views of one bundle: a bundle's loss is the **mean of its used
views' losses** (each view's loss as above, over that view's keypoints), so one threshold means
the same for any number of views. Residuals are taken in the bundle's **un-augmented** frame
(:func:`unaugment_residuals`) so a fit made under any augmentation compares with the stored one:
GMoF acts on x and y separately, which a rotation mixes, so the residual vectors are rotated back,
not only rescaled. Per keypoint weights are assumed symmetric left / right (the flip swaps them).

Differences from SPIN, kept on purpose: SPIN re-evaluates the stored fit at every step against
the current augmented keypoints, with a camera re-estimated from the stored joints and extreme
betas already zeroed; the store here keeps the loss the fit had when it was made (in the
un-augmented frame), so no extra fit or camera estimate runs per step. The mesh target here is
built from the zeroed betas too (one consistent target); SPIN's mesh target (weight 0 in SPIN)
keeps the fit's own shape.

Beside the loss, :class:`FitScores` carries the confidence-weighted mean reprojection distance
in pixels (224 px crop) from the same residuals: not what ranks fits, but what people read.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Optional

import torch
from torch import Tensor

from mvspin.errors import check_shape
from mvspin.fitting.engine import FittingEngine
from mvspin.fitting.losses import gmof, reprojection_error
from mvspin.fitting.result import FitResult

__all__ = ["SPIN_SMPLIFY_THRESHOLD", "SPIN_MAX_ABS_BETA", "EXTREME_BETAS", "FitScores", "spin_fitting_loss",
           "unaugment_residuals", "score_residuals", "score_fit", "accept_fits"]

SPIN_SMPLIFY_THRESHOLD: float = 100.0
"""SPIN's ``smplify_threshold``: fits with a fitting loss at or above it are not used."""

SPIN_MAX_ABS_BETA: float = 3.0
"""SPIN's bound on ``|beta|``: a fit beyond it has its betas target zeroed."""

EXTREME_BETAS = ("zero", "reject")
"""What a fit with ``|beta| > max_abs_beta`` does: ``zero`` its betas target (SPIN), or
``reject`` the whole fit."""


def spin_fitting_loss(residual: Tensor, weights: Tensor, sigma: float = 100.0,
                      num_keypoints: Optional[int] = None) -> Tensor:
    """SPIN's per-sample fitting loss: mean over keypoints of ``w_k * sum_xy GMoF(r_k, sigma)``.

    Args:
        residual: ``(*, M, 2)`` projected minus observed keypoints, pixels of the 224 px crop.
        weights: ``(*, M)`` confidence squared (times each keypoint's weight; 0 for ignored ones).
        sigma: Geman-McClure scale, pixels (SPIN: 100).
        num_keypoints: the mean's denominator, ``K >= M`` (keypoints of the data's set that the
            model cannot place count as zero-confidence ones, as SPIN's 49); default ``M``.

    Returns:
        ``(*)`` the loss, pixels squared.

    Example:
        >>> r = torch.tensor([[[3.0, 4.0], [0.0, 100.0]]])
        >>> # (GMoF(3) + GMoF(4) = 24.97) * 1 + (GMoF(0) + GMoF(100) = 5000) * 0.25, over 4 keypoints
        >>> spin_fitting_loss(r, torch.tensor([[1.0, 0.25]]), num_keypoints=4)
        tensor([318.7416])
    """
    m = check_shape("residual", residual, ["*", "M", 2])
    check_shape("weights", weights, ["*", "M"], m)
    k = residual.shape[-2] if num_keypoints is None else int(num_keypoints)
    if k < residual.shape[-2] or k < 1:
        raise ValueError(f"num_keypoints must be at least the {residual.shape[-2]} keypoints given, got {k}")
    return (weights * gmof(residual, sigma).sum(-1)).sum(-1) / k


def unaugment_residuals(residual: Tensor, camera_augmentation: Tensor, scale_factor: Tensor) -> Tensor:
    """Residuals in an augmented crop -> the same residuals in the un-augmented crop.

    The augmentation maps crop offsets by ``M_v[:2, :2] / f`` (in-plane rotation, mirrored x when
    flipped, crop scale ``f``; :mod:`mvspin.learning.augment`), so the inverse is
    ``f * M_v[:2, :2]^T`` (``M_v`` is orthogonal).

    Args:
        residual: ``(B, V, M, 2)`` pixels of the augmented crops.
        camera_augmentation: ``(B, V, 3, 3)`` the training dataset's ``M_v``.
        scale_factor: ``(B, V)`` the crop scale factors drawn.

    Returns:
        ``(B, V, M, 2)`` pixels of the un-augmented crops.
    """
    b, v = residual.shape[:2]
    check_shape("camera_augmentation", camera_augmentation, [b, v, 3, 3])
    check_shape("scale_factor", scale_factor, [b, v])
    lin = camera_augmentation[..., :2, :2].to(residual.dtype)
    # r_un = f * M^T r_aug for row vectors: r_aug @ M.
    return (residual @ lin) * scale_factor.to(residual.dtype)[..., None, None]


@dataclass
class FitScores:
    """How well fits explain their keypoints (un-augmented frame, pixels of the 224 px crop).

    Attributes:
        loss: ``(B,)`` SPIN fitting loss, mean over the bundle's used views; ``inf`` where the
            bundle was not fitted.
        error_px: ``(B,)`` confidence-weighted mean reprojection distance, pixels, mean over the
            used views; ``inf`` where not fitted.
        view_loss: ``(B, V)`` each view's loss (also of views the fit did not use).
        view_error_px: ``(B, V)`` each view's mean distance (``inf`` without keypoints).
    """

    loss: Tensor
    error_px: Tensor
    view_loss: Tensor
    view_error_px: Tensor


def _mean_over_used(value: Tensor, used: Tensor, fitted: Tensor) -> Tensor:
    w = used.to(value.dtype)
    safe = torch.where(used, value, torch.zeros_like(value))
    mean = (safe * w).sum(-1) / w.sum(-1).clamp_min(1.0)
    return torch.where(fitted & used.any(-1), mean, torch.full_like(mean, math.inf))


def score_residuals(fitter: FittingEngine, residual: Tensor, conf: Tensor, view_used: Tensor, fitted: Tensor,
                    camera_augmentation: Optional[Tensor] = None, scale_factor: Optional[Tensor] = None) -> FitScores:
    """Score fits from their keypoint residuals, the way SPIN ranks and accepts them (any fitting mode).

    Args:
        fitter: the fitter that made the fits (its keypoint weights, ignored points and sigma).
        residual: ``(B, V, M, 2)`` projected minus observed matched keypoints, pixels of the
            (possibly augmented) 224 px fitting crops.
        conf: ``(B, V, M)`` the keypoints' confidences as the fitter sees them
            (:meth:`~mvspin.fitting.engine.FittingEngine.prepare_keypoints`).
        view_used: ``(B, V)`` bool, the views the fit used; fitted: ``(B,)`` bool.
        camera_augmentation: ``(B, V, 3, 3)`` and ``scale_factor (B, V)``: the bundles'
            augmentation, to score in the un-augmented frame; None: the crops are not augmented.

    Returns:
        :class:`FitScores`.
    """
    if camera_augmentation is not None:
        if scale_factor is None:
            raise ValueError("score_residuals: camera_augmentation needs scale_factor too")
        residual = unaugment_residuals(residual, camera_augmentation.to(residual.device),
                                       scale_factor.to(residual.device))
    targets = fitter.targets
    view_loss = spin_fitting_loss(residual, fitter.stage2_weights(conf), fitter.config.sigma,
                                  targets.num_data_keypoints)
    px_weights = conf * (targets.weights > 0)
    view_px = reprojection_error(residual, torch.zeros_like(residual), px_weights)
    used, fitted = view_used.to(residual.device), fitted.to(residual.device)
    return FitScores(loss=_mean_over_used(view_loss, used, fitted), error_px=_mean_over_used(view_px, used, fitted),
                     view_loss=view_loss, view_error_px=view_px)


def score_fit(fitter: FittingEngine, keypoints: Tensor, fit: FitResult, camera_augmentation: Optional[Tensor] = None,
              scale_factor: Optional[Tensor] = None) -> FitScores:
    """Score crop-camera fits (per-view mode): :func:`score_residuals` of the fit's projection.

    Args:
        fitter: the fitter that made ``fit`` (its keypoint matching, weights, sigma, camera).
        keypoints: ``(B, V, K, 3)`` the keypoints it was fitted to, in its crop's pixels (the
            224 px fitting crop: :func:`mvspin.learning.fit_frame.to_fitting_frame`).
        fit: the result, with per-view ``transl`` in each crop camera.
        camera_augmentation: ``(B, V, 3, 3)`` and ``scale_factor (B, V)``: the bundles'
            augmentation, to score in the un-augmented frame; None: the keypoints are not augmented.

    Returns:
        :class:`FitScores`.
    """
    xy, conf = fitter.prepare_keypoints(keypoints)
    with torch.no_grad():
        uv = fitter.project_crop(fitter.posed_keypoints(fit.body_pose.to(xy.dtype), fit.betas.to(xy.dtype),
                                                        fit.global_orient.to(xy.dtype), fit.transl.to(xy.dtype)))
        return score_residuals(fitter, uv - xy, conf, fit.view_used, fit.fitted, camera_augmentation, scale_factor)


def accept_fits(loss: Tensor, betas: Tensor, reject_loss: float = SPIN_SMPLIFY_THRESHOLD,
                max_abs_beta: float = SPIN_MAX_ABS_BETA, extreme_betas: str = "zero") -> tuple[Tensor, Tensor]:
    """SPIN's rules on the targets: which fits supervise, and their betas target.

    Args:
        loss: ``(B,)`` the targets' fitting losses (``inf``: no fit).
        betas: ``(B, num_betas)`` their betas.
        reject_loss: fits with ``loss >= reject_loss`` supervise no pose / betas / mesh term
            (SPIN: ``valid_fit = loss < 100``).
        max_abs_beta: the bound on ``|beta|`` (SPIN: 3).
        extreme_betas: ``"zero"``: a fit with any ``|beta| > max_abs_beta`` keeps supervising
            with zero betas (SPIN); ``"reject"``: it supervises nothing.

    Returns:
        ``valid (B,)`` bool and the betas targets ``(B, num_betas)`` (a new tensor).

    Example:
        >>> valid, b = accept_fits(torch.tensor([50.0, 150.0, 20.0]), torch.tensor([[1.0], [0.0], [-3.5]]))
        >>> valid.tolist(), b.flatten().tolist()
        ([True, False, True], [1.0, 0.0, 0.0])
    """
    if extreme_betas not in EXTREME_BETAS:
        raise ValueError(f"extreme_betas must be one of {EXTREME_BETAS}, got {extreme_betas!r}")
    valid = loss < reject_loss
    extreme = (betas.abs() > max_abs_beta).any(-1)
    if extreme_betas == "zero":
        betas = torch.where(extreme[:, None], torch.zeros_like(betas), betas)
    else:
        valid = valid & ~extreme
        betas = betas.clone()
    return valid, betas
