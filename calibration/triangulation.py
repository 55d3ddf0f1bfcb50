"""Batched multi-view triangulation: confidence-weighted DLT with a robust view-pair consensus.

Inputs keep the view axis just before the point axis: pixels ``(*, V, N, 2)``, weights
``(*, V, N)`` (detector confidences; 0 means missing), cameras as
:class:`~calibration.camera.CameraTensors` with leading dims ``(*, V)`` (or ``(V,)``, broadcast
over the batch). Everything runs as tensor operations: no Python loop over points, views or
samples, so thousands of keypoints triangulate in one call (CPU or CUDA).
"""
from __future__ import annotations

import itertools
from typing import NamedTuple, Optional

import torch
import torch.nn.functional as F
from torch import Tensor

from calibration.camera import CameraTensors
from calibration.projection import point_distance, undistort_points
from mvspin.errors import ShapeError, check_shape

__all__ = ["triangulate_points", "Triangulation"]

# A homogeneous solution whose last coordinate is this small is a point at infinity (parallel
# rays, or too few views): reported invalid instead of dividing by ~0.
_MIN_W = 1e-9
# Minimum depth (world units) in front of a camera for a point to count as seen by it.
_MIN_DEPTH = 1e-6
# The DLT null vector by inverse iteration (see _solve): its steps, the shift (relative to the
# normal matrix's trace) that keeps an exact, singular system solvable, and the eigen-residual
# |M h - (h'Mh) h| of the trace-1 matrix under which it is accepted (the angle to the true
# eigenvector is at most this over the eigenvalue gap); above it eigh decides.
_INVERSE_STEPS = 3
_SHIFT = 1e-13
_EIGEN_RESIDUAL = 1e-11


class Triangulation(NamedTuple):
    """Result of :func:`triangulate_points`.

    Attributes:
        points: ``(*, N, 3)`` world points; zeros where not ``valid``.
        valid: ``(*, N)`` bool: at least two inlier views with positive weight, in front of them.
        inliers: ``(*, V, N)`` bool: views used for the final estimate.
        error: ``(*, N)`` weighted mean reprojection error over the inlier views, pixels
            (``inf`` where not valid).
    """

    points: Tensor
    valid: Tensor
    inliers: Tensor
    error: Tensor


def _normal_matrices(obs: Tensor, weights: Tensor, Rt: Tensor) -> Tensor:
    """Per-view DLT normal matrices ``(*, V, N, 4, 4)`` from normalised observations."""
    P1, P2, P3 = Rt[..., 0, :], Rt[..., 1, :], Rt[..., 2, :]  # (*, V, 4)
    rows_x = obs[..., 0:1] * P3.unsqueeze(-2) - P1.unsqueeze(-2)  # (*, V, N, 4)
    rows_y = obs[..., 1:2] * P3.unsqueeze(-2) - P2.unsqueeze(-2)
    w2 = (weights * weights).unsqueeze(-1).unsqueeze(-1)
    return w2 * (rows_x.unsqueeze(-1) * rows_x.unsqueeze(-2) + rows_y.unsqueeze(-1) * rows_y.unsqueeze(-2))


def _solve(normal: Tensor) -> tuple[Tensor, Tensor]:
    """Smallest eigenvector of each ``(..., 4, 4)`` normal matrix -> points ``(..., 3)``, ok ``(...)``.

    Batched 4x4 ``torch.linalg.eigh`` costs ~2 us per matrix, and the association solves ~10^5
    of them per 300 frames. So the eigenvector is first found by inverse iteration, started at
    the inhomogeneous solution (the 3x3 normal equations with the fourth coordinate 1, close to
    it); each step shrinks the error by the ratio of the two smallest eigenvalues, tiny for a
    consistent pair of views. Where the eigen-residual shows it has not converged (views that
    disagree, degenerate geometry), ``eigh`` decides; so the result is ``eigh``'s to ~1e-9
    (``tests/calibration/test_triangulation.py``).
    """
    m = normal / normal.diagonal(dim1=-2, dim2=-1).sum(-1).clamp_min(1e-300)[..., None, None]
    flat = m.reshape(-1, 4, 4)
    x, _ = torch.linalg.solve_ex(flat[:, :3, :3], -flat[:, :3, 3:])
    h = torch.cat([x, torch.ones_like(x[:, :1])], dim=1)  # (n, 4, 1)
    # The shift keeps an exact solution (noise-free views: smallest eigenvalue 0) factorable.
    lu, pivots, _ = torch.linalg.lu_factor_ex(flat + _SHIFT * torch.eye(4, dtype=m.dtype, device=m.device))
    for _ in range(_INVERSE_STEPS):
        h = torch.linalg.lu_solve(lu, pivots, h)
        h = h / torch.linalg.vector_norm(h, dim=1, keepdim=True)
    mh = flat @ h
    residual = torch.linalg.vector_norm(mh - (h * mh).sum(1, keepdim=True) * h, dim=1)[:, 0]
    h = h[..., 0]
    redo = ~(residual < _EIGEN_RESIDUAL)  # NaN (singular start) included
    if bool(redo.any()):
        h[redo] = torch.linalg.eigh(flat[redo])[1][..., 0]
    h = h.reshape(*normal.shape[:-1])
    ok = h[..., 3].abs() > _MIN_W
    w = torch.where(ok, h[..., 3], torch.ones_like(h[..., 3]))
    return h[..., :3] / w.unsqueeze(-1), ok


