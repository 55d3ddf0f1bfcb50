"""Rotation representations on SO(3): SPIN's 6D, axis-angle, rotation averaging, geodesic angle.

All functions act on the trailing dims and accept any number of leading batch dims (including
empty batches); rotation matrices act on column vectors (``x_rotated = R @ x``), angles are in
radians.
"""
from __future__ import annotations

from typing import Any, Optional

import torch
import torch.nn.functional as F
from kornia.geometry.conversions import rotation_matrix_to_axis_angle, rotation_matrix_to_quaternion
from torch import Tensor

from mvspin.errors import check_shape

__all__ = [
    "rot6d_to_matrix",
    "smooth_rotations",
    "matrix_to_rot6d",
    "axis_angle_to_matrix",
    "closed_form_backward_applies",
    "matrix_to_axis_angle",
    "matrix_to_quaternion",
    "so3_right_jacobian",
    "so3_mean",
    "geodesic_distance",
]


def rot6d_to_matrix(x: Tensor) -> Tensor:
    r"""Convert SPIN's 6D rotation representation to rotation matrices.

    Convention (SPIN / HMR head, **not** PyTorch3D's): the 6 numbers are reshaped to a 3x2 matrix
    in row-major order, so the first column is ``x[..., (0, 2, 4)]`` and the second
    ``x[..., (1, 3, 5)]``. Gram-Schmidt gives ``b1 = a1 / |a1|``,
    ``b2 = normalize(a2 - (b1 . a2) b1)``, ``b3 = b1 x b2``, stacked as the **columns** of the
    result. This is what lets SPIN checkpoints (``decpose``, ``init_pose``) load unchanged.

    Args:
        x: 6D rotations of shape :math:`(*, 6)`. Any non-degenerate input (the two columns not
            parallel) maps to a rotation; degenerate input follows ``F.normalize`` (eps 1e-12).

    Returns:
        rotation matrices of shape :math:`(*, 3, 3)`.

    Example:
        >>> R = rot6d_to_matrix(torch.tensor([0., -1., 1., 0., 0., 0.]))  # 90 deg about +z
        >>> R[:, 0], R[:, 1]  # the columns are elements (0, 2, 4) and (1, 3, 5)
        (tensor([0., 1., 0.]), tensor([-1.,  0.,  0.]))
    """
    check_shape("rot6d_to_matrix: x", x, ["*", 6])
    cols = x.reshape(*x.shape[:-1], 3, 2)
    a1, a2 = cols[..., 0], cols[..., 1]
    b1 = F.normalize(a1, dim=-1)
    b2 = F.normalize(a2 - (b1 * a2).sum(dim=-1, keepdim=True) * b1, dim=-1)
    b3 = torch.linalg.cross(b1, b2, dim=-1)
    return torch.stack([b1, b2, b3], dim=-1)


def matrix_to_rot6d(R: Tensor) -> Tensor:
    r"""Convert rotation matrices to SPIN's 6D representation (inverse of :func:`rot6d_to_matrix`).

    The result is the first two columns flattened row-major:
    ``[R00, R01, R10, R11, R20, R21]``; ``rot6d_to_matrix(matrix_to_rot6d(R)) == R`` for any
    rotation ``R`` (up to rounding).

    Args:
        R: rotation matrices of shape :math:`(*, 3, 3)`.

    Returns:
        6D rotations of shape :math:`(*, 6)`.

    Example:
        >>> matrix_to_rot6d(torch.eye(3))
        tensor([1., 0., 0., 1., 0., 0.])
    """
    check_shape("matrix_to_rot6d: R", R, ["*", 3, 3])
    return R[..., :, :2].reshape(*R.shape[:-2], 6)


