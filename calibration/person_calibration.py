"""Extrinsics from a person moving through the volume: no board, known intrinsics.

:func:`calibrate_from_keypoints` takes synchronised 2D keypoints of one person in every camera
(any keypoint set: the caller says which keypoints are on the feet and which on the head) and
each camera's intrinsics, and returns the rig:

1. every pair of cameras: the essential matrix of their confident common keypoints (undistorted,
   OpenCV's five-point RANSAC), the relative pose it implies, and its inlier count;
2. a spanning tree over the best pairs (Prim's, most inliers first) fixes the order: the best
   pair starts the reconstruction (its baseline is the unit), each further camera joins by PnP
   against the keypoints triangulated from the cameras already placed (RANSAC), and everything
   is triangulated again;
3. bundle adjustment of every camera's pose and every keypoint (each frame's keypoints are
   separate points) with a robust (soft-L1) loss on confidence-weighted pixel residuals
   (``scipy.optimize.least_squares``, sparse Jacobian); the first camera stays fixed; cameras
   whose frames are offset by a fraction of a frame (``mvspin sync``) see the points
   interpolated at their own moments;
4. the world frame: up is the median direction from the feet to the head, the floor the plane
   through the lowest foot points (while they stand), origin on the floor below their centre;
5. the scale: from the person's height (the head keypoints' high percentile above the floor
   over ``head_height_ratio``) or from a measured distance between two cameras.
6. repeatability: the same from each half of the frames alone, and per camera how far the two
   rigs agree after a similarity alignment (no reference needed; ``halves=False`` skips it).

Everything is numpy/scipy/OpenCV on arrays; reading keypoint files is the caller's job.
"""
from __future__ import annotations

import logging
import warnings
from dataclasses import asdict, dataclass, field
from typing import Any, Optional, Sequence

import cv2
import numpy as np
import torch

from calibration.camera import Camera, Rig
from calibration.intrinsics import format_table
from calibration.projection import undistort_points
from calibration.rig_comparison import EpipolarConsistency, compare_rigs, epipolar_consistency
from calibration.sync import shift_keypoints
from calibration.triangulation import triangulate_points
from calibration.world_frame import UP_AXES, align_world, transform_rig
from mvspin.errors import CalibrationError, check_shape
from mvspin.progress import Progress, no_progress

__all__ = ["PersonCalibrationReport", "PersonCameraReport", "calibrate_from_keypoints", "relative_pose",
           "held_out_consistency", "EYE_HEIGHT_RATIO"]

log = logging.getLogger("calibration")

EYE_HEIGHT_RATIO = 0.936
"""Eye height over stature of a standing adult (Drillis and Contini's segment proportions)."""
_MIN_PAIR_POINTS = 30
_LOOSE_HALVES_DEG = 1.0  # halves further apart get a hint in the report (no refusal: a reference may not exist)


@dataclass
class PersonCameraReport:
    """One camera's line: observations used, reprojection errors (pixels) after the bundle
    adjustment, and how it joined the reconstruction."""

    name: str
    observations: int
    median_error_px: float
    mean_error_px: float
    joined: str
    halves_centre_m: Optional[float] = None
    """Distance between this camera's centres calibrated from the first and from the second half
    of the frames (after a similarity alignment; None: not compared)."""
    halves_rotation_deg: Optional[float] = None
    """Angle between its orientations from the two halves."""


