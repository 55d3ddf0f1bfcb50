"""MV-SMPLify: one shared body per bundle fitted to the 2D keypoints of all its views.

Two camera modes share one engine (:class:`MVSMPLify`):

- ``per_view`` (MV-SPIN, Li et al. section 3.3): cameras unknown. Each view keeps its own root
  orientation and SPIN crop-camera translation (focal 5000 px, 224 px crop, principal point at
  the crop centre); body pose (23 joints) and betas are shared by the views of a bundle.
  Keypoints are in crop pixels. Initialised from a regressor's per-view estimates, the shared
  parts by rotation averaging on SO(3) (not by averaging axis-angle vectors).
- ``calibrated`` (rigs): cameras known (intrinsics, distortion, world-to-camera R, t). One body
  in the world frame (orientation, translation, pose, betas) is projected into every camera.
  Keypoints are in image pixels. Initialised from per-view estimates mapped through the camera
  rotations, or, with no network, from the mean pose oriented on robustly triangulated torso
  keypoints; the translation then follows from a linear solve.

Both run SPIN's two stages: stage 1 fits root orientation(s) and translation(s) on the torso
keypoints (body held fixed, so the body is evaluated once for the whole stage); stage 2 fits
body pose, betas and orientation(s), and the translation (always in the calibrated mode, where
it is the body's; in the crop modes only with ``stage2_translation``, as SPIN fixes the camera).
Without a network estimate the calibrated mode first fits the triangulated keypoints in 3D
(stage 0). The energy is the confidence-weighted Geman-McClure reprojection error summed over
views plus the pose, elbow/knee and shape priors. Everything is batched over bundles and views:
one call to the body model's fast keypoint path per iteration, which evaluates each bundle's
body once and applies each view's root transform (no Python loop over samples or views).

A view with no confident keypoint is ignored (zero weight, zero gradient). A bundle with no
usable view is reported unfitted (``FitResult.fitted``) and its parameters are returned as
initialised. In the calibrated mode a view whose keypoints disagree with the other views'
triangulated consensus (typically another person picked by the detector) is ignored too.
"""
from __future__ import annotations

import math
import time
from typing import Callable, Optional, Sequence

import torch
from torch import Tensor

from calibration import CameraTensors, Rig, triangulate_points, undistort_points
from mvspin.body import BodyModel, angle_prior, shape_prior
from mvspin.fitting.config import MVSMPLifyConfig, SMPLifyConfig, validate_config
from mvspin.fitting.keypoint_targets import KeypointTargets
from mvspin.fitting.losses import gmof, reprojection_energy, reprojection_error
from mvspin.fitting.result import FitResult, PerViewEstimate
from mvspin.geometry import (
    crop_cam_to_translation,
    matrix_to_axis_angle,
    perspective_projection,
    rot6d_to_matrix,
    so3_mean,
    translation_to_crop_cam,
)

__all__ = ["MVSMPLify", "FittingEngine", "crop_camera_rotation"]

# Depth floor (metres) of the projection, as in mvspin.geometry.perspective_projection: a point
# behind the camera projects far away but finite.
_MIN_DEPTH = 1e-3
# Stage 0 needs this many triangulated keypoints in a bundle to say anything about its pose.
_MIN_POINTS_3D = 6
# Axis flip taking SMPL's body axes (Y up, facing +Z) to an upright body facing an OpenCV camera
# (y down, z forward): 180 degrees about x.
_FACING_CAMERA = torch.tensor([[1.0, 0.0, 0.0], [0.0, -1.0, 0.0], [0.0, 0.0, -1.0]])


def _rodrigues(axis_angle: Tensor) -> Tensor:
    """Axis-angle ``(..., 3)`` to rotation matrices ``(..., 3, 3)`` (Rodrigues' formula).

    Same values as :func:`mvspin.geometry.axis_angle_to_matrix` with about half the operations:
    it runs every iteration of the fitting loop, where op count, not arithmetic, sets the time.
    Near angle 0 the Taylor expansions keep value and gradient exact.
    """
    t2 = (axis_angle * axis_angle).sum(-1, keepdim=True)
    small = t2 < 1e-8
    t2_safe = torch.where(small, torch.ones_like(t2), t2)
    t = t2_safe.sqrt()
    a = torch.where(small, 1 - t2 / 6, torch.sin(t) / t)  # sin(t) / t
    b = torch.where(small, 0.5 - t2 / 24, (1 - torch.cos(t)) / t2_safe)  # (1 - cos t) / t^2
    x, y, z = (a * axis_angle).unbind(-1)
    zero = torch.zeros_like(x)
    skew = torch.stack([zero, -z, y, z, zero, -x, -y, x, zero], -1).view(*axis_angle.shape[:-1], 3, 3)
    eye = torch.eye(3, dtype=axis_angle.dtype, device=axis_angle.device)
    # R = cos(t) I + sin(t) [k]x + (1 - cos t) k k^T, with cos t = 1 - b t^2
    return skew + (b * axis_angle)[..., :, None] * axis_angle[..., None, :] + (1 - b * t2)[..., None] * eye