def axis_angle_to_matrix(axis_angle: Tensor) -> Tensor:
    r"""Convert axis-angle vectors (axis times angle in radians) to rotation matrices.

    Rodrigues' formula :math:`R = I + a\,[v]_\times + b\,(v v^\top - \theta^2 I)` with
    :math:`a = \sin\theta / \theta`, :math:`b = (1 - \cos\theta) / \theta^2`, written with
    half-angle terms (:math:`a = \mathrm{sinc}(\theta/2) \cos(\theta/2)`,
    :math:`b = \mathrm{sinc}^2(\theta/2) / 2`, :math:`\mathrm{sinc}\,x = \sin x / x`) so no
    ``1 - cos`` cancels: value and gradient keep full precision at every angle, in float32 too.
    Below :math:`\theta^2 = 10^{-8}` the Taylor terms replace the divisions, so the identity has
    an exact value and gradient. This is the project's one axis-angle -> matrix kernel: it runs
    in every fitting iteration, so it is written in few tensor ops (about half of kornia's).

    Args:
        axis_angle: axis-angle vectors of shape :math:`(*, 3)`, SMPL's ``global_orient`` /
            ``body_pose`` convention (same as ``cv2.Rodrigues`` and scipy's ``from_rotvec``).

    Returns:
        rotation matrices of shape :math:`(*, 3, 3)`, acting on column vectors.

    Example:
        >>> axis_angle_to_matrix(torch.zeros(2, 24, 3)).shape
        torch.Size([2, 24, 3, 3])
        >>> R = axis_angle_to_matrix(torch.tensor([0., 0., 0.5]))  # 0.5 rad about +z
        >>> R[0]  # cos, -sin, 0
        tensor([ 0.8776, -0.4794,  0.0000])
    """
    check_shape("axis_angle_to_matrix: axis_angle", axis_angle, ["*", 3])
    if closed_form_backward_applies(axis_angle):
        return _AxisAngleToMatrix.apply(axis_angle)
    return _rodrigues(axis_angle)[0]


def closed_form_backward_applies(*tensors: Tensor) -> bool:
    """Whether a function with a hand-written backward (an ``autograd.Function``) should run
    instead of its plain tensor code: autograd records the call, and neither ``torch.compile``
    (which fuses the plain code's own backward) nor a ``torch.func`` transform (forward mode,
    vmap: the functions define no jvp or vmap rule) is tracing it."""
    return (torch.is_grad_enabled() and any(t.requires_grad for t in tensors)
            and not _IS_COMPILING() and not _FUNCTORCH_ACTIVE())


# torch >= 2.3 and >= 2.0 respectively; without them the closed-form backward simply always runs
_IS_COMPILING = getattr(torch.compiler, "is_compiling", lambda: False)
_FUNCTORCH_ACTIVE = getattr(torch._C, "_are_functorch_transforms_active", lambda: False)


def _rodrigues(axis_angle: Tensor) -> tuple[Tensor, Tensor, Tensor, Tensor, Tensor]:
    """:func:`axis_angle_to_matrix` and its intermediates ``sin(theta) / theta``,
    ``(1 - cos theta) / theta^2``, ``theta^2`` (each ``(*, 1)``) and the Taylor-branch mask."""
    t2 = (axis_angle * axis_angle).sum(-1, keepdim=True)  # theta^2
    small = t2 < 1e-8
    half = 0.5 * torch.where(small, torch.ones_like(t2), t2).sqrt()  # theta / 2 (1 where small)
    # Taylor: sinc(h) = 1 - h^2/6 and cos(h) = 1 - h^2/2 with h^2 = t2 / 4; errors O(t2^2) < 1e-16.
    sinc = torch.where(small, 1 - t2 / 24, torch.sin(half) / half)
    cos = torch.where(small, 1 - t2 / 8, torch.cos(half))
    a = sinc * cos  # sin(theta) / theta
    b = 0.5 * sinc * sinc  # (1 - cos(theta)) / theta^2
    x, y, z = (a * axis_angle).unbind(-1)
    zero = torch.zeros_like(x)
    skew = torch.stack([zero, -z, y, z, zero, -x, -y, x, zero], -1).view(*axis_angle.shape[:-1], 3, 3)
    eye = torch.eye(3, dtype=axis_angle.dtype, device=axis_angle.device)
    # cos(theta) I + sin(theta) [k]x + (1 - cos theta) k k^T, with cos(theta) = 1 - b theta^2.
    rot = skew + (b * axis_angle)[..., :, None] * axis_angle[..., None, :] + (1 - b * t2)[..., None] * eye
    return rot, a, b, t2, small


