"""Frame offsets between unsynchronised cameras, from one person's 2D keypoints.

Convention: camera ``v``'s offset ``d_v`` (frames, may be fractional) says that its frame
``f + d_v`` shows the moment of the reference camera's frame ``f`` (the reference has 0). A camera
that started recording 7 frames before the reference has offset +7; :func:`shift_keypoints` moves
every camera onto the reference's frame numbers.

Two estimates:

- :func:`offsets_from_speeds` (no calibration needed): each camera's keypoint speed over time
  (the sum over confident keypoints of their image displacement per frame, over the person's
  size in the image: a view-independent "how much is moving now") is cross-correlated with every
  other camera's (Pearson correlation over the overlap at each lag); the peak, refined to sub-frame
  by a parabola through it and its neighbours, gives each pair's lag, and a least-squares fit of
  all pairs' lags (weighted by their peak correlation) the per-camera offsets.
- :func:`offsets_from_rig` (with a calibration): for each camera and candidate lag against the
  reference, the median distance of its keypoints from the epipolar lines of the reference's
  (undistorted, in pixels); the minimum, refined by a parabola, is the offset. Exact where the
  person moves, and independent of how the motion looks from each side.
"""
from __future__ import annotations

import warnings
from dataclasses import dataclass
from typing import Optional

import numpy as np
import torch

from calibration.camera import Rig
from calibration.projection import undistort_points
from mvspin.errors import CalibrationError, check_shape

__all__ = ["SyncResult", "speed_signals", "offsets_from_speeds", "offsets_from_rig", "shift_keypoints"]


@dataclass
class SyncResult:
    """Per camera (in order): ``offsets`` (frames; the reference has 0) and ``scores`` (speeds:
    the peak correlation with the reference, 1 is perfect; rig: the median epipolar distance at
    the offset, pixels); ``method``: ``"speeds"`` or ``"rig"``."""

    offsets: list[float]
    scores: list[float]
    method: str
    reference: int = 0


def _parabolic(values: np.ndarray, i: int) -> float:
    """Sub-sample position of the extremum at ``i`` of ``values`` (a parabola through i-1, i, i+1)."""
    if i <= 0 or i >= len(values) - 1 or not np.isfinite(values[i - 1:i + 2]).all():
        return float(i)
    a, b, c = values[i - 1], values[i], values[i + 1]
    denom = a - 2 * b + c
    return float(i) if denom == 0 else float(i + 0.5 * (a - c) / denom)


def speed_signals(keypoints: np.ndarray, min_confidence: float = 0.5) -> np.ndarray:
    """``(T - 1, V)`` per camera the summed image speed of the confident keypoints between frames
    ``t`` and ``t + 1``, over the person's median image size (NaN where nothing is seen)."""
    kp = np.asarray(keypoints, dtype=np.float64)
    check_shape("speed_signals: keypoints", kp, ["T", "V", "K", 3])
    ok = kp[..., 2] >= min_confidence
    both = ok[1:] & ok[:-1]  # (T-1, V, K)
    step = np.linalg.norm(kp[1:, ..., :2] - kp[:-1, ..., :2], axis=-1)
    span = np.where(ok[..., None], kp[..., :2], np.nan)
    with np.errstate(invalid="ignore"), warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # frames where a camera sees nobody: NaN, as meant
        size = np.nanmax(span, axis=2) - np.nanmin(span, axis=2)  # (T, V, 2)
        scale = np.nanmedian(np.linalg.norm(size, axis=-1), axis=0)  # (V,)
    # Median over the keypoints seen in both frames: a sum jumps when one drops out, a mean when
    # one is misdetected or its left and right swap.
    count = both.sum(-1)
    speed = np.nanmedian(np.where(both, step, np.nan), axis=-1) if both.any() else np.full(both.shape[:2], np.nan)
    return np.where(count >= 3, speed / scale, np.nan)


