"""The joint refinement of a sequence chunk: its energy, and a Levenberg-Marquardt solver for it.

:class:`ChunkEnergy` is the energy :func:`~mvspin.fitting.sequence.fit_sequence` minimises over
the L frames of a chunk: Geman-McClure reprojection in every camera, the pose, elbow/knee and
(when the betas are free) shape priors, and a robust penalty on the acceleration of the world
keypoints.

Units, so that one set of weights means the same on any rig:

- the reprojection residuals are turned from image pixels into pixels of a 224 px frame holding
  the whole body (``scale``: the camera's metres per pixel at the subject's depth, times
  224 px over the body's height), the frame SPIN and the training path fit in: the same
  weights at 540p or 4K, 2 m or 8 m, 500 px or 3000 px focal;
- the smoothness term acts on accelerations in m/s^2 (second differences times ``fps^2``):
  ``smooth * rho(|a|)`` with, by default, Geman-McClure's ``rho(a) = c^2 a^2 / (c^2 + a^2)``
  and scale ``c = smooth_scale`` m/s^2: quadratic for jitter well below ``c``, bounded (at most
  ``c^2``) for a real heel strike, landing or clap, so those keep their peak
  (:func:`robust_penalty` has the other shapes: pseudo-Huber, Cauchy, quadratic). Summing both terms over
  the frames keeps their ratio at any frame rate (both grow with the frame count as integrals
  over time do).

:func:`refine_levenberg_marquardt` minimises it with Gauss-Newton steps instead of Adam's
hundred first-order ones. The frames are coupled only through the smoothness term (and the
shared betas), so the normal equations are solved by preconditioned conjugate gradients, with
matrix-vector products through the per-frame keypoint Jacobians (closed form,
:meth:`~mvspin.body.BodyModel.keypoint_jacobian`) and one Cholesky factor per frame as the
preconditioner. The gradient comes from autograd on the energy itself, so the minimum reached
is the energy's whatever the Jacobian approximates (distortion, pose blend shapes, robust
weights); a step is kept only when it lowers the energy (else the damping grows).
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Optional

import torch
from torch import Tensor, nn

from calibration import CameraTensors, project_points_jacobian
from mvspin.body import BodyModel, angle_prior, shape_prior
from mvspin.body.priors import FreePosePrior
from mvspin.fitting.keypoint_targets import KeypointTargets
from mvspin.fitting.losses import reprojection_energy
from mvspin.geometry import axis_angle_to_matrix, matrix_to_axis_angle, perspective_projection

__all__ = ["ChunkEnergy", "ChunkParams", "SMOOTH_PENALTIES", "refine_levenberg_marquardt", "robust_penalty"]

# SMPLify's elbow/knee prior: the body-pose components it acts on, and their signs (priors.py).
_ANGLE_INDEX = (17 * 3 + 1, 18 * 3 + 1, 3 * 3 + 0, 4 * 3 + 0)
_ANGLE_SIGN = (1.0, -1.0, -1.0, -1.0)

# Marquardt damping (times the diagonal of the Gauss-Newton matrix): the start, and a floor. On
# the test recordings steps with less than ~3e-3 overshoot (the energy rises and the step is
# redone with 8x the damping), so the damping never drops below it.
_DAMPING_START = 1e-2
_DAMPING_FLOOR = 3e-3


SMOOTH_PENALTIES = ("quadratic", "pseudo_huber", "cauchy", "geman_mcclure")
"""Shapes of the acceleration penalty, by how a large acceleration ``|a| >> c`` is charged:
squared (``quadratic``), linearly (``pseudo_huber``, Charbonnier), logarithmically
(``cauchy``) or at most ``c^2`` (``geman_mcclure``). All are ``|a|^2`` for ``|a| << c``."""


def robust_penalty(s: Tensor, kind: str, c: float, tail: float = 0.0) -> tuple[Tensor, Tensor]:
    """The penalty ``rho(s) + tail * s`` of squared magnitudes ``s >= 0`` (any shape) and its
    derivative ``rho'(s) + tail`` (the IRLS weight), for scale ``c`` (same unit as ``sqrt(s)``;
    0: ``rho = s``). ``tail``: a weak plain square under the robust shape, so that a magnitude
    far beyond ``c`` (a flicker of hundreds of m/s^2) is still charged quadratically, at
    ``tail`` times the rate of the jitter below ``c``:

    - ``quadratic``: ``s``;
    - ``pseudo_huber``: ``2 c^2 (sqrt(1 + s/c^2) - 1)``, growing as ``2 c |a|``: convex, so a
      glitch far from its neighbours is still pulled back as hard as a mid-size jump;
    - ``cauchy``: ``c^2 log(1 + s/c^2)``;
    - ``geman_mcclure``: ``c^2 s / (c^2 + s)``, at most ``c^2``: a large jump costs no more
      than a mid-size one, so a start that jumped stays where it is.
    """
    if kind == "quadratic" or not c:
        return s * (1 + tail), torch.full_like(s, 1 + tail)
    c2 = c * c
    if kind == "pseudo_huber":
        root = torch.sqrt(1 + s / c2)
        rho, weight = 2 * c2 * (root - 1), 1 / root
    elif kind == "cauchy":
        rho, weight = c2 * torch.log1p(s / c2), c2 / (c2 + s)
    elif kind == "geman_mcclure":
        rho, weight = c2 * s / (c2 + s), (c2 / (c2 + s)).square()
    else:
        raise ValueError(f"unknown penalty {kind!r}; choose from {', '.join(SMOOTH_PENALTIES)}")
    return (rho + tail * s, weight + tail) if tail else (rho, weight)


@dataclass
class ChunkParams:
    """One chunk's unknowns: ``pose (L, 69)`` axis-angle, root ``orient (L, 3, 3)`` (world),
    ``transl (L, 3)`` metres, shared ``betas (num_betas,)``."""

    pose: Tensor
    orient: Tensor
    transl: Tensor
    betas: Tensor


@dataclass
class ChunkEnergy:
    """The refinement energy of L frames seen by V calibrated cameras.

    Attributes:
        body, targets: the body model and the matched keypoints (M of them).
        cams: the V cameras. xy: ``(L, V, M, 2)`` pixels. weights: ``(L, V, M)`` confidence
            squared times keypoint weight (0 where missing).
        sigma: Geman-McClure scale of the reprojection, 224-px-frame pixels.
        shape_prior_weight: weight of the betas' prior when they are optimised.
        smooth: weight of the acceleration penalty, per (m/s^2)^2 (in 224-px-frame pixels
            squared, the reprojection term's unit).
        scale: ``(L, V)`` 224-px-frame pixels per image pixel (None: 1).
        fps: frames per second (accelerations in m/s^2).
        smooth_scale: scale ``c`` of the acceleration penalty, m/s^2 (0: plain squared
            acceleration).
        smooth_penalty: the penalty's shape (:data:`SMOOTH_PENALTIES`, :func:`robust_penalty`).
        smooth_tail: the weak plain square under it (:func:`robust_penalty`'s ``tail``).
    """

    body: BodyModel
    targets: KeypointTargets
    cams: CameraTensors
    xy: Tensor
    weights: Tensor
    sigma: float
    pose_prior: nn.Module
    pose_prior_weight: float
    angle_prior_weight: float
    shape_prior_weight: float
    smooth: float
    scale: Optional[Tensor] = None
    fps: float = 30.0
    smooth_scale: float = 0.0
    smooth_penalty: str = "geman_mcclure"
    smooth_tail: float = 0.0

    def _scaled(self, uv: Tensor) -> tuple[Tensor, Tensor]:
        if self.scale is None:
            return uv, self.xy
        s = self.scale[..., None, None]
        return uv * s, self.xy * s

    def _acceleration_sq(self, x: Tensor) -> Tensor:
        """Squared keypoint accelerations ``(L - 2, M)`` in (m/s^2)^2 of ``x (L, M, 3)``."""
        return (x[2:] - 2 * x[1:-1] + x[:-2]).square().sum(-1) * self.fps ** 4

    def acceleration_weights(self, x: Tensor) -> Tensor:
        """IRLS weights ``(L - 2, M)`` of the acceleration penalty at world keypoints
        ``x (L, M, 3)``: ``rho'(|a|^2)`` (:func:`robust_penalty`), so that its gradient by ``x``
        is ``2 smooth fps^4 D^T (psi D x)``."""
        return robust_penalty(self._acceleration_sq(x), self.smooth_penalty, self.smooth_scale, self.smooth_tail)[1]

    def smoothness(self, x: Tensor) -> Tensor:
        """The acceleration penalty (scalar) of world keypoints ``x (L, M, 3)``."""
        return self.smooth * robust_penalty(self._acceleration_sq(x), self.smooth_penalty, self.smooth_scale,
                                            self.smooth_tail)[0].sum()

    def world_keypoints(self, pose: Tensor, d_orient: Tensor, orient0: Tensor, transl: Tensor,
                        betas: Tensor) -> Tensor:
        """Matched world keypoints ``(L, 1, M, 3)``; the root is ``exp(d_orient) @ orient0``."""
        n = pose.shape[0]
        rots = axis_angle_to_matrix(torch.cat([pose.view(n, 23, 3), d_orient[:, None]], 1))  # one conversion
        kp = self.body.keypoints_multiview(self.targets.model_set, rots[:, :23], betas.expand(n, -1),
                                           (rots[:, 23] @ orient0)[:, None], transl[:, None], check=False)
        return self.targets.model_keypoints(kp)

    def __call__(self, pose: Tensor, d_orient: Tensor, orient0: Tensor, transl: Tensor, betas: Tensor,
                 betas_free: bool) -> tuple[Tensor, Tensor]:
        """The energy (scalar) and the projections ``(L, V, M, 2)``."""
        kp = self.world_keypoints(pose, d_orient, orient0, transl, betas)
        cams = self.cams
        uv = perspective_projection(kp, cams.K, cams.R, cams.t, cams.dist)
        e = reprojection_energy(*self._scaled(uv), self.weights, self.sigma).sum()
        e = e + self.pose_prior_weight * self.pose_prior(pose).sum()
        if self.angle_prior_weight:
            e = e + self.angle_prior_weight * angle_prior(pose).sum()
        if betas_free:
            e = e + self.shape_prior_weight * shape_prior(betas[None]).sum()
        if pose.shape[0] >= 3 and self.smooth:
            e = e + self.smoothness(kp[:, 0])
        return e, uv

    # --- Gauss-Newton pieces --------------------------------------------------------------------

    def prior_curvature(self, pose: Tensor) -> Tensor:
        """Diagonal second derivatives ``(L, 69)`` of the pose and elbow/knee priors in the
        axis-angle components (exact for the free prior, which is separable; a plain damping
        of ``2 w`` per component for other priors)."""
        w = self.pose_prior_weight
        if isinstance(self.pose_prior, FreePosePrior):
            p = self.pose_prior
            outside = (pose > p.upper.to(pose.dtype)) | (pose < p.lower.to(pose.dtype))
            curv = 2 * w * (p.l2_weight + outside.to(pose.dtype))
        else:
            curv = torch.full_like(pose, 2 * w)
        if self.angle_prior_weight:
            idx = torch.tensor(_ANGLE_INDEX, device=pose.device)
            sign = torch.tensor(_ANGLE_SIGN, dtype=pose.dtype, device=pose.device)
            curv = curv.index_add(1, idx, 4 * self.angle_prior_weight * torch.exp(2 * sign * pose[:, idx]))
        return curv

    def jacobians(self, params: ChunkParams, betas_free: bool) -> tuple[Tensor, Tensor, Optional[Tensor]]:
        """World keypoints ``(L, M, 3)``, their Jacobian ``(L, M, 3, 75)`` in the refinement's
        per-frame coordinates (root perturbation, axis-angle pose, translation) and, when the
        betas are free, ``(L, M, 3, num_betas)``."""
        n = params.pose.shape[0]
        kp, jac = self.body.keypoint_jacobian(self.targets.model_set, params.pose, params.betas.expand(n, -1),
                                              params.orient, params.transl, with_betas=betas_free,
                                              pose_coordinates="axis_angle", check=False)
        if self.targets.gather_model:
            idx = self.targets.model_index
            kp, jac = kp.index_select(1, idx), jac.index_select(1, idx)
        return kp, jac[..., :75], (jac[..., 75:] if betas_free else None)

    def keypoint_information(self, kp: Tensor) -> tuple[Tensor, Tensor]:
        """``(L, M, 3, 3)`` Gauss-Newton curvature of the reprojection term per world keypoint,
        ``2 sum_v w J_pi^T diag(psi) J_pi`` with the projection's Jacobian ``J_pi`` (closed form,
        distortion included: :func:`~calibration.project_points_jacobian`) and Geman-McClure's
        IRLS weights ``psi = s^4 / (s^2 + r^2)^2``, and the term's exact gradient ``(L, M, 3)``
        by the world keypoints, ``2 sum_v w J_pi^T (psi r)``."""
        cams = self.cams
        uv, a = project_points_jacobian(kp[:, None], cams.K, cams.R, cams.t, cams.dist)  # (L, V, M, 2, 3)
        s2 = self.sigma ** 2
        r = uv - self.xy
        if self.scale is not None:
            a = a * self.scale[..., None, None, None]
            r = r * self.scale[..., None, None]
        psi = (s2 / (s2 + r.square())).square()  # (L, V, M, 2)
        info = 2 * torch.einsum("lvm,lvmc,lvmci,lvmcj->lmij", self.weights, psi, a, a)
        return info, 2 * torch.einsum("lvm,lvmc,lvmci->lmi", self.weights, psi * r, a)

    def gradient(self, params: ChunkParams, kp: Tensor, jac: Tensor, jac_b: Optional[Tensor],
                 grad_x: Tensor, acc_w: Optional[Tensor] = None) -> tuple[Tensor, Tensor]:
        """The energy's gradient ``(L, 75)`` (and ``(num_betas,)`` by the betas when ``jac_b`` is
        given) through the keypoint Jacobians, without autograd through the body: exact where the
        Jacobians are (models without pose blend shapes). ``grad_x`` from :meth:`keypoint_information`,
        ``acc_w`` from :meth:`acceleration_weights` (computed here when None)."""
        d = grad_x
        if kp.shape[0] >= 3 and self.smooth:
            w = self.acceleration_weights(kp) if acc_w is None else acc_w
            d = d + 2 * self.smooth * self.fps ** 4 * _acc_normal(kp, w)
        n = jac.shape[0]
        # d^T J per frame as one batched product (multiply-and-sum went through a (L, M, 3, 75) array)
        g = torch.bmm(d.reshape(n, 1, -1), jac.reshape(n, -1, jac.shape[-1]))[:, 0]
        with torch.enable_grad():  # the priors act on the pose alone: a tiny graph
            pose = params.pose.detach().requires_grad_(True)
            e = self.pose_prior_weight * self.pose_prior(pose).sum()
            if self.angle_prior_weight:
                e = e + self.angle_prior_weight * angle_prior(pose).sum()
            (g_pose,) = torch.autograd.grad(e, pose)
        g = torch.cat([g[:, :3], g[:, 3:72] + g_pose, g[:, 72:]], -1)
        if jac_b is None:
            return g, torch.zeros(0, dtype=g.dtype, device=g.device)
        return g, d.reshape(-1) @ jac_b.reshape(-1, jac_b.shape[-1]) + 2 * self.shape_prior_weight * params.betas


def _acc_normal(y: Tensor, w: Optional[Tensor] = None) -> Tensor:
    """``D^T W D y`` along the frame axis for the second difference ``D`` (``y (L, M, 3)``) and
    per-acceleration weights ``w (L - 2, M)`` (None: 1)."""
    a = y[2:] - 2 * y[1:-1] + y[:-2]
    if w is not None:
        a = a * w[..., None]
    out = torch.zeros_like(y)
    out[2:] += a
    out[1:-1] -= 2 * a
    out[:-2] += a
    return out


def refine_levenberg_marquardt(
    energy: ChunkEnergy,
    params: ChunkParams,
    betas_free: bool,
    iterations: int,
    rel_tol: float = 1e-4,
    cg_iterations: int = 10,
    cg_tol: float = 0.05,
) -> tuple[ChunkParams, int]:
    """Minimise ``energy`` from ``params`` by damped Gauss-Newton steps.

    Args:
        energy: the chunk's energy. params: the start (not modified).
        betas_free: optimise the shared betas too (the first chunk).
        iterations: most Gauss-Newton steps; stops earlier once a step lowers the energy by
            less than ``rel_tol`` of it.
        cg_iterations, cg_tol: conjugate-gradient budget and relative residual per step.

    Returns:
        the refined parameters and the number of steps taken.

    Raises:
        FloatingPointError: the energy became NaN or infinite.
    """
    n = params.pose.shape[0]
    dt, dev = params.pose.dtype, params.pose.device
    # Gauss-Newton curvature of the acceleration penalty: 2 smooth fps^4 D^T W D with the IRLS
    # weights W at the current keypoints.
    smooth = 2 * energy.smooth * energy.fps ** 4 if n >= 3 else 0.0
    eye = torch.eye(3, dtype=dt, device=dev)
    shape_curv = 2 * energy.shape_prior_weight

    def evaluate(p: ChunkParams, grad: bool) -> tuple[Tensor, Optional[tuple[Tensor, Tensor]]]:
        if not grad:
            with torch.no_grad():
                e, _ = energy(p.pose, torch.zeros(n, 3, dtype=dt, device=dev), p.orient, p.transl, p.betas, betas_free)
            return e, None
        pose = p.pose.detach().requires_grad_(True)
        d = torch.zeros(n, 3, dtype=dt, device=dev, requires_grad=True)
        transl = p.transl.detach().requires_grad_(True)
        betas = p.betas.detach().requires_grad_(betas_free)
        e, _ = energy(pose, d, p.orient, transl, betas, betas_free)
        wrt = [d, pose, transl] + ([betas] if betas_free else [])
        g = torch.autograd.grad(e, wrt)
        g_frames = torch.cat(g[:3], -1)
        return e.detach(), (g_frames, g[3] if betas_free else torch.zeros(0, dtype=dt, device=dev))

    # Without pose blend shapes the closed-form Jacobians are exact and give the gradient too;
    # otherwise autograd on the energy does.
    analytic = not energy.body.has_pose_blendshapes
    e, grads = evaluate(params, not analytic)
    lam = _DAMPING_START
    steps = 0
    for _ in range(iterations):
        if not math.isfinite(float(e)):
            raise FloatingPointError(f"sequence fitting energy became {float(e)}")
        with torch.no_grad():
            kp, jac, jac_b = energy.jacobians(params, betas_free)
            info, grad_x = energy.keypoint_information(kp)  # (L, M, 3, 3), (L, M, 3)
            acc_w = energy.acceleration_weights(kp) if smooth else None
            g, g_b = energy.gradient(params, kp, jac, jac_b, grad_x, acc_w) if analytic else grads
            acc_diag = torch.zeros(kp.shape[:2], dtype=dt, device=dev)  # (L, M): diagonal of D^T W D
            if smooth:
                acc_diag[:-2] += acc_w
                acc_diag[1:-1] += 4 * acc_w
                acc_diag[2:] += acc_w
            prior = torch.zeros(n, 75, dtype=dt, device=dev)
            prior[:, 3:72] = energy.prior_curvature(params.pose)
            # Per-frame blocks: reprojection + the diagonal of the acceleration coupling + priors.
            block_info = info + (smooth * acc_diag)[..., None, None] * eye
            m3 = jac.shape[1] * 3
            jt = jac.reshape(n, m3, 75)
            blocks = jt.transpose(1, 2) @ (block_info.reshape(n, -1, 3, 3) @ jac).reshape(n, m3, 75)
            blocks.diagonal(dim1=-2, dim2=-1).add_(prior)  # in place: no (L, 75, 75) diagonal matrix
            if betas_free:
                jbt = jac_b.reshape(n, m3, -1)
                bb = (jbt.transpose(1, 2) @ (block_info @ jac_b).reshape(n, m3, -1)).sum(0)
                bb = bb + shape_curv * torch.eye(bb.shape[0], dtype=dt, device=dev)
            blocks_diag = blocks.diagonal(dim1=-2, dim2=-1).clone()  # undamped, for each attempt
            diag = blocks_diag.clamp_min(1e-9)
            diag_b = bb.diagonal().clamp_min(1e-9) if betas_free else None
            improved = False
            jt_t = jt.transpose(1, 2)  # (L, 75, 3M), a view: bmm reads it transposed without a copy
            for _attempt in range(6):
                damp = lam * diag
                # The damped blocks in place of the undamped ones (only the diagonal changes; no
                # (L, 75, 75) copy per attempt). Their Cholesky factors precondition the CG by
                # two triangular solves per step: ~0.7 ms at L = 300 against 14 ms for the
                # explicit inverse (cholesky_inverse), and CG takes ~10 steps.
                blocks.diagonal(dim1=-2, dim2=-1).copy_(blocks_diag + damp)
                chol = torch.linalg.cholesky(blocks)
                chol_t = chol.transpose(1, 2)
                inv_b = torch.cholesky_inverse(torch.linalg.cholesky(bb + torch.diag(lam * diag_b))) \
                    if betas_free else None

                def matvec(u: Tensor, ub: Tensor) -> tuple[Tensor, Tensor]:
                    # batched products as row vector times matrix, (L, 1, 75) @ (L, 75, 3M): on
                    # CPU twice as fast as multiply-and-sum and several times faster than the
                    # matrix-times-column bmm, which torch runs without a GEMM kernel
                    y = torch.bmm(u[:, None], jt_t)[:, 0].view(n, -1, 3)
                    if betas_free:
                        y = y + (jbt @ ub).view(n, -1, 3)
                    z = (info @ y[..., None])[..., 0]
                    if smooth:
                        z = z + smooth * _acc_normal(y, acc_w)
                    zf = z.reshape(n, -1)
                    out = torch.bmm(zf[:, None], jt)[:, 0] + (prior + damp) * u
                    out_b = (zf.reshape(-1) @ jbt.reshape(-1, jbt.shape[-1]) + (shape_curv + lam * diag_b) * ub
                             if betas_free else ub)
                    return out, out_b

                def precondition(r: Tensor, rb: Tensor) -> tuple[Tensor, Tensor]:
                    y = torch.linalg.solve_triangular(chol, r[..., None], upper=False)
                    z = torch.linalg.solve_triangular(chol_t, y, upper=True)[..., 0]
                    return z, (inv_b @ rb if betas_free else rb)

                u, ub = _pcg(matvec, precondition, -g, -g_b, cg_iterations, cg_tol)
                trial = ChunkParams(params.pose + u[:, 3:72], axis_angle_to_matrix(u[:, :3]) @ params.orient,
                                    params.transl + u[:, 72:], params.betas + ub if betas_free else params.betas)
                e_new, _ = evaluate(trial, False)
                if math.isfinite(float(e_new)) and float(e_new) < float(e):
                    improved = True
                    lam = max(lam / 3, _DAMPING_FLOOR)
                    break
                lam *= 8
        if not improved:
            break
        steps += 1
        params = trial
        decrease = float(e) - float(e_new)
        e, grads = (e_new, None) if analytic else evaluate(params, True)
        if decrease < rel_tol * abs(float(e_new)):
            break
    # The root rotations are products of a few float32 updates: make them exactly orthonormal
    # again (the axis-angle written to files and a matrix-derived quaternion must agree).
    orient = axis_angle_to_matrix(matrix_to_axis_angle(params.orient))
    return ChunkParams(params.pose, orient, params.transl, params.betas), steps


def _pcg(matvec, precondition, b: Tensor, b2: Tensor, iterations: int, tol: float) -> tuple[Tensor, Tensor]:
    """Preconditioned conjugate gradients on the pair of unknowns ``(x, x2)``: solves
    ``A (x, x2) = (b, b2)`` for symmetric positive definite ``A`` given as ``matvec``."""
    x, x2 = torch.zeros_like(b), torch.zeros_like(b2)
    r, r2 = b.clone(), b2.clone()
    z, z2 = precondition(r, r2)
    p, p2 = z.clone(), z2.clone()
    rz = (r * z).sum() + (r2 * z2).sum()
    b_norm = float(torch.sqrt((b * b).sum() + (b2 * b2).sum()))
    if b_norm == 0:
        return x, x2
    for _ in range(iterations):
        ap, ap2 = matvec(p, p2)
        alpha = rz / ((p * ap).sum() + (p2 * ap2).sum())
        x, x2 = x + alpha * p, x2 + alpha * p2
        r, r2 = r - alpha * ap, r2 - alpha * ap2
        if float(torch.sqrt((r * r).sum() + (r2 * r2).sum())) < tol * b_norm:
            break
        z, z2 = precondition(r, r2)
        rz_new = (r * z).sum() + (r2 * z2).sum()
        p, p2 = z + (rz_new / rz) * p, z2 + (rz_new / rz) * p2
        rz = rz_new
    return x, x2