@dataclass
class PersonCalibrationReport:
    """What :func:`calibrate_from_keypoints` did."""

    cameras: list[PersonCameraReport]
    pairs: list[tuple[str, str, int, int]]
    """Per camera pair: names, common confident keypoints, essential-matrix inliers."""
    points: int
    """Keypoints (frame x keypoint) triangulated and adjusted."""
    median_error_px: float
    converged: bool
    bundle_adjustment: str
    """least_squares' message."""
    scale: str
    """Where the scale came from, in words."""
    world: str
    person_height_m: float
    """The person's height in the calibrated rig (given, or measured with a camera distance)."""
    max_median_error_px: float = 15.0
    swapped: int = 0
    """Detections (frame x camera) whose left and right were swapped back."""
    problems: list[str] = field(default_factory=list)
    halves: str = "not compared"
    """The repeatability check in words: the rig calibrated from each half of the frames."""
    half_rigs: Optional[tuple[Rig, Rig]] = field(default=None, repr=False)
    """The rigs calibrated from frames ``[0, half_frames)`` and ``[half_frames, T)`` alone (None:
    not compared), e.g. to judge each on the frames it was not made from."""
    half_frames: int = 0

    def table(self) -> str:
        def fmt(x: Optional[float], scale: float, digits: int) -> str:
            return "-" if x is None else f"{x * scale:.{digits}f}"

        rows = [(c.name, str(c.observations), f"{c.median_error_px:.2f}", f"{c.mean_error_px:.2f}",
                 fmt(c.halves_centre_m, 100, 1), fmt(c.halves_rotation_deg, 1, 2), c.joined) for c in self.cameras]
        lines = [format_table(("camera", "observations", "median px", "mean px", "halves cm", "halves deg", "joined by"),
                              rows)]
        lines.append(f"{self.points} keypoints adjusted; median reprojection error {self.median_error_px:.2f} px; "
                     f"bundle adjustment {'converged' if self.converged else 'did NOT converge'} "
                     f"({self.bundle_adjustment}); {self.swapped} detections with left and right swapped back; scale: {self.scale}; world: {self.world}")
        lines.append(f"halves: {self.halves}")
        lines += [f"PROBLEM: {p}" for p in self.problems]
        return "\n".join(lines)

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data.pop("half_rigs")
        return data


def _normalised(points: np.ndarray, camera: Camera) -> np.ndarray:
    """Undistorted normalised coordinates ``(..., 2)`` of pixels ``(..., 2)``."""
    flat = torch.from_numpy(np.ascontiguousarray(points.reshape(-1, 2), dtype=np.float64))
    dist = torch.from_numpy(camera.dist) if camera.dist.size else None
    return undistort_points(flat, torch.from_numpy(camera.K), dist).numpy().reshape(points.shape)


def relative_pose(xa: np.ndarray, xb: np.ndarray, threshold: float) -> tuple[np.ndarray, np.ndarray, int]:
    """Pose of camera b relative to a (``x_b = R x_a + t``, ``|t| = 1``) from ``(N, 2)`` undistorted
    normalised correspondences, by the essential matrix (RANSAC, ``threshold`` in normalised
    units); returns ``(R, t, inliers)`` with inliers counted in front of both cameras. RANSAC's
    random seed is fixed: the same keypoints give the same calibration (unseeded, a rerun could
    start the bundle adjustment from a different, sometimes hopeless, pose)."""
    cv2.setRNGSeed(0)
    E, mask = cv2.findEssentialMat(xa, xb, np.eye(3), method=cv2.RANSAC, prob=0.9999, threshold=threshold)
    if E is None or E.shape != (3, 3):
        return np.eye(3), np.zeros(3), 0
    count, R, t, _ = cv2.recoverPose(E, xa, xb, np.eye(3), mask=mask.copy())
    return R, t.reshape(3), int(count)


def _spanning_order(scores: np.ndarray) -> list[tuple[int, Optional[int]]]:
    """Prim's maximum spanning tree: ``[(camera, parent)]`` from the best pair's first camera."""
    v = scores.shape[0]
    a, b = np.unravel_index(np.argmax(scores), scores.shape)
    order: list[tuple[int, Optional[int]]] = [(int(a), None), (int(b), int(a))]
    placed = {int(a), int(b)}
    while len(placed) < v:
        best = max(((scores[p, c], c, p) for p in placed for c in range(v) if c not in placed))
        if best[0] <= 0:
            break
        order.append((best[1], best[2]))
        placed.add(best[1])
    return order


