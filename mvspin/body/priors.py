"""Pose and shape priors for SMPL-layout bodies.

- :class:`GMMPosePrior`: SMPLify's 8-component max-mixture prior on the 69-d axis-angle body
  pose, read from ``gmm_08.pkl`` (means ``(8, 69)``, covars ``(8, 69, 69)``, weights ``(8,)``).
- :class:`FreePosePrior`: the prior used when no GMM is given (the free model's default): soft
  per-joint limits on the axis-angle components in SMPL's axes, plus a small L2 term. Sampling
  inside the limits gives anatomically possible (not necessarily natural) poses.
- :func:`angle_prior`: SMPLify's exponential elbow/knee hyper-extension prior.
- :func:`shape_prior`: squared norm of the betas.

All energies return one value per sample, ``(B,)``, and are differentiable.
"""
from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import torch
from torch import Tensor, nn

from mvspin.body.keypoint_sets import SMPL_JOINT_NAMES
from mvspin.body.safe_pickle import load_restricted_pickle
from mvspin.errors import ShapeError, check_shape
from mvspin.geometry.products import is_compiling

__all__ = ["GMMPosePrior", "FreePosePrior", "angle_prior", "angle_prior_gauss_newton", "shape_prior", "JOINT_LIMITS_DEG"]


def _check_body_pose(body_pose: Tensor) -> Tensor:
    if body_pose.shape[-1] == 3 and body_pose.dim() >= 2 and body_pose.shape[-2] == 23:
        body_pose = body_pose.flatten(-2)
    if body_pose.shape[-1] != 69:
        raise ShapeError(f"body_pose must be axis-angle (B, 69) or (B, 23, 3), got {tuple(body_pose.shape)}")
    return body_pose


