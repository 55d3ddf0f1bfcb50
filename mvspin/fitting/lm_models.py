"""The residual models of SMPLify and MV-SMPLify for :func:`~mvspin.fitting.lm.levenberg_marquardt`.

Each ``*_system`` function returns ``x (B, P) -> LMSystem``: the stage's energy (computed by the
engine's own energy functions, so the minimum is the Adam fit's energy), its exact gradient and
a Gauss-Newton matrix, from the closed-form keypoint Jacobian
(:meth:`~mvspin.body.BodyModel.keypoint_jacobian`) where the body model has no pose blend shapes,
and from forward-mode autograd (``torch.func.jvp`` under ``vmap`` over the unknowns) where it
has them (licensed SMPL).

The body is linearised once per bundle with identity root and zero translation; every view's
root transform ``x = R q + s (p + t)`` (``q`` the canonical keypoints less ``s`` times the rest
pelvis ``p``, ``s`` each keypoint's weight sum) is applied to the keypoints and their Jacobian
afterwards, so a bundle's body Jacobian is computed once, not once per view. Root rotations are
``exp(d) R0`` with axis-angle ``d`` (the same unknowns as the Adam fit); their columns are the
world perturbation's through the left Jacobian of the exponential.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Callable, Optional

import torch
from torch import Tensor

from mvspin.body import angle_prior_gauss_newton
from mvspin.fitting.lm import LMSystem, crop_projection_jacobian, robust_system, skew
from mvspin.geometry import axis_angle_to_matrix, so3_right_jacobian
from mvspin.geometry.products import matmul3

if TYPE_CHECKING:
    from mvspin.fitting.engine import FittingEngine

__all__ = ["BodyLinearisation", "linearise_body", "crop_stage1_system", "crop_stage2_system",
           "world_stage1_system", "world_stage2_system", "world_stage0_system", "System", "ProjectWithJacobian"]

ProjectWithJacobian = Callable[[Tensor], tuple[Tensor, Tensor]]
"""World keypoints ``(B, M, 3)`` -> pixels ``(B, V, M, 2)`` in every camera and their derivatives
``(B, V, M, 2, 3)`` by the points (the calibrated fit's cameras, distortion included)."""
System = Callable[[Tensor], LMSystem]


@dataclass
class BodyLinearisation:
    """A bundle's body about identity root and zero translation.

    Attributes:
        q: ``(B, M, 3)`` canonical keypoints less ``s`` times the rest pelvis, metres.
        s: ``(M,)`` keypoint weight sums. pelvis: ``(B, 3)`` rest pelvis.
        j_pose: ``(B, M, 3, 69)`` derivatives of ``q`` by the axis-angle body pose.
        j_betas: ``(B, M, 3, nb)`` derivatives of ``q`` by the betas.
        d_pelvis: ``(3, nb)`` derivatives of the rest pelvis by the betas.
    """

    q: Tensor
    s: Tensor
    pelvis: Tensor
    j_pose: Optional[Tensor] = None
    j_betas: Optional[Tensor] = None
    d_pelvis: Optional[Tensor] = None


def _weight_sums(engine: "FittingEngine") -> Tensor:
    s = engine.body.keypoint_weight_sums(engine.targets.model_set).to(engine.dtype)
    if engine.targets.gather_model:
        s = s.index_select(0, engine.targets.model_index.to(s.device))
    return s


def _pelvis_derivative(engine: "FittingEngine") -> Tensor:
    nb = engine.body.num_betas
    basis = torch.cat([torch.zeros(1, nb), torch.eye(nb)]).to(engine.device, engine.dtype)
    rest = engine.body.rest_joints(basis)[:, 0]  # linear in the betas
    return (rest[1:] - rest[:1]).T


def linearise_body(engine: "FittingEngine", pose: Tensor, betas: Tensor, jacobian: bool = True) -> BodyLinearisation:
    """The body of axis-angle ``pose (B, 69)`` and ``betas (B, nb)`` (and its Jacobian)."""
    body, targets = engine.body, engine.targets
    s = _weight_sums(engine)
    pelvis = body.rest_joints(betas)[:, 0]
    b = pose.shape[0]
    if not jacobian:
        kp, pelvis = body.canonical_keypoints(targets.model_set, pose, betas)
        return BodyLinearisation(targets.model_keypoints(kp) - s[:, None] * pelvis[:, None], s, pelvis)
    d_pelvis = _pelvis_derivative(engine)
    if getattr(body, "has_pose_blendshapes", False):
        kp, j_pose, j_betas = _autograd_jacobian(engine, pose, betas)
    else:
        zero = torch.zeros(b, 3, dtype=pose.dtype, device=pose.device)
        kp, jac = body.keypoint_jacobian(targets.model_set, pose, betas, zero, zero, with_betas=True,
                                         pose_coordinates="axis_angle", check=False)
        if targets.gather_model:
            idx = targets.model_index.to(kp.device)
            kp, jac = kp.index_select(1, idx), jac.index_select(1, idx)
        j_pose, j_betas = jac[..., 3:72], jac[..., 75:]
    # with identity root and no translation the keypoints are the canonical ones
    q = kp - s[:, None] * pelvis[:, None]
    return BodyLinearisation(q, s, pelvis, j_pose, j_betas - s[:, None, None] * d_pelvis, d_pelvis)


def _autograd_jacobian(engine: "FittingEngine", pose: Tensor, betas: Tensor) -> tuple[Tensor, Tensor, Tensor]:
    """Canonical keypoints ``(B, M, 3)`` and their exact Jacobians by pose ``(B, M, 3, 69)`` and
    betas ``(B, M, 3, nb)``: one forward-mode product per unknown, batched over the bundles
    (independent), vmapped over the unknowns (pose blend shapes included)."""
    body, targets = engine.body, engine.targets
    nb = betas.shape[-1]

    def canonical(p: Tensor, bt: Tensor) -> Tensor:
        return targets.model_keypoints(body.canonical_keypoints(targets.model_set, p, bt)[0])

    eye = torch.eye(69 + nb, dtype=pose.dtype, device=pose.device)
    tp = eye[:, :69, None].expand(-1, -1, pose.shape[0]).transpose(1, 2)  # (P, B, 69)
    tb = eye[:, 69:, None].expand(-1, -1, pose.shape[0]).transpose(1, 2)  # (P, B, nb)

    def column(a: Tensor, c: Tensor) -> Tensor:
        return torch.func.jvp(canonical, (pose, betas), (a, c))[1]

    cols = torch.func.vmap(column)(tp, tb)  # (P, B, M, 3)
    jac = cols.permute(1, 2, 3, 0)
    return canonical(pose, betas), jac[..., :69], jac[..., 69:]


def _posed(lin: BodyLinearisation, rot: Tensor, transl: Tensor) -> tuple[Tensor, Tensor]:
    """Rotated canonical keypoints ``R q (B, V, M, 3)`` and posed keypoints, for root rotations
    ``(B, V, 3, 3)`` and translations ``(B, V, 3)``."""
    rq = torch.einsum("bvij,bmj->bvmi", rot, lin.q)
    return rq, rq + lin.s[:, None] * (lin.pelvis[:, None] + transl)[:, :, None]


def _root_columns(a: Tensor, rq: Tensor, d: Tensor, s: Tensor) -> tuple[Tensor, Tensor]:
    """Residual columns ``(B, V, M, c, 3)`` of the root's axis-angle ``d (B, V, 3)`` and of the
    translation, through the residual's derivative ``a (B, V, M, c, 3)`` by the keypoint."""
    jl = so3_right_jacobian(-d)  # left Jacobian: exp(d + e) = exp(J_l(d) e) exp(d)
    j_d = -matmul3(matmul3(a, skew(rq)), jl[:, :, None])
    return j_d, a * s[:, None, None]


def _per_view(j: Tensor) -> Tensor:
    """``(B, V, M, c, k)`` columns of per-view unknowns -> ``(B, V, M, c, V k)`` (zero in the
    other views' columns)."""
    v = j.shape[1]
    eye = torch.eye(v, dtype=j.dtype, device=j.device)
    return (j[..., None, :] * eye[None, :, None, None, :, None]).flatten(-2)


def _body_columns(a: Tensor, rot: Tensor, lin: BodyLinearisation) -> Tensor:
    """``(B, V, M, c, 69 + nb)`` residual columns of the shared pose and betas."""
    assert lin.j_pose is not None and lin.j_betas is not None and lin.d_pelvis is not None
    ar = matmul3(a, rot[:, :, None])
    j_pose = matmul3(ar, lin.j_pose[:, None])
    j_betas = matmul3(ar, lin.j_betas[:, None]) + matmul3(a, lin.s[:, None, None] * lin.d_pelvis)
    return torch.cat([j_pose, j_betas], -1)


def _flat(residual: Tensor, jac: Tensor, weight: Tensor) -> tuple[Tensor, Tensor, Tensor]:
    """``(B, ..., c)`` residuals, ``(B, ..., c, P)`` Jacobian, ``(B, ...)`` keypoint weights -> rows."""
    b, c = residual.shape[0], residual.shape[-1]
    return (residual.reshape(b, -1), jac.reshape(b, -1, jac.shape[-1]),
            weight[..., None].expand(*weight.shape, c).reshape(b, -1))


def _add_priors(engine: "FittingEngine", grad: Tensor, hess: Tensor, pose: Tensor, betas: Tensor) -> None:
    """Add the pose, elbow/knee and shape priors' gradient and curvature (columns 0..69+nb) in place."""
    c = engine.config
    nb = betas.shape[-1]
    _, g_p, h_p = engine.pose_prior.gauss_newton(pose)
    grad[:, :69] += c.pose_prior_weight * g_p
    diagonal = hess.diagonal(dim1=-2, dim2=-1)  # a view: the separable priors add only there
    if h_p.dim() == 2:  # FreePosePrior: the diagonal (B, 69); GMMPosePrior: dense (B, 69, 69)
        diagonal[:, :69] += c.pose_prior_weight * h_p
    else:
        hess[:, :69, :69] += c.pose_prior_weight * h_p
    if c.angle_prior_weight:
        g_a, h_a = angle_prior_gauss_newton(pose)
        grad[:, :69] += c.angle_prior_weight * g_a
        diagonal[:, :69] += c.angle_prior_weight * h_a
    grad[:, 69:69 + nb] += 2 * c.shape_prior_weight * betas
    diagonal[:, 69:69 + nb] += 2 * c.shape_prior_weight


def _masked(energy: Tensor, grad: Tensor, hess: Tensor, mask: Tensor) -> LMSystem:
    return LMSystem(energy * mask, grad * mask[:, None], hess * mask[:, None, None])


# --- crop cameras (per-view mode and SMPLify) -----------------------------------------------------


def crop_stage1_system(engine: "FittingEngine", lin: BodyLinearisation, orient0: Tensor, xy: Tensor, w1: Tensor,
                       transl0: Tensor, view_weight: Tensor, fit_mask: Tensor) -> Callable[[Tensor], LMSystem]:
    """Stage 1 over ``x = [d (V 3), t (V 3)]``: the torso term and SPIN's depth anchor."""
    c = engine.config
    b, v = orient0.shape[:2]
    sigma = c.sigma if c.stage1_loss == "gmof" else None

    def system(x: Tensor) -> LMSystem:
        d, t = x[:, :3 * v].view(b, v, 3), x[:, 3 * v:].view(b, v, 3)
        rot = matmul3(axis_angle_to_matrix(d), orient0)
        rq, kp = _posed(lin, rot, t)
        uv = engine.project_crop(kp)
        energy = engine.stage1_reprojection(uv, xy, w1) + engine.depth_anchor(t, transl0, view_weight)
        a = crop_projection_jacobian(kp, float(c.focal_length), _min_depth())
        j_d, j_t = _root_columns(a, rq, d, lin.s)
        jac = torch.cat([_per_view(j_d), _per_view(j_t)], -1)
        grad, hess = robust_system(*_flat(uv - xy, jac, w1), sigma)
        # depth anchor: w (tz - tz0)^2 per used view, on each view's t_z column
        dz = 2 * c.depth_anchor_weight * view_weight
        idx = 3 * v + 3 * torch.arange(v, device=x.device) + 2
        grad[:, idx] += dz * (t[..., 2] - transl0[..., 2])
        hess[:, idx, idx] += dz
        return _masked(energy, grad, hess, fit_mask)

    return system


def crop_stage2_system(engine: "FittingEngine", orient0: Tensor, xy: Tensor, w2: Tensor, transl: Optional[Tensor],
                       fit_mask: Tensor) -> Callable[[Tensor], LMSystem]:
    """Stage 2 over ``x = [pose 69, betas nb, d (V 3)]`` and, when ``transl`` is None, the
    translations ``(V 3)`` too (``stage2_translation``); a given ``transl (B, V, 3)`` is fixed."""
    c = engine.config
    b, v = orient0.shape[:2]
    nb = engine.body.num_betas

    def system(x: Tensor) -> LMSystem:
        pose, betas = x[:, :69], x[:, 69:69 + nb]
        d = x[:, 69 + nb:69 + nb + 3 * v].view(b, v, 3)
        t = x[:, 69 + nb + 3 * v:].view(b, v, 3) if transl is None else transl
        lin = linearise_body(engine, pose, betas)
        rot = matmul3(axis_angle_to_matrix(d), orient0)
        rq, kp = _posed(lin, rot, t)
        uv = engine.project_crop(kp)
        energy = engine.stage2_energy(uv, xy, w2, pose, betas)
        a = crop_projection_jacobian(kp, float(c.focal_length), _min_depth())
        j_d, j_t = _root_columns(a, rq, d, lin.s)
        parts = [_body_columns(a, rot, lin), _per_view(j_d)] + ([_per_view(j_t)] if transl is None else [])
        grad, hess = robust_system(*_flat(uv - xy, torch.cat(parts, -1), w2), c.sigma)
        _add_priors(engine, grad, hess, pose, betas)
        return _masked(energy, grad, hess, fit_mask)

    return system


# --- a world-frame body (calibrated mode) ---------------------------------------------------------


def world_stage1_system(engine: "FittingEngine", lin: BodyLinearisation, orient0: Tensor,
                        project: ProjectWithJacobian,
                        xy: Tensor, w1: Tensor, fit_mask: Tensor) -> Callable[[Tensor], LMSystem]:
    """Calibrated stage 1 over ``x = [d 3, t 3]`` (world root), the body fixed."""
    sigma = engine.config.sigma if engine.config.stage1_loss == "gmof" else None

    def system(x: Tensor) -> LMSystem:
        d, t = x[:, None, :3], x[:, None, 3:]
        rot = matmul3(axis_angle_to_matrix(d), orient0[:, None])
        rq, kp = _posed(lin, rot, t)
        uv, a = project(kp[:, 0])
        energy = engine.stage1_reprojection(uv, xy, w1)
        j_d, j_t = _root_columns(a, rq.expand(-1, a.shape[1], -1, -1), d.expand(-1, a.shape[1], -1), lin.s)
        grad, hess = robust_system(*_flat(uv - xy, torch.cat([j_d, j_t], -1), w1), sigma)
        return _masked(energy, grad, hess, fit_mask)

    return system


def _world_body(engine: "FittingEngine", x: Tensor, orient0: Tensor) -> tuple[Tensor, Tensor, Tensor, Tensor,
                                                                            BodyLinearisation, Tensor, Tensor]:
    nb = engine.body.num_betas
    pose, betas, d, t = x[:, :69], x[:, 69:69 + nb], x[:, None, 69 + nb:72 + nb], x[:, None, 72 + nb:]
    lin = linearise_body(engine, pose, betas)
    rot = matmul3(axis_angle_to_matrix(d), orient0[:, None])
    rq, kp = _posed(lin, rot, t)
    return pose, betas, d, rot, lin, rq, kp


def _world_columns(a: Tensor, rot: Tensor, lin: BodyLinearisation, rq: Tensor, d: Tensor) -> Tensor:
    """``(B, V, M, c, 69 + nb + 6)`` columns of a world body seen through ``a (B, V, M, c, 3)``."""
    v = a.shape[1]
    rot, rq, d = rot.expand(-1, v, -1, -1), rq.expand(-1, v, -1, -1), d.expand(-1, v, -1)
    j_d, j_t = _root_columns(a, rq, d, lin.s)
    return torch.cat([_body_columns(a, rot, lin), j_d, j_t], -1)


def world_stage2_system(engine: "FittingEngine", orient0: Tensor, project: ProjectWithJacobian, xy: Tensor, w2: Tensor,
                        fit_mask: Tensor) -> Callable[[Tensor], LMSystem]:
    """Calibrated stage 2 over ``x = [pose 69, betas nb, d 3, t 3]``."""
    def system(x: Tensor) -> LMSystem:
        pose, betas, d, rot, lin, rq, kp = _world_body(engine, x, orient0)
        uv, a = project(kp[:, 0])
        energy = engine.stage2_energy(uv, xy, w2, pose, betas)
        grad, hess = robust_system(*_flat(uv - xy, _world_columns(a, rot, lin, rq, d), w2), engine.config.sigma)
        _add_priors(engine, grad, hess, pose, betas)
        return _masked(energy, grad, hess, fit_mask)

    return system


def world_stage0_system(engine: "FittingEngine", orient0: Tensor, target: Tensor, px_per_m: Tensor, w3: Tensor,
                        n_views: Tensor, mask: Tensor) -> Callable[[Tensor], LMSystem]:
    """Calibrated stage 0 over ``x = [pose 69, betas nb, d 3, t 3]``: the triangulated keypoints
    ``target (B, M, 3)`` in 3D, residuals scaled to pixels by ``px_per_m (B,)``, weights ``w3
    (B, M)`` times ``n_views (B,)`` (the energy of ``MVSMPLify._calibrated_stage0``)."""
    from mvspin.fitting.losses import gmof

    c = engine.config

    def system(x: Tensor) -> LMSystem:
        pose, betas, d, rot, lin, rq, kp = _world_body(engine, x, orient0)
        res = (kp[:, 0] - target) * px_per_m[:, None, None]
        w = w3 * n_views[:, None]
        energy = (w * gmof(res, c.sigma).sum(-1)).sum(-1) + engine.body_prior_energy(pose, betas)
        a = px_per_m[:, None, None, None, None] * torch.eye(3, dtype=x.dtype, device=x.device)
        a = a.expand(-1, 1, kp.shape[2], 3, 3)
        grad, hess = robust_system(*_flat(res[:, None], _world_columns(a, rot, lin, rq, d), w[:, None]), c.sigma)
        _add_priors(engine, grad, hess, pose, betas)
        return _masked(energy, grad, hess, mask)

    return system


def _min_depth() -> float:
    from mvspin.fitting.engine import MIN_DEPTH

    return MIN_DEPTH
