"""Sequence fitting: one subject over a whole calibrated recording.

Calibrated MV-SMPLify extended over time (what a rig user wants, rather than independent frames):

- **one betas** per subject: estimated with the first chunk's poses, then held for the rest;
- **temporal smoothness**: a robust (Geman-McClure) penalty on the acceleration of the body's
  keypoints in the world, in m/s^2, so a heel strike or a landing keeps its peak while jitter
  is removed; the reprojection residuals are measured in a 224 px frame holding a 1.7 m body
  at the subject's depth (:mod:`mvspin.fitting.chunk_refinement`), so one weight means the same
  at any frame rate, resolution, focal length and distance;
- **warm starts**: key frames (every ``keyframe_step``-th) are fitted independently by
  :class:`~mvspin.fitting.MVSMPLify` (calibrated mode, initialised from robust triangulation);
  the frames between start from their neighbours (geodesic interpolation of every joint
  rotation, linear in translation), and each chunk after the first starts its overlap from the
  previous chunk's result;
- **joint refinement**: every frame of a chunk is refined together (pose, root and translation
  per frame, the betas in the first chunk) by Levenberg-Marquardt steps
  (:mod:`mvspin.fitting.chunk_refinement`), or by Adam as before (``refine_optimizer``),
  batched over frames and cameras;
- **missing views or joints** weigh zero through their confidence; a frame where no camera
  sees the subject is carried by smoothness and flagged unfitted, never a crash;
- **chunks** of ``chunk_frames`` with ``chunk_overlap`` frames shared (cross-faded), so memory
  stays bounded for recordings of any length.

Network initialisation: given a world-frame estimate per frame
(:class:`~mvspin.fitting.view_estimates.WorldEstimate`, e.g. from a regressor run on each
camera's crops, :mod:`mvspin.apps.rig.network_start`), key frames start from it (frames without one
from triangulation).
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field, replace
from typing import Any, Callable, Optional

import torch
from torch import Tensor

from calibration import CameraTensors, Rig, triangulate_points
from mvspin.body import BodyModel
from mvspin.errors import ConfigError, NoFrameFittedError
from mvspin.fitting.chunk_refinement import SMOOTH_PENALTIES, ChunkEnergy, ChunkParams, refine_levenberg_marquardt
from mvspin.fitting.config import MVSMPLifyConfig, validate_config
from mvspin.fitting.keypoint_targets import KeypointTargets
from mvspin.fitting.losses import reprojection_error
from mvspin.fitting.mv_smplify import MVSMPLify
from mvspin.fitting.view_estimates import WorldEstimate
from mvspin.geometry import axis_angle_to_matrix, matrix_to_axis_angle, perspective_projection
from mvspin.progress import Progress, no_progress

__all__ = ["SequenceFitConfig", "SequenceResult", "fit_sequence", "slerp_matrices", "FRAME_PX", "REFERENCE_HEIGHT_M"]

FRAME_PX = 224.0
"""SPIN's crop size, where SMPLify's prior weights were set (``SequenceFitConfig.frame_px``
measures the refinement's residuals in such a frame, of its own size)."""
REFERENCE_HEIGHT_M = 1.7
"""The body height that fills the frame: a residual of 1 frame pixel is ``1.7 / frame_px``
metres at the subject's depth, whatever the camera's resolution, focal length or distance."""


def _keyframe_default() -> MVSMPLifyConfig:
    # Fewer iterations than a stand-alone fit (30 + 30 after the 3D fit instead of 100 + 100):
    # a key frame only has to start the refinement in the right basin, and the Gauss-Newton
    # refinement converges from there (as accurate on the test recordings, a third the time).
    # The network estimate is used when given. Adam here; SequenceFitConfig.keyframe_lm_cameras
    # switches a subject seen by enough cameras to Levenberg-Marquardt (configs/fit_rig.yaml).
    return MVSMPLifyConfig(mode="calibrated", calibrated_init="auto", stage1_iterations=30, stage2_iterations=30)


@dataclass
class SequenceFitConfig:
    """Sequence fitting (not in SPIN / MV-SPIN, which fit single bundles). The smoothness,
    frame and shape-prior values were chosen on the validation part of the motion suite
    (:mod:`mvspin.data.motion_suite`; ``configs/fit_rig.yaml`` records what was compared)."""

    keyframe_step: int = 16
    """Every this many frames a key frame is fitted independently; the rest start interpolated
    (16 at 30 fps: as accurate as 8 and 4 on the test recordings after the Gauss-Newton
    refinement; with Adam 8 was as accurate as 4)."""
    refine_iterations: int = 6
    """Iterations of the joint refinement of each chunk: Gauss-Newton steps for ``lm`` (fewer
    when a step gains less than 1e-4 of the energy), optimiser steps for ``adam`` (which needs
    about 100) and ``lbfgs``. 6 keeps fit-rig at 200 frames/s for 4 cameras; fewer cameras get
    more (``refine_reference_cameras``; ``configs/fit_rig.yaml``)."""
    refine_reference_cameras: float = 4.0
    """``lm``: ``refine_iterations`` are the steps for a subject seen by this many cameras per
    frame on average; seen by fewer, proportionally more (2 cameras: twice as many): their fits
    converge more slowly (what two cameras do not fix, the depth along their axis, is left to the priors
    and the smoothness, a weakly conditioned direction). 0: ``refine_iterations`` always."""
    keyframe_lm_cameras: Optional[float] = 2.5
    """Key frames of a subject seen by at least this many cameras per frame on average (in the
    chunk) are fitted by Levenberg-Marquardt in every stage (``keyframe`` with ``optimizer="lm"``),
    others by ``keyframe.optimizer`` (Adam). LM's key frames converge; Adam's stop early. With three
    or more cameras the converged fit is the better start (the motion suite's validation part:
    8.2 mm against 8.4, its 3-6 camera recordings 7.0 against 7.3) and faster; with two
    cameras facing each other, the depth along their axis is left to the priors, and Adam's early
    stop kept it nearer the truth (walk_2cam 14.8 mm against 21.9). None: always
    ``keyframe.optimizer``. ``configs/fit_rig.yaml`` records the comparison."""
    refine_cg_iterations: int = 20
    """Conjugate-gradient iterations per Levenberg-Marquardt step at 30 frames/s, scaled with
    the frame rate (the smoothness couples frames over a fixed time, so 4x as many at 120:
    with 10 there the 120 fps fit was 21% worse than the 30 fps one, with 40 within 5%). 20:
    the validation part's 2-3 camera recordings 1-2 mm better than with 10, as fast (a step
    solved further needs fewer retries), and no better with 40."""
    refine_optimizer: str = "lm"
    """``lm`` (Levenberg-Marquardt, :mod:`mvspin.fitting.chunk_refinement`: second-order steps
    with closed-form Jacobians), ``adam`` (first order, SPIN's optimiser) or ``lbfgs``
    (strong-Wolfe line search, each iteration one or more energy evaluations)."""
    refine_lr: float = 0.01
    """Adam learning rate of the refinement (radians, metres; SPIN's 0.01)."""
    smooth_weight: float = 0.4
    """Weight of the keypoint acceleration penalty per (m/s^2)^2, against reprojection
    residuals in pixels of a 224 px frame holding a 1.7 m body (about 132 px per metre at the
    subject's depth); the same at any frame rate, resolution and distance."""
    frame_px: float = 1000.0
    """The refinement's reprojection residuals are pixels of a frame this size holding a 1.7 m
    body at the subject's depth (224 would be SPIN's crop, where SMPLify's single-view prior
    weights were set; on the validation motions 1000 was 9.8 mm against 14.2 at 224 and 13.0
    at 2000: with several cameras the data deserve more weight than one view's)."""
    keyframe_frame_px: Optional[float] = 850.0
    """The key frames' MV-SMPLify fits in pixels of a frame this size holding a 1.7 m body at the
    subject's depth in each camera (as the refinement with ``frame_px``): its energy, thresholds
    and errors then mean the same at any image resolution (in image pixels the same 2-camera
    recording fitted 23-30 mm at 540p / 1080p / 2160p). None: image pixels. 850 was best of
    500 / 700 / 850 / 1000 on the motion suite's validation part (``configs/fit_rig.yaml``)."""
    smooth_scale: float = 30.0
    """Scale of the robust acceleration penalty, m/s^2: accelerations well below it are
    penalised quadratically (jitter), far above it less than quadratically (a heel strike, a
    landing, a clap; see ``smooth_penalty``). 0: plain squared acceleration."""
    smooth_penalty: str = "geman_mcclure"
    """How accelerations far above ``smooth_scale`` are charged (:func:`~mvspin.fitting.
    chunk_refinement.robust_penalty`): ``pseudo_huber`` (linearly), ``cauchy``
    (logarithmically), ``geman_mcclure`` (at most ``smooth_scale^2``) or ``quadratic``."""
    smooth_tail: float = 0.03
    """A plain squared acceleration under the robust penalty, at this fraction of its rate for
    jitter: ``rho(a^2) + smooth_tail * a^2``. A real landing (tens of m/s^2) costs little more,
    a foot that a detector's flicker makes flap at hundreds of m/s^2 costs quadratically again
    (Geman-McClure alone charges it no more than ``smooth_scale^2``). 0: the robust penalty
    alone. 0.03: chosen on the motion suite's validation part (``configs/fit_rig.yaml``)."""
    chunk_frames: int = 300
    """Frames refined together (memory grows linearly with it)."""
    chunk_overlap: int = 16
    """Frames shared by consecutive chunks: warm-started from the previous chunk, cross-faded."""
    keyframe_reject_ratio: float = 1.75
    """Key frames whose reprojection error exceeds this multiple of the chunk's median key
    frame error, and the median by more than ``keyframe_margin_px``, are not used as starts (a
    per-frame fit stuck in a wrong minimum)."""
    keyframe_refit_ratio: float = 2.0
    """Frames whose interpolated start reprojects worse than this multiple of the key frames'
    median error, and by more than ``keyframe_margin_px``, (a kick or a jump between two key
    frames) get key frames of their own (every quarter step, and the worst frame of each such
    stretch); 0 turns this off."""
    keyframe_margin_px: float = 1.0
    """Pixels of the key frames' fit (``keyframe_frame_px``'s frame, or image pixels) by which a
    frame must also exceed the key frames' median error to count as worse (above): on keypoints with almost no noise the median is a rounding error, and twice a
    rounding error is still exact (a noise-free test recording had a perfect key frame rejected
    at 1.4e-5 px against a median of 6e-6 px, on one CPU and not another). It acts only where the
    median is under ``1 / (ratio - 1)`` px (1.3 px for the rejection)."""
    shape_prior_frames_exponent: float = 1.0
    """The shape prior of the shared betas weighs ``(n v) ** exponent`` single-view frames'
    worth for n frames seen by v cameras on average (SMPLify's single-view weight): at 1 it
    keeps its pull against a data term that sums over n v views (at 0 it vanished against
    hundreds of frames and the betas drifted to -12 on independent recordings, moving the
    surface while barely moving the keypoints)."""
    refine_betas: bool = True
    """Optimise the shared betas in the first chunk (else keep the key frames' median)."""
    refine_betas_lr: float = 0.1
    """Adam learning rate of the shared betas: the key frames' per-frame shape prior leaves
    them shrunk towards the mean, further than the pose's step size would undo."""
    keyframe: MVSMPLifyConfig = field(default_factory=_keyframe_default)
    """The per-frame calibrated MV-SMPLify of the key frames (its energy weights and ``sigma``
    are the refinement's too)."""

    def __post_init__(self) -> None:
        self.check()

    def check(self) -> None:
        """Raise :class:`~mvspin.errors.ConfigError` (a ``ValueError``) naming the field out of range
        (as ``sequence.<field>``, its key in ``mvspin fit-rig``'s config)."""
        c = self
        validate_config(c.keyframe)
        if c.keyframe.mode != "calibrated":
            raise ConfigError(f"sequence.keyframe.mode must be 'calibrated' for sequence fitting, got {c.keyframe.mode!r}",
                              field="sequence.keyframe.mode")
        if c.chunk_frames < 2 or not 0 <= c.chunk_overlap < c.chunk_frames or c.keyframe_step < 1:
            raise ConfigError(f"need sequence.chunk_frames >= 2, 0 <= chunk_overlap < chunk_frames and keyframe_step >= 1, "
                              f"got {c.chunk_frames}, {c.chunk_overlap}, {c.keyframe_step}", field="sequence.chunk_frames")
        for name in ("refine_iterations", "smooth_weight", "smooth_scale", "keyframe_margin_px", "smooth_tail",
                     "refine_reference_cameras") + (("keyframe_lm_cameras",) if c.keyframe_lm_cameras is not None else ()):
            if getattr(c, name) < 0:
                raise ConfigError(f"sequence.{name} must be >= 0, got {getattr(c, name)}", field=f"sequence.{name}")
        for name in ("refine_lr", "frame_px") + (("keyframe_frame_px",) if c.keyframe_frame_px is not None else ()):
            if not getattr(c, name) > 0:
                raise ConfigError(f"sequence.{name} must be > 0, got {getattr(c, name)}", field=f"sequence.{name}")
        if c.smooth_penalty not in SMOOTH_PENALTIES:
            raise ConfigError(f"sequence.smooth_penalty must be one of {', '.join(SMOOTH_PENALTIES)}, got {c.smooth_penalty!r}",
                              field="sequence.smooth_penalty")
        if c.refine_optimizer not in ("lm", "adam", "lbfgs"):
            raise ConfigError(f"sequence.refine_optimizer must be 'lm', 'adam' or 'lbfgs', got {c.refine_optimizer!r}",
                              field="sequence.refine_optimizer")


@dataclass
class SequenceResult:
    """A subject fitted over T frames (world frame, rotation matrices inside).

    Attributes:
        body_pose: ``(T, 23, 3, 3)``. global_orient: ``(T, 3, 3)`` world root orientation.
        betas: ``(num_betas,)`` one shape for the whole recording.
        transl: ``(T, 3)`` SMPL translation in the world, metres.
        fitted: ``(T,)`` bool: some camera saw the subject (else carried by smoothness).
        reprojection_error: ``(T,)`` mean pixel error over the cameras used (inf where unfitted).
        view_reprojection_error: ``(T, V)`` per camera (inf where it had no keypoint).
        body_model: the fitted model's name. keypoint_set: the data's keypoint set.
    """

    body_pose: Tensor
    global_orient: Tensor
    betas: Tensor
    transl: Tensor
    fitted: Tensor
    reprojection_error: Tensor
    view_reprojection_error: Tensor
    body_model: str
    keypoint_set: str

    @property
    def num_frames(self) -> int:
        return int(self.transl.shape[0])

    def smpl_params(self) -> dict[str, Tensor]:
        """Axis-angle parameters with SMPL/AMASS names: ``global_orient (T, 3)``,
        ``body_pose (T, 69)``, ``betas (num_betas,)``, ``transl (T, 3)``."""
        t = self.num_frames
        return {"global_orient": matrix_to_axis_angle(self.global_orient),
                "body_pose": matrix_to_axis_angle(self.body_pose).reshape(t, 69),
                "betas": self.betas, "transl": self.transl}


def slerp_matrices(r0: Tensor, r1: Tensor, u: Tensor) -> Tensor:
    """Geodesic interpolation ``r0 exp(u log(r0^T r1))`` of rotations ``(..., 3, 3)``;
    ``u`` broadcasts against the leading dims (0 gives r0, 1 gives r1)."""
    rel = matrix_to_axis_angle(r0.transpose(-1, -2) @ r1)
    return r0 @ axis_angle_to_matrix(rel * u[..., None])


def _interpolate(key_t: Tensor, values: dict[str, Tensor], frames: Tensor) -> dict[str, Tensor]:
    """Key-frame values at sorted times ``key_t (n,)`` to ``frames (L,)``: rotations geodesic,
    translations linear; before the first / after the last key frame, the nearest."""
    n = key_t.numel()
    hi = torch.searchsorted(key_t, frames).clamp(1, max(n - 1, 1)) if n > 1 else torch.zeros_like(frames)
    lo = (hi - 1).clamp_min(0)
    span = (key_t[hi] - key_t[lo]).clamp_min(1).to(values["transl"].dtype)
    u = ((frames - key_t[lo]).to(span.dtype) / span).clamp(0, 1)
    if n == 1:
        u = torch.zeros_like(u)
    out = {}
    for name, x in values.items():
        if name == "transl":
            out[name] = x[lo] + (x[hi] - x[lo]) * u[:, None]
        else:
            uu = u.view(-1, *([1] * (x.ndim - 3)))
            out[name] = slerp_matrices(x[lo], x[hi], uu)
    return out


def _frame_scale(cams: CameraTensors, points: Tensor, frame_px: float) -> Tensor:
    """Pixels of a ``frame_px`` frame holding a 1.7 m body per image pixel ``(N, V)``, for world
    points ``(N, 3)`` (the subject) seen by the V cameras ``cams``."""
    depth = torch.einsum("vij,nj->nv", cams.R, points) + cams.t[:, 2]
    focal = 0.5 * (cams.K[:, 0, 0] + cams.K[:, 1, 1])
    return depth.clamp_min(0.1) / focal * (frame_px / REFERENCE_HEIGHT_M)


def _views_and_cameras(conf: Tensor) -> tuple[float, float]:
    """From confidences ``(L, V, K)`` (0: not used): the frame-camera pairs that see the subject
    (at least 1), and the cameras per frame, averaged over the frames any camera sees."""
    seen = (conf > 0).any(-1)
    views = max(float(seen.sum()), 1.0)
    return views, views / max(float(seen.any(-1).sum()), 1.0)


class _SequenceFitter:
    """State of one subject's fit across chunks (targets, priors, the fixed betas)."""

    def __init__(self, body: BodyModel, keypoint_set: str, config: SequenceFitConfig, cams: CameraTensors,
                 fps: float = 30.0) -> None:
        self.body, self.config, self.cams, self.fps = body, config, cams, fps
        self.kf_fitter = MVSMPLify(body, config.keyframe, keypoint_set)
        self.kf_fitter_lm = self.kf_fitter
        if config.keyframe_lm_cameras is not None and config.keyframe.optimizer != "lm":
            self.kf_fitter_lm = MVSMPLify(body, replace(config.keyframe, optimizer="lm"), keypoint_set)
        c = config.keyframe
        self.targets = KeypointTargets.build(body, keypoint_set, c.keypoint_weights, c.stage2_ignored_points)
        self.pose_prior = body.pose_prior()
        self.betas: Optional[Tensor] = None

    @property
    def dtype(self) -> torch.dtype:
        return self.body.J_template.dtype

    def _prepare(self, keypoints: Tensor) -> tuple[Tensor, Tensor]:
        kp = self.targets.select(keypoints.to(self.body.J_template.device, self.dtype))
        xy, conf = kp[..., :2], kp[..., 2]
        ok = torch.isfinite(xy).all(-1) & torch.isfinite(conf) & (conf > self.config.keyframe.min_confidence)
        return torch.where(ok[..., None], xy, torch.zeros_like(xy)), torch.where(ok, conf, torch.zeros_like(conf))

    def _start_error(self, start: dict[str, Tensor], keypoints: Tensor, cams: CameraTensors) -> Tensor:
        """Mean reprojection error ``(L,)`` (pixels of ``cams``) of a start over the cameras (inf
        where no camera sees the subject)."""
        xy, conf = self._prepare(keypoints)
        n = xy.shape[0]
        betas = (start["betas"] if self.betas is None else self.betas).to(xy.dtype)
        with torch.no_grad():
            kp = self.body.keypoints_multiview(self.targets.model_set, start["body_pose"].to(xy.dtype),
                                               betas.expand(n, -1), start["global_orient"].to(xy.dtype)[:, None],
                                               start["transl"].to(xy.dtype)[:, None])
            kp = self.targets.model_keypoints(kp)
            uv = perspective_projection(kp, cams.K, cams.R, cams.t, cams.dist)
        w = conf * (self.targets.weights > 0)
        err = reprojection_error(uv.flatten(1, 2), xy.flatten(1, 2), w.flatten(1, 2))
        return torch.where((w > 0).flatten(1).any(-1), err, torch.full_like(err, math.inf))

    def _keyframes(self, keypoints: Tensor, fixed: dict[str, Tensor] | None, n_fixed: int, cameras: float,
                   init: Optional[WorldEstimate] = None) -> dict[str, Tensor]:
        """Initial values for every frame of a chunk: key frames fitted (by the solver for a
        subject seen by ``cameras`` per frame, ``keyframe_lm_cameras``), the rest interpolated;
        where the interpolation misses the motion (a kick between two key frames), more key
        frames."""
        L = keypoints.shape[0]
        step = max(1, self.config.keyframe_step)
        keys = list(range(n_fixed, L, step))
        if not keys or keys[-1] != L - 1:
            keys.append(L - 1)
        keys = sorted(set(k for k in keys if k >= n_fixed)) if L > n_fixed else []
        keypoints, cams = self._in_frame_pixels(keypoints, keys)
        c = self.config
        lm = c.keyframe_lm_cameras is not None and cameras >= c.keyframe_lm_cameras
        fitter = self.kf_fitter_lm if lm else self.kf_fitter
        start, typical = self._keyframe_pass(fitter, keypoints, cams, fixed, n_fixed, init, keys, None, None)
        ratio = self.config.keyframe_refit_ratio
        if not start or not ratio or typical is None or step == 1:
            return start
        err = self._start_error(start, keypoints, cams)
        bad = torch.isfinite(err) & (err > max(ratio * typical, typical + self.config.keyframe_margin_px))
        bad[:n_fixed] = False
        if not bool(bad.any()):
            return start
        extra: set[int] = set()
        sub = max(1, step // 4)
        idx = bad.nonzero()[:, 0].tolist()
        runs: list[list[int]] = []
        for i in idx:  # stretches of consecutive bad frames
            if runs and i == runs[-1][-1] + 1:
                runs[-1].append(i)
            else:
                runs.append([i])
        for run in runs:
            extra.update(run[::sub])
            extra.add(max(run, key=lambda i: float(err[i])))
        extra -= set(keys)
        if not extra:
            return start
        start2, _ = self._keyframe_pass(fitter, keypoints, cams, fixed, n_fixed, init, sorted(extra), start, typical)
        return start2 or start

    def _in_frame_pixels(self, keypoints: Tensor, keys: list[int]) -> tuple[Tensor, CameraTensors]:
        """``keypoints (L, V, K, 3)`` and the cameras in pixels of a ``keyframe_frame_px`` frame
        holding a 1.7 m body at the subject's depth in each camera (unchanged when it is None):
        the key frames' energy, thresholds and errors then mean the same at any resolution.
        Each camera's pixels are scaled by one factor (intrinsics' first two rows and the
        keypoints alike: the same rays), from the subject's median depth over the key frames
        (robust triangulation)."""
        cams = self.cams
        if self.config.keyframe_frame_px is None or not keys:
            return keypoints, cams
        tri = triangulate_points(keypoints[keys][..., :2], keypoints[keys][..., 2], cams)
        seen = tri.valid.any(-1)
        if not bool(seen.any()):
            return keypoints, cams
        valid = tri.valid[seen]
        centre = (tri.points[seen] * valid[..., None]).sum(-2) / valid.sum(-1, keepdim=True)  # (k, 3)
        scale = _frame_scale(cams, centre, float(self.config.keyframe_frame_px)).median(0).values  # (V,)
        s = scale[:, None, None]
        K = torch.cat([cams.K[:, :2] * s.to(cams.K.dtype), cams.K[:, 2:]], 1)
        xy = keypoints[..., :2] * s.to(keypoints.dtype)
        return torch.cat([xy, keypoints[..., 2:]], -1), cams._replace(K=K)

    def _keyframe_pass(self, fitter: MVSMPLify, keypoints: Tensor, cams: CameraTensors,
                       fixed: dict[str, Tensor] | None, n_fixed: int, init: Optional[WorldEstimate], keys: list[int],
                       previous: Optional[dict[str, Tensor]],
                       typical_px: Optional[float]) -> tuple[dict[str, Tensor], Optional[float]]:
        """Fit the key frames ``keys`` with ``fitter`` and interpolate; with ``previous`` (a first pass), its
        key frames are kept too and ``typical_px`` (its key frames' median error) judges the
        new ones. ``keypoints`` and ``cams`` in the key frames' pixels (:meth:`_in_frame_pixels`).
        Returns the start and the key frames' median error (those pixels)."""
        L = keypoints.shape[0]
        times: list[int] = []
        vals: dict[str, list[Tensor]] = {"body_pose": [], "global_orient": [], "transl": [], "betas": []}
        if previous is not None:
            for k in previous["_key_times"].tolist():
                times.append(k)
                for name in ("body_pose", "global_orient", "transl"):
                    vals[name].append(previous[name][k])
        if keys:
            res = fitter.fit_calibrated(keypoints[keys], cams, None if init is None else init[keys])
            ok = res.fitted
            if bool(ok.any()):
                # A key frame caught in a wrong minimum reprojects clearly worse than its
                # neighbours: leave it out and let the good ones carry the interpolation.
                typical = res.reprojection_error[ok].median()
                if previous is not None and typical_px is not None:
                    typical = torch.as_tensor(typical_px, dtype=typical.dtype)
                typical_px = float(typical)
                limit = torch.maximum(self.config.keyframe_reject_ratio * typical,
                                      typical + self.config.keyframe_margin_px)
                ok = ok & (res.reprojection_error <= limit)
            for i, k in enumerate(keys):
                if bool(ok[i]):
                    times.append(k)
                    vals["body_pose"].append(res.body_pose[i])
                    vals["global_orient"].append(res.world_orient[i])
                    vals["transl"].append(res.world_transl[i])
                    vals["betas"].append(res.betas[i])
        if fixed is not None and previous is None:  # warm start: the previous chunk's overlap frames are key frames too
            for i in range(n_fixed):
                times.append(i)
                for name in ("body_pose", "global_orient", "transl"):
                    vals[name].append(fixed[name][i])
        if not times:
            return {}, None
        order = sorted(range(len(times)), key=lambda i: times[i])
        key_t = torch.tensor([times[i] for i in order])
        stacked = {n: torch.stack([vals[n][i] for i in order]) for n in ("body_pose", "global_orient", "transl")}
        start = _interpolate(key_t, stacked, torch.arange(L))
        if previous is not None and "betas" in previous:
            start["betas"] = previous["betas"]
        elif self.betas is None:
            start["betas"] = torch.stack(vals["betas"]).median(0).values if vals["betas"] else \
                torch.zeros(self.body.num_betas, dtype=self.dtype)
        start["_key_times"] = key_t
        return start, typical_px

    def _first_order(self, energy: Callable[[], Tensor], params: list[Tensor], betas: Optional[Tensor]) -> None:
        """Adam or L-BFGS on the chunk energy (``refine_optimizer``), ``refine_iterations``."""
        c = self.config
        if c.refine_optimizer == "lbfgs":
            opt = torch.optim.LBFGS(params + ([betas] if betas is not None else []), lr=1.0,
                                    max_iter=c.refine_iterations, history_size=20, line_search_fn="strong_wolfe",
                                    tolerance_grad=1e-9, tolerance_change=1e-12)

            def closure() -> Tensor:
                opt.zero_grad(set_to_none=True)
                e = energy()
                if not math.isfinite(float(e.detach())):
                    raise FloatingPointError(f"sequence fitting energy became {float(e)}")
                e.backward()
                return e

            opt.step(closure)
            return
        groups: list[dict[str, Any]] = [{"params": params}]
        if betas is not None:
            groups.append({"params": [betas], "lr": c.refine_betas_lr})
        adam = torch.optim.Adam(groups, lr=c.refine_lr)
        for it in range(c.refine_iterations):
            adam.zero_grad(set_to_none=True)
            e = energy()
            e.backward()
            adam.step()
            if not math.isfinite(float(e.detach())):
                raise FloatingPointError(f"sequence fitting energy became {float(e)} at iteration {it}")

    def fit_chunk(self, keypoints: Tensor, fixed: dict[str, Tensor] | None, n_fixed: int,
                  estimate: Optional[WorldEstimate] = None) -> Optional[dict[str, Tensor]]:
        """Fit one chunk ``(L, V, K, 3)``; the first ``n_fixed`` frames start from ``fixed``,
        key frames from ``estimate`` (L frames) where given."""
        c, kc = self.config, self.config.keyframe
        xy, conf = self._prepare(keypoints)
        # Views the data term sums over (the shape prior weighs as many single-view frames), and
        # the cameras per frame that pick the key frames' solver and the refinement's steps.
        n_views, cameras = _views_and_cameras(conf)
        init = self._keyframes(keypoints, fixed, n_fixed, cameras, estimate)
        L = keypoints.shape[0]
        if not init:
            return None
        first = self.betas is None
        betas0 = init["betas"] if first else self.betas
        cams = self.cams
        dev, dt = self.body.J_template.device, self.dtype
        pose = matrix_to_axis_angle(init["body_pose"].to(dev, dt)).reshape(L, 69).clone()
        orient0 = init["global_orient"].to(dev, dt)
        d_orient = torch.zeros(L, 3, dtype=dt, device=dev)
        transl = init["transl"].to(dev, dt).clone()
        betas = betas0.to(dev, dt).clone()
        betas_free = first and c.refine_betas
        w_body = conf.square() * self.targets.weights
        fitted = (conf > 0).any(-1).any(-1)
        # Image pixels -> pixels of a frame_px frame holding a 1.7 m body at the subject's depth in
        # each camera (from the start; the depth changes little during the refinement).
        scale = _frame_scale(cams, transl + self.body.rest_joints(betas[None])[:, 0], c.frame_px)
        chunk_energy = ChunkEnergy(
            self.body, self.targets, cams, xy, w_body, kc.sigma, self.pose_prior, kc.pose_prior_weight,
            kc.angle_prior_weight, kc.shape_prior_weight * n_views ** c.shape_prior_frames_exponent,
            c.smooth_weight, scale=scale, fps=self.fps, smooth_scale=c.smooth_scale,
            smooth_penalty=c.smooth_penalty, smooth_tail=c.smooth_tail)

        if c.refine_optimizer == "lm":
            cg = max(1, round(c.refine_cg_iterations * max(1.0, self.fps / 30.0)))
            steps = c.refine_iterations
            if c.refine_reference_cameras > 0:
                steps = round(steps * max(1.0, c.refine_reference_cameras / cameras))
            refined, _ = refine_levenberg_marquardt(chunk_energy, ChunkParams(pose, orient0, transl, betas),
                                                    betas_free, steps, cg_iterations=cg)
            pose, orient0, transl, betas = refined.pose, refined.orient, refined.transl, refined.betas
        else:
            pose.requires_grad_(True)
            d_orient.requires_grad_(True)
            transl.requires_grad_(True)
            betas.requires_grad_(betas_free)

            def energy() -> Tensor:
                return chunk_energy(pose, d_orient, orient0, transl, betas, betas_free)[0]

            self._first_order(energy, [pose, d_orient, transl], betas if betas_free else None)
        with torch.no_grad():
            _, uv = chunk_energy(pose, d_orient, orient0, transl, betas, betas_free)
            if first:
                self.betas = betas.detach().clone()
            rots = axis_angle_to_matrix(torch.cat([pose.view(L, 23, 3), d_orient[:, None]], 1))
            w = conf * (self.targets.weights > 0)
            view_err = reprojection_error(uv, xy, w)
            err = reprojection_error(uv.flatten(1, 2), xy.flatten(1, 2), w.flatten(1, 2))
            return {"body_pose": rots[:, :23], "global_orient": rots[:, 23] @ orient0, "transl": transl.detach(),
                    "fitted": fitted, "error": torch.where(fitted, err, torch.full_like(err, math.inf)),
                    "view_error": view_err}


def fit_sequence(
    body: BodyModel,
    keypoints: Tensor,
    cameras: Rig | CameraTensors,
    keypoint_set: str,
    config: Optional[SequenceFitConfig] = None,
    progress: Progress = no_progress,
    init: Optional[WorldEstimate] = None,
    fps: float = 30.0,
) -> SequenceResult:
    """Fit one subject over a calibrated recording.

    Args:
        body: the body model (its device and dtype are used).
        keypoints: ``(T, V, K, 3)`` one subject's image-pixel keypoints per frame and camera
            (confidence 0 where missing; see :func:`~mvspin.fitting.associate_subjects`).
        cameras: the rig (V cameras, metres).
        keypoint_set: the keypoints' set, e.g. ``"openpose25"``.
        config: see :class:`SequenceFitConfig`.
        progress: :class:`~mvspin.progress.Progress`, stage ``"fit"``: frames done after each chunk.
        init: a world-frame start per frame (T frames; ``keyframe.calibrated_init`` ``auto`` or
            ``network`` uses it), e.g. :func:`mvspin.apps.rig.network_start.network_world_estimate`.
        fps: the recording's frame rate (the smoothness prior acts on accelerations in m/s^2).

    Returns:
        :class:`SequenceResult`; frames no camera saw are interpolated by the smoothness term
        and flagged ``fitted = False``.

    Raises:
        ValueError: wrong shapes.
        NoFrameFittedError: no frame of the recording can be fitted (a ``RecordingError``).
    """
    c = config or SequenceFitConfig()
    c.check()  # again: a config may be changed after it was made
    if not fps > 0:
        raise ValueError(f"fps must be > 0, got {fps}")
    dev, dt = body.J_template.device, body.J_template.dtype
    cams = cameras.to_torch(dt, dev) if isinstance(cameras, Rig) else cameras.to(dev, dt)
    if keypoints.ndim != 4 or keypoints.shape[-1] != 3:
        raise ValueError(f"keypoints must be (T, V, K, 3), got {tuple(keypoints.shape)}")
    t, v = keypoints.shape[:2]
    if cams.K.shape[0] != v or cams.K.ndim != 3:
        raise ValueError(f"keypoints are for {v} cameras but the rig has {cams.K.shape[0]}")
    if init is not None:
        init.check(t, body.num_betas)
    fitter = _SequenceFitter(body, keypoint_set, c, cams, float(fps))
    out = {"body_pose": torch.zeros(t, 23, 3, 3, dtype=dt, device=dev),
           "global_orient": torch.eye(3, dtype=dt, device=dev).repeat(t, 1, 1),
           "transl": torch.zeros(t, 3, dtype=dt, device=dev),
           "fitted": torch.zeros(t, dtype=torch.bool, device=dev),
           "error": torch.full((t,), math.inf, dtype=dt, device=dev),
           "view_error": torch.full((t, v), math.inf, dtype=dt, device=dev)}
    start, prev_end, have_prev = 0, 0, False
    while start < t:
        lo = max(0, start - c.chunk_overlap) if have_prev else start
        hi = min(t, lo + c.chunk_frames)
        n_fixed = start - lo
        fixed = {n: out[n][lo:start] for n in ("body_pose", "global_orient", "transl")} if n_fixed else None
        res = fitter.fit_chunk(keypoints[lo:hi], fixed, n_fixed, None if init is None else init[lo:hi])
        if res is not None:
            # Cross-fade the overlap from the previous chunk's result into this one's.
            blend = torch.ones(hi - lo, dtype=dt, device=dev)
            if n_fixed:
                blend[:n_fixed] = torch.arange(1, n_fixed + 1, dtype=dt, device=dev) / (n_fixed + 1)
                for name in ("body_pose", "global_orient"):
                    u = blend[:n_fixed].view(-1, *([1] * (res[name].ndim - 3)))
                    res[name][:n_fixed] = slerp_matrices(out[name][lo:start], res[name][:n_fixed], u)
                res["transl"][:n_fixed] = out["transl"][lo:start] + (res["transl"][:n_fixed] - out["transl"][lo:start]) \
                    * blend[:n_fixed, None]
            for name, value in res.items():
                out[name][lo:hi] = value
            have_prev = True
        start = hi
        prev_end = hi
        progress("fit", prev_end, t)
    if fitter.betas is None:
        raise NoFrameFittedError("no frame of the recording could be fitted: no camera saw the subject with enough "
                         "keypoints")
    return SequenceResult(
        body_pose=out["body_pose"], global_orient=out["global_orient"], betas=fitter.betas, transl=out["transl"],
        fitted=out["fitted"], reprojection_error=out["error"], view_reprojection_error=out["view_error"],
        body_model=body.name, keypoint_set=keypoint_set,
    )