def _triangulate(rig: Rig, pixels: np.ndarray, weights: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``(N, 3)`` points and ``(N,)`` validity from ``(V, N, 2)`` pixels and ``(V, N)`` weights."""
    tri = triangulate_points(torch.from_numpy(pixels), torch.from_numpy(weights), rig.to_torch(torch.float64),
                             threshold_px=30.0)
    return tri.points.numpy(), tri.valid.numpy()


def _rodrigues(rvecs: np.ndarray) -> np.ndarray:
    """Rotation matrices ``(N, 3, 3)`` of axis-angle vectors ``(N, 3)``."""
    theta = np.linalg.norm(rvecs, axis=1, keepdims=True)
    k = rvecs / np.where(theta > 1e-12, theta, 1.0)
    Kx = np.zeros((len(rvecs), 3, 3))
    Kx[:, 0, 1], Kx[:, 0, 2], Kx[:, 1, 2] = -k[:, 2], k[:, 1], -k[:, 0]
    Kx = Kx - Kx.transpose(0, 2, 1)
    s, c = np.sin(theta)[:, :, None], np.cos(theta)[:, :, None]
    return np.eye(3) + s * Kx + (1 - c) * Kx @ Kx


def _bundle_adjust(rig: Rig, obs: np.ndarray, weights: np.ndarray, points: np.ndarray, loss_scale_px: float,
                   max_evaluations: int, frame_shift: Optional[np.ndarray] = None) -> tuple[Rig, np.ndarray, Any]:
    """Adjust camera poses (the first fixed) and points ``(T, K, 3)`` to undistorted normalised
    observations ``obs (V, T, K, 2)`` with ``weights (V, T, K)`` (0: unused); residuals in pixels
    (times each camera's focal length), soft-L1 loss of scale ``loss_scale_px``.

    ``frame_shift (V,)`` (frames, within +-0.5): camera v's frame t shows the moment ``t -
    frame_shift[v]``, its observation compares with the points linearly interpolated there. A
    point takes part where two or more cameras see it at that frame; the others are returned as
    zeros."""
    from scipy.optimize import least_squares
    from scipy.sparse import coo_matrix

    v, t_count, k_count = weights.shape
    used = (weights > 0).sum(axis=0) >= 2  # (T, K)
    shift = np.zeros(v) if frame_shift is None else np.asarray(frame_shift, dtype=np.float64)
    cam_idx, frame, kp_idx = np.nonzero(weights > 0)
    moment = frame - shift[cam_idx]
    lo = np.floor(moment + 1e-9).astype(int)
    frac = np.clip(moment - lo, 0.0, 1.0)
    hi = np.where(frac > 1e-9, lo + 1, lo)
    inside = (lo >= 0) & (hi < t_count)
    lo, hi = np.clip(lo, 0, t_count - 1), np.clip(hi, 0, t_count - 1)
    keep = inside & used[lo, kp_idx] & used[hi, kp_idx]
    cam_idx, frame, kp_idx, lo, hi, frac = cam_idx[keep], frame[keep], kp_idx[keep], lo[keep], hi[keep], frac[keep]
    p_lo, p_hi = lo * k_count + kp_idx, hi * k_count + kp_idx
    focal = np.array([0.5 * (c.K[0, 0] + c.K[1, 1]) for c in rig])
    sw = np.sqrt(weights[cam_idx, frame, kp_idx]) * focal[cam_idx]
    target = obs[cam_idx, frame, kp_idx]
    start = np.where(used[..., None], points, 0.0).reshape(-1, 3)
    x0 = np.concatenate([np.concatenate([cv2.Rodrigues(c.R)[0].ravel(), c.t]) for c in list(rig)[1:]] + [start.ravel()])
    n_cam = 6 * (v - 1)
    # The scale is free (keypoints alone cannot fix it): hold the second camera's distance from
    # the first, or the solver wanders along that direction and converges slowly.
    baseline = float(np.linalg.norm(rig[1].center - rig[0].center))
    gauge_weight = float(np.sqrt(len(cam_idx))) * focal.mean()
    first = np.concatenate([cv2.Rodrigues(rig[0].R)[0].ravel(), rig[0].t])

    def residuals(x: np.ndarray) -> np.ndarray:
        poses = np.concatenate([first[None], x[:n_cam].reshape(v - 1, 6)])
        R = _rodrigues(poses[:, :3])
        X = x[n_cam:].reshape(-1, 3)
        at = X[p_lo] + (X[p_hi] - X[p_lo]) * frac[:, None]
        cam = np.einsum("oij,oj->oi", R[cam_idx], at) + poses[cam_idx, 3:]
        z = np.maximum(cam[:, 2:3], 1e-6)
        centre1 = -R[1].T @ poses[1, 3:]
        gauge = (np.linalg.norm(centre1 - rig[0].center) - baseline) / baseline * gauge_weight
        return np.concatenate([((cam[:, :2] / z - target) * sw[:, None]).ravel(), [gauge]])

    # Jacobian sparsity: each observation row touches its camera (not the first) and the one or
    # two points it is interpolated from; the gauge row the second camera.
    m = len(cam_idx)
    rows, cols = [], []
    for axis in (0, 1):
        obs_rows = 2 * np.arange(m) + axis
        for k in range(3):
            rows += [obs_rows, obs_rows]
            cols += [n_cam + 3 * p_lo + k, n_cam + 3 * p_hi + k]
        moving = cam_idx > 0
        for k in range(6):
            rows.append(obs_rows[moving])
            cols.append(6 * (cam_idx[moving] - 1) + k)
    rows.append(np.full(6, 2 * m))
    cols.append(np.arange(6))
    rr, cc = np.concatenate(rows), np.concatenate(cols)
    sparsity = coo_matrix((np.ones(len(rr), dtype=np.int8), (rr, cc)), shape=(2 * m + 1, x0.size)).tocsr()
    sparsity.data[:] = 1  # duplicates (a point's two interpolation ends at the same frame) summed
    result = least_squares(residuals, x0, jac_sparsity=sparsity, loss="soft_l1", f_scale=loss_scale_px,
                           x_scale="jac", method="trf", tr_solver="lsmr", max_nfev=max_evaluations,
                           ftol=1e-6, xtol=1e-8)
    cams = [rig[0]]
    for i in range(1, v):
        p = result.x[6 * (i - 1): 6 * i]
        c = rig[i]
        cams.append(Camera(K=c.K, R=cv2.Rodrigues(p[:3])[0], t=p[3:], dist=c.dist, image_size=c.image_size, name=c.name))
    points_out = np.where(used[..., None], result.x[n_cam:].reshape(t_count, k_count, 3), 0.0)
    return Rig(cams), points_out, result


def _project_at_moments(rig: Rig, points: np.ndarray, frame_shift: np.ndarray) -> np.ndarray:
    """Pixels ``(V, T, K, 2)``: each camera's frame t sees the points ``(T, K, 3)`` of the moment
    ``t - frame_shift[v]`` (linear between frames, the ends held)."""
    t_count = points.shape[0]
    out = []
    for i, cam in enumerate(rig):
        moment = np.clip(np.arange(t_count) - frame_shift[i], 0, t_count - 1)
        lo = np.floor(moment).astype(int)
        hi = np.minimum(lo + 1, t_count - 1)
        f = (moment - lo)[:, None, None]
        at = points[lo] * (1 - f) + points[hi] * f
        out.append(cam.project(at))
    return np.stack(out)


def _unswap(pix: np.ndarray, conf: np.ndarray, projected: np.ndarray, valid: np.ndarray,
            mirror: list[int]) -> tuple[np.ndarray, np.ndarray, int]:
    """Swap left and right keypoints in the (frame, camera) detections ``pix (T, V, K, 2)`` whose
    mirrored labels reproject at under half the error; returns the new pixels, confidences and
    the number of detections swapped."""
    pix, conf = pix.copy(), conf.copy()
    proj = projected.transpose(1, 0, 2, 3)  # (T, V, K, 2)
    seen = (conf > 0) & valid[:, None]
    same = np.linalg.norm(proj - pix, axis=-1)
    flipped = np.linalg.norm(proj - pix[:, :, mirror], axis=-1)
    seen_f = seen & seen[:, :, mirror]
    cnt = np.maximum(seen_f.sum(-1), 1)
    e_same = np.where(seen_f, same, 0).sum(-1) / cnt
    e_flip = np.where(seen_f, flipped, 0).sum(-1) / cnt
    swap = (e_flip < 0.5 * e_same) & (seen_f.sum(-1) >= 4)
    pix[swap] = pix[swap][:, mirror]
    conf[swap] = conf[swap][:, mirror]
    return pix, conf, int(swap.sum())


def _world_frame(rig: Rig, X: np.ndarray, valid: np.ndarray, foot: Sequence[int], head: Sequence[int],
                 up: str) -> tuple[Rig, np.ndarray, float]:
    """The rig moved to an ``up``-up frame with the floor at height 0 (see the module docstring);
    also the moved points ``(T, K, 3)`` and the head keypoints' height (95th percentile over frames,
    rig units)."""
    feet = np.where(valid[:, foot, None], X[:, foot], np.nan)
    heads = np.where(valid[:, head, None], X[:, head], np.nan)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # frames without head or feet: NaN, as meant
        axis = np.nanmean(heads, axis=1) - np.nanmean(feet, axis=1)  # (T, 3) feet -> head
    axis = axis[np.isfinite(axis).all(axis=1)]
    if len(axis) < 5:
        raise CalibrationError(f"the person's head and feet are triangulated together in {len(axis)} frames; "
                               "need 5 or more to find which way is up")
    axis /= np.linalg.norm(axis, axis=1, keepdims=True)
    up0 = np.median(axis, axis=0)
    up0 /= np.linalg.norm(up0)
    foot_pts = feet.reshape(-1, 3)
    foot_pts = foot_pts[np.isfinite(foot_pts).all(axis=1)]
    heights = foot_pts @ up0
    low = foot_pts[heights <= np.quantile(heights, 0.2)]  # the feet while they stand
    centre = low.mean(axis=0)
    _, sv, vt = np.linalg.svd(low - centre)
    normal = vt[2] if vt[2] @ up0 > 0 else -vt[2]
    walk = vt[0]
    if sv[1] < 0.3 * sv[0] or normal @ up0 < np.cos(np.radians(20)):
        # The stance points lie along one line (walking straight): they fix the tilt along the
        # walk only; across it, the body axis does.
        normal = up0 - (up0 @ walk) * walk
        normal /= np.linalg.norm(normal)
    side = np.cross(normal, walk)
    floor = np.stack([centre, centre + walk, centre + side])
    moved = align_world(rig, floor, up=up, origin=centre, forward=walk)
    # The similarity align_world applied, recovered from the first camera's pose.
    Rw = moved[0].R.T @ rig[0].R
    tw = moved[0].center - Rw @ rig[0].center
    Xw = X @ Rw.T + tw
    up_axis = 2 if up == "z" else 1
    head_h = np.where(valid[:, head], Xw[:, head, up_axis], np.nan)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # frames without the head: NaN, skipped below
        per_frame = np.nanmean(head_h, axis=1)
    per_frame = per_frame[np.isfinite(per_frame)]
    return moved, Xw, float(np.quantile(per_frame, 0.95))


def calibrate_from_keypoints(
    keypoints: np.ndarray,
    intrinsics: Sequence[Camera],
    foot: Sequence[int],
    head: Sequence[int],
    person_height: Optional[float] = 1.75,
    camera_distance: Optional[tuple[int, int, float]] = None,
    head_height_ratio: float = EYE_HEIGHT_RATIO,
    up: str = "z",
    min_confidence: float = 0.5,
    max_median_error_px: float = 15.0,
    loss_scale_px: float = 4.0,
    max_evaluations: int = 200,
    mirror: Optional[Sequence[int]] = None,
    pair_threshold_px: float = 8.0,
    time_offsets: Optional[Sequence[float]] = None,
    halves: bool = True,
    progress: Progress = no_progress,
) -> tuple[Rig, PersonCalibrationReport]:
    """Calibrate a rig's extrinsics from one person's keypoints (see the module docstring).

    Args:
        keypoints: ``(T, V, K, 3)`` pixels and confidence per frame, camera and keypoint (0:
            not seen), synchronised.
        intrinsics: V cameras whose ``K``, ``dist``, ``image_size`` and ``name`` are used.
        foot: keypoint indices on the feet (ankles, heels, toes): they fix the floor.
        head: keypoint indices on the head (the eyes, with the default ``head_height_ratio``).
        person_height: the person's height in metres (the scale), unless ``camera_distance``.
        camera_distance: ``(a, b, metres)``, the measured distance between cameras a and b.
        head_height_ratio: height of the ``head`` keypoints over stature.
        up: ``"z"`` or ``"y"``: the world's up axis.
        min_confidence: keypoints below it are not used.
        max_median_error_px: a camera whose median reprojection error is larger is a problem
            (body keypoint detectors place joints several pixels apart from view to view: a lab's
            marker calibration reprojects them at about 10 px).
        loss_scale_px: where the robust loss turns from quadratic to linear, pixels.
        max_evaluations: bundle adjustment function evaluations at most (beyond: not converged).
        mirror: for each keypoint, the index of its left/right counterpart (itself on the
            midline): detections whose left and right are swapped are found and corrected after a
            first bundle adjustment, then everything is adjusted again.
        pair_threshold_px: the essential matrices' RANSAC inlier threshold, pixels. Body keypoint
            detectors disagree by about 9 px from view to view (the bundle adjustment's median
            error on the Pose2Sim demo); at 3 px a fifth of the keypoints were inliers and, on
            the demo with cam03 shifted by 3 frames, the reconstruction started from a wrong
            pair pose and the bundle adjustment did not converge. 8 px was chosen on that
            convergence, not on the comparison with the lab's calibration.
        time_offsets: per camera, frames (sub-frame allowed): frame ``f + offset`` of a camera
            shows the moment of frame ``f`` of the first (``mvspin sync``'s convention). The
            keypoints are moved by the whole frames, and the bundle adjustment compares each
            camera's observations with the points interpolated at its remaining fraction (not
            the detections: interpolating those blends a left/right swap into points on neither).
        halves: also calibrate from the first and from the second half of the frames alone and
            report, per camera, how far the two agree (centre and rotation after a similarity
            alignment): a check of repeatability that needs no reference. The recording's
            calibration is usually closer to the truth than either half's; where the halves
            disagree, the motion did not pin the cameras (a short straight walk leaves camera
            heights and tilts loosely fixed). Doubles the time.
        progress: stages ``"pairs"``, ``"register"``, ``"bundle adjustment"`` (and ``"halves"``).

    Returns:
        ``(rig, report)``: the rig in metres and :class:`PersonCalibrationReport` (its ``problems``
        list what makes the result implausible; the caller decides whether to write it).

    Raises:
        CalibrationError: too few cameras or common keypoints, cameras that cannot be linked,
            no frames with head and feet.
    """
    kp = np.asarray(keypoints, dtype=np.float64)
    check_shape("calibrate_from_keypoints: keypoints", kp, ["T", "V", "K", 3])
    t_count, v, k_count, _ = kp.shape
    cams = list(intrinsics)
    if v < 2 or len(cams) != v:
        raise CalibrationError(f"need 2+ cameras and one intrinsics each: keypoints of {v}, intrinsics of {len(cams)}")
    if up not in UP_AXES:
        raise CalibrationError(f"up must be one of {', '.join(UP_AXES)}, got {up!r}")
    if camera_distance is None and not (person_height and person_height > 0):
        raise CalibrationError("give person_height (metres) or camera_distance for the scale")
    shift = np.zeros(v)
    if time_offsets is not None:
        offsets = np.asarray(time_offsets, dtype=np.float64)
        if offsets.shape != (v,) or not np.isfinite(offsets).all():
            raise CalibrationError(f"time_offsets: need {v} finite offsets (one per camera), got {list(time_offsets)}")
        whole = np.round(offsets)
        kp = shift_keypoints(kp, whole)
        shift = offsets - whole
    conf = np.where(np.isfinite(kp[..., :2]).all(-1), kp[..., 2], 0.0)
    conf = np.where(conf >= min_confidence, conf, 0.0)  # (T, V, K)
    pix = np.nan_to_num(kp[..., :2])
    norm = np.stack([_normalised(pix[:, i], cams[i]) for i in range(v)], axis=1)  # (T, V, K, 2)
    focal = np.mean([0.5 * (c.K[0, 0] + c.K[1, 1]) for c in cams])

    scores = np.zeros((v, v))
    rel: dict[tuple[int, int], tuple[np.ndarray, np.ndarray]] = {}
    pairs = []
    for a in range(v):
        for b in range(a + 1, v):
            both = (conf[:, a] > 0) & (conf[:, b] > 0)
            n = int(both.sum())
            inliers = 0
            if n >= _MIN_PAIR_POINTS:
                R, t, inliers = relative_pose(norm[:, a][both], norm[:, b][both], pair_threshold_px / focal)
                rel[(a, b)] = (R, t)
                rel[(b, a)] = (R.T, -R.T @ t)
            scores[a, b] = scores[b, a] = inliers
            pairs.append((cams[a].name, cams[b].name, n, inliers))
        progress("pairs", a + 1, v)
    order = _spanning_order(scores)
    if len(order) < v:
        missing = sorted(set(range(v)) - {c for c, _ in order})
        raise CalibrationError(f"cameras {', '.join(cams[i].name for i in missing)} share too few confident "
                               f"keypoints with the others (need {_MIN_PAIR_POINTS}+ per pair)")
    # Pose of each camera in the first placed camera's frame; the first pair's baseline is 1.
    poses: dict[int, tuple[np.ndarray, np.ndarray]] = {order[0][0]: (np.eye(3), np.zeros(3))}
    R01, t01 = rel[(order[0][0], order[1][0])]
    poses[order[1][0]] = (R01, t01)
    joined = {order[0][0]: "reference", order[1][0]: f"essential matrix with {cams[order[0][0]].name}"}
    flat_pix = pix.transpose(1, 0, 2, 3).reshape(v, -1, 2)
    flat_w = conf.transpose(1, 0, 2).reshape(v, -1)

    def current_rig(indices: Sequence[int]) -> Rig:
        return Rig([Camera(K=cams[i].K, R=poses[i][0], t=poses[i][1], dist=cams[i].dist,
                           image_size=cams[i].image_size, name=cams[i].name) for i in indices])

    for step, (c, parent) in enumerate(order[2:], start=3):
        placed = [i for i, _ in order[: step - 1]]
        X, ok = _triangulate(current_rig(placed), flat_pix[placed], flat_w[placed])
        use = ok & (flat_w[c] > 0)
        if use.sum() >= 12:
            found, rvec, tvec, inl = cv2.solvePnPRansac(X[use], norm.transpose(1, 0, 2, 3).reshape(v, -1, 2)[c][use],
                                                        np.eye(3), None, reprojectionError=4.0 / focal,
                                                        iterationsCount=500, flags=cv2.SOLVEPNP_EPNP)
        else:
            found = False
        if found:
            poses[c] = (cv2.Rodrigues(rvec)[0], tvec.reshape(3))
            joined[c] = f"PnP on {int(use.sum())} triangulated keypoints"
        else:  # chain the pair's relative pose (its translation's scale from the parent's baseline)
            assert parent is not None
            Rr, tr = rel[(parent, c)]
            Rp, tp = poses[parent]
            poses[c] = (Rr @ Rp, Rr @ tp + tr)
            joined[c] = f"essential matrix with {cams[parent].name} (chained)"
        progress("register", step, v)
    rig = current_rig(range(v))
    swapped = 0
    shape = (v, t_count, k_count)
    for round_ in range(2 if mirror is not None else 1):
        X, ok = _triangulate(rig, flat_pix, flat_w)
        weights = flat_w * ok[None]
        weights = weights * ((weights > 0).sum(axis=0) >= 2)[None]
        progress("bundle adjustment", round_, 2 if mirror is not None else 1)
        rig, Xtk, result = _bundle_adjust(rig, norm.transpose(1, 0, 2, 3), weights.reshape(shape),
                                          X.reshape(t_count, k_count, 3), loss_scale_px, max_evaluations,
                                          frame_shift=shift)
        used = (weights.reshape(shape) > 0).sum(axis=0) >= 2  # (T, K)
        if mirror is None or round_ == 1:
            break
        # Detectors swap a person's left and right in some frames and cameras: where the
        # mirrored labels fit the adjusted points far better, use them and adjust again.
        projected = _project_at_moments(rig, Xtk, shift)
        pix, conf, swapped = _unswap(pix, conf, projected, valid=used, mirror=list(mirror))
        norm = np.stack([_normalised(pix[:, i], cams[i]) for i in range(v)], axis=1)
        flat_pix = pix.transpose(1, 0, 2, 3).reshape(v, -1, 2)
        flat_w = conf.transpose(1, 0, 2).reshape(v, -1)
    progress("bundle adjustment", 1, 1)
    moved, Xw, head_height = _world_frame(rig, Xtk, used, foot, head, up)
    stature = head_height / head_height_ratio
    if camera_distance is not None:
        a, b, metres = camera_distance
        scale = metres / float(np.linalg.norm(moved[a].center - moved[b].center))
        scale_words = f"cameras {cams[a].name} and {cams[b].name} {metres:g} m apart"
        height = stature * scale
    else:
        assert person_height is not None
        scale = person_height / stature
        scale_words = f"person {person_height:g} m tall (head keypoints {head_height_ratio:g} of that)"
        height = person_height
    final = transform_rig(moved, np.eye(3), scale=scale)
    # Report errors in pixels with the full lens model.
    projected = _project_at_moments(final, Xw * scale, shift).reshape(v, -1, 2)
    err = np.linalg.norm(projected - flat_pix, axis=-1)
    mask = weights > 0
    cam_reports, problems = [], []
    for i in range(v):
        e = err[i][mask[i]]
        med = float(np.median(e)) if e.size else float("nan")
        cam_reports.append(PersonCameraReport(cams[i].name, int(e.size), med, float(e.mean()) if e.size else float("nan"),
                                              joined[i]))
        if not med <= max_median_error_px:
            problems.append(f"camera {cams[i].name}: median reprojection error {med:.2f} px is over "
                            f"{max_median_error_px:g} px")
    converged = bool(result.status > 0)
    if not converged:
        problems.append(f"bundle adjustment did not converge in {max_evaluations} evaluations ({result.message})")
    halves_words, half_rigs, half_frames = "not compared (halves=False)", None, 0
    if halves:
        halves_words, half_rigs, half_frames = _compare_halves(np.asarray(keypoints, dtype=np.float64), cam_reports, cams, progress,
                                       dict(foot=foot, head=head, person_height=person_height,
                                            camera_distance=camera_distance, head_height_ratio=head_height_ratio,
                                            up=up, min_confidence=min_confidence, loss_scale_px=loss_scale_px,
                                            max_evaluations=max_evaluations, mirror=mirror,
                                            pair_threshold_px=pair_threshold_px, time_offsets=time_offsets))
    all_err = err[mask]
    report = PersonCalibrationReport(
        cameras=cam_reports, pairs=pairs, points=int(used.sum()), median_error_px=float(np.median(all_err)),
        converged=converged, bundle_adjustment=str(result.message), scale=scale_words,
        world=f"{up}-up, floor under the lowest foot keypoints", person_height_m=float(height),
        max_median_error_px=max_median_error_px, swapped=swapped, problems=problems, halves=halves_words,
        half_rigs=half_rigs, half_frames=half_frames)
    return final, report


def _compare_halves(keypoints: np.ndarray, cam_reports: list[PersonCameraReport], cams: Sequence[Camera],
                    progress: Progress, options: dict[str, Any]) -> tuple[str, Optional[tuple[Rig, Rig]], int]:
    """Calibrate from each half of the frames (``options``: :func:`calibrate_from_keypoints`'s),
    write the per-camera differences into ``cam_reports``; return the line for the report, the
    two rigs and the first frame of the second half (None and 0 where not compared)."""
    if len(cams) < 3:
        return "not compared (needs 3 or more cameras to align the two rigs)", None, 0
    half = len(keypoints) // 2
    rigs = []
    for i, frames in enumerate((slice(0, half), slice(half, None))):
        progress("halves", i, 2)
        try:
            rigs.append(calibrate_from_keypoints(keypoints[frames], cams, halves=False, **options)[0])
        except CalibrationError as err:
            return f"not compared (frames {frames.start or 0}-{(frames.stop or len(keypoints)) - 1} alone: {err})", None, 0
    progress("halves", 2, 2)
    cmp = compare_rigs(rigs[0], rigs[1])
    for report, centre, angle in zip(cam_reports, cmp.centre_error_m, cmp.rotation_error_deg):
        report.halves_centre_m, report.halves_rotation_deg = centre, angle
    words = (f"the rigs calibrated from frames 0-{half - 1} and {half}-{len(keypoints) - 1} alone differ by up to "
             f"{max(cmp.centre_error_m) * 100:.1f} cm and {max(cmp.rotation_error_deg):.2f} degrees per camera")
    if max(cmp.rotation_error_deg) > _LOOSE_HALVES_DEG:
        words += ("; the motion does not pin the cameras that well: a longer walk through the whole volume "
                  "(turns, not one straight line) gives a steadier rig, or a camera moved during the recording")
    return words, (rigs[0], rigs[1]), half


def held_out_consistency(report: PersonCalibrationReport, keypoints: np.ndarray, reference: Rig,
                         reference_label: str) -> list[tuple[str, EpipolarConsistency]]:
    """The rig of each half of the frames (``report.half_rigs``) and ``reference``, each judged on
    the half the person's rig was not made from (:func:`calibration.rig_comparison.epipolar_consistency`):
    whether the reference agrees with these images as well as a calibration from them does.
    ``keypoints (T, V, K, 3)`` synchronised (offsets applied); empty without halves."""
    if report.half_rigs is None:
        return []
    half, end = report.half_frames, len(keypoints)
    rows = []
    for made, judged, words in ((0, slice(half, None), f"frames {half}-{end - 1}"), (1, slice(0, half), f"frames 0-{half - 1}")):
        rows.append((f"person, from the other half; {words}", epipolar_consistency(report.half_rigs[made], keypoints[judged])))
        rows.append((f"{reference_label}; {words}", epipolar_consistency(reference, keypoints[judged])))
    return rows