def _lagged_correlation(a: np.ndarray, b: np.ndarray, lag: int, min_overlap: int) -> float:
    """Pearson correlation of ``a[t]`` with ``b[t + lag]`` over the frames both have."""
    if lag >= 0:
        x, y = a[: len(a) - lag] if lag else a, b[lag:]
    else:
        x, y = a[-lag:], b[: len(b) + lag]
    n = min(len(x), len(y))
    x, y = x[:n], y[:n]
    ok = np.isfinite(x) & np.isfinite(y)
    if ok.sum() < min_overlap:
        return np.nan
    x, y = x[ok] - x[ok].mean(), y[ok] - y[ok].mean()
    denom = np.sqrt((x * x).sum() * (y * y).sum())
    return float((x * y).sum() / denom) if denom > 0 else np.nan


def offsets_from_speeds(keypoints: np.ndarray, max_offset: int = 60, min_confidence: float = 0.5,
                        reference: int = 0, min_overlap: int = 20) -> SyncResult:
    """Per-camera offsets by cross-correlating keypoint speeds (see the module docstring).

    Args:
        keypoints: ``(T, V, K, 3)`` one person's pixels and confidence per frame and camera.
        max_offset: largest offset searched, frames (either sign).
        min_confidence: keypoints below it are not used.
        reference: the camera whose offset is 0.
        min_overlap: fewest common frames a lag is scored on.

    Raises:
        CalibrationError: a camera without enough usable frames, or no correlation peak.
    """
    speeds = speed_signals(keypoints, min_confidence)
    v = speeds.shape[1]
    lags = np.arange(-max_offset, max_offset + 1)
    lag_of: dict[tuple[int, int], tuple[float, float]] = {}
    peaks = np.zeros((v, v))
    for a in range(v):
        for b in range(a + 1, v):
            corr = np.array([_lagged_correlation(speeds[:, a], speeds[:, b], int(d), min_overlap) for d in lags])
            if not np.isfinite(corr).any():
                continue
            i = int(np.nanargmax(corr))
            lag_of[(a, b)] = (float(lags[0] + _parabolic(corr, i)), max(float(corr[i]), 1e-3) ** 2)
            peaks[a, b] = peaks[b, a] = corr[i]
    if len(lag_of) < v - 1:
        raise CalibrationError(f"keypoint speeds do not overlap for {min_overlap}+ frames between every camera and "
                               "another; record longer, or give a smaller max_offset")
    offsets = _solve_offsets(lag_of, v, reference)
    scores = [1.0 if i == reference else float(peaks[reference, i]) for i in range(v)]
    return SyncResult(offsets=[float(o) for o in offsets], scores=scores, method="speeds", reference=reference)


def _fundamental(rig: Rig, a: int, b: int) -> np.ndarray:
    """Essential matrix ``E`` with ``x_b^T E x_a = 0`` for normalised coordinates."""
    R = rig[b].R @ rig[a].R.T
    t = rig[b].t - R @ rig[a].t
    tx = np.array([[0, -t[2], t[1]], [t[2], 0, -t[0]], [-t[1], t[0], 0]])
    return tx @ R


def _solve_offsets(lags: dict[tuple[int, int], tuple[float, float]], v: int, reference: int) -> np.ndarray:
    """Per-camera offsets (reference 0) from pairwise ``{(a, b): (lag of b after a, weight)}`` by
    weighted least squares."""
    A = np.zeros((len(lags), v))
    y, w = np.zeros(len(lags)), np.zeros(len(lags))
    for i, ((a, b), (lag, weight)) in enumerate(lags.items()):
        A[i, b], A[i, a], y[i], w[i] = 1.0, -1.0, lag, np.sqrt(weight)
    keep = np.arange(v) != reference
    if len(lags) < v - 1 or np.linalg.matrix_rank(A[:, keep]) < v - 1:
        raise CalibrationError("the pairwise lags do not link every camera to the reference")
    sol, *_ = np.linalg.lstsq(A[:, keep] * w[:, None], y * w, rcond=None)
    out = np.zeros(v)
    out[keep] = sol
    return out


