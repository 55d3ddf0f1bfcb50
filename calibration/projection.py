"""OpenCV's pinhole camera with lens distortion, implemented once (torch, batched, differentiable).

This is the project's only implementation of the lens model: :class:`~calibration.camera.Camera`
(numpy), triangulation, fitting (through :func:`mvspin.geometry.perspective_projection`) and the
data builders all go through it.

Model (``cv2.projectPoints`` / ``cv2.undistortPoints``): a camera-frame point ``(X, Y, Z)``
(x right, y down, z forward) has normalised coordinates ``(x, y) = (X / Z, Y / Z)``; with
``r^2 = x^2 + y^2`` and coefficients ``(k1, k2, p1, p2[, k3[, k4, k5, k6]])`` (missing ones
are 0) the distorted coordinates are::

    radial = (1 + k1 r^2 + k2 r^4 + k3 r^6) / (1 + k4 r^2 + k5 r^4 + k6 r^6)
    x_d = x radial + 2 p1 x y + p2 (r^2 + 2 x^2)
    y_d = y radial + p1 (r^2 + 2 y^2) + 2 p2 x y

and the pixel is ``K @ (x_d, y_d, 1)``, pixel centres at integer coordinates (the top-left
pixel's centre is ``(0, 0)``). ``K``'s skew ``K[0, 1]`` is applied (``cv2.projectPoints``
ignores it). OpenCV's thin-prism and tilt terms (12 or 14 coefficients) are not supported.

Shapes: points ``(*, N, 3)`` or ``(*, N, 2)``, ``K (*, 3, 3)``, ``R (*, 3, 3)``, ``t (*, 3)``,
``dist (*, D)``; the leading dims broadcast (e.g. points ``(B, V, N, 3)`` with per-view
cameras ``(V, ...)``). This package imports no mvspin layer.
"""
from __future__ import annotations

from typing import Optional

import torch
import torch.nn.functional as F
from torch import Tensor

from mvspin.errors import ShapeError, check_shape

__all__ = [
    "DISTORTION_SIZES",
    "MIN_DEPTH",
    "distort",
    "undistort",
    "normalized_to_pixels",
    "pixels_to_normalized",
    "point_distance",
    "project_points",
    "project_points_jacobian",
    "undistort_points",
]

DISTORTION_SIZES = (0, 4, 5, 8)
"""Allowed numbers of OpenCV distortion coefficients (0: no distortion)."""

MIN_DEPTH = 1e-3
"""Depth floor (world units, metres in mvspin) of the perspective division: points on or behind
the camera plane project to large but finite pixels (with zero depth gradient) instead of
inf/NaN. Such points are not visible; their projection means nothing. cv2 does not clamp."""


def _check_dist(dist: Optional[Tensor], func: str) -> bool:
    """True when ``dist`` has coefficients to apply; raise on a wrong shape."""
    if dist is None:
        return False
    check_shape(f"{func}: dist", dist, ["*", None])
    if dist.shape[-1] not in DISTORTION_SIZES:
        raise ShapeError(f"{func}: dist must have shape (..., D) with D in {DISTORTION_SIZES[1:]}, "
                         f"got {tuple(dist.shape)}")
    return dist.shape[-1] > 0


def _coefficients(dist: Tensor) -> tuple[Tensor, ...]:
    """The eight coefficients ``(k1, k2, p1, p2, k3, k4, k5, k6)``, each ``(*, 1)`` (broadcast over N)."""
    return F.pad(dist, (0, 8 - dist.shape[-1])).unsqueeze(-2).unbind(dim=-1)


