"""Similarity (scale, rotation, translation) Procrustes alignment of 3D point sets."""
from __future__ import annotations

from typing import Optional

import torch
from torch import Tensor

from mvspin.errors import check_shape

__all__ = ["similarity_procrustes"]


def similarity_procrustes(
    source: Tensor, target: Tensor, weights: Optional[Tensor] = None
) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    r"""Least-squares similarity transform aligning ``source`` to ``target`` (Umeyama, 1991).

    Finds scale ``s``, rotation ``R`` (det +1: reflections are never returned) and translation
    ``t`` minimising :math:`\sum_i w_i \|s R x_i + t - y_i\|^2`, batched over leading dims, and
    returns ``aligned = s * source @ R^T + t``. Used for PA-MPJPE (reconstruction error).

    The solution is unique when the weighted, centred source points span at least a plane and
    the cross-covariance has distinct singular values; gradients (through ``torch.linalg.svd``)
    exist under the same condition. A source set collapsed to one point gets ``s = 0``.

    Args:
        source: points to move, shape :math:`(*, N, 3)`.
        target: points to align to, shape :math:`(*, N, 3)`, same shape as ``source``.
        weights: optional non-negative per-point weights of shape :math:`(*, N)`; zero
            ignores a point (e.g. a missing joint). Bool masks are accepted.

    Returns:
        ``(aligned, scale, R, t)`` with shapes :math:`(*, N, 3)`, :math:`(*)`,
        :math:`(*, 3, 3)`, :math:`(*, 3)`.

    Example:
        >>> x = torch.tensor([[0., 0., 0.], [1., 0., 0.], [0., 2., 0.], [0., 0., 3.]])
        >>> aligned, s, R, t = similarity_procrustes(x, 2.0 * x + 1.0)
        >>> s, t
        (tensor(2.0000), tensor([1.0000, 1.0000, 1.0000]))
    """
    func = "similarity_procrustes"
    check_shape(f"{func}: source", source, ["*", None, 3])
    check_shape(f"{func}: target (source's shape)", target, list(source.shape))
    if weights is None:
        w = torch.ones(source.shape[:-1], dtype=source.dtype, device=source.device)
    else:
        check_shape(f"{func}: weights", weights, list(source.shape[:-1]))
        w = weights.to(source.dtype)
        if bool((w < 0).any()):
            raise ValueError("similarity_procrustes: weights must be non-negative")
    w_sum = w.sum(dim=-1, keepdim=True).clamp_min(torch.finfo(source.dtype).tiny)  # (*, 1)
    w_hat = (w / w_sum).unsqueeze(-1)  # (*, N, 1)

    mu_source = (w_hat * source).sum(dim=-2)  # (*, 3)
    mu_target = (w_hat * target).sum(dim=-2)
    x = source - mu_source.unsqueeze(-2)
    y = target - mu_target.unsqueeze(-2)
    covariance = (w_hat * y).transpose(-1, -2) @ x  # (*, 3, 3): sum_i w_i y_i x_i^T
    variance = (w_hat * x * x).sum(dim=(-2, -1))  # (*)

    U, sigma, Vh = torch.linalg.svd(covariance)
    # Umeyama's S: flip the least significant axis when U Vh would be a reflection.
    d = torch.sign(torch.det(U @ Vh))
    ones = torch.ones_like(d)
    signs = torch.stack([ones, ones, d], dim=-1)  # (*, 3)
    R = U @ (signs.unsqueeze(-1) * Vh)
    scale = (sigma * signs).sum(dim=-1) / variance.clamp_min(torch.finfo(source.dtype).tiny)
    rotated_mu_source = (R @ mu_source.unsqueeze(-1)).squeeze(-1)
    t = mu_target - scale.unsqueeze(-1) * rotated_mu_source
    aligned = scale[..., None, None] * (source @ R.transpose(-1, -2)) + t.unsqueeze(-2)
    return aligned, scale, R, t