class _AxisAngleToMatrix(torch.autograd.Function):
    """:func:`axis_angle_to_matrix` with its vector-Jacobian product in closed form: ~10 tensor
    ops instead of autograd's ~35 recorded ones (the fitting loops convert every iteration).

    With ``R(v + dv) = R(v) exp([J_r(v) dv]x)`` (:func:`so3_right_jacobian`) and ``G = dE/dR``,
    ``dE/dv = J_r^T u`` where ``u = vee(R^T G - G^T R)`` (``u_x = A_12 - A_21``, ... for
    ``A = G^T R``), and ``J_r^T u = (sin t / t) u + ((1 - cos t) / t^2) v x u
    + ((t - sin t) / t^3) (v . u) v``: the forward's own coefficients, the last one
    ``(1 - sin t / t) / t^2`` (1/6 in the Taylor branch; where float32 cancels it, it multiplies
    a term below rounding). Equal to autograd's gradient up to rounding."""

    @staticmethod
    def forward(ctx: Any, axis_angle: Tensor) -> Tensor:
        rot, a, b, t2, small = _rodrigues(axis_angle)
        ctx.save_for_backward(axis_angle, rot, a, b, t2, small)
        return rot

    @staticmethod
    def backward(ctx: Any, grad_rot: Tensor) -> Tensor:
        v, rot, a, b, t2, small = ctx.saved_tensors
        m = torch.matmul(grad_rot.transpose(-1, -2), rot)
        m = m - m.transpose(-1, -2)
        u = torch.stack([m[..., 1, 2], m[..., 2, 0], m[..., 0, 1]], -1)
        c = torch.where(small, 1 / 6 - t2 / 120, (1 - a) / torch.where(small, torch.ones_like(t2), t2))
        return a * u + b * torch.linalg.cross(v, u) + c * (v * u).sum(-1, keepdim=True) * v


def matrix_to_axis_angle(R: Tensor) -> Tensor:
    r"""Convert rotation matrices to axis-angle vectors with angle in :math:`[0, \pi]`.

    Goes through kornia's quaternion conversion, which picks the numerically dominant branch, so
    it stays accurate near angle 0 and near :math:`\pi` (where ``arccos``-based formulas lose
    precision). At exactly :math:`\pi` the sign of the axis is arbitrary; both signs describe
    the same rotation. The input is not checked for orthogonality.

    Args:
        R: rotation matrices of shape :math:`(*, 3, 3)`.

    Returns:
        axis-angle vectors of shape :math:`(*, 3)`, radians.

    Example:
        >>> R = torch.tensor([[1., 0., 0.], [0., 0., -1.], [0., 1., 0.]])
        >>> matrix_to_axis_angle(R)
        tensor([1.5708, 0.0000, 0.0000])
    """
    check_shape("matrix_to_axis_angle: R", R, ["*", 3, 3])
    return rotation_matrix_to_axis_angle(R)


