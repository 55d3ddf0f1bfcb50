"""Batched Levenberg-Marquardt for SMPLify and MV-SMPLify (``optimizer="lm"``).

Each bundle is its own least-squares problem of about a hundred unknowns (body pose, betas, a
root rotation and translation per view) and a few hundred residuals, so a batch is solved with
one dense ``(B, P, P)`` linear system per iteration instead of a hundred first-order steps.

The pieces:

- :func:`robust_system`: the normal equations of a weighted Geman-McClure (or plain squared)
  reprojection term by iterative reweighting: with residual ``r``, Jacobian ``J`` and weight
  ``w``, ``rho(r) = s^2 r^2 / (s^2 + r^2)`` has gradient ``2 w psi r J`` with
  ``psi = s^4 / (s^2 + r^2)^2``, and the Gauss-Newton matrix is ``2 w psi J^T J``: the gradient
  is exact, the curvature that of the reweighted quadratic.
- the priors as residuals (:mod:`mvspin.body.priors`: ``gauss_newton`` methods).
- :func:`levenberg_marquardt`: the batched loop. Every bundle keeps its own damping; a step that
  does not lower a bundle's energy is rejected for that bundle (its parameters stay) and its
  damping grows, one that does is kept and the damping shrinks. A bundle stops when its
  accepted relative energy decrease or its step falls below the tolerances, or its damping
  exceeds a ceiling (no descent left at float precision); the iteration count is a cap.

Each iteration evaluates the energy, gradient and Gauss-Newton matrix at the trial point in one
pass (the Jacobian pass computes the energy too), so a rejected step costs one evaluation.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Optional

import torch
from torch import Tensor

__all__ = ["LMOptions", "LMSystem", "levenberg_marquardt", "proximal_system", "robust_system", "skew",
           "crop_projection_jacobian"]


@dataclass
class LMSystem:
    """Energy ``(B,)``, gradient ``(B, P)`` and Gauss-Newton matrix ``(B, P, P)`` at a point."""

    energy: Tensor
    grad: Tensor
    hess: Tensor


@dataclass
class LMOptions:
    """Damping and stopping of :func:`levenberg_marquardt`."""

    damping: float = 1e-3
    """Initial Marquardt damping (times the diagonal of the Gauss-Newton matrix)."""
    up: float = 8.0
    """Damping factor after a rejected step."""
    down: float = 1.0 / 4.0
    """Damping factor after an accepted step."""
    rel_tol: float = 1e-6
    """A bundle is done when an accepted step lowers its energy by less than this fraction."""
    step_tol: float = 1e-7
    """... or when its step's largest component is below this (radians, metres, betas)."""
    max_damping: float = 1e8
    """... or when its damping exceeds this (no step lowers the energy any more)."""


def robust_system(residual: Tensor, jac: Tensor, weight: Tensor, sigma: Optional[float]) -> tuple[Tensor, Tensor]:
    """Gradient ``(B, P)`` and Gauss-Newton matrix ``(B, P, P)`` of ``sum w rho(r)``.

    Args:
        residual: ``(B, N)`` residual components (pixels).
        jac: ``(B, N, P)`` their derivatives by the unknowns.
        weight: ``(B, N)`` non-negative weights (each component's keypoint weight).
        sigma: Geman-McClure scale; None for the plain squared term ``w r^2``.
    """
    if sigma is None:
        wr = 2 * weight
    else:
        s2 = float(sigma) ** 2
        wr = 2 * weight * (s2 / (s2 + residual.square())).square()
    wj = jac * wr[..., None]
    grad = (wj * residual[..., None]).sum(1)
    hess = wj.transpose(1, 2) @ jac
    return grad, hess


