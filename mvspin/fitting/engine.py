"""`FittingEngine`: what SMPLify and MV-SMPLify share, and the crop-camera fit itself.

The engine owns the keypoint targets, the energy terms of each stage, the keypoint backend, the
optimisation loop (Adam or L-BFGS, early stop, NaN guard) and result assembly.
:meth:`FittingEngine.fit_crop_cameras` is the fit with SPIN crop cameras (focal 5000 px,
principal point at the centre of a 224 px crop, no distortion) used by MV-SMPLify's per-view
mode (V views) and by SMPLify (V = 1); MV-SMPLify's calibrated mode builds on the same pieces.

Two keypoint backends compute the model keypoints every iteration (``keypoint_backend``):

- ``"fast"``: the body model's fast keypoint path, one body per bundle and each view's root
  transform applied afterwards; in stage 1 (body fixed) the body is evaluated once for the
  whole stage (:meth:`~mvspin.body.BodyModel.canonical_keypoints` and
  :meth:`~mvspin.body.BodyModel.apply_root`).
- ``"full"``: smplx's full forward (every vertex, LBS) of every view's body at every iteration,
  as the published MV-SPIN code does: the reference the fast path is tested and benchmarked
  against. Both minimise the same energy.

The energies (:meth:`FittingEngine.energy`) are public so tests can check them against the
reference formulas; the fit minimises exactly these functions.
"""
from __future__ import annotations

import functools
import math
import time
from typing import Any, Callable, Optional, Sequence

import torch
from torch import Tensor

from mvspin.body import BodyModel, angle_prior, shape_prior
from mvspin.errors import FitError, ShapeError, check_shape
from mvspin.fitting import lm_models
from mvspin.fitting.compiled import MaybeCompiled
from mvspin.fitting.config import SMPLifyConfig, validate_config
from mvspin.fitting.keypoint_targets import KeypointTargets
from mvspin.fitting.lm import LMOptions, LMSystem, levenberg_marquardt, proximal_system
from mvspin.fitting.losses import reprojection_energy, reprojection_error, squared_reprojection_energy
from mvspin.fitting.result import FitResult, PerViewEstimate
from mvspin.geometry import (
    axis_angle_to_matrix,
    crop_cam_to_translation,
    matrix_to_axis_angle,
    so3_mean,
    translation_to_crop_cam,
)

__all__ = ["FittingEngine", "STAGES"]

STAGES = (0, 1, 2)
"""Stage numbers: 0 = the calibrated mode's 3D fit to triangulated keypoints, 1 = root
orientation and translation on the torso, 2 = the whole body."""

# Depth floor (metres) of the projection, as in mvspin.geometry.perspective_projection: a point
# behind the camera projects far away but finite.
MIN_DEPTH = 1e-3


class _FusedAdam:
    """``torch.optim.Adam(params, lr, fused=True)``'s update without the optimiser wrapper: the
    same fused kernel (``torch._fused_adam_``) with the same arguments and state (moments, a
    float32 step count per parameter), so the same numbers. The wrapper's per-step bookkeeping
    cost ~0.2 ms of a ~4 ms fitting iteration, and constructing the first ``torch.optim``
    optimiser of a process imports ``torch._dynamo`` (~1 s on one CPU core)."""

    def __init__(self, params: Sequence[Tensor], lr: float) -> None:
        self.params = list(params)
        self.lr = lr
        self.exp_avg = [torch.zeros_like(p, memory_format=torch.preserve_format) for p in self.params]
        self.exp_avg_sq = [torch.zeros_like(p, memory_format=torch.preserve_format) for p in self.params]
        self.steps = [torch.zeros((), dtype=torch.float32, device=p.device) for p in self.params]

    def zero_grad(self, set_to_none: bool = True) -> None:
        for p in self.params:
            p.grad = None

    @torch.no_grad()
    def step(self) -> None:
        groups: dict[tuple[torch.device, torch.dtype], list[int]] = {}
        for i, p in enumerate(self.params):
            if p.grad is not None:  # as torch.optim: parameters without a gradient are skipped
                groups.setdefault((p.device, p.dtype), []).append(i)
        for idx in groups.values():
            steps = [self.steps[i] for i in idx]
            torch._foreach_add_(steps, 1)
            torch._fused_adam_([self.params[i] for i in idx], [self.params[i].grad for i in idx],  # type: ignore[misc]
                               [self.exp_avg[i] for i in idx], [self.exp_avg_sq[i] for i in idx], [], steps,
                               amsgrad=False, lr=self.lr, beta1=0.9, beta2=0.999, weight_decay=0.0, eps=1e-8,
                               maximize=False, grad_scale=None, found_inf=None)