def offsets_from_rig(keypoints: np.ndarray, rig: Rig, max_offset: int = 60, min_confidence: float = 0.5,
                     reference: int = 0, min_overlap: int = 20, refine_frames: int = 4) -> SyncResult:
    """Per-camera offsets minimising the epipolar distances between the cameras' keypoints (see
    the module docstring): every pair's best lag (sub-frame), then all pairs' lags fitted by least
    squares (weighted by how sharp each pair's minimum is); with 3+ cameras, each camera's offset
    is then refined within ``refine_frames`` frames by minimising the triangulation error of all
    cameras together (epipolar distances miss motion along the epipolar lines; triangulation
    from three or more views does not).

    Raises:
        CalibrationError: keypoints and rig of different camera counts, or cameras without
            enough common frames at any lag.
    """
    kp = np.asarray(keypoints, dtype=np.float64)
    check_shape("offsets_from_rig: keypoints", kp, ["T", len(rig), "K", 3])
    t_count, v, k_count, _ = kp.shape
    norm = np.stack([undistort_points(torch.from_numpy(np.ascontiguousarray(kp[:, i, :, :2].reshape(-1, 2))),
                                      torch.from_numpy(c.K), torch.from_numpy(c.dist) if c.dist.size else None
                                      ).numpy().reshape(t_count, k_count, 2) for i, c in enumerate(rig)], axis=1)
    ok = kp[..., 2] >= min_confidence
    homog = np.concatenate([norm, np.ones(norm.shape[:-1] + (1,))], axis=-1)  # (T, V, K, 3)
    lags = np.arange(-max_offset, max_offset + 1)
    pair_lags: dict[tuple[int, int], tuple[float, float]] = {}
    best_cost = np.full((v, v), np.nan)
    for a in range(v):
        for b in range(a + 1, v):
            E = _fundamental(rig, a, b)
            focal = 0.5 * (rig[b].K[0, 0] + rig[b].K[1, 1])
            costs = np.full(len(lags), np.nan)
            for j, lag in enumerate(lags):
                d = int(lag)
                lo, hi = max(0, -d), min(t_count, t_count - d)
                if hi - lo < min_overlap:
                    continue
                use = ok[lo:hi, a] & ok[lo + d:hi + d, b]
                if use.sum() < min_overlap:
                    continue
                line = homog[lo:hi, a][use] @ E.T  # epipolar lines in b
                dist = np.abs((line * homog[lo + d:hi + d, b][use]).sum(-1)) / np.linalg.norm(line[:, :2], axis=-1)
                costs[j] = np.median(dist) * focal
            if not np.isfinite(costs).any():
                continue
            i = int(np.nanargmin(costs))
            # Weight: how far the minimum stands below the typical cost (a flat curve says little).
            contrast = max(float(np.nanmedian(costs) - costs[i]), 1e-6) / max(float(costs[i]), 1e-6)
            pair_lags[(a, b)] = (float(lags[0] + _parabolic(costs, i)), contrast**2)
            best_cost[a, b] = best_cost[b, a] = costs[i]
    if not pair_lags:
        raise CalibrationError(f"no pair of cameras sees {min_overlap}+ common keypoints at any lag within {max_offset} frames")
    offsets = _solve_offsets(pair_lags, v, reference)
    if v >= 3:
        offsets, scores = _refine_by_triangulation(kp, rig, offsets, reference, min_confidence, search=refine_frames)
    else:
        scores = np.array([0.0 if i == reference else float(np.nanmin(best_cost[i])) for i in range(v)])
    return SyncResult(offsets=[float(o) for o in offsets], scores=[float(x) for x in scores], method="rig",
                      reference=reference)


def _triangulation_cost(kp: np.ndarray, rig: Rig, offsets: np.ndarray, min_confidence: float,
                        frames: slice) -> float:
    """Mean reprojection error (pixels, each error capped at 30 px so that misdetections do not
    dominate) of every camera's keypoints in the reference's ``frames``, triangulated from all of
    them after shifting each camera by its (integer) offset. The frames must be the same for
    every offset compared: a changing frame set biases the comparison."""
    from calibration.triangulation import triangulate_points

    shifted = shift_keypoints(kp, offsets)[frames]
    t_count, v, k_count, _ = shifted.shape
    pix = shifted[..., :2].transpose(1, 0, 2, 3).reshape(v, -1, 2)
    w = np.where(shifted[..., 2] >= min_confidence, shifted[..., 2], 0.0).transpose(1, 0, 2).reshape(v, -1)
    w = w * ((w > 0).sum(axis=0) >= 3)[None]  # points seen by 3+ cameras: one camera cannot fit them alone
    tri = triangulate_points(torch.from_numpy(pix), torch.from_numpy(w), rig.to_torch(torch.float64), threshold_px=None)
    err = np.linalg.norm(rig.project(tri.points.numpy()) - pix, axis=-1)
    mask = (w > 0) & tri.valid.numpy()[None]
    return float(np.minimum(err[mask], 30.0).mean()) if mask.sum() >= 20 else float("inf")