def matrix_to_quaternion(R: Tensor) -> Tensor:
    r"""Convert rotation matrices to unit quaternions ``(w, x, y, z)`` with ``w >= 0``.

    kornia's conversion, which takes each quaternion from the branch of the matrix's largest
    diagonal term: every component is accurate to the matrix's own precision. (The symmetric
    formulas, each component from a square root of a sum of diagonal terms, lose a small
    component: with them fit-rig's ``.glb`` keys were up to 2e-4 off its ``.npz`` poses.)

    Args:
        R: rotation matrices of shape :math:`(*, 3, 3)`.

    Returns:
        quaternions of shape :math:`(*, 4)`, ``(w, x, y, z)``, unit norm, ``w >= 0``.

    Example:
        >>> R = torch.tensor([[1., 0., 0.], [0., 0., -1.], [0., 1., 0.]])
        >>> matrix_to_quaternion(R)
        tensor([0.7071, 0.7071, 0.0000, 0.0000])
    """
    check_shape("matrix_to_quaternion: R", R, ["*", 3, 3])
    q = rotation_matrix_to_quaternion(R)
    q = torch.where(q[..., :1] < 0, -q, q)
    return q / torch.linalg.vector_norm(q, dim=-1, keepdim=True)


def so3_right_jacobian(axis_angle: Tensor) -> Tensor:
    r"""Right Jacobian of the exponential map: ``exp(v + dv) = exp(v) exp(J_r(v) dv)`` to first order.

    :math:`J_r(v) = I - \frac{1 - \cos\theta}{\theta^2} [v]_\times + \frac{\theta - \sin\theta}{\theta^3} [v]_\times^2`
    (Taylor terms below :math:`\theta^2 = 10^{-4}`). It turns derivatives with respect to a
    local rotation perturbation ``R exp(d)`` into derivatives with respect to the axis-angle
    vector itself (Gauss-Newton fits in axis-angle coordinates).

    Args:
        axis_angle: ``(*, 3)`` radians.

    Returns:
        ``(*, 3, 3)``.

    Example:
        >>> so3_right_jacobian(torch.zeros(3))
        tensor([[1., 0., 0.],
                [0., 1., 0.],
                [0., 0., 1.]])
    """
    check_shape("so3_right_jacobian: axis_angle", axis_angle, ["*", 3])
    t2 = (axis_angle * axis_angle).sum(-1, keepdim=True)[..., None]
    small = t2 < 1e-4
    safe = torch.where(small, torch.ones_like(t2), t2)
    theta = safe.sqrt()
    b = torch.where(small, 0.5 - t2 / 24, (1 - torch.cos(theta)) / safe)
    c = torch.where(small, 1.0 / 6 - t2 / 120, (theta - torch.sin(theta)) / (safe * theta))
    x, y, z = axis_angle.unbind(-1)
    zero = torch.zeros_like(x)
    skew = torch.stack([zero, -z, y, z, zero, -x, -y, x, zero], -1).view(*axis_angle.shape[:-1], 3, 3)
    eye = torch.eye(3, dtype=axis_angle.dtype, device=axis_angle.device)
    skew2 = axis_angle[..., :, None] * axis_angle[..., None, :] - t2 * eye  # [v]x^2 = v v^T - |v|^2 I
    return eye - b * skew + c * skew2


def _project_to_so3(M: Tensor) -> Tensor:
    """Closest rotation in Frobenius norm to each (*, 3, 3) matrix (SVD, det(R) = +1)."""
    U, _, Vh = torch.linalg.svd(M)
    # U Vh is orthogonal, det = +-1: flip the axis of the smallest singular value on a reflection.
    d = torch.sign(torch.det(U @ Vh))
    ones = torch.ones_like(d)
    D = torch.diag_embed(torch.stack([ones, ones, d], dim=-1))
    return U @ D @ Vh