def crop_camera_rotation(center: Tensor, K: Tensor) -> Tensor:
    """Rotation ``(..., 3, 3)`` from a real camera's frame to the frame of the SPIN crop camera
    of a crop centred at ``center``.

    A crop cut around an off-centre subject is seen by a virtual camera at the same centre
    looking along the ray through the crop centre (upright: its x axis stays horizontal in the
    real camera). A regressor's root orientation is relative to that camera, so the real
    camera's orientation is ``R^T @ R_crop``.

    Args:
        center: ``(..., 2)`` crop centres, image pixels.
        K: ``(..., 3, 3)`` the real camera's intrinsics.

    Returns:
        ``(..., 3, 3)`` with rows the crop camera's axes in the real camera frame
        (``x_crop = R @ x_real``); identity for a crop centred on the principal point.
    """
    if center.shape[-1] != 2 or K.shape[-2:] != (3, 3):
        raise ValueError(f"crop_camera_rotation: expected center (..., 2) and K (..., 3, 3), "
                         f"got {tuple(center.shape)} and {tuple(K.shape)}")
    y_n = (center[..., 1] - K[..., 1, 2]) / K[..., 1, 1]
    x_n = (center[..., 0] - K[..., 0, 2] - K[..., 0, 1] * y_n) / K[..., 0, 0]
    ray = torch.stack([x_n, y_n, torch.ones_like(x_n)], -1)
    z = ray / ray.norm(dim=-1, keepdim=True)
    up = torch.zeros_like(z)
    up[..., 1] = 1.0
    x = torch.cross(up, z, dim=-1)
    x = x / x.norm(dim=-1, keepdim=True)
    return torch.stack([x, torch.cross(z, x, dim=-1), z], dim=-2)


def _adam(params: Sequence[Tensor], lr: float) -> torch.optim.Adam:
    """Adam, fused where torch offers it (one kernel for all parameters: a third of the plain
    implementation's time for the fitter's few small tensors)."""
    try:
        return torch.optim.Adam(params, lr=lr, fused=True)
    except (RuntimeError, TypeError, ValueError):  # older torch, or a device without a fused kernel
        return torch.optim.Adam(params, lr=lr)