def _lens_terms(x: Tensor, y: Tensor, c: tuple[Tensor, ...]) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    """OpenCV's distortion at undistorted ``(x, y)``: rational radial numerator and denominator
    and the tangential offsets, so ``x_d = x * num / den + dx`` (and the same for y)."""
    k1, k2, p1, p2, k3, k4, k5, k6 = c
    r2 = x * x + y * y
    r4 = r2 * r2
    r6 = r4 * r2
    xy2 = 2.0 * x * y
    return (1.0 + k1 * r2 + k2 * r4 + k3 * r6, 1.0 + k4 * r2 + k5 * r4 + k6 * r6,
            p1 * xy2 + p2 * (r2 + 2.0 * x * x), p1 * (r2 + 2.0 * y * y) + p2 * xy2)


def distort(xy: Tensor, dist: Optional[Tensor]) -> Tensor:
    """Apply OpenCV's lens distortion to normalised image coordinates.

    Args:
        xy: ``(*, N, 2)`` undistorted normalised coordinates ``(X / Z, Y / Z)``.
        dist: ``(*, D)`` coefficients ``(k1, k2, p1, p2[, k3[, k4, k5, k6]])``, D in {0, 4, 5, 8},
            or None (no distortion: ``xy`` is returned as is).

    Returns:
        ``(*, N, 2)`` distorted normalised coordinates.

    Example:
        >>> distort(torch.tensor([[0.5, 0.0]]), torch.tensor([0.1, 0.0, 0.0, 0.0]))  # 0.5 (1 + 0.1 * 0.25)
        tensor([[0.5125, 0.0000]])
    """
    check_shape("distort: xy", xy, ["*", None, 2])
    if not _check_dist(dist, "distort"):
        return xy
    x, y = xy.unbind(dim=-1)
    num, den, dx, dy = _lens_terms(x, y, _coefficients(dist))
    radial = num / den
    return torch.stack([x * radial + dx, y * radial + dy], dim=-1)


def undistort(xy: Tensor, dist: Optional[Tensor], iterations: int = 20) -> Tensor:
    """Invert :func:`distort`: distorted normalised coordinates -> undistorted ones.

    The fixed-point iteration of ``cv2.undistortPoints``
    (``x <- (x_d - tangential(x)) / radial(x)``), unrolled, so the result is differentiable;
    accurate to well below 0.01 px for ordinary lenses with the default 20 iterations.

    Args:
        xy: ``(*, N, 2)`` distorted normalised coordinates.
        dist: ``(*, D)`` coefficients as in :func:`distort`, or None.
        iterations: fixed-point steps.

    Returns:
        ``(*, N, 2)`` undistorted normalised coordinates.

    Example:
        >>> undistort(torch.tensor([[0.5125, 0.0]]), torch.tensor([0.1, 0.0, 0.0, 0.0]))
        tensor([[0.5000, 0.0000]])
    """
    check_shape("undistort: xy", xy, ["*", None, 2])
    if not _check_dist(dist, "undistort"):
        return xy
    c = _coefficients(dist)
    x0, y0 = xy.unbind(dim=-1)
    x, y = x0, y0
    for _ in range(iterations):
        num, den, dx, dy = _lens_terms(x, y, c)
        inv_radial = den / num
        x, y = (x0 - dx) * inv_radial, (y0 - dy) * inv_radial
    return torch.stack([x, y], dim=-1)


def normalized_to_pixels(xy: Tensor, K: Tensor) -> Tensor:
    """``(*, N, 2)`` normalised coordinates to pixels through intrinsics ``K (*, 3, 3)``
    (``u = K00 x + K01 y + K02``, ``v = K10 x + K11 y + K12``; last row taken as [0, 0, 1])."""
    Kx = K.unsqueeze(-3)  # (*, 1, 3, 3): broadcast over N
    x, y = xy.unbind(dim=-1)
    return torch.stack([Kx[..., 0, 0] * x + Kx[..., 0, 1] * y + Kx[..., 0, 2],
                        Kx[..., 1, 0] * x + Kx[..., 1, 1] * y + Kx[..., 1, 2]], dim=-1)