@functools.lru_cache(maxsize=None)
def _fused_adam_runs(dtype: torch.dtype) -> bool:
    """Whether this torch has the fused Adam kernel on the CPU for ``dtype`` (torch >= 2.4)."""
    try:
        p, g = torch.zeros(1, dtype=dtype), torch.ones(1, dtype=dtype)
        torch._fused_adam_([p], [g], [torch.zeros_like(p)], [torch.zeros_like(p)], [], [torch.ones(())],  # type: ignore[misc]
                           amsgrad=False, lr=0.1, beta1=0.9, beta2=0.999, weight_decay=0.0, eps=1e-8, maximize=False,
                           grad_scale=None, found_inf=None)
    except (AttributeError, NotImplementedError, RuntimeError, TypeError):
        return False
    return bool(torch.isfinite(p).all())


def _adam(params: Sequence[Tensor], lr: float) -> "_FusedAdam | torch.optim.Adam":
    """Adam, fused where torch offers it (one kernel for all parameters: a third of the plain
    implementation's time for the fitter's few small tensors), called directly
    (:class:`_FusedAdam`) on the CPU."""
    if all(p.device.type == "cpu" and _fused_adam_runs(p.dtype) for p in params):
        return _FusedAdam(params, lr)
    try:
        return torch.optim.Adam(params, lr=lr, fused=True)
    except (RuntimeError, TypeError, ValueError):  # older torch, or a device without a fused kernel
        return torch.optim.Adam(params, lr=lr)