def _residuals(X: Tensor, obs: Tensor, Rt: Tensor, focal: Tensor) -> tuple[Tensor, Tensor]:
    """Reprojection residuals in pixels ``(*, V, N)`` of points ``X (*, N, 3)`` and in-front mask."""
    cam = torch.einsum("...vij,...nj->...vni", Rt[..., :3], X) + Rt[..., 3].unsqueeze(-2)
    z = cam[..., 2]
    front = z > _MIN_DEPTH
    proj = cam[..., :2] / torch.where(front, z, torch.ones_like(z)).unsqueeze(-1)
    err = point_distance(proj, obs) * focal.unsqueeze(-1)
    return err, front


def triangulate_points(
    points: Tensor,
    weights: Tensor,
    cameras: CameraTensors,
    threshold_px: Optional[float] = 20.0,
) -> Triangulation:
    """Triangulate corresponding 2D points seen by V cameras.

    Confidence-weighted linear triangulation (DLT on undistorted normalised coordinates, each
    view's two equations scaled by its weight). With ``threshold_px`` and at least three views,
    it is made robust to wrong detections first: every pair of views proposes a point, the
    proposal that the most views agree with (truncated squared reprojection error, MSAC) wins,
    and the final DLT uses only the views within ``threshold_px`` of it.

    Args:
        points: ``(*, V, N, 2)`` pixels.
        weights: ``(*, V, N)`` non-negative confidences (0 = not seen).
        cameras: cameras with leading dims ``(*, V)`` or ``(V,)``.
        threshold_px: inlier threshold in pixels; None for a plain weighted DLT over all views.

    Returns:
        :class:`Triangulation` (points ``(*, N, 3)`` in world units).
    """
    check_shape("triangulate_points: points", points, ["*", "V", None, 2])
    check_shape("triangulate_points: weights", weights, list(points.shape[:-1]))
    v = points.shape[-3]
    if cameras.K.shape[-3] != v:
        raise ShapeError(f"triangulate_points: {v} views of points but cameras for {cameras.K.shape[-3]} views")
    out_dtype = points.dtype
    dt = torch.float64  # the 4x4 eigenproblems lose digits in float32 at metre/pixel scales
    pts, w = points.to(dt), torch.nan_to_num(weights.to(dt)).clamp_min(0.0)
    w = torch.where(torch.isfinite(pts).all(-1), w, torch.zeros_like(w))
    pts = torch.nan_to_num(pts)
    K, R, t = cameras.K.to(dt), cameras.R.to(dt), cameras.t.to(dt)
    dist = None if cameras.dist is None else cameras.dist.to(dt)
    obs = undistort_points(pts, K, dist)
    Rt = torch.cat([R, t.unsqueeze(-1)], dim=-1)  # (*, V, 3, 4)
    focal = 0.5 * (K[..., 0, 0] + K[..., 1, 1])  # (*, V): normalised -> pixel residuals
    per_view = _normal_matrices(obs, w, Rt)  # (*, V, N, 4, 4)
    seen = w > 0
    use = seen
    if threshold_px is not None and v >= 3:
        pairs = torch.tensor(list(itertools.combinations(range(v), 2)), device=pts.device)  # (P, 2)
        pair_mask = F.one_hot(pairs, v).sum(1).to(dt)  # (P, V)
        normal = torch.einsum("pv,...vnij->...pnij", pair_mask, per_view)
        X, ok = _solve(normal)  # (*, P, N, 3)
        err, front = _residuals(X, obs.unsqueeze(-4), Rt.unsqueeze(-4), focal.unsqueeze(-2))  # (*, P, V, N)
        tau2 = float(threshold_px) ** 2
        cost = torch.where(front, err.square().clamp_max(tau2), torch.full_like(err, tau2))
        cost = (cost * seen.unsqueeze(-3)).sum(-2)  # (*, P, N)
        pair_seen = seen[..., pairs[:, 0], :] & seen[..., pairs[:, 1], :]  # (*, P, N)
        pair_front = (front | ~pair_mask.bool()[:, :, None]).all(-2)
        cost = torch.where(ok & pair_seen & pair_front, cost, torch.full_like(cost, float("inf")))
        best = cost.argmin(dim=-2, keepdim=True)  # (*, 1, N)
        best_err = torch.take_along_dim(err, best.unsqueeze(-2), dim=-3).squeeze(-3)  # (*, V, N)
        best_front = torch.take_along_dim(front, best.unsqueeze(-2), dim=-3).squeeze(-3)
        consensus = torch.isfinite(torch.take_along_dim(cost, best, dim=-2).squeeze(-2))  # (*, N)
        use = seen & torch.where(consensus.unsqueeze(-2), best_front & (best_err < threshold_px), seen)
    X, ok = _solve((per_view * use[..., None, None]).sum(-4))
    err, front = _residuals(X, obs, Rt, focal)
    use = use & front
    valid = ok & (use.sum(-2) >= 2)
    wu = w * use
    mean_err = (err * wu).sum(-2) / wu.sum(-2).clamp_min(1e-12)
    return Triangulation(
        points=torch.where(valid.unsqueeze(-1), X, torch.zeros_like(X)).to(out_dtype),
        valid=valid,
        inliers=use & valid.unsqueeze(-2),
        error=torch.where(valid, mean_err, torch.full_like(mean_err, float("inf"))).to(out_dtype),
    )