def _refine_by_triangulation(kp: np.ndarray, rig: Rig, offsets: np.ndarray, reference: int, min_confidence: float,
                             search: int) -> tuple[np.ndarray, np.ndarray]:
    """Coordinate descent over the cameras' integer offsets (within ``search`` frames of the
    start), each minimising the multi-view triangulation error; then sub-frame steps (parabolas
    through the cost half and a quarter frame either side). Returns offsets (the reference's 0)
    and per-camera final costs."""
    offsets = np.round(np.asarray(offsets, dtype=np.float64))
    start = offsets.copy()
    v = len(offsets)
    # Reference frames that every camera has at every candidate offset.
    frames = slice(int(max(0.0, -(start.min() - search - 1))), int(kp.shape[0] - max(0.0, start.max() + search + 1)))
    if frames.stop - frames.start < 10:
        return offsets, np.full(v, np.nan)
    # Every camera moves, the reference too: moving it by one frame is moving all the others the
    # other way, a step that one-camera-at-a-time descent could not take otherwise.
    for _ in range(3):
        changed = False
        for b in range(v):
            candidates = np.arange(start[b] - search, start[b] + search + 1)
            costs = []
            for d in candidates:
                trial = offsets.copy()
                trial[b] = d
                costs.append(_triangulation_cost(kp, rig, trial, min_confidence, frames))
            cost_arr = np.array(costs)
            best = float(candidates[int(np.argmin(cost_arr))])
            changed |= best != offsets[b]
            offsets[b] = best
        if not changed:
            break
    # Sub-frame: each camera in turn, the others at their current (fractional) offsets, a parabola
    # through the costs half a frame either side (keypoints interpolated between frames).
    final = offsets.copy()
    scores = np.zeros(v)
    for step in (0.5, 0.25):
        for b in range(v):
            if b == reference:
                continue
            costs = []
            for delta in (-step, 0.0, step):
                trial = final.copy()
                trial[b] += delta
                costs.append(_triangulation_cost(kp, rig, trial, min_confidence, frames))
            c = np.array(costs)
            final[b] += float(np.clip((_parabolic(c, 1) - 1.0) * step, -step, step))
            scores[b] = c[1]
    return final - final[reference], scores


def shift_keypoints(keypoints: np.ndarray, offsets: "list[float] | np.ndarray", frames: Optional[int] = None) -> np.ndarray:
    """Keypoints ``(T, V, ...)`` (last axis ``(x, y, confidence)``) moved onto the reference's frame
    numbers: ``out[f, v] = keypoints[f + offsets[v], v]``, linearly interpolated between frames for
    fractional offsets (confidence: the smaller of the two), zero where the camera has no such
    frame. ``frames``: the output's length (default T)."""
    kp = np.asarray(keypoints)
    t_count, v = kp.shape[:2]
    if len(offsets) != v:
        raise CalibrationError(f"{len(offsets)} offsets for {v} cameras")
    out = np.zeros((frames or t_count,) + kp.shape[1:], dtype=kp.dtype)
    for i, d in enumerate(offsets):
        src = np.arange(out.shape[0]) + float(d)
        lo = np.floor(src).astype(int)
        frac = src - lo
        valid = (lo >= 0) & (lo < t_count) & ((frac < 1e-9) | (lo + 1 < t_count))
        a = kp[np.clip(lo, 0, t_count - 1), i]
        b = kp[np.clip(lo + 1, 0, t_count - 1), i]
        f = frac.reshape((-1,) + (1,) * (kp.ndim - 2))
        mixed = a * (1 - f) + b * f
        mixed[..., 2] = np.where(frac.reshape((-1,) + (1,) * (kp.ndim - 3)) < 1e-9, a[..., 2], np.minimum(a[..., 2], b[..., 2]))
        out[valid, i] = mixed[valid]
    return out