class GMMPosePrior(nn.Module):
    """SMPLify's Gaussian-mixture pose prior, evaluated as a max-mixture.

    The energy of a pose is ``min_k [0.5 (x - mu_k)^T Sigma_k^-1 (x - mu_k) - log(w'_k)]`` with
    ``w'_k = w_k / ((2 pi)^(69/2) sqrt(det Sigma_k) / min_j sqrt(det Sigma_j))``: the negative log
    of the best single component, as in SMPLify (Bogo, Kanazawa, Lassner, Gehler, Romero, Black, *Keep
    it SMPL: Automatic Estimation of 3D Human Pose and Shape from a Single Image*, ECCV 2016) and SPIN.

    Args:
        means: ``(C, 69)``. covars: ``(C, 69, 69)``. weights: ``(C,)``.
    """

    means: Tensor  # buffers, registered in __init__
    precisions: Tensor
    log_weights: Tensor
    weights: Tensor
    covar_cholesky: Tensor

    def __init__(self, means: np.ndarray, covars: np.ndarray, weights: np.ndarray) -> None:
        super().__init__()
        means, covars, weights = (np.asarray(a, dtype=np.float64) for a in (means, covars, weights))
        sizes = check_shape("GMM prior means", means, ["C", 69])
        check_shape("GMM prior covars", covars, ["C", 69, 69], sizes)
        check_shape("GMM prior weights", weights, ["C"], sizes)
        precisions = np.linalg.inv(covars)
        sqrt_dets = np.sqrt(np.linalg.det(covars))
        const = (2 * math.pi) ** (69 / 2)
        nll_weights = weights / (const * (sqrt_dets / sqrt_dets.min()))
        self.register_buffer("means", torch.as_tensor(means, dtype=torch.float32))
        self.register_buffer("precisions", torch.as_tensor(precisions, dtype=torch.float32))
        self.register_buffer("log_weights", torch.as_tensor(np.log(nll_weights), dtype=torch.float32))
        # for sample(): the mixture itself (not part of the energy, so not saved with a module)
        self.register_buffer("weights", torch.as_tensor(weights / weights.sum(), dtype=torch.float64), persistent=False)
        self.register_buffer("covar_cholesky", torch.as_tensor(np.linalg.cholesky(covars), dtype=torch.float64),
                             persistent=False)

    def sample(self, n: int, generator: torch.Generator | None = None, spread: float = 1.0) -> Tensor:
        """Random axis-angle body poses ``(n, 69)`` from the mixture: a component drawn with the
        mixture's weights, then its Gaussian with the standard deviation scaled by ``spread``
        (``1``: the mixture itself; smaller stays nearer the component means)."""
        k = torch.multinomial(self.weights.cpu(), n, replacement=True, generator=generator)
        z = torch.randn(n, 69, 1, generator=generator, dtype=torch.float64)
        x = self.means.cpu().double()[k] + spread * (self.covar_cholesky.cpu()[k] @ z)[..., 0]
        return x.to(self.means.dtype)

    @classmethod
    def from_pickle(cls, path: str | Path) -> "GMMPosePrior":
        """Read SMPLify's ``gmm_08.pkl`` (restricted unpickling: arrays only)."""
        data = load_restricted_pickle(path)
        try:
            return cls(data["means"], data["covars"], data["weights"])
        except (KeyError, TypeError) as err:
            raise ValueError(f"{path} is not a GMM prior file (needs means, covars, weights)") from err

    def forward(self, body_pose: Tensor) -> Tensor:
        """Energy ``(B,)`` of axis-angle body poses ``(B, 69)``."""
        x = _check_body_pose(body_pose)
        diff = x.unsqueeze(1) - self.means.to(x.dtype)  # (B, C, 69)
        quad = torch.einsum("bci,cij,bcj->bc", diff, self.precisions.to(x.dtype), diff)
        return (0.5 * quad - self.log_weights.to(x.dtype)).min(dim=1).values

    def gauss_newton(self, body_pose: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        """Energy ``(B,)``, gradient ``(B, 69)`` and curvature ``(B, 69, 69)`` of the closest
        component's quadratic (as SMPLify-X's solver treats the max-mixture): the residual
        ``L^T (x - mu_k)`` with ``Sigma_k^-1 = L L^T``, so the curvature is ``Sigma_k^-1``. The
        gradient equals autograd's of :meth:`forward` (the min picks that component)."""
        x = _check_body_pose(body_pose)
        diff = x.unsqueeze(1) - self.means.to(x.dtype)
        prec = self.precisions.to(x.dtype)
        quad = torch.einsum("bci,cij,bcj->bc", diff, prec, diff)
        energy, k = (0.5 * quad - self.log_weights.to(x.dtype)).min(dim=1)
        p_k = prec[k]  # (B, 69, 69)
        d_k = diff[torch.arange(x.shape[0], device=x.device), k]
        return energy, (p_k @ d_k[..., None])[..., 0], p_k


# Soft limits of each joint's axis-angle components (x, y, z) in degrees, for the LEFT side and
# the spine/neck/head, in SMPL's axes (Y up, X the body's left, Z forward). Signs follow the
# right-hand rule: for the left leg (pointing -Y) a negative x-rotation swings it forward (hip
# flexion); for the left arm (pointing +X) a positive z-rotation raises it and a negative
# y-rotation swings it forward; a positive knee x-rotation flexes the knee and a negative
# left-elbow y-rotation flexes the elbow (the same signs SMPLify's angle prior uses). Ranges are
# rounded textbook ranges of motion; the right side is mirrored (x kept, y and z negated).
JOINT_LIMITS_DEG: dict[str, tuple[tuple[float, float], tuple[float, float], tuple[float, float]]] = {
    "left_hip": ((-120.0, 30.0), (-40.0, 40.0), (-30.0, 50.0)),
    "spine1": ((-20.0, 40.0), (-25.0, 25.0), (-20.0, 20.0)),
    "left_knee": ((-5.0, 150.0), (-15.0, 15.0), (-5.0, 5.0)),
    "spine2": ((-20.0, 30.0), (-20.0, 20.0), (-15.0, 15.0)),
    "left_ankle": ((-25.0, 50.0), (-20.0, 20.0), (-25.0, 25.0)),
    "spine3": ((-15.0, 25.0), (-20.0, 20.0), (-15.0, 15.0)),
    "left_foot": ((-20.0, 30.0), (-5.0, 5.0), (-5.0, 5.0)),
    "neck": ((-40.0, 50.0), (-45.0, 45.0), (-30.0, 30.0)),
    "left_collar": ((-10.0, 10.0), (-25.0, 15.0), (-15.0, 30.0)),
    "head": ((-30.0, 40.0), (-45.0, 45.0), (-30.0, 30.0)),
    "left_shoulder": ((-80.0, 80.0), (-110.0, 45.0), (-95.0, 90.0)),
    "left_elbow": ((-80.0, 60.0), (-150.0, 5.0), (-10.0, 10.0)),
    "left_wrist": ((-10.0, 10.0), (-25.0, 35.0), (-70.0, 70.0)),
    "left_hand": ((-10.0, 10.0), (-10.0, 10.0), (-60.0, 20.0)),
}


def _limit_table() -> tuple[np.ndarray, np.ndarray]:
    lower = np.zeros((23, 3))
    upper = np.zeros((23, 3))
    for j, name in enumerate(SMPL_JOINT_NAMES[1:]):
        if name in JOINT_LIMITS_DEG:
            lim = np.array(JOINT_LIMITS_DEG[name])
        else:  # right side: mirror the left joint's limits across the sagittal plane
            lim = np.array(JOINT_LIMITS_DEG[name.replace("right_", "left_")])
            lim[1:] = -lim[1:, ::-1]
        lower[j], upper[j] = lim[:, 0], lim[:, 1]
    return np.radians(lower), np.radians(upper)


class FreePosePrior(nn.Module):
    """Hand-set pose prior: soft joint limits plus a small L2 pull toward the rest pose.

    ``E(x) = sum((relu(x - upper) + relu(lower - x))^2) + l2_weight * |x|^2`` over the 69
    axis-angle components (radians), per sample. Joint limits in :data:`JOINT_LIMITS_DEG`.

    Args:
        l2_weight: weight of the L2 term relative to the limit term.
    """

    lower: Tensor  # buffers, registered in __init__
    upper: Tensor

    def __init__(self, l2_weight: float = 0.01) -> None:
        super().__init__()
        lower, upper = _limit_table()
        self.register_buffer("lower", torch.as_tensor(lower.reshape(69), dtype=torch.float32))
        self.register_buffer("upper", torch.as_tensor(upper.reshape(69), dtype=torch.float32))
        self.l2_weight = l2_weight

    def forward(self, body_pose: Tensor) -> Tensor:
        """Energy ``(B,)`` of axis-angle body poses ``(B, 69)``."""
        x = _check_body_pose(body_pose)
        lo, hi = self.lower.to(x.dtype), self.upper.to(x.dtype)
        excess = torch.relu(x - hi) + torch.relu(lo - x)
        return excess.square().sum(-1) + self.l2_weight * x.square().sum(-1)

    def gauss_newton(self, body_pose: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        """Energy ``(B,)``, gradient ``(B, 69)`` and curvature of the prior as residuals (the
        excess over each limit and ``sqrt(l2_weight) x``). Exact: the prior is a sum of squares of
        piecewise-linear residuals of one component each, so the curvature is diagonal and is
        returned as that diagonal, ``(B, 69)`` (adding it on a diagonal view costs a fraction of
        a dense ``(B, 69, 69)`` add in every Levenberg-Marquardt evaluation)."""
        x = _check_body_pose(body_pose)
        lo, hi = self.lower.to(x.dtype), self.upper.to(x.dtype)
        excess = torch.relu(x - hi) - torch.relu(lo - x)  # signed: its square is the limit term
        outside = ((x > hi) | (x < lo)).to(x.dtype)
        energy = excess.square().sum(-1) + self.l2_weight * x.square().sum(-1)
        grad = 2 * excess + 2 * self.l2_weight * x
        return energy, grad, 2 * (outside + self.l2_weight)

    def sample(self, n: int, generator: torch.Generator | None = None, spread: float = 0.5) -> Tensor:
        """Random axis-angle body poses ``(n, 69)`` inside the joint limits.

        Each component is drawn from a normal centred at 0 (the T-pose; the midpoint of the
        range where 0 is outside it) with standard deviation ``spread`` times the half range,
        then clipped to the limits. ``spread=1`` covers the whole range of motion.
        """
        lo, hi = self.lower.cpu().double(), self.upper.cpu().double()
        centre = torch.clamp(torch.zeros_like(lo), lo, hi)
        std = spread * (hi - lo) / 2
        x = centre + std * torch.randn(n, 69, generator=generator, dtype=torch.float64)
        return torch.maximum(torch.minimum(x, hi), lo).to(self.lower.dtype)


# SMPLify's elbow/knee prior: body-pose components (joint index - 1) * 3 + axis and signs.
_ANGLE_PRIOR_INDEX = (17 * 3 + 1, 18 * 3 + 1, 3 * 3 + 0, 4 * 3 + 0)  # elbow L/R (y), knee L/R (x)
_ANGLE_PRIOR_SIGN = (1.0, -1.0, -1.0, -1.0)


def angle_prior(body_pose: Tensor) -> Tensor:
    """SMPLify's hyper-extension prior ``sum exp(sign * theta)^2`` on elbows and knees, ``(B,)``."""
    x = _check_body_pose(body_pose)
    idx, sign = _angle_prior_tensors(x.dtype, x.device)
    # index_select: the same values as x[..., list], in a quarter of the time (every fitting iteration)
    return torch.exp(x.index_select(-1, idx) * sign).square().sum(-1)


_ANGLE_PRIOR_TENSORS: dict[tuple[torch.dtype, torch.device], tuple[Tensor, Tensor]] = {}


def _angle_prior_tensors(dtype: torch.dtype, device: torch.device) -> tuple[Tensor, Tensor]:
    """The elbow/knee indices and signs as tensors, made once per dtype and device."""
    if is_compiling():  # constants of the graph: a lookup in the cache would be guarded, and its
        # first use (the key missing while tracing, present after) recompiled the whole energy
        return (torch.tensor(_ANGLE_PRIOR_INDEX, device=device),
                torch.tensor(_ANGLE_PRIOR_SIGN, dtype=dtype, device=device))
    key = (dtype, device)
    if key not in _ANGLE_PRIOR_TENSORS:
        _ANGLE_PRIOR_TENSORS[key] = (torch.tensor(_ANGLE_PRIOR_INDEX, device=device),
                                     torch.tensor(_ANGLE_PRIOR_SIGN, dtype=dtype, device=device))
    return _ANGLE_PRIOR_TENSORS[key]


def angle_prior_gauss_newton(body_pose: Tensor) -> tuple[Tensor, Tensor]:
    """Gradient ``(B, 69)`` and Gauss-Newton curvature ``(B, 69)`` (the diagonal; zero off the
    four elbow/knee components) of :func:`angle_prior` as the residuals ``exp(sign * theta)``."""
    x = _check_body_pose(body_pose)
    idx = torch.tensor(_ANGLE_PRIOR_INDEX, device=x.device)
    sign = torch.tensor(_ANGLE_PRIOR_SIGN, dtype=x.dtype, device=x.device)
    e2 = torch.exp(2 * sign * x.index_select(-1, idx))
    grad = torch.zeros_like(x).index_copy(-1, idx, 2 * sign * e2)
    curv = torch.zeros_like(x).index_copy(-1, idx, 2 * e2)
    return grad, curv


def shape_prior(betas: Tensor) -> Tensor:
    """Squared norm of the shape coefficients, ``(B,)``."""
    return betas.square().sum(-1)