def so3_mean(
    R: Tensor, weights: Optional[Tensor] = None, dim: int = -3, iterations: int = 10
) -> Tensor:
    r"""(Weighted) Karcher mean of rotations along one batch axis.

    Minimises :math:`\sum_i w_i\, d_{geo}(\bar R, R_i)^2`. Initialised with the chordal L2 mean
    (weighted sum of matrices projected onto SO(3) by SVD), then ``iterations`` Gauss-Newton
    steps in the tangent space: :math:`\bar R \leftarrow \bar R \exp(\sum_i \hat w_i
    \log(\bar R^\top R_i))` with normalised weights :math:`\hat w_i`. Fully batched, no
    data-dependent control flow. Meaningful when the rotations of a group lie within about 90
    degrees of each other (the use case: fusing per-view estimates of the same joint).

    ``dim`` indexes ``R`` itself and must name one of its leading (non-matrix) axes: for
    per-view body-pose estimates ``(B, V, J, 3, 3)`` use ``dim=1`` to get ``(B, J, 3, 3)``;
    the default ``-3`` averages over the last leading axis, ``(..., N, 3, 3) -> (..., 3, 3)``.

    Weights are non-negative; a zero weight ignores that rotation. A group whose weights are
    all zero (or an empty group, N = 0) returns the **identity**, so callers can detect it by
    the weight sum rather than get NaNs.

    Gradients flow through the tangent-space iterations; the SVD initialisation is treated as a
    constant (SVD's backward is undefined at repeated singular values, e.g. identical inputs).
    At convergence the last step's gradient is the mean's gradient to first order; with
    ``iterations=0`` the result carries no gradient.

    Args:
        R: rotation matrices of shape :math:`(*, N, *, 3, 3)`, N at position ``dim``.
        weights: optional non-negative weights, broadcastable to ``R.shape[:-2]``
            (e.g. ``(B, V, J)`` or ``(B, V, 1)`` for ``R`` of shape ``(B, V, J, 3, 3)``).
        dim: the axis of ``R`` to average over (a leading axis, not one of the last two).
        iterations: the most Karcher steps after the chordal initialisation; it stops earlier
            once no step exceeds 16 machine epsilons of the dtype (converged: from the chordal
            start, three steps reach float32 precision for views 0.3 rad apart).

    Returns:
        mean rotations of shape ``R.shape`` without axis ``dim``.

    Example:
        >>> Rz = axis_angle_to_matrix(torch.tensor([[0., 0., 0.1], [0., 0., 0.3]]))
        >>> matrix_to_axis_angle(so3_mean(Rz))
        tensor([0.0000, 0.0000, 0.2000])
    """
    check_shape("so3_mean: R", R, ["*", None, 3, 3])
    lead = R.ndim - 2
    if not -R.ndim <= dim < R.ndim or (dim % R.ndim) >= lead:
        raise ValueError(
            f"so3_mean: dim={dim} must name a leading axis of R with shape {tuple(R.shape)} "
            f"(one of {list(range(lead))} or {list(range(-R.ndim, -2))})"
        )
    if iterations < 0:
        raise ValueError(f"so3_mean: iterations must be >= 0, got {iterations}")
    axis = dim % R.ndim
    Rn = R.movedim(axis, -3)  # (..., N, 3, 3)
    if weights is None:
        w = torch.ones(Rn.shape[:-2], dtype=R.dtype, device=R.device)
    else:
        try:
            w = torch.broadcast_to(weights.to(R.dtype), R.shape[:-2])
        except RuntimeError:
            raise ValueError(
                f"so3_mean: expected weights broadcastable to {tuple(R.shape[:-2])}, "
                f"got {tuple(weights.shape)}"
            ) from None
        if bool((w < 0).any()):
            raise ValueError("so3_mean: weights must be non-negative")
        w = w.movedim(axis, -1)
    w_sum = w.sum(dim=-1)  # (...)
    has_weight = w_sum > 0
    w_hat = w / torch.where(has_weight, w_sum, torch.ones_like(w_sum)).unsqueeze(-1)

    eye = torch.eye(3, dtype=R.dtype, device=R.device)
    with torch.no_grad():
        chordal = (w_hat[..., None, None] * Rn.detach()).sum(dim=-3)
        mean = torch.where(has_weight[..., None, None], _project_to_so3(chordal), eye)

    # Groups without weight get w_hat = 0, hence a zero step: they stay at the identity.
    tol = 16 * torch.finfo(R.dtype).eps
    for _ in range(iterations):
        relative = mean.unsqueeze(-3).transpose(-1, -2) @ Rn  # (..., N, 3, 3)
        step = (w_hat.unsqueeze(-1) * rotation_matrix_to_axis_angle(relative)).sum(dim=-2)
        mean = mean @ axis_angle_to_matrix(step)
        if step.numel() == 0 or float(step.detach().abs().amax()) <= tol:
            break  # converged; further steps change nothing but cost (each one a log and an exp)
    return mean


