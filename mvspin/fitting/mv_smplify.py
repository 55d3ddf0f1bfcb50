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

The shared machinery (keypoint backend, energies, optimiser, the crop-camera fit) is
:class:`~mvspin.fitting.engine.FittingEngine`. Both modes run SPIN's two stages: stage 1 fits root orientation(s) and translation(s) on the torso
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
triangulated consensus (typically another person picked by the detector) is ignored too;
cameras that cannot describe the keypoints raise
:class:`~mvspin.fitting.camera_checks.CameraMismatchError`, and a bundle the fit does not
explain (``max_relative_reprojection_error``) is reported unfitted.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Callable, Optional

import torch
from torch import Tensor

from calibration import CameraTensors, Rig, Triangulation, project_points_jacobian, triangulate_points, undistort_points
from mvspin.body import BodyModel
from mvspin.fitting import lm_models
from mvspin.fitting.camera_checks import check_camera_values, check_cameras_explain_keypoints
from mvspin.fitting.compiled import MaybeCompiled
from mvspin.fitting.config import MVSMPLifyConfig
from mvspin.fitting.engine import FittingEngine
from mvspin.fitting.losses import gmof
from mvspin.fitting.result import FitResult, PerViewEstimate
from mvspin.fitting.view_estimates import WorldEstimate, world_estimate_from_views
from mvspin.geometry import (
    axis_angle_to_matrix,
    matrix_to_axis_angle,
    perspective_projection,
    rot6d_to_matrix,
)

__all__ = ["MVSMPLify"]

# Stage 0 needs this many triangulated keypoints in a bundle to say anything about its pose.
_MIN_POINTS_3D = 6
# Axis flip taking SMPL's body axes (Y up, facing +Z) to an upright body facing an OpenCV camera
# (y down, z forward): 180 degrees about x.
_FACING_CAMERA = torch.tensor([[1.0, 0.0, 0.0], [0.0, -1.0, 0.0], [0.0, 0.0, -1.0]])


@dataclass
class _CalibratedInputs:
    """A calibrated fit's checked inputs: matched keypoints, cameras per bundle and view, the
    robust triangulation, and which views and bundles take part."""

    xy: Tensor  # (B, V, M, 2) image pixels
    conf: Tensor  # (B, V, M) zero outside the views used
    conf_given: Tensor  # (B, V, M) as given (per-view errors are reported for every view)
    cams: CameraTensors
    R: Tensor  # (B, V, 3, 3) world-to-camera
    t: Tensor  # (B, V, 3)
    tri: Triangulation
    view_used: Tensor  # (B, V) bool
    fitted: Tensor  # (B,) bool

    @property
    def fit_mask(self) -> Tensor:
        return self.fitted.to(self.xy.dtype)

    @property
    def view_weight(self) -> Tensor:
        return self.view_used.to(self.xy.dtype)

    def project(self, points: Tensor) -> Tensor:
        """World points ``(B, 1, M, 3)`` -> pixels ``(B, V, M, 2)`` in every camera."""
        c = self.cams
        return perspective_projection(points, c.K, c.R, c.t, c.dist)

    def project_with_jacobian(self, points: Tensor) -> tuple[Tensor, Tensor]:
        """World points ``(B, M, 3)`` -> pixels ``(B, V, M, 2)`` in every camera and their
        derivatives ``(B, V, M, 2, 3)`` by the points, in closed form (the LM systems: inside
        ``torch.compile`` an autograd pass would break the graph)."""
        c = self.cams
        return project_points_jacobian(points[:, None], c.K, c.R, c.t, c.dist)


@dataclass
class _CalibratedStart:
    """Where a calibrated fit starts: body pose ``(B, 23, 3, 3)``, betas, world orientation
    ``(B, 3, 3)`` and translation ``(B, 3)``."""

    body_rot: Tensor
    betas: Tensor
    orient: Tensor
    transl: Tensor
    from_network: Tensor  # (B,) bool: started from a network (world) estimate, so no stage 0


class _WorldBody:
    """The optimised parameters of a world-frame body: axis-angle pose ``(B, 69)``, betas, an
    orientation increment ``d_orient (B, 3)`` on the start orientation, and translation."""

    def __init__(self, start: _CalibratedStart) -> None:
        b = start.betas.shape[0]
        self.orient0 = start.orient
        self.pose = matrix_to_axis_angle(start.body_rot).reshape(b, 69).detach().clone().requires_grad_(True)
        self.betas = start.betas.detach().clone().requires_grad_(True)
        self.d_orient = torch.zeros(b, 3, dtype=start.betas.dtype, device=start.betas.device, requires_grad=True)
        self.transl = start.transl.detach().clone().requires_grad_(True)