class FittingEngine:
    """Shared machinery of :class:`MVSMPLify` and :class:`~mvspin.fitting.smplify.SMPLify`:
    keypoint targets, energy terms, the two-stage optimisation loop and result assembly."""

    def __init__(self, body: BodyModel, config: SMPLifyConfig, keypoint_set: str) -> None:
        validate_config(config)
        self.body = body
        self.config = config
        self.targets = KeypointTargets.build(body, keypoint_set, config.keypoint_weights, config.detector_hip_weight)
        self.pose_prior = body.pose_prior()
        self._weight_sum = body.keypoint_weight_sums(self.targets.model_set)[self.targets.model_index]  # (M,)
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

    def _prepare_keypoints(self, keypoints: Tensor, views: Optional[int] = None) -> tuple[Tensor, Tensor]:
        """Check ``(B, V, K, 3)`` keypoints; return matched ``xy (B, V, M, 2)`` and confidence
        ``(B, V, M)`` with missing, non-finite and low-confidence keypoints zeroed."""
        k = self.targets.num_data_keypoints
        if not isinstance(keypoints, Tensor):
            raise TypeError(f"keypoints must be a torch.Tensor, got {type(keypoints).__name__}")
        if keypoints.ndim != 4 or keypoints.shape[2:] != (k, 3) or keypoints.shape[0] == 0 or keypoints.shape[1] == 0:
            raise ValueError(
                f"keypoints must be (B, V, {k}, 3) {self.keypoint_set} keypoints (x, y, confidence) with B, V >= 1, "
                f"got {tuple(keypoints.shape)}"
            )
        if views is not None and keypoints.shape[1] != views:
            raise ValueError(f"keypoints have {keypoints.shape[1]} views but there are {views} cameras")
        kp = self.targets.select(keypoints.to(device=self.device, dtype=self.dtype))
        xy, conf = kp[..., :2], kp[..., 2]
        ok = torch.isfinite(xy).all(-1) & torch.isfinite(conf) & (conf > self.config.min_confidence)
        conf = torch.where(ok, conf, torch.zeros_like(conf))
        xy = torch.where(ok.unsqueeze(-1), xy, torch.zeros_like(xy))
        return xy, conf

    def _rest_pelvis(self, betas: Tensor) -> Tensor:
        """Shape-dependent rest pelvis ``(B, 3)``: SMPL rotates the body about this point."""
        return self.body.rest_joints(betas)[:, 0]

    def _view_keypoints(self, body_rot: Tensor, betas: Tensor, rot: Tensor, transl: Tensor) -> Tensor:
        """Matched model keypoints ``(B, V, M, 3)`` of one body per bundle under per-view root
        rotations ``(B, V, 3, 3)`` and translations ``(B, V, 3)``."""
        kp = self.body.keypoints_multiview(self.targets.model_set, body_rot, betas, rot, transl)
        return self.targets.model_keypoints(kp)

    def _canonical_keypoints(self, body_rot: Tensor, betas: Tensor) -> Tensor:
        """Matched model keypoints ``(B, 1, M, 3)`` with identity root and zero translation."""
        b = betas.shape[0]
        eye = torch.eye(3, dtype=self.dtype, device=self.device).expand(b, 1, 3, 3)
        zero = torch.zeros(b, 1, 3, dtype=self.dtype, device=self.device)
        return self._view_keypoints(body_rot, betas, eye, zero)

    def _apply_root(self, kp: Tensor, pelvis: Tensor, rot: Tensor, transl: Tensor) -> Tensor:
        """Canonical keypoints ``(B, 1, M, 3)`` under root rotations ``(B, V, 3, 3)`` and SMPL
        translations ``(B, V, 3)``: ``R (k - s J0) + s (J0 + t)``, as SMPL moves every point
        (``s`` is the keypoint's weight sum, 1 up to rounding)."""
        s = self._weight_sum[:, None]
        centred = kp - s * pelvis[:, None, None]
        return torch.einsum("bvcd,bvkd->bvkc", rot, centred) + s * (pelvis[:, None] + transl)[:, :, None]

    @staticmethod
    def _rotations(pose: Tensor, d_orient: Tensor, orient0: Tensor) -> tuple[Tensor, Tensor]:
        """Body rotations ``(B, 23, 3, 3)`` from axis-angle ``pose (B, 69)`` and root rotations
        ``exp(d_orient) @ orient0`` (``d_orient (B, [V,] 3)``), in one Rodrigues call (the loop's
        cost is the number of operations, not their size)."""
        b = pose.shape[0]
        rots = _rodrigues(torch.cat([pose.view(b, 23, 3), d_orient.reshape(b, -1, 3)], dim=1))
        return rots[:, :23], rots[:, 23:].reshape(*d_orient.shape, 3) @ orient0

    def _body_energy(self, body_pose_aa: Tensor, betas: Tensor) -> Tensor:
        """Prior energy ``(B,)`` of the shared body."""
        c = self.config
        energy = c.pose_prior_weight * self.pose_prior(body_pose_aa) + c.shape_prior_weight * shape_prior(betas)
        if c.angle_prior_weight:
            energy = energy + c.angle_prior_weight * angle_prior(body_pose_aa)
        return energy

    # --- optimisation --------------------------------------------------------------------------

    def _stage1_keypoints(self, kp_c: Tensor, body_rot: Tensor, betas: Tensor, pelvis: Tensor, rot: Tensor,
                          transl: Tensor) -> Tensor:
        """Stage-1 keypoints ``(B, V, M, 3)``: the body is fixed, so its canonical keypoints
        ``kp_c`` (computed once) only need each view's root transform."""
        return self._apply_root(kp_c, pelvis, rot, transl)

    def _record(self, iteration: int, value: float) -> None:
        if self.trace is not None:
            self.trace.append((self._stage, iteration, value, time.perf_counter()))

    def _minimise(self, params: Sequence[Tensor], energy: Callable[[], Tensor], iterations: int, stage: int,
                  lr: Optional[float] = None) -> int:
        """Minimise ``energy().sum()`` over ``params``; returns the iterations run.

        Stops after ``iterations`` or once the relative energy change has stayed below
        ``rel_tol`` for ``patience`` consecutive iterations. Adam takes one step per iteration;
        L-BFGS one quasi-Newton step with a strong-Wolfe line search (several evaluations).
        """
        c = self.config
        self._stage = stage
        if iterations == 0 or not params:
            return 0
        if c.optimizer == "lbfgs":
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
                raise FloatingPointError(f"fitting energy became {value} at iteration {it} of stage {self._stage}")
            if c.patience and abs(previous - value) <= c.rel_tol * max(abs(previous), 1e-12):
                calm += 1
                if calm >= c.patience:
                    return it + 1
            else:
                calm = 0
            previous = value
        return iterations

    def _lbfgs_step(self, params: Sequence[Tensor], energy: Callable[[], Tensor]) -> Callable[[int], float]:
        """One L-BFGS iteration per call (the optimiser keeps its curvature history between calls)."""
        c = self.config
        opt = torch.optim.LBFGS(params, lr=c.lbfgs_lr, max_iter=1, max_eval=25, history_size=c.lbfgs_history,
                                line_search_fn="strong_wolfe", tolerance_grad=1e-12, tolerance_change=0.0)
        cache: dict[str, object] = {}
        current = [0]

        def closure() -> Tensor:
            # torch re-evaluates the point its line search just accepted at the start of every
            # step() call: serve it from the cache instead of running the body again.
            x = [p.detach().clone() for p in params]
            if cache and all(torch.equal(a, b) for a, b in zip(x, cache["x"])):  # type: ignore[arg-type]
                for p, g in zip(params, cache["grad"]):  # type: ignore[arg-type]
                    p.grad = g.clone()
                return cache["loss"]  # type: ignore[return-value]
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

    # --- results ---------------------------------------------------------------------------

    def _errors(self, uv: Tensor, xy: Tensor, conf: Tensor, used: Tensor) -> tuple[Tensor, Tensor]:
        """Per-view ``(B, V)`` and per-bundle ``(B,)`` reprojection errors in pixels over the
        keypoints the body stage weighs, weighted by confidence."""
        w = conf * (self.targets.weights > 0)
        view_err = reprojection_error(uv, xy, w)
        wu = w * used[..., None]
        bundle_err = reprojection_error(uv.flatten(1, 2), xy.flatten(1, 2), wu.flatten(1, 2))
        return view_err, bundle_err

    def _meshes(self, body_rot: Tensor, betas: Tensor, rot: Tensor, transl: Tensor) -> tuple[Tensor, Tensor]:
        """One full forward per bundle, posed per view: vertices ``(B, V, N, 3)``, joints ``(B, V, 24, 3)``."""
        with torch.no_grad():
            out = self.body(body_pose=body_rot, betas=betas)
            pelvis = self._rest_pelvis(betas)[:, None, None]

            def place(x: Tensor) -> Tensor:
                return torch.einsum("bvcd,bnd->bvnc", rot, x - pelvis[:, 0]) + (pelvis + transl[:, :, None])
            return place(out.vertices), place(out.joints)