def point_distance(a: Tensor, b: Tensor) -> Tensor:
    """Euclidean distance ``(*)`` between 2D points ``a (*, 2)`` and ``b (*, 2)`` (broadcast
    against each other), e.g. reprojection errors in pixels. Written per coordinate: broadcasting
    a difference with a trailing dim of 2 and ``torch.linalg.vector_norm`` over it run inner
    loops of two elements (2x slower at the association's sizes); equal to them up to rounding."""
    dx = a[..., 0] - b[..., 0]
    dy = a[..., 1] - b[..., 1]
    return (dx * dx + dy * dy).sqrt()


def pixels_to_normalized(uv: Tensor, K: Tensor) -> Tensor:
    """Inverse of :func:`normalized_to_pixels` for upper-triangular ``K (*, 3, 3)``:
    ``(*, N, 2)`` pixels to (still distorted) normalised coordinates."""
    Kx = K.unsqueeze(-3)
    y = (uv[..., 1] - Kx[..., 1, 2]) / Kx[..., 1, 1]
    x = (uv[..., 0] - Kx[..., 0, 2] - Kx[..., 0, 1] * y) / Kx[..., 0, 0]
    return torch.stack([x, y], dim=-1)


def project_points(
    points: Tensor,
    K: Tensor,
    R: Optional[Tensor] = None,
    t: Optional[Tensor] = None,
    dist: Optional[Tensor] = None,
    min_depth: float = MIN_DEPTH,
) -> Tensor:
    """Project 3D points to pixels (``cv2.projectPoints``'s model), differentiable in every input.

    ``X_cam = R @ X + t``, divided by ``max(Z_cam, min_depth)``, distorted (:func:`distort`),
    mapped through ``K`` (:func:`normalized_to_pixels`).

    Args:
        points: ``(*, N, 3)`` world points (camera frame when ``R`` and ``t`` are None).
        K: ``(*, 3, 3)`` intrinsics, pixels.
        R: ``(*, 3, 3)`` world-to-camera rotations, or None (identity).
        t: ``(*, 3)`` world-to-camera translations (the unit of ``points``), or None (zero).
        dist: ``(*, D)`` OpenCV coefficients, D in {0, 4, 5, 8}, or None.
        min_depth: depth floor of the division (see :data:`MIN_DEPTH`).

    Returns:
        ``(*, N, 2)`` pixels; the leading dims of all inputs broadcast.

    Example:
        >>> K = torch.tensor([[1000., 0., 499.5], [0., 1000., 499.5], [0., 0., 1.]])
        >>> project_points(torch.tensor([[0.1, -0.2, 2.0]]), K)
        tensor([[549.5000, 399.5000]])
    """
    func = "project_points"
    check_shape(f"{func}: points", points, ["*", None, 3])
    check_shape(f"{func}: K", K, ["*", 3, 3])
    cam = points
    if R is not None:
        check_shape(f"{func}: R", R, ["*", 3, 3])
        cam = cam @ R.transpose(-1, -2)
    if t is not None:
        check_shape(f"{func}: t", t, ["*", 3])
        cam = cam + t.unsqueeze(-2)
    xy = cam[..., :2] / cam[..., 2:].clamp(min=min_depth)
    return normalized_to_pixels(distort(xy, dist), K)