class FittingEngine:
    """Shared machinery of :class:`~mvspin.fitting.MVSMPLify` and :class:`~mvspin.fitting.SMPLify`.

    Args:
        body: the body model; its device and dtype are used throughout.
        config: weights, stages, optimiser, keypoint backend (see :class:`SMPLifyConfig`).
        keypoint_set: the keypoint convention of the inputs (e.g. ``"openpose25"``).
    """

    def __init__(self, body: BodyModel, config: SMPLifyConfig, keypoint_set: str) -> None:
        validate_config(config)
        self.body = body
        self.config = config
        self.targets = KeypointTargets.build(body, keypoint_set, config.keypoint_weights,
                                             config.stage2_ignored_points)
        self.pose_prior = body.pose_prior()
        # The crop-camera stage energies as functions of tensors only, so that with ``compile``
        # each is compiled once per batch shape (model keypoints alone saved 8% of a 16 x 4 fit,
        # the whole stage energies 55-60%: tools/bench_fitting.py --compile).
        self._crop_stage1: Callable[..., Tensor] = self._crop_stage1_energy
        self._crop_stage2: Callable[..., tuple[Tensor, Tensor]] = self._crop_stage2_terms
        if config.compile and config.keypoint_backend == "fast":
            self._crop_stage1 = MaybeCompiled(self._crop_stage1_energy, "fitting stage 1")
            self._crop_stage2 = MaybeCompiled(self._crop_stage2_terms, "fitting stage 2")
        self.trace: Optional[list[tuple[int, int, float, float]]] = None
        """Set to a list to record ``(stage, iteration, energy, time.perf_counter())`` at every
        energy evaluation (convergence plots, benchmarks); None records nothing."""
        self._stage = 0

    @property
    def device(self) -> torch.device:
        return self.body.J_template.device

    @property
    def dtype(self) -> torch.dtype:
        return self.body.J_template.dtype

    @property
    def keypoint_set(self) -> str:
        return self.targets.data_set

    # --- inputs ------------------------------------------------------------------------------

    def prepare_keypoints(self, keypoints: Tensor, views: Optional[int] = None) -> tuple[Tensor, Tensor]:
        """Check ``(B, V, K, 3)`` keypoints; return the matched ``xy (B, V, M, 2)`` and confidence
        ``(B, V, M)``, with missing, non-finite and low-confidence keypoints zeroed (they then
        contribute neither energy nor gradient)."""
        if not isinstance(keypoints, Tensor):
            raise TypeError(f"keypoints must be a torch.Tensor, got {type(keypoints).__name__}")
        check_shape(f"{self.keypoint_set} keypoints (x, y, confidence)", keypoints,
                    ["B", "V", self.targets.num_data_keypoints, 3])
        if views is not None and keypoints.shape[1] != views:
            raise ShapeError(f"keypoints have {keypoints.shape[1]} views but there are {views} cameras")
        kp = self.targets.select(keypoints.to(device=self.device, dtype=self.dtype))
        xy, conf = kp[..., :2], kp[..., 2]
        ok = torch.isfinite(xy).all(-1) & torch.isfinite(conf) & (conf > self.config.min_confidence)
        conf = torch.where(ok, conf, torch.zeros_like(conf))
        xy = torch.where(ok.unsqueeze(-1), xy, torch.zeros_like(xy))
        return xy, conf

    # --- model keypoints (the backend switch) -----------------------------------------------------

    def posed_keypoints(self, body_rot: Tensor, betas: Tensor, rot: Tensor, transl: Tensor) -> Tensor:
        """Matched model keypoints ``(B, V, M, 3)`` of one body per bundle (``body_rot
        (B, 23, 3, 3)``, ``betas (B, num_betas)``) under per-view root rotations ``(B, V, 3, 3)``
        and SMPL translations ``(B, V, 3)``, through the configured keypoint backend."""
        if self.config.keypoint_backend == "full":
            b, v = rot.shape[:2]
            out = self.body(body_pose=body_rot.repeat_interleave(v, 0), betas=betas.repeat_interleave(v, 0),
                            global_orient=rot.flatten(0, 1), transl=transl.flatten(0, 1),
                            keypoints=self.targets.model_set, check=False)  # the loop's values: checked at entry
            kp = out.keypoints.view(b, v, -1, 3)
        else:
            kp = self.body.keypoints_multiview(self.targets.model_set, body_rot, betas, rot, transl, check=False)
        return self.targets.model_keypoints(kp)

    def fixed_body_keypoints(self, body_rot: Tensor, betas: Tensor) -> Callable[[Tensor, Tensor], Tensor]:
        """``(rot (B, V, 3, 3), transl (B, V, 3)) -> (B, V, M, 3)`` for a body held fixed (stage 1).

        The fast backend evaluates the body once here and only applies root transforms per
        call; the full backend runs the full forward at every call."""
        fixed = self._fixed_body(body_rot, betas)
        return lambda rot, transl: self._fixed_body_keypoints(fixed, rot, transl)

    def _fixed_body(self, body_rot: Tensor, betas: Tensor) -> tuple[Tensor, Tensor]:
        """What stage 1 keeps of a fixed body: the canonical keypoints and rest pelvis (fast
        backend), or the body itself, detached (full backend)."""
        if self.config.keypoint_backend == "full":
            return body_rot.detach(), betas.detach()
        with torch.no_grad():
            return self.body.canonical_keypoints(self.targets.model_set, body_rot, betas)

    def _fixed_body_keypoints(self, fixed: tuple[Tensor, Tensor], rot: Tensor, transl: Tensor) -> Tensor:
        if self.config.keypoint_backend == "full":
            return self.posed_keypoints(fixed[0], fixed[1], rot, transl)
        return self.targets.model_keypoints(self.body.apply_root(self.targets.model_set, fixed[0], fixed[1], rot, transl))

    @staticmethod
    def rotations(pose: Tensor, d_orient: Tensor, orient0: Tensor) -> tuple[Tensor, Tensor]:
        """Body rotations ``(B, 23, 3, 3)`` from axis-angle ``pose (B, 69)`` and root rotations
        ``exp(d_orient) @ orient0`` (``d_orient (B, [V,] 3)``), in one axis-angle conversion (the
        loop's cost is the number of operations, not their size)."""
        b = pose.shape[0]
        rots = axis_angle_to_matrix(torch.cat([pose.view(b, 23, 3), d_orient.reshape(b, -1, 3)], dim=1))
        return rots[:, :23], rots[:, 23:].reshape(*d_orient.shape, 3) @ orient0

    # --- energy terms -----------------------------------------------------------------------------

    def stage1_weights(self, conf: Tensor) -> Tensor:
        """Stage-1 keypoint weights ``(B, V, M)`` from confidences ``(B, V, M)``.

        ``stage1_loss="gmof"``: confidence squared on every torso keypoint. ``"squared"``
        (SPIN's ``camera_fitting_loss``): weight 1 on the detector's four torso keypoints when
        all four are detected in the view, otherwise on the ground-truth torso keypoints (sets
        with both, i.e. ``spin49``); confidence is not used beyond detected (> 0) or not.
        """
        t = self.targets
        if self.config.stage1_loss == "gmof":
            return conf.square() * t.torso
        detected = conf > 0
        primary_complete = (detected | ~t.torso_primary).all(-1, keepdim=True)  # (B, V, 1)
        fallback = t.torso_fallback if bool(t.torso_fallback.any()) else t.torso_primary
        chosen = torch.where(primary_complete, t.torso_primary, fallback)
        return (chosen & detected).to(conf.dtype)

    def stage2_weights(self, conf: Tensor) -> Tensor:
        """Stage-2 keypoint weights ``(B, V, M)``: confidence squared times each keypoint's weight
        (0 for ``stage2_ignored_points``), as SPIN's ``joints_conf ** 2``."""
        return conf.square() * self.targets.weights

    def stage1_reprojection(self, uv: Tensor, xy: Tensor, w1: Tensor) -> Tensor:
        """Stage-1 reprojection energy ``(B,)`` summed over views: Geman-McClure or plain squared
        pixel error (``stage1_loss``) of projected ``uv (B, V, M, 2)`` against ``xy``."""
        if self.config.stage1_loss == "squared":
            return squared_reprojection_energy(uv, xy, w1).sum(-1)
        return reprojection_energy(uv, xy, w1, self.config.sigma).sum(-1)

    def depth_anchor(self, transl: Tensor, transl0: Tensor, view_weight: Tensor) -> Tensor:
        """SPIN's stage-1 pull ``(B,)`` of each crop camera's depth towards the network's:
        ``w * sum_v (tz - tz0)^2`` over the views used (``view_weight (B, V)``)."""
        return self.config.depth_anchor_weight * ((transl[..., 2] - transl0[..., 2]).square() * view_weight).sum(-1)

    def body_prior_energy(self, body_pose_aa: Tensor, betas: Tensor) -> Tensor:
        """Prior energy ``(B,)`` of the shared body: pose, elbow/knee and shape priors (once per
        bundle, not per view)."""
        c = self.config
        energy = c.pose_prior_weight * self.pose_prior(body_pose_aa) + c.shape_prior_weight * shape_prior(betas)
        if c.angle_prior_weight:
            energy = energy + c.angle_prior_weight * angle_prior(body_pose_aa)
        return energy

    def stage2_energy(self, uv: Tensor, xy: Tensor, w2: Tensor, body_pose_aa: Tensor, betas: Tensor) -> Tensor:
        """Stage-2 energy ``(B,)``: Geman-McClure reprojection summed over views plus the priors."""
        return (reprojection_energy(uv, xy, w2, self.config.sigma).sum(-1)
                + self.body_prior_energy(body_pose_aa, betas))

    def project_crop(self, points: Tensor) -> Tensor:
        """SPIN's crop camera (focal ``focal_length``, principal point at the crop centre, no
        distortion): ``(..., 3)`` camera-frame points, metres -> ``(..., 2)`` crop pixels. The
        same as ``perspective_projection(points, crop_intrinsics())`` in a quarter of the ops."""
        c = self.config
        return float(c.focal_length) * points[..., :2] / points[..., 2:].clamp_min(MIN_DEPTH) + c.crop_size / 2.0

    def energy(self, stage: int, keypoints: Tensor, body_pose: Tensor, betas: Tensor, global_orient: Tensor,
               transl: Tensor, transl_init: Optional[Tensor] = None) -> Tensor:
        """The energy ``(B,)`` that stage 1 or 2 of :meth:`fit_crop_cameras` minimises.

        Args:
            stage: 1 (orientation and translation) or 2 (body).
            keypoints: ``(B, V, K, 3)`` crop-pixel keypoints.
            body_pose: ``(B, 69)`` axis-angle or ``(B, 23, 3, 3)``.
            betas: ``(B, num_betas)``.
            global_orient: ``(B, V, 3)`` axis-angle or ``(B, V, 3, 3)``, each view's crop camera.
            transl: ``(B, V, 3)`` SMPL translations in each crop camera, metres.
            transl_init: ``(B, V, 3)`` the network's translations (stage 1's depth anchor).

        Returns:
            ``(B,)``; 0 for a bundle with no usable view (it is not fitted).
        """
        if stage not in (1, 2):
            raise ValueError(f"stage must be 1 or 2, got {stage}")
        xy, conf = self.prepare_keypoints(keypoints)
        b, v = xy.shape[:2]
        view_used = (conf > 0).any(-1)
        fit_mask = view_used.any(-1).to(self.dtype)
        body_rot = body_pose if body_pose.dim() == 4 else axis_angle_to_matrix(body_pose.reshape(b, 23, 3))
        rot = global_orient if global_orient.dim() == 4 else axis_angle_to_matrix(global_orient)
        uv = self.project_crop(self.posed_keypoints(body_rot.to(self.dtype), betas.to(self.dtype),
                                                    rot.to(self.dtype), transl.to(self.dtype)))
        if stage == 1:
            if transl_init is None:
                raise ValueError("stage 1's energy needs transl_init (the depth anchor's target)")
            e = self.stage1_reprojection(uv, xy, self.stage1_weights(conf))
            e = e + self.depth_anchor(transl, transl_init, view_used.to(self.dtype))
        else:
            e = self.stage2_energy(uv, xy, self.stage2_weights(conf), matrix_to_axis_angle(body_rot).reshape(b, 69),
                                   betas)
        return e * fit_mask

    # --- optimisation --------------------------------------------------------------------------

    def _record(self, iteration: int, value: float) -> None:
        if self.trace is not None:
            self.trace.append((self._stage, iteration, value, time.perf_counter()))

    def minimise(self, params: Sequence[Tensor], energy: Callable[[], Tensor], iterations: int, stage: int,
                 lr: Optional[float] = None, optimizer: Optional[str] = None) -> int:
        """Minimise ``energy().sum()`` over ``params`` with ``optimizer`` (``adam`` or ``lbfgs``;
        default the config's); returns the iterations run.

        Stops after ``iterations`` or once the relative energy change has stayed below
        ``rel_tol`` for ``patience`` consecutive iterations (``patience=0``: never early). Adam
        takes one step per iteration; L-BFGS one quasi-Newton step with a strong-Wolfe line
        search (several evaluations).

        Raises:
            FitError: the energy became NaN or infinite (names the stage and iteration).
        """
        c = self.config
        self._stage = stage
        if iterations == 0 or not params:
            return 0
        if (optimizer or c.optimizer) == "lbfgs":
            step = self._lbfgs_step(params, energy)
        else:
            opt = _adam(params, c.lr if lr is None else lr)

            def step(it: int) -> float:
                opt.zero_grad(set_to_none=True)
                total = energy().sum()
                total.backward()
                opt.step()
                value = float(total.detach())
                self._record(it, value)
                return value

        previous, calm = math.inf, 0
        for it in range(iterations):
            value = step(it)
            if not math.isfinite(value):
                raise FitError(f"the fitting energy became {value} at iteration {it} of stage {stage}: check the "
                               "inputs (keypoints, cameras, initial estimates) for extreme values")
            if c.patience and abs(previous - value) <= c.rel_tol * max(abs(previous), 1e-12):
                calm += 1
                if calm >= c.patience:
                    return it + 1
            else:
                calm = 0
            previous = value
        return iterations

    def minimise_lm(self, system: Callable[[Tensor], LMSystem], x0: Tensor, iterations: int, stage: int,
                    active: Tensor) -> tuple[Tensor, int]:
        """Minimise each bundle's energy over ``x (B, P)`` with :func:`~mvspin.fitting.lm.levenberg_marquardt`
        (at most ``iterations`` steps; bundles not ``active`` keep ``x0``); returns the
        minimiser and the steps run.

        Raises:
            FitError: the energy at the start is NaN or infinite (names the stage).
        """
        c = self.config
        self._stage = stage
        if iterations == 0 or x0.shape[1] == 0:
            return x0, 0
        options = LMOptions(damping=c.lm_damping, rel_tol=c.lm_rel_tol, step_tol=c.lm_step_tol)
        if c.compile and not isinstance(system, MaybeCompiled):
            # energy, gradient and Gauss-Newton matrix fused by inductor (about 3x per evaluation on
            # one CPU thread, 16 x 4 per-view stage 2); compiled once per code and batch shape
            system = MaybeCompiled(system, f"LM stage {stage}", no_grad=True)
        if stage == 2 and c.lm_proximal_weight > 0:
            system = proximal_system(system, x0.detach(), c.lm_proximal_weight)
        try:
            with torch.no_grad():
                x, its, _ = levenberg_marquardt(system, x0.detach(), iterations, active, options, self._record)
        except FloatingPointError as err:
            raise FitError(f"the fitting energy is not finite at the start of stage {stage}: check the inputs "
                           "(keypoints, cameras, initial estimates) for extreme values") from err
        return x, its

    def _lbfgs_step(self, params: Sequence[Tensor], energy: Callable[[], Tensor]) -> Callable[[int], float]:
        """One L-BFGS iteration per call (the optimiser keeps its curvature history between calls)."""
        c = self.config
        opt = torch.optim.LBFGS(params, lr=c.lbfgs_lr, max_iter=1, max_eval=25, history_size=c.lbfgs_history,
                                line_search_fn="strong_wolfe", tolerance_grad=1e-12, tolerance_change=0.0)
        cache: dict[str, Any] = {}
        current = [0]

        def closure() -> Tensor:
            # torch re-evaluates the point its line search just accepted at the start of every
            # step() call: serve it from the cache instead of running the body again.
            x = [p.detach().clone() for p in params]
            if cache and all(torch.equal(a, b) for a, b in zip(x, cache["x"])):
                for p, g in zip(params, cache["grad"]):
                    p.grad = g.clone()
                return cache["loss"]
            opt.zero_grad(set_to_none=True)
            total = energy().sum()
            total.backward()
            loss = total.detach()
            cache.update(x=x, grad=[torch.zeros_like(p) if p.grad is None else p.grad.clone() for p in params],
                         loss=loss)
            self._record(current[0], float(loss))
            return loss

        def step(it: int) -> float:
            current[0] = it
            opt.step(closure)
            return float(closure())  # the accepted point: cached, no extra evaluation

        return step

    # --- the crop-camera fit -------------------------------------------------------------------

    def fit_crop_cameras(self, keypoints: Tensor, init: PerViewEstimate, *, mode: str = "per_view",
                         return_meshes: bool = False) -> FitResult:
        """Fit one shared body per bundle to V views seen by SPIN crop cameras.

        Shared: body pose and betas (initialised by rotation averaging of the views' estimates).
        Per view: root orientation and crop-camera translation. Stage 1 fits the orientations and
        translations on the torso with SPIN's depth anchor; stage 2 the body and orientations
        (and the translations with ``stage2_translation``).

        Args:
            keypoints: ``(B, V, K, 3)`` crop-pixel keypoints (x, y, confidence).
            init: per-view regressor estimates with crop cameras.
            mode: the name the result carries (``"per_view"`` or ``"smplify"``).
            return_meshes: also compute vertices and joints (once, at the end).

        Returns:
            :class:`FitResult` with per-view ``global_orient``/``transl``/``cam`` in each crop
            camera's frame.
        """
        c = self.config
        dtype, device = self.dtype, self.device
        xy, conf = self.prepare_keypoints(keypoints)
        b, v = xy.shape[:2]
        if not isinstance(init, PerViewEstimate):
            raise TypeError(f"init must be a PerViewEstimate, got {type(init).__name__}")
        init.check(b, v, self.body.num_betas, need_cam=True)
        rotmat = init.rotmat.to(device, dtype)
        view_used = (conf > 0).any(-1)
        fitted = view_used.any(-1)
        fit_mask = fitted.to(dtype)
        view_weight = view_used.to(dtype)
        avg_w = torch.where(fitted[:, None], view_weight, torch.ones_like(view_weight))
        body_rot0 = so3_mean(rotmat[:, :, 1:], avg_w[..., None], dim=1) if v > 1 else rotmat[:, 0, 1:]
        betas0 = (avg_w[..., None] * init.betas.to(device, dtype)).sum(1) / avg_w.sum(1, keepdim=True)
        orient0 = rotmat[:, :, 0]
        transl0 = crop_cam_to_translation(init.cam.to(device, dtype), c.focal_length, c.crop_size)
        w1, w2 = self.stage1_weights(conf), self.stage2_weights(conf)

        d_orient = torch.zeros(b, v, 3, dtype=dtype, device=device, requires_grad=True)
        transl = transl0.clone().requires_grad_(True)
        fixed_body = self._fixed_body(body_rot0, betas0)

        def stage1() -> Tensor:
            return self._crop_stage1(d_orient, transl, orient0, fixed_body, xy, w1, transl0, view_weight) * fit_mask

        pose = matrix_to_axis_angle(body_rot0).reshape(b, 69).detach().clone().requires_grad_(True)
        betas = betas0.detach().clone().requires_grad_(True)
        if c.optimizer == "lm":
            it1, it2 = self._crop_lm(pose, betas, d_orient, transl, orient0, transl0, xy, w1, w2, view_weight, fitted)
        else:
            it1 = self.minimise([d_orient, transl], stage1, c.stage1_iterations, stage=1)

        def stage2_terms() -> tuple[Tensor, Tensor]:
            return self._crop_stage2(pose, betas, d_orient, transl, orient0, xy, w2)

        if c.optimizer != "lm":
            params = [pose, betas, d_orient] + ([transl] if c.stage2_translation else [])
            it2 = self.minimise(params, lambda: stage2_terms()[1] * fit_mask, c.stage2_iterations, stage=2)

        with torch.no_grad():
            uv, energy = stage2_terms()
            body_rot, orient = self.rotations(pose, d_orient, orient0)
            # Unfitted bundles keep their start exactly (no round trip through axis-angle).
            body_rot = torch.where(fitted[:, None, None, None], body_rot, body_rot0)
            orient = torch.where(fitted[:, None, None, None], orient, orient0)
            transl_out = transl.detach()
            view_err, bundle_err = self.reprojection_errors(uv, xy, conf, view_used)
            result = FitResult(
                mode=mode, body_model=self.body.name, keypoint_set=self.keypoint_set,
                body_pose=body_rot, betas=betas.detach(), global_orient=orient, transl=transl_out,
                cam=translation_to_crop_cam(transl_out, c.focal_length, c.crop_size),
                reprojection_error=torch.where(fitted, bundle_err, torch.full_like(bundle_err, math.inf)),
                view_reprojection_error=view_err,
                energy=torch.where(fitted, energy, torch.full_like(energy, math.inf)),
                fitted=fitted, view_used=view_used, iterations=(it1, it2),
            )
            if return_meshes:
                result.vertices, result.joints = self.meshes(body_rot, result.betas, orient, transl_out)
        return result

    def _crop_stage1_energy(self, d_orient: Tensor, transl: Tensor, orient0: Tensor, fixed_body: tuple[Tensor, Tensor],
                            xy: Tensor, w1: Tensor, transl0: Tensor, view_weight: Tensor) -> Tensor:
        """Stage 1 with crop cameras: energy ``(B,)`` of the root rotations ``exp(d_orient) orient0``
        and translations of a fixed body (:meth:`_fixed_body`)."""
        rot = axis_angle_to_matrix(d_orient) @ orient0
        rep = self.stage1_reprojection(self.project_crop(self._fixed_body_keypoints(fixed_body, rot, transl)), xy, w1)
        return rep + self.depth_anchor(transl, transl0, view_weight)

    def _crop_stage2_terms(self, pose: Tensor, betas: Tensor, d_orient: Tensor, transl: Tensor, orient0: Tensor,
                           xy: Tensor, w2: Tensor) -> tuple[Tensor, Tensor]:
        """Stage 2 with crop cameras: projected keypoints ``(B, V, M, 2)`` and energy ``(B,)``."""
        body_rot, rot = self.rotations(pose, d_orient, orient0)
        uv = self.project_crop(self.posed_keypoints(body_rot, betas, rot, transl))
        return uv, self.stage2_energy(uv, xy, w2, pose, betas)

    def _crop_lm(self, pose: Tensor, betas: Tensor, d_orient: Tensor, transl: Tensor, orient0: Tensor,
                 transl0: Tensor, xy: Tensor, w1: Tensor, w2: Tensor, view_weight: Tensor,
                 fitted: Tensor) -> tuple[int, int]:
        """Both stages of :meth:`fit_crop_cameras` by Levenberg-Marquardt; writes the minimisers
        into ``pose``, ``betas``, ``d_orient`` and ``transl`` (the Adam path's leaves)."""
        c = self.config
        b, v = orient0.shape[:2]
        fit_mask = fitted.to(self.dtype)
        with torch.no_grad():
            lin = lm_models.linearise_body(self, pose, betas, jacobian=False)
            system1 = lm_models.crop_stage1_system(self, lin, orient0, xy, w1, transl0, view_weight, fit_mask)
            x1, it1 = self.minimise_lm(system1, torch.cat([d_orient.flatten(1), transl.flatten(1)], 1),
                                       min(c.stage1_iterations, c.lm_stage1_iterations), 1, fitted)
            d_orient.copy_(x1[:, :3 * v].view(b, v, 3))
            transl.copy_(x1[:, 3 * v:].view(b, v, 3))
            free_t = c.stage2_translation
            system2 = lm_models.crop_stage2_system(self, orient0, xy, w2, None if free_t else transl.detach(), fit_mask)
            x0 = torch.cat([pose, betas, d_orient.flatten(1)] + ([transl.flatten(1)] if free_t else []), 1)
            x2, it2 = self.minimise_lm(system2, x0, min(c.stage2_iterations, c.lm_stage2_iterations), 2, fitted)
            nb = betas.shape[1]
            pose.copy_(x2[:, :69])
            betas.copy_(x2[:, 69:69 + nb])
            d_orient.copy_(x2[:, 69 + nb:69 + nb + 3 * v].view(b, v, 3))
            if free_t:
                transl.copy_(x2[:, 69 + nb + 3 * v:].view(b, v, 3))
        return it1, it2

    # --- results ---------------------------------------------------------------------------

    def reprojection_errors(self, uv: Tensor, xy: Tensor, conf: Tensor, used: Tensor) -> tuple[Tensor, Tensor]:
        """Per-view ``(B, V)`` and per-bundle ``(B,)`` reprojection errors in pixels over the
        keypoints the body stage weighs, weighted by confidence."""
        w = conf * (self.targets.weights > 0)
        view_err = reprojection_error(uv, xy, w)
        wu = w * used[..., None]
        bundle_err = reprojection_error(uv.flatten(1, 2), xy.flatten(1, 2), wu.flatten(1, 2))
        return view_err, bundle_err

    def explains_keypoints(self, bundle_error: Tensor, xy: Tensor, conf: Tensor, limit: float) -> Tensor:
        """``(B,)`` bool: the fit's mean reprojection error (pixels) is at most ``limit``
        (``MVSMPLifyConfig.max_relative_reprojection_error``; 0: no limit) times the person's size in the images (the diagonal
        of the confident keypoints' bounding box, averaged over the views that have them).

        A fit with cameras that do not fit the keypoints converges somewhere with hundreds or
        thousands of pixels of error; such a bundle must not be reported fitted."""
        if not limit:
            return torch.ones_like(bundle_error, dtype=torch.bool)
        seen = conf > 0
        big = torch.finfo(xy.dtype).max
        lo = torch.where(seen[..., None], xy, torch.full_like(xy, big)).amin(-2)
        hi = torch.where(seen[..., None], xy, torch.full_like(xy, -big)).amax(-2)
        has = seen.sum(-1) >= 2  # (B, V)
        diag = torch.where(has, (hi - lo).norm(dim=-1), torch.zeros_like(lo[..., 0]))
        size = diag.sum(-1) / has.sum(-1).clamp_min(1)
        return bundle_error <= limit * size

    def meshes(self, body_rot: Tensor, betas: Tensor, rot: Tensor, transl: Tensor) -> tuple[Tensor, Tensor]:
        """Full forward of each bundle's body under each view's root transform (once, at the
        end): vertices ``(B, V, N, 3)`` and joints ``(B, V, 24, 3)``."""
        b, v = rot.shape[:2]
        with torch.no_grad():
            out = self.body(body_pose=body_rot.repeat_interleave(v, 0), betas=betas.repeat_interleave(v, 0),
                            global_orient=rot.flatten(0, 1), transl=transl.flatten(0, 1), check=False)
        return out.vertices.view(b, v, -1, 3), out.joints.view(b, v, 24, 3)
