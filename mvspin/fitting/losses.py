"""Robust reprojection terms of the SMPLify energy.

Keypoint weights are confidence squared times a per-keypoint weight, as in SPIN's SMPLify
(``joints_conf ** 2 * GMoF(residual)``). Missing keypoints carry weight 0 and contribute neither
energy nor gradient (their pixel coordinates are never read into the result).
"""
from __future__ import annotations

import torch
from torch import Tensor

from mvspin.errors import check_shape

__all__ = ["gmof", "reprojection_energy", "squared_reprojection_energy", "reprojection_error"]


def gmof(residual: Tensor, sigma: float) -> Tensor:
    r"""Geman-McClure robust function :math:`\sigma^2 r^2 / (\sigma^2 + r^2)`, elementwise.

    Quadratic for :math:`|r| \ll \sigma` and saturating at :math:`\sigma^2`, so a keypoint far
    off (a wrong detection) costs at most :math:`\sigma^2` and pulls weakly.

    Args:
        residual: any shape, pixels.
        sigma: scale in pixels (SPIN: 100).

    Returns:
        same shape as ``residual``, pixels squared.

    Example:
        >>> gmof(torch.tensor([0.0, 100.0]), sigma=100.0)
        tensor([   0., 5000.])
    """
    if sigma <= 0:
        raise ValueError(f"gmof: sigma must be positive, got {sigma}")
    sq = residual.square()
    s2 = float(sigma) ** 2
    return s2 * sq / (sq + s2)


def _check(projected: Tensor, target: Tensor, weights: Tensor, func: str) -> None:
    k = check_shape(f"{func}: projected", projected, ["*", "K", 2])
    check_shape(f"{func}: target", target, ["*", "K", 2], k)
    check_shape(f"{func}: weights", weights, ["*", "K"], k)


def reprojection_energy(projected: Tensor, target: Tensor, weights: Tensor, sigma: float) -> Tensor:
    r"""Weighted Geman-McClure reprojection energy :math:`\sum_k w_k \sum_{x,y} \rho_\sigma(p_k - q_k)`.

    Args:
        projected: ``(*, K, 2)`` model keypoints projected to pixels.
        target: ``(*, K, 2)`` observed keypoints, pixels (broadcast against ``projected``).
        weights: ``(*, K)`` non-negative weights (confidence squared times keypoint weight).
        sigma: Geman-McClure scale, pixels.

    Returns:
        ``(*)`` energy per leading index (e.g. ``(B, V)``).
    """
    _check(projected, target, weights, "reprojection_energy")
    return (weights * gmof(projected - target, sigma).sum(-1)).sum(-1)


def squared_reprojection_energy(projected: Tensor, target: Tensor, weights: Tensor) -> Tensor:
    r"""Weighted plain squared reprojection energy :math:`\sum_k w_k \|p_k - q_k\|^2`.

    SPIN's stage-1 (camera) term: not robust, so one far-off keypoint dominates it; SPIN only
    uses it on four torso keypoints.

    Args:
        projected: ``(*, K, 2)`` pixels. target: ``(*, K, 2)`` pixels. weights: ``(*, K)``.

    Returns:
        ``(*)`` pixels squared.

    Example:
        >>> squared_reprojection_energy(torch.tensor([[3.0, 4.0]]), torch.zeros(1, 2), torch.ones(1))
        tensor(25.)
    """
    _check(projected, target, weights, "squared_reprojection_energy")
    return (weights * (projected - target).square().sum(-1)).sum(-1)


def reprojection_error(projected: Tensor, target: Tensor, weights: Tensor) -> Tensor:
    """Weighted mean Euclidean reprojection error in pixels over the keypoints with weight > 0.

    Args:
        projected: ``(*, K, 2)``. target: ``(*, K, 2)``. weights: ``(*, K)`` non-negative.

    Returns:
        ``(*)`` pixels; ``inf`` where no keypoint has weight (undefined, and rejected by any
        threshold).
    """
    _check(projected, target, weights, "reprojection_error")
    dist = torch.linalg.vector_norm(projected - target, dim=-1)
    wsum = weights.sum(-1)
    mean = (weights * dist).sum(-1) / wsum.clamp_min(torch.finfo(dist.dtype).tiny)
    return torch.where(wsum > 0, mean, torch.full_like(mean, float("inf")))