def levenberg_marquardt(
    evaluate: Callable[[Tensor], LMSystem],
    x0: Tensor,
    iterations: int,
    active: Optional[Tensor] = None,
    options: LMOptions = LMOptions(),
    record: Optional[Callable[[int, float], None]] = None,
) -> tuple[Tensor, int, Tensor]:
    """Minimise each bundle's energy over ``x (B, P)`` by damped Gauss-Newton steps.

    Args:
        evaluate: ``x (B, P) -> LMSystem`` (energy, gradient and Gauss-Newton matrix per bundle).
        x0: the start ``(B, P)``.
        iterations: the most steps tried (each one evaluation).
        active: ``(B,)`` bool, the bundles to fit (others keep ``x0``); default all.
        options: damping and stopping.
        record: called with ``(iteration, total energy)`` after every step (traces).

    Returns:
        The minimiser ``(B, P)``, the iterations run, and the energy ``(B,)`` there.

    Raises:
        FloatingPointError: the energy at the start is NaN or infinite.
    """
    b, p = x0.shape
    x = x0.clone()
    sys = evaluate(x)
    if not bool(torch.isfinite(sys.energy).all()):
        raise FloatingPointError("the energy at the start is not finite")
    todo = torch.ones(b, dtype=torch.bool, device=x.device) if active is None else active.clone()
    lam = torch.full((b,), options.damping, dtype=x.dtype, device=x.device)
    eye = torch.eye(p, dtype=x.dtype, device=x.device)
    run = 0
    for it in range(iterations):
        if not bool(todo.any()):
            break
        run = it + 1
        diag = torch.diagonal(sys.hess, dim1=-2, dim2=-1).clamp_min(1e-9)
        a = sys.hess + (lam[:, None] * diag)[..., None] * eye
        chol, info = torch.linalg.cholesky_ex(a)
        ok = info == 0
        step = -torch.cholesky_solve(sys.grad[..., None], torch.where(ok[:, None, None], chol, eye))[..., 0]
        step = torch.where((ok & todo)[:, None], step, torch.zeros_like(step))
        trial = evaluate(x + step)
        better = todo & ok & torch.isfinite(trial.energy) & (trial.energy <= sys.energy)
        decrease = sys.energy - trial.energy
        x = torch.where(better[:, None], x + step, x)
        sys = LMSystem(torch.where(better, trial.energy, sys.energy),
                       torch.where(better[:, None], trial.grad, sys.grad),
                       torch.where(better[:, None, None], trial.hess, sys.hess))
        lam = torch.where(better, lam * options.down, lam * options.up).clamp_min(1e-12)
        small_step = step.abs().amax(-1) < options.step_tol
        small_gain = decrease <= options.rel_tol * sys.energy.abs().clamp_min(1e-12)
        done = (better & (small_step | small_gain)) | (lam > options.max_damping)
        todo = todo & ~done
        if record is not None:
            record(it, float(sys.energy.sum()))
    if not bool(torch.isfinite(sys.energy).all()):  # cannot happen: only finite trials are kept
        raise FloatingPointError("the energy became non-finite")
    return x, run, sys.energy


def proximal_system(evaluate: Callable[[Tensor], LMSystem], anchor: Tensor, weight: float
                    ) -> Callable[[Tensor], LMSystem]:
    """``evaluate`` plus a proximal term that keeps ``x`` near ``anchor (B, P)``:
    ``weight * sum_i m_i (x_i - anchor_i)^2`` with ``m_i = sqrt(H_ii)``, the square root of the
    Gauss-Newton matrix's diagonal at the anchor: a coordinate the data pin down strongly is held
    more firmly than a loose one, by the square root of their curvatures' ratio. A solver's trace
    records the energy with the term.

    Why: from a good start (a network's estimate), the SMPLify energy's own minimum lies further
    from the true body than the start's neighbourhood does, and Adam's 100 small steps stop on the
    way there; Levenberg-Marquardt reaches the minimum. The term makes that regularisation
    explicit and independent of the solver's step count (``MVSMPLifyConfig.lm_proximal_weight``).
    """
    anchor = anchor.detach().clone()
    with torch.no_grad():
        at_anchor: list[LMSystem] = [evaluate(anchor)]
    metric = torch.diagonal(at_anchor[0].hess, dim1=-2, dim2=-1).clamp_min(0.0).sqrt()

    def system(x: Tensor) -> LMSystem:
        # the solver's first evaluation is at the anchor: reuse the one the metric came from
        base = at_anchor.pop() if at_anchor and torch.equal(x, anchor) else evaluate(x)
        d = x - anchor
        return LMSystem(base.energy + weight * (metric * d.square()).sum(-1), base.grad + 2 * weight * metric * d,
                        base.hess + torch.diag_embed(2 * weight * metric))

    return system


def skew(v: Tensor) -> Tensor:
    """``(*, 3) -> (*, 3, 3)`` cross-product matrices: ``skew(a) @ b = a x b``."""
    z = torch.zeros_like(v[..., 0])
    x, y, w = v.unbind(-1)
    return torch.stack([torch.stack([z, -w, y], -1), torch.stack([w, z, -x], -1),
                        torch.stack([-y, x, z], -1)], -2)


def crop_projection_jacobian(points: Tensor, focal: float, min_depth: float) -> Tensor:
    """Derivatives ``(*, 2, 3)`` of the crop camera's ``f (x, y) / z + c`` by the point ``(*, 3)``
    (zero by the depth where it is clamped at ``min_depth``)."""
    z = points[..., 2].clamp_min(min_depth)
    inv = focal / z
    u = points[..., 0] / z
    v = points[..., 1] / z
    clamped = points[..., 2] < min_depth
    zero = torch.zeros_like(z)
    du = torch.where(clamped, zero, -inv * u)
    dv = torch.where(clamped, zero, -inv * v)
    return torch.stack([torch.stack([inv, zero, du], -1), torch.stack([zero, inv, dv], -1)], -2)