def _check_tensor(x: Tensor, shape: tuple, name: str) -> None:
    if not isinstance(x, Tensor) or tuple(x.shape) != shape:
        actual = tuple(x.shape) if isinstance(x, Tensor) else type(x).__name__
        raise ValueError(f"{name} must be {shape}, got {actual}")


class MVSMPLify(FittingEngine):
    """Multi-view SMPLify with a ``per_view`` (paper) and a ``calibrated`` (rig) camera mode.

    Args:
        body: the body model (free or SMPL); its device and dtype are used throughout.
        config: weights, iterations, optimiser and mode (defaults: SPIN/MV-SPIN values).
        keypoint_set: name of the keypoint convention of the inputs (e.g. ``"openpose25"``).

    Example:
        >>> fitter = MVSMPLify(BodyModel.free("low"), MVSMPLifyConfig(mode="calibrated"), "openpose25")
        >>> result = fitter.fit(keypoints, cameras=rig)   # keypoints (B, V, 25, 3) image pixels
        >>> result.world_orient.shape, result.reprojection_error.shape
        (torch.Size([B, 3, 3]), torch.Size([B]))
    """

    def __init__(self, body: BodyModel, config: Optional[MVSMPLifyConfig] = None,
                 keypoint_set: str = "openpose25") -> None:
        super().__init__(body, config if config is not None else MVSMPLifyConfig(), keypoint_set)

    def fit(
        self,
        keypoints: Tensor,
        init: Optional[PerViewEstimate] = None,
        cameras: Optional[CameraTensors | Rig] = None,
        *,
        return_meshes: bool = False,
    ) -> FitResult:
        """Fit in the configured mode (see :meth:`fit_per_view` and :meth:`fit_calibrated`)."""
        if self.config.mode == "per_view":
            if init is None:
                raise ValueError("the per_view mode needs per-view estimates (init=PerViewEstimate(...))")
            return self.fit_per_view(keypoints, init, return_meshes=return_meshes)
        if cameras is None:
            raise ValueError("the calibrated mode needs cameras (a Rig or CameraTensors)")
        return self.fit_calibrated(keypoints, cameras, init, return_meshes=return_meshes)

    # --- per-view (paper) mode ------------------------------------------------------------------

    def fit_per_view(self, keypoints: Tensor, init: PerViewEstimate, *, return_meshes: bool = False) -> FitResult:
        """MV-SMPLify with unknown cameras (MV-SPIN).

        Args:
            keypoints: ``(B, V, K, 3)`` crop-pixel keypoints (x, y, confidence) of each view.
            init: per-view regressor estimates (rotmat, betas and crop camera per view).
            return_meshes: also compute vertices and joints (once, at the end).

        Returns:
            :class:`FitResult` with shared ``body_pose``/``betas`` and per-view
            ``global_orient``/``transl``/``cam`` in each view's crop camera frame.
        """
        return _fit_crop_views(self, keypoints, init, "per_view", return_meshes)

    # --- calibrated (rig) mode ------------------------------------------------------------------

    def fit_calibrated(
        self,
        keypoints: Tensor,
        cameras: CameraTensors | Rig,
        init: Optional[PerViewEstimate] = None,
        *,
        return_meshes: bool = False,
    ) -> FitResult:
        """One body in the rig's world frame fitted to the keypoints of all cameras.

        Args:
            keypoints: ``(B, V, K, 3)`` image-pixel keypoints (x, y, confidence) per camera.
            cameras: a :class:`~calibration.Rig` of V cameras or :class:`~calibration.CameraTensors`
                with leading dims ``(V,)`` or ``(B, V)``.
            init: optional per-view regressor estimates (orientations in each camera's frame);
                without them (or with ``calibrated_init="triangulation"``) the fit starts from
                the mean pose oriented on triangulated torso keypoints.
            return_meshes: also compute vertices and joints (once, at the end).

        Returns:
            :class:`FitResult` with ``world_orient``/``world_transl`` and the same body seen
            from every camera in ``global_orient``/``transl``.
        """
        c = self.config
        cams = _camera_tensors(cameras, self.dtype, self.device)
        v = cams.K.shape[-3]
        if cams.K.ndim not in (3, 4):
            raise ValueError(f"cameras must have leading dims (V,) or (B, V), got K of shape {tuple(cams.K.shape)}")
        xy, conf = self._prepare_keypoints(keypoints, views=v)
        conf_given = conf  # per-view errors are reported for every view, also ignored ones
        b = xy.shape[0]
        if cams.K.ndim == 4 and cams.K.shape[0] != b:
            raise ValueError(f"cameras are given for {cams.K.shape[0]} bundles but keypoints for {b}")
        use_network = init is not None and c.calibrated_init in ("auto", "network")
        if c.calibrated_init == "network" and init is None:
            raise ValueError("calibrated_init='network' needs per-view estimates (init=...)")
        if init is not None:
            init.check(b, v, self.body.num_betas, need_cam=False)

        # Robust triangulation: a consensus that finds wrong-person views, and the start when
        # there is no network estimate.
        tri = triangulate_points(xy, conf, cams, c.triangulation_threshold_px)
        seen = conf > 0
        view_used = seen.any(-1)
        if c.outlier_view_fraction > 0 and v >= 3:
            checkable = (seen & tri.valid[:, None]).sum(-1)
            agree = (tri.inliers & seen).sum(-1)
            wrong = (checkable >= 3) & (agree < c.outlier_view_fraction * checkable)
            view_used = view_used & ~wrong
        conf = conf * view_used[..., None]
        fitted = view_used.any(-1)
        fit_mask = fitted.to(self.dtype)

        R_c = cams.R.expand(b, v, 3, 3) if cams.R.ndim == 3 else cams.R
        t_c = cams.t.expand(b, v, 3) if cams.t.ndim == 2 else cams.t
        weights = view_used.to(self.dtype)
        avg_w = torch.where(fitted[:, None], weights, torch.ones_like(weights))
        if use_network:
            body_rot0 = so3_mean(init.rotmat[:, :, 1:].to(self.device, self.dtype), avg_w[..., None], dim=1)
            view_orient = init.rotmat[:, :, 0].to(self.device, self.dtype)
            if init.crop_center is not None:  # the estimate is relative to its crop's camera
                K_c = cams.K.expand(b, v, 3, 3) if cams.K.ndim == 3 else cams.K
                view_orient = crop_camera_rotation(init.crop_center.to(self.device, self.dtype), K_c).transpose(
                    -1, -2) @ view_orient
            world_views = R_c.transpose(-1, -2) @ view_orient
            orient0 = so3_mean(world_views, avg_w, dim=1)
            betas0 = (avg_w[..., None] * init.betas.to(self.device, self.dtype)).sum(1) / avg_w.sum(1, keepdim=True)
        else:
            body_rot0, betas0 = self._mean_body(b)
            orient0 = self._orient_from_triangulation(body_rot0, betas0, tri.points, tri.valid, R_c, view_used)
        kp_c = self._canonical_keypoints(body_rot0, betas0).detach()
        transl0 = self._linear_translation(kp_c, self._rest_pelvis(betas0), orient0, xy, conf, cams)

        project = lambda kp: perspective_projection(kp, cams.K, cams.R, cams.t, cams.dist)  # noqa: E731
        w_torso = conf.square() * self.targets.torso
        w_body = conf.square() * self.targets.weights
        sigma = c.sigma
        pose = matrix_to_axis_angle(body_rot0).reshape(b, 69).detach().clone().requires_grad_(True)
        betas = betas0.detach().clone().requires_grad_(True)
        d_orient = torch.zeros(b, 3, dtype=self.dtype, device=self.device, requires_grad=True)
        transl = transl0.clone().requires_grad_(True)

        def posed() -> Tensor:
            """Matched keypoints ``(B, 1, M, 3)`` of the current body in the world frame."""
            body_rot, rot = self._rotations(pose, d_orient, orient0)
            return self._view_keypoints(body_rot, betas, rot[:, None], transl[:, None])

        it0 = 0
        if not use_network and c.triangulation_fit_iterations:
            # Stage 0: from the mean pose, first fit the triangulated keypoints in 3D. Residuals
            # are scaled to pixels (focal / depth) and weighted by the views seeing them, so the
            # priors weigh as in the 2D energy.
            w3 = (tri.valid & seen.any(1)).to(self.dtype) * self.targets.weights
            # Too few 3D points (e.g. a bundle seen by one camera): only the priors would act,
            # pulling the pose to the prior's centre, so such bundles skip stage 0.
            mask0 = fit_mask * ((w3 > 0).sum(-1) >= _MIN_POINTS_3D)
            depth = torch.einsum("bvij,bj->bvi", R_c, tri.points.mean(1))[..., 2] + t_c[..., 2]
            focal = 0.5 * (cams.K[..., 0, 0] + cams.K[..., 1, 1]).expand(b, v)
            px_per_m = (focal / depth.clamp_min(0.1) * weights).sum(1) / weights.sum(1).clamp_min(1.0)
            n_views = weights.sum(1)
            target3 = tri.points.to(self.dtype)

            def stage0() -> Tensor:
                res = (posed()[:, 0] - target3) * px_per_m[:, None, None]
                rep = (w3 * gmof(res, sigma).sum(-1)).sum(-1) * n_views
                return (rep + self._body_energy(pose, betas)) * mask0

            it0 = self._minimise([pose, betas, d_orient, transl], stage0, c.triangulation_fit_iterations, stage=0,
                                 lr=c.triangulation_fit_lr)

        with torch.no_grad():
            body_rot1 = _rodrigues(pose.view(b, 23, 3))
            kp_c = self._canonical_keypoints(body_rot1, betas).detach()
            pelvis1 = self._rest_pelvis(betas).detach()
            betas1 = betas.detach().clone()

        def stage1() -> Tensor:
            rot = _rodrigues(d_orient) @ orient0
            kp = self._stage1_keypoints(kp_c, body_rot1, betas1, pelvis1, rot[:, None], transl[:, None])
            return reprojection_energy(project(kp), xy, w_torso, sigma).sum(-1) * fit_mask

        it1 = self._minimise([d_orient, transl], stage1, c.stage1_iterations, stage=1)

        def stage2_terms() -> tuple[Tensor, Tensor]:
            uv = project(posed())
            return uv, reprojection_energy(uv, xy, w_body, sigma).sum(-1) + self._body_energy(pose, betas)

        it2 = self._minimise([pose, betas, d_orient, transl], lambda: stage2_terms()[1] * fit_mask,
                             c.stage2_iterations, stage=2)

        with torch.no_grad():
            uv, energy = stage2_terms()
            body_rot, orient = self._rotations(pose, d_orient, orient0)
            # Unfitted bundles keep their start exactly (no round trip through axis-angle).
            body_rot = torch.where(fitted[:, None, None, None], body_rot, body_rot0)
            orient = torch.where(fitted[:, None, None], orient, orient0)
            betas_out = betas.detach()
            transl_out = transl.detach()
            view_err, bundle_err = self._errors(uv, xy, conf_given, view_used)
            pelvis = self._rest_pelvis(betas_out)
            cam_orient = R_c @ orient[:, None]
            # Same body in camera v: R_c (R (x - J0) + J0 + T) + t_c = (R_c R)(x - J0) + J0 + T_v.
            cam_transl = torch.einsum("bvij,bj->bvi", R_c, pelvis + transl_out) + t_c - pelvis[:, None]
            result = FitResult(
                mode="calibrated", body_model=self.body.name, keypoint_set=self.keypoint_set,
                body_pose=body_rot, betas=betas_out, global_orient=cam_orient, transl=cam_transl,
                world_orient=orient, world_transl=transl_out,
                reprojection_error=torch.where(fitted, bundle_err, torch.full_like(bundle_err, math.inf)),
                view_reprojection_error=view_err,
                energy=torch.where(fitted, energy, torch.full_like(energy, math.inf)),
                fitted=fitted, view_used=view_used, iterations=(it1, it2), iterations_3d=it0,
            )
            if return_meshes:
                verts, joints = self._meshes(body_rot, betas_out, orient[:, None], transl_out[:, None])
                result.world_vertices, result.world_joints = verts[:, 0], joints[:, 0]
                result.vertices = torch.einsum("bvij,bnj->bvni", R_c, result.world_vertices) + t_c[:, :, None]
                result.joints = torch.einsum("bvij,bnj->bvni", R_c, result.world_joints) + t_c[:, :, None]
        return result

    def _mean_body(self, b: int) -> tuple[Tensor, Tensor]:
        """The model's mean body pose ``(B, 23, 3, 3)`` and betas ``(B, num_betas)``."""
        mp = self.body.mean_params_tensors(self.device)
        rot = rot6d_to_matrix(mp["pose"].to(self.dtype).reshape(24, 6))[1:]
        betas = mp["shape"].to(self.dtype)[: self.body.num_betas]
        return rot.expand(b, 23, 3, 3).clone(), betas.expand(b, -1).clone()

    def _orient_from_triangulation(self, body_rot: Tensor, betas: Tensor, points: Tensor, valid: Tensor,
                                   R_c: Tensor, view_used: Tensor) -> Tensor:
        """World root orientation ``(B, 3, 3)`` aligning the model's torso keypoints to the
        triangulated ones (weighted Kabsch); where fewer than 3 torso points triangulate, an
        upright body facing the first usable camera."""
        model = self._canonical_keypoints(body_rot, betas)[:, 0]  # (B, M, 3)
        w = (valid & self.targets.torso).to(self.dtype)  # (B, M)
        wn = w / w.sum(-1, keepdim=True).clamp_min(1e-12)
        a = model - (wn[..., None] * model).sum(1, keepdim=True)
        p = points.to(self.dtype)
        q = p - (wn[..., None] * p).sum(1, keepdim=True)
        H = torch.einsum("bm,bmi,bmj->bij", w, q, a)  # sum w q a^T: R maps a onto q
        U, _, Vh = torch.linalg.svd(H)
        d = torch.sign(torch.det(U @ Vh))
        D = torch.diag_embed(torch.stack([torch.ones_like(d), torch.ones_like(d), d], -1))
        kabsch = U @ D @ Vh
        first = torch.argmax(view_used.to(torch.int64), dim=1)  # first usable view (0 if none)
        Rf = R_c[torch.arange(R_c.shape[0], device=R_c.device), first]
        facing = Rf.transpose(-1, -2) @ _FACING_CAMERA.to(self.device, self.dtype)
        enough = (w > 0).sum(-1) >= 3
        return torch.where(enough[:, None, None], kabsch, facing)

    def _linear_translation(self, kp_c: Tensor, pelvis: Tensor, orient: Tensor, xy: Tensor, conf: Tensor,
                            cams: CameraTensors) -> Tensor:
        """World translation ``(B, 3)`` that best projects the posed body onto the keypoints.

        With root orientation and body fixed, ``x ~ R_c (P_k + T) + t_c`` is linear in T: two
        equations per keypoint and view in undistorted normalised coordinates, weighted by
        confidence. Works from one view on (the body's size fixes the depth)."""
        b = xy.shape[0]
        P = self._apply_root(kp_c, pelvis, orient[:, None], torch.zeros(b, 1, 3, dtype=self.dtype, device=self.device))
        P = P[:, 0]  # (B, M, 3) world points without translation
        R = cams.R if cams.R.ndim == 4 else cams.R.expand(b, *cams.R.shape)
        t = cams.t if cams.t.ndim == 3 else cams.t.expand(b, *cams.t.shape)
        obs = undistort_points(xy, cams.K, cams.dist)  # (B, V, M, 2)
        Q = torch.einsum("bvij,bmj->bvmi", R, P) + t[:, :, None]  # camera coords without T
        # rows of x * r3 - r1 (and y * r3 - r2) times T = Q_x - x Q_z (and Q_y - y Q_z)
        A = obs[..., None] * R[:, :, None, 2:3, :] - R[:, :, None, :2, :]  # (B, V, M, 2, 3)
        rhs = Q[..., :2] - obs * Q[..., 2:3]  # (B, V, M, 2)
        w = conf.square()[..., None, None]
        AtA = (w * A.transpose(-1, -2) @ A).sum((1, 2))
        Atb = (w * A.transpose(-1, -2) @ rhs[..., None]).sum((1, 2))
        AtA = AtA + 1e-9 * torch.eye(3, dtype=self.dtype, device=self.device)  # bundles with no keypoints
        return torch.linalg.solve(AtA, Atb)[..., 0]