class MVSMPLify(FittingEngine):
    """Multi-view SMPLify with a ``per_view`` (paper) and a ``calibrated`` (rig) camera mode.

    Args:
        body: the body model (free or SMPL); its device and dtype are used throughout.
        config: weights, iterations, optimiser and mode (defaults: the ``mvspin`` preset; see
            :meth:`MVSMPLifyConfig.preset` for ``spin`` and ``mvspin_paper``).
        keypoint_set: name of the keypoint convention of the inputs (e.g. ``"openpose25"``).

    Example (2 bundles of 4 views, crop-pixel keypoints; ``mode="calibrated"`` and
    ``fit(keypoints, cameras=rig)`` for a calibrated rig):
        >>> fitter = MVSMPLify(BodyModel.free("low"), MVSMPLifyConfig(stage1_iterations=2, stage2_iterations=2))
        >>> keypoints = torch.rand(2, 4, 25, 3) * torch.tensor([224.0, 224.0, 1.0])  # x, y, confidence
        >>> init = PerViewEstimate(rotmat=torch.eye(3).expand(2, 4, 24, 3, 3), betas=torch.zeros(2, 4, 10),
        ...                        cam=torch.tensor([0.9, 0.0, 0.0]).expand(2, 4, 3))
        >>> result = fitter.fit_per_view(keypoints, init)
        >>> result.body_pose.shape, result.global_orient.shape, result.fitted.tolist()
        (torch.Size([2, 23, 3, 3]), torch.Size([2, 4, 3, 3]), [True, True])
    """

    config: MVSMPLifyConfig

    def __init__(self, body: BodyModel, config: Optional[MVSMPLifyConfig] = None,
                 keypoint_set: str = "openpose25") -> None:
        super().__init__(body, config if config is not None else MVSMPLifyConfig(), keypoint_set)
        # The calibrated mode's stage energies as functions of tensors only (compiled with
        # ``compile``, as the engine's crop-camera stages).
        self._world_stage0: Callable[..., Tensor] = self._world_stage0_energy
        self._world_stage2: Callable[..., tuple[Tensor, Tensor]] = self._world_stage2_terms
        if self.config.compile and self.config.keypoint_backend == "fast":
            self._world_stage0 = MaybeCompiled(self._world_stage0_energy, "fitting stage 0")
            self._world_stage2 = MaybeCompiled(self._world_stage2_terms, "fitting stage 2")

    def _world_keypoints(self, pose: Tensor, betas: Tensor, d_orient: Tensor, transl: Tensor,
                         orient0: Tensor) -> Tensor:
        """World keypoints ``(B, 1, M, 3)`` of :class:`_WorldBody`'s unknowns."""
        body_rot, orient = self.rotations(pose, d_orient, orient0)
        return self.posed_keypoints(body_rot, betas, orient[:, None], transl[:, None])

    def _world_stage0_energy(self, pose: Tensor, betas: Tensor, d_orient: Tensor, transl: Tensor, orient0: Tensor,
                             target: Tensor, px_per_m: Tensor, w3: Tensor, n_views: Tensor) -> Tensor:
        """Stage 0 energy ``(B,)``: the triangulated keypoints ``target (B, M, 3)`` in 3D, residuals
        scaled to pixels by ``px_per_m (B,)`` and weighted by the number of views."""
        res = (self._world_keypoints(pose, betas, d_orient, transl, orient0)[:, 0] - target) * px_per_m[:, None, None]
        rep = (w3 * gmof(res, self.config.sigma).sum(-1)).sum(-1) * n_views
        return rep + self.body_prior_energy(pose, betas)

    def _world_stage2_terms(self, pose: Tensor, betas: Tensor, d_orient: Tensor, transl: Tensor, orient0: Tensor,
                            cams: CameraTensors, xy: Tensor, w2: Tensor) -> tuple[Tensor, Tensor]:
        """Stage 2: pixels ``(B, V, M, 2)`` of the world body in every camera and energy ``(B,)``."""
        kp = self._world_keypoints(pose, betas, d_orient, transl, orient0)
        uv = perspective_projection(kp, cams.K, cams.R, cams.t, cams.dist)
        return uv, self.stage2_energy(uv, xy, w2, pose, betas)

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
        return self.fit_crop_cameras(keypoints, init, mode="per_view", return_meshes=return_meshes)

    # --- calibrated (rig) mode ------------------------------------------------------------------

    def fit_calibrated(
        self,
        keypoints: Tensor,
        cameras: CameraTensors | Rig,
        init: Optional[PerViewEstimate | WorldEstimate] = None,
        *,
        return_meshes: bool = False,
    ) -> FitResult:
        """One body in the rig's world frame fitted to the keypoints of all cameras.

        Initialisation (:meth:`calibrated_start`), then without a network estimate stage 0 (a 3D
        fit to the triangulated keypoints), then stages 1 and 2 in image pixels.

        Args:
            keypoints: ``(B, V, K, 3)`` image-pixel keypoints (x, y, confidence) per camera.
            cameras: a :class:`~calibration.Rig` of V cameras or :class:`~calibration.CameraTensors`
                with leading dims ``(V,)`` or ``(B, V)``; world-to-camera extrinsics in metres.
            init: optional per-view regressor estimates (orientations in each camera's frame) or
                a :class:`~mvspin.fitting.view_estimates.WorldEstimate` (already fused in the
                world frame; its invalid bundles start from triangulation); without them (or
                with ``calibrated_init="triangulation"``) the fit starts from the mean pose
                oriented on triangulated torso keypoints.
            return_meshes: also compute vertices and joints (once, at the end).

        Returns:
            :class:`FitResult` with ``world_orient``/``world_transl`` and the same body seen
            from every camera in ``global_orient``/``transl``. A bundle whose fit does not
            explain its keypoints (``max_reprojection_error``) is reported ``fitted=False``.

        Raises:
            CameraMismatchError: the cameras cannot describe the capture (NaN or infinite
                values, a rotation that is not one, a rig in millimetres, keypoints that
                triangulate behind the cameras).
        """
        data = self._calibrated_inputs(keypoints, cameras, init)
        start = self.calibrated_start(data, init)
        body = _WorldBody(start)
        it0 = self._calibrated_stage0(data, body, start.from_network) if not bool(start.from_network.all()) else 0
        it1 = self._calibrated_stage1(data, body)
        it2 = self._calibrated_stage2(data, body)
        return self._calibrated_result(data, start, body, (it0, it1, it2), return_meshes)

    def _calibrated_inputs(self, keypoints: Tensor, cameras: CameraTensors | Rig,
                           init: Optional[PerViewEstimate | WorldEstimate]) -> _CalibratedInputs:
        """Check keypoints, cameras and estimates; triangulate; drop views of another person."""
        c = self.config
        cams = _camera_tensors(cameras, self.dtype, self.device)
        if cams.K.ndim not in (3, 4):
            raise ValueError(f"cameras must have leading dims (V,) or (B, V), got K of shape {tuple(cams.K.shape)}")
        check_camera_values(cams)
        v = cams.K.shape[-3]
        xy, conf = self.prepare_keypoints(keypoints, views=v)
        b = xy.shape[0]
        if cams.K.ndim == 4 and cams.K.shape[0] != b:
            raise ValueError(f"cameras are given for {cams.K.shape[0]} bundles but keypoints for {b}")
        if c.calibrated_init == "network" and init is None:
            raise ValueError("calibrated_init='network' needs per-view estimates (init=...)")
        if isinstance(init, WorldEstimate):
            init.check(b, self.body.num_betas)
        elif init is not None:
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
        R = cams.R.expand(b, v, 3, 3) if cams.R.ndim == 3 else cams.R
        t = cams.t.expand(b, v, 3) if cams.t.ndim == 2 else cams.t
        return _CalibratedInputs(xy=xy, conf=conf * view_used[..., None], conf_given=conf, cams=cams, R=R, t=t,
                                 tri=tri, view_used=view_used, fitted=view_used.any(-1))

    def calibrated_start(self, data: _CalibratedInputs,
                         init: Optional[PerViewEstimate | WorldEstimate]) -> _CalibratedStart:
        """Initial world body: from the network's per-view estimates mapped through the camera
        rotations (and each crop's camera when ``crop_center`` is given,
        :func:`~mvspin.fitting.view_estimates.world_estimate_from_views`) or a given world
        estimate, else (and for the bundles a world estimate marks invalid) from the mean pose
        oriented on the triangulated torso; the translation then follows from a linear solve."""
        b, v = data.xy.shape[:2]
        use_network = init is not None and self.config.calibrated_init in ("auto", "network")
        est: Optional[WorldEstimate] = None
        if use_network and isinstance(init, PerViewEstimate):
            w = data.view_weight
            avg_w = torch.where(data.fitted[:, None], w, torch.ones_like(w))
            est = world_estimate_from_views(
                init.rotmat.to(self.device, self.dtype), init.betas.to(self.device, self.dtype), data.R, avg_w,
                None if init.crop_center is None else init.crop_center.to(self.device, self.dtype), data.cams.K)
        elif use_network:
            assert isinstance(init, WorldEstimate)
            est = init.to(self.device, self.dtype)
        from_network = torch.zeros(b, dtype=torch.bool, device=self.device) if est is None \
            else est.valid.to(self.device, torch.bool)
        if bool(from_network.all()):
            assert est is not None
            body_rot, betas, orient = est.body_pose, est.betas, est.global_orient
        else:
            body_rot, betas = self._mean_body(b)
            orient = self._orient_from_triangulation(body_rot, betas, data)
            if est is not None:
                body_rot = torch.where(from_network[:, None, None, None], est.body_pose, body_rot)
                betas = torch.where(from_network[:, None], est.betas, betas)
                orient = torch.where(from_network[:, None, None], est.global_orient, orient)
        check_cameras_explain_keypoints(self.targets.model_keypoints(self._canonical(body_rot, betas)[0]), data.tri,
                                        data.conf > 0)
        transl = self._linear_translation(body_rot, betas, orient, data)
        return _CalibratedStart(body_rot, betas, orient, transl, from_network=from_network)

    def _calibrated_stage0(self, data: _CalibratedInputs, body: _WorldBody, from_network: Tensor) -> int:
        """Stage 0, for the bundles started from the mean pose (not ``from_network``): fit the
        triangulated keypoints in 3D. Residuals are scaled to pixels (focal / depth) and weighted
        by the number of views, so the priors weigh as in the 2D energy."""
        c = self.config
        if not c.triangulation_fit_iterations:
            return 0
        tri, w = data.tri, data.view_weight
        w3 = (tri.valid & (data.conf > 0).any(1)).to(self.dtype) * self.targets.weights
        # Too few 3D points (e.g. a bundle seen by one camera): only the priors would act,
        # pulling the pose to the prior's centre, so such bundles skip stage 0.
        mask0 = data.fit_mask * ((w3 > 0).sum(-1) >= _MIN_POINTS_3D) * (~from_network).to(self.dtype)
        depth = torch.einsum("bvij,bj->bvi", data.R, tri.points.mean(1))[..., 2] + data.t[..., 2]
        focal = 0.5 * (data.cams.K[..., 0, 0] + data.cams.K[..., 1, 1]).expand_as(depth)
        px_per_m = (focal / depth.clamp_min(0.1) * w).sum(1) / w.sum(1).clamp_min(1.0)
        n_views = w.sum(1)
        target = tri.points.to(self.dtype)

        def stage0() -> Tensor:
            return self._world_stage0(body.pose, body.betas, body.d_orient, body.transl, body.orient0, target,
                                      px_per_m, w3, n_views) * mask0

        optimizer = c.triangulation_fit_optimizer or c.optimizer
        if optimizer == "lm":
            system = lm_models.world_stage0_system(self, body.orient0, target, px_per_m, w3, n_views, mask0)
            return self._world_lm(body, system, min(c.triangulation_fit_iterations, c.lm_stage2_iterations), 0,
                                 mask0 > 0)
        return self.minimise([body.pose, body.betas, body.d_orient, body.transl], stage0,
                             c.triangulation_fit_iterations, stage=0, lr=c.triangulation_fit_lr, optimizer=optimizer)

    def _calibrated_stage1(self, data: _CalibratedInputs, body: _WorldBody) -> int:
        """Stage 1: world orientation and translation on the torso, the body held fixed."""
        with torch.no_grad():
            fixed = self.fixed_body_keypoints(axis_angle_to_matrix(body.pose.view(-1, 23, 3)), body.betas)
        w1 = self.stage1_weights(data.conf)
        if self.config.optimizer == "lm":
            with torch.no_grad():
                lin = lm_models.linearise_body(self, body.pose, body.betas, jacobian=False)
            system = lm_models.world_stage1_system(self, lin, body.orient0, data.project_with_jacobian, data.xy, w1,
                                                       data.fit_mask)
            return self._world_lm(body, system, min(self.config.stage1_iterations, self.config.lm_stage1_iterations), 1,
                                 data.fitted, root_only=True)

        def stage1() -> Tensor:
            rot = axis_angle_to_matrix(body.d_orient) @ body.orient0
            uv = data.project(fixed(rot[:, None], body.transl[:, None]))
            return self.stage1_reprojection(uv, data.xy, w1) * data.fit_mask

        return self.minimise([body.d_orient, body.transl], stage1, self.config.stage1_iterations, stage=1)

    def _stage2_terms(self, data: _CalibratedInputs, body: _WorldBody, w2: Tensor) -> tuple[Tensor, Tensor]:
        return self._world_stage2(body.pose, body.betas, body.d_orient, body.transl, body.orient0, data.cams, data.xy, w2)

    def _calibrated_stage2(self, data: _CalibratedInputs, body: _WorldBody) -> int:
        """Stage 2: the whole body (pose, betas, orientation and its world translation)."""
        w2 = self.stage2_weights(data.conf)
        if self.config.optimizer == "lm":
            system = lm_models.world_stage2_system(self, body.orient0, data.project_with_jacobian, data.xy, w2,
                                                       data.fit_mask)
            return self._world_lm(body, system, min(self.config.stage2_iterations, self.config.lm_stage2_iterations), 2,
                                 data.fitted)
        return self.minimise([body.pose, body.betas, body.d_orient, body.transl],
                             lambda: self._stage2_terms(data, body, w2)[1] * data.fit_mask,
                             self.config.stage2_iterations, stage=2)

    def _world_lm(self, body: _WorldBody, system: lm_models.System, iterations: int, stage: int, active: Tensor,
                  root_only: bool = False) -> int:
        """Run Levenberg-Marquardt on the world body's unknowns ``[pose, betas, d_orient,
        transl]`` (only ``[d_orient, transl]`` with ``root_only``) and write the minimiser back."""
        with torch.no_grad():
            parts = [body.d_orient, body.transl] if root_only else [body.pose, body.betas, body.d_orient, body.transl]
            x, its = self.minimise_lm(system, torch.cat(parts, 1), iterations, stage, active)
            for p, v in zip(parts, x.split([q.shape[1] for q in parts], 1)):
                p.copy_(v)
        return its

    def _calibrated_result(self, data: _CalibratedInputs, start: _CalibratedStart, body: _WorldBody,
                           iterations: tuple[int, int, int], return_meshes: bool) -> FitResult:
        with torch.no_grad():
            uv, energy = self._stage2_terms(data, body, self.stage2_weights(data.conf))
            body_rot, orient = self.rotations(body.pose, body.d_orient, body.orient0)
            fitted = data.fitted
            # Unfitted bundles keep their start exactly (no round trip through axis-angle).
            body_rot = torch.where(fitted[:, None, None, None], body_rot, start.body_rot)
            orient = torch.where(fitted[:, None, None], orient, start.orient)
            betas, transl = body.betas.detach(), body.transl.detach()
            view_err, bundle_err = self.reprojection_errors(uv, data.xy, data.conf_given, data.view_used)
            explained = self.explains_keypoints(bundle_err, data.xy, data.conf,
                                                self.config.max_relative_reprojection_error)
            fitted = fitted & explained
            pelvis = self.body.rest_joints(betas)[:, 0]
            cam_orient = data.R @ orient[:, None]
            # Same body in camera v: R_c (R (x - J0) + J0 + T) + t_c = (R_c R)(x - J0) + J0 + T_v.
            cam_transl = torch.einsum("bvij,bj->bvi", data.R, pelvis + transl) + data.t - pelvis[:, None]
            inf = torch.full_like(bundle_err, math.inf)
            result = FitResult(
                mode="calibrated", body_model=self.body.name, keypoint_set=self.keypoint_set,
                body_pose=body_rot, betas=betas, global_orient=cam_orient, transl=cam_transl,
                world_orient=orient, world_transl=transl,
                reprojection_error=torch.where(data.fitted, bundle_err, inf),
                view_reprojection_error=view_err,
                energy=torch.where(data.fitted, energy, inf),
                fitted=fitted, view_used=data.view_used, iterations=iterations[1:], iterations_3d=iterations[0],
            )
            if return_meshes:
                verts, joints = self.meshes(body_rot, betas, orient[:, None], transl[:, None])
                result.world_vertices, result.world_joints = verts[:, 0], joints[:, 0]
                result.vertices = torch.einsum("bvij,bnj->bvni", data.R, result.world_vertices) + data.t[:, :, None]
                result.joints = torch.einsum("bvij,bnj->bvni", data.R, result.world_joints) + data.t[:, :, None]
        return result

    def _mean_body(self, b: int) -> tuple[Tensor, Tensor]:
        """The model's mean body pose ``(B, 23, 3, 3)`` and betas ``(B, num_betas)``."""
        mp = self.body.mean_params_tensors(self.device)
        rot = rot6d_to_matrix(mp["pose"].to(self.dtype).reshape(24, 6))[1:]
        betas = mp["shape"].to(self.dtype)[: self.body.num_betas]
        return rot.expand(b, 23, 3, 3).clone(), betas.expand(b, -1).clone()

    def _canonical(self, body_rot: Tensor, betas: Tensor) -> tuple[Tensor, Tensor]:
        """The body's model-set keypoints with identity root ``(B, K, 3)`` and rest pelvis ``(B, 3)``."""
        with torch.no_grad():
            return self.body.canonical_keypoints(self.targets.model_set, body_rot, betas)

    def _orient_from_triangulation(self, body_rot: Tensor, betas: Tensor, data: _CalibratedInputs) -> Tensor:
        """World root orientation ``(B, 3, 3)`` aligning the model's torso keypoints to the
        triangulated ones (weighted Kabsch); where fewer than 3 torso points triangulate, an
        upright body facing the first usable camera."""
        model = self.targets.model_keypoints(self._canonical(body_rot, betas)[0])  # (B, M, 3)
        w = (data.tri.valid & self.targets.torso).to(self.dtype)  # (B, M)
        wn = w / w.sum(-1, keepdim=True).clamp_min(1e-12)
        a = model - (wn[..., None] * model).sum(1, keepdim=True)
        p = data.tri.points.to(self.dtype)
        q = p - (wn[..., None] * p).sum(1, keepdim=True)
        H = torch.einsum("bm,bmi,bmj->bij", w, q, a)  # sum w q a^T: R maps a onto q
        U, _, Vh = torch.linalg.svd(H)
        d = torch.sign(torch.det(U @ Vh))
        D = torch.diag_embed(torch.stack([torch.ones_like(d), torch.ones_like(d), d], -1))
        kabsch = U @ D @ Vh
        first = torch.argmax(data.view_used.to(torch.int64), dim=1)  # first usable view (0 if none)
        Rf = data.R[torch.arange(data.R.shape[0], device=data.R.device), first]
        facing = Rf.transpose(-1, -2) @ _FACING_CAMERA.to(self.device, self.dtype)
        enough = (w > 0).sum(-1) >= 3
        return torch.where(enough[:, None, None], kabsch, facing)

    def _linear_translation(self, body_rot: Tensor, betas: Tensor, orient: Tensor, data: _CalibratedInputs) -> Tensor:
        """World translation ``(B, 3)`` that best projects the posed body onto the keypoints.

        With root orientation and body fixed, ``x ~ R_c (P_k + T) + t_c`` is linear in T: two
        equations per keypoint and view in undistorted normalised coordinates, weighted by
        confidence. Works from one view on (the body's size fixes the depth)."""
        b = data.xy.shape[0]
        kp_c, pelvis = self._canonical(body_rot, betas)
        zero = torch.zeros(b, 1, 3, dtype=self.dtype, device=self.device)
        P = self.targets.model_keypoints(self.body.apply_root(self.targets.model_set, kp_c, pelvis, orient[:, None],
                                                              zero))[:, 0]  # (B, M, 3) world points without T
        R, t = data.R, data.t
        obs = undistort_points(data.xy, data.cams.K, data.cams.dist)  # (B, V, M, 2)
        Q = torch.einsum("bvij,bmj->bvmi", R, P) + t[:, :, None]  # camera coords without T
        # rows of x * r3 - r1 (and y * r3 - r2) times T = Q_x - x Q_z (and Q_y - y Q_z)
        A = obs[..., None] * R[:, :, None, 2:3, :] - R[:, :, None, :2, :]  # (B, V, M, 2, 3)
        rhs = Q[..., :2] - obs * Q[..., 2:3]  # (B, V, M, 2)
        w = data.conf.square()[..., None, None]
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