def geodesic_distance(R1: Tensor, R2: Tensor) -> Tensor:
    r"""Angle in radians, in :math:`[0, \pi]`, of the relative rotation :math:`R_1^\top R_2`.

    Computed as ``atan2(|vee(R - R^T)| / 2, (trace(R) - 1) / 2)``, which keeps full precision
    near 0 and :math:`\pi` (unlike ``arccos``) and has a finite gradient everywhere (zero at
    identical inputs, where the angle is not differentiable).

    Args:
        R1: rotation matrices of shape :math:`(*, 3, 3)`.
        R2: rotation matrices of shape :math:`(*, 3, 3)`, broadcastable with ``R1``.

    Returns:
        angles of shape :math:`(*)`, radians.

    Example:
        >>> Rz = axis_angle_to_matrix(torch.tensor([0., 0., 0.5]))
        >>> geodesic_distance(torch.eye(3), Rz)
        tensor(0.5000)
    """
    check_shape("geodesic_distance: R1", R1, ["*", 3, 3])
    check_shape("geodesic_distance: R2", R2, ["*", 3, 3])
    R = R1.transpose(-1, -2) @ R2
    cos = 0.5 * (R[..., 0, 0] + R[..., 1, 1] + R[..., 2, 2] - 1.0)
    skew = torch.stack(
        [R[..., 2, 1] - R[..., 1, 2], R[..., 0, 2] - R[..., 2, 0], R[..., 1, 0] - R[..., 0, 1]],
        dim=-1,
    )
    sq = (skew * skew).sum(dim=-1)
    # sqrt's derivative is infinite at 0: feed it a stand-in 1 there and zero the result.
    nonzero = sq > 0
    sin = 0.5 * torch.where(nonzero, torch.sqrt(torch.where(nonzero, sq, torch.ones_like(sq))), 0.0)
    return torch.atan2(sin, cos)


def smooth_rotations(R: Tensor, window: int, order: int = 2) -> Tensor:
    r"""Savitzky-Golay smoothing of a rotation sequence along its first axis, in 6D.

    The 6D representation (two columns of each matrix) is continuous on SO(3), unlike axis-angle
    and quaternions (no wrap-around, no sign flips), so a local polynomial fit per component and
    Gram-Schmidt back to a rotation smooth jitter without jumps. The first and last frames use a
    polynomial fitted to the window's frames at the ends (scipy's ``mode="interp"``).

    Args:
        R: :math:`(T, *, 3, 3)` rotations, frames first.
        window: frames per local fit (odd, >= ``order + 2``); a sequence shorter than the window
            uses the largest odd window it has (fewer than ``order + 2`` frames: returned as is).
        order: the polynomial's degree.

    Returns:
        :math:`(T, *, 3, 3)` rotations.

    Example:
        >>> R = axis_angle_to_matrix(torch.tensor([[0.0, 0.0, 0.1 * t] for t in range(9)]))
        >>> torch.allclose(smooth_rotations(R, 5), R, atol=1e-3)  # a steady turn is kept
        True
    """
    from scipy.signal import savgol_filter

    check_shape("smooth_rotations: R", R, ["*", 3, 3])  # frames first: at least (T, 3, 3)
    t = R.shape[0] if R.dim() > 2 else 0
    window = min(window if window % 2 else window + 1, t if t % 2 else t - 1)
    if window < order + 2:
        return R
    x = matrix_to_rot6d(R).detach().cpu().double().numpy()
    smoothed = savgol_filter(x, window, order, axis=0, mode="interp")
    return rot6d_to_matrix(torch.as_tensor(smoothed, dtype=R.dtype, device=R.device))