def _camera_tensors(cameras: CameraTensors | Rig, dtype: torch.dtype, device: torch.device) -> CameraTensors:
    if isinstance(cameras, Rig):
        return cameras.to_torch(dtype, device)
    if isinstance(cameras, CameraTensors):
        return cameras.to(device, dtype)
    raise TypeError(f"cameras must be a calibration.Rig or calibration.CameraTensors, got {type(cameras).__name__}")


def _fit_crop_views(engine: FittingEngine, keypoints: Tensor, init: PerViewEstimate, mode: str,
                    return_meshes: bool) -> FitResult:
    """The crop-camera fit shared by MV-SMPLify's per-view mode (V views) and SMPLify (V = 1)."""
    c = engine.config
    dtype, device = engine.dtype, engine.device
    xy, conf = engine._prepare_keypoints(keypoints)
    b, v = xy.shape[:2]
    if not isinstance(init, PerViewEstimate):
        raise TypeError(f"init must be a PerViewEstimate, got {type(init).__name__}")
    init.check(b, v, engine.body.num_betas, need_cam=True)
    rotmat = init.rotmat.to(device, dtype)
    view_used = (conf > 0).any(-1)
    fitted = view_used.any(-1)
    fit_mask = fitted.to(dtype)
    weights = view_used.to(dtype)
    avg_w = torch.where(fitted[:, None], weights, torch.ones_like(weights))
    body_rot0 = so3_mean(rotmat[:, :, 1:], avg_w[..., None], dim=1) if v > 1 else rotmat[:, 0, 1:]
    betas0 = (avg_w[..., None] * init.betas.to(device, dtype)).sum(1) / avg_w.sum(1, keepdim=True)
    orient0 = rotmat[:, :, 0]
    transl0 = crop_cam_to_translation(init.cam.to(device, dtype), c.focal_length, c.crop_size)
    focal, centre = float(c.focal_length), c.crop_size / 2.0

    def project(kp: Tensor) -> Tensor:
        # The crop camera (focal f, principal point at the crop centre, no distortion) written
        # out: the same as perspective_projection(kp, crop_intrinsics()) in a quarter of the ops.
        return focal * kp[..., :2] / kp[..., 2:].clamp_min(_MIN_DEPTH) + centre

    w_torso = conf.square() * engine.targets.torso
    w_body = conf.square() * engine.targets.weights
    sigma = c.sigma

    d_orient = torch.zeros(b, v, 3, dtype=dtype, device=device, requires_grad=True)
    transl = transl0.clone().requires_grad_(True)
    kp_c = engine._canonical_keypoints(body_rot0, betas0).detach()
    pelvis0 = engine._rest_pelvis(betas0)

    # Stage 1 weighs the torso with the same robust function as stage 2 (SPIN's camera stage uses
    # a plain square; both agree for residuals well below sigma, and GMoF keeps one wrong torso
    # detection from dragging the camera).
    def stage1() -> Tensor:
        rot = _rodrigues(d_orient) @ orient0
        kp = engine._stage1_keypoints(kp_c, body_rot0, betas0, pelvis0, rot, transl)
        rep = reprojection_energy(project(kp), xy, w_torso, sigma).sum(-1)
        # SPIN's depth anchor keeps each crop camera near the network's depth.
        anchor = c.depth_anchor_weight * ((transl[..., 2] - transl0[..., 2]).square() * weights).sum(-1)
        return (rep + anchor) * fit_mask

    it1 = engine._minimise([d_orient, transl], stage1, c.stage1_iterations, stage=1)

    pose = matrix_to_axis_angle(body_rot0).reshape(b, 69).detach().clone().requires_grad_(True)
    betas = betas0.detach().clone().requires_grad_(True)

    def stage2_terms() -> tuple[Tensor, Tensor]:
        body_rot, rot = engine._rotations(pose, d_orient, orient0)
        uv = project(engine._view_keypoints(body_rot, betas, rot, transl))
        return uv, reprojection_energy(uv, xy, w_body, sigma).sum(-1) + engine._body_energy(pose, betas)

    params = [pose, betas, d_orient] + ([transl] if c.stage2_translation else [])
    it2 = engine._minimise(params, lambda: stage2_terms()[1] * fit_mask, c.stage2_iterations, stage=2)

    with torch.no_grad():
        uv, energy = stage2_terms()
        body_rot, orient = engine._rotations(pose, d_orient, orient0)
        body_rot = torch.where(fitted[:, None, None, None], body_rot, body_rot0)
        orient = torch.where(fitted[:, None, None, None], orient, orient0)
        transl_out = transl.detach()
        view_err, bundle_err = engine._errors(uv, xy, conf, view_used)
        result = FitResult(
            mode=mode, body_model=engine.body.name, keypoint_set=engine.keypoint_set,
            body_pose=body_rot, betas=betas.detach(), global_orient=orient, transl=transl_out,
            cam=translation_to_crop_cam(transl_out, c.focal_length, c.crop_size),
            reprojection_error=torch.where(fitted, bundle_err, torch.full_like(bundle_err, math.inf)),
            view_reprojection_error=view_err,
            energy=torch.where(fitted, energy, torch.full_like(energy, math.inf)),
            fitted=fitted, view_used=view_used, iterations=(it1, it2),
        )
        if return_meshes:
            result.vertices, result.joints = engine._meshes(body_rot, result.betas, orient, transl_out)
    return result