def project_points_jacobian(
    points: Tensor,
    K: Tensor,
    R: Tensor,
    t: Tensor,
    dist: Optional[Tensor] = None,
    min_depth: float = MIN_DEPTH,
) -> tuple[Tensor, Tensor]:
    """:func:`project_points` and its derivatives by the world point, in closed form.

    ``d uv / d X = K[:2, :2] (d x_d / d x) (d x / d X_cam) R``: the Gauss-Newton fits need one
    ``2 x 3`` block per point and camera, which this gives in one pass of plain tensor
    arithmetic (three forward-mode passes through :func:`project_points` cost several times
    more). Where the depth is clamped at ``min_depth`` the derivative by the depth is 0, as in
    :func:`project_points`.

    Args:
        points: ``(*, N, 3)`` world points. K, R, t, dist, min_depth: as in :func:`project_points`
            (R and t required).

    Returns:
        pixels ``(*, N, 2)`` and their derivatives ``(*, N, 2, 3)`` by the points' coordinates.
    """
    func = "project_points_jacobian"
    check_shape(f"{func}: points", points, ["*", None, 3])
    check_shape(f"{func}: K", K, ["*", 3, 3])
    check_shape(f"{func}: R", R, ["*", 3, 3])
    check_shape(f"{func}: t", t, ["*", 3])
    cam = points @ R.transpose(-1, -2) + t.unsqueeze(-2)
    z = cam[..., 2:].clamp(min=min_depth)
    inv_z = 1.0 / z
    xy = cam[..., :2] * inv_z
    x, y = xy.unbind(dim=-1)
    # d(x, y) / d(X, Y, Z): [[1/z, 0, -x/z], [0, 1/z, -y/z]], no depth term where clamped
    dz = torch.where(cam[..., 2:] > min_depth, -xy * inv_z, torch.zeros_like(xy))  # (*, N, 2)
    zero = torch.zeros_like(x)
    iz = inv_z[..., 0]
    d_norm = torch.stack([torch.stack([iz, zero, dz[..., 0]], -1), torch.stack([zero, iz, dz[..., 1]], -1)], -2)
    Kx = K.unsqueeze(-3)  # (*, 1, 3, 3)
    k2 = Kx[..., :2, :2]
    if _check_dist(dist, func):
        assert dist is not None
        c = _coefficients(dist)
        k1, k2c, p1, p2, k3, k4, k5, k6 = c
        num, den, dx, dy = _lens_terms(x, y, c)
        r2 = x * x + y * y
        radial = num / den
        # d radial / d r^2, then d r^2 / dx = 2x, d r^2 / dy = 2y
        d_num = k1 + 2.0 * k2c * r2 + 3.0 * k3 * r2 * r2
        d_den = k4 + 2.0 * k5 * r2 + 3.0 * k6 * r2 * r2
        d_rad = (d_num * den - num * d_den) / (den * den)
        xd, yd = x * radial + dx, y * radial + dy
        a = radial + 2.0 * x * x * d_rad + 2.0 * p1 * y + 6.0 * p2 * x
        b = 2.0 * x * y * d_rad + 2.0 * p1 * x + 2.0 * p2 * y  # d x_d / dy = d y_d / dx
        d = radial + 2.0 * y * y * d_rad + 6.0 * p1 * y + 2.0 * p2 * x
        d_lens = torch.stack([torch.stack([a, b], -1), torch.stack([b, d], -1)], -2)  # (*, N, 2, 2)
        k2 = k2 @ d_lens
    else:
        xd, yd = x, y
    uv = torch.stack([Kx[..., 0, 0] * xd + Kx[..., 0, 1] * yd + Kx[..., 0, 2],
                      Kx[..., 1, 0] * xd + Kx[..., 1, 1] * yd + Kx[..., 1, 2]], dim=-1)
    return uv, k2 @ d_norm @ R.unsqueeze(-3)


def undistort_points(points: Tensor, K: Tensor, dist: Optional[Tensor] = None, iterations: int = 20) -> Tensor:
    """Pixels ``(*, N, 2)`` to undistorted normalised image coordinates ``(*, N, 2)``
    (``cv2.undistortPoints`` without ``P``): :func:`pixels_to_normalized`, then :func:`undistort`.

    ``K (*, 3, 3)`` and ``dist (*, D)`` broadcast against the points' leading dims.

    Example:
        >>> K = torch.tensor([[1000., 0., 499.5], [0., 1000., 499.5], [0., 0., 1.]])
        >>> undistort_points(torch.tensor([[549.5, 399.5]]), K)
        tensor([[ 0.0500, -0.1000]])
    """
    check_shape("undistort_points: points", points, ["*", None, 2])
    check_shape("undistort_points: K", K, ["*", 3, 3])
    return undistort(pixels_to_normalized(points, K), dist, iterations)
