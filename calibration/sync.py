"""Frame offsets between unsynchronised cameras, from one person's 2D keypoints.

Convention: camera ``v``'s offset ``d_v`` (frames, may be fractional) says that its frame
``f + d_v`` shows the moment of the reference camera's frame ``f`` (the reference has 0). A camera
that started recording 7 frames before the reference has offset +7; :func:`shift_keypoints` moves
every camera onto the reference's frame numbers.

Two estimates:

- :func:`offsets_from_epipolar` (no calibration; intrinsics if known): only at the right offset do
  a person's keypoints in two cameras, over all frames, fit one epipolar geometry (limbs seen at
  different moments do not). Every pair's robust fundamental-matrix cost over whole-frame lags,
  the offsets minimising all pairs' costs together, then per pair a sub-frame refinement
  (essential matrices where intrinsics are known) and least squares over the pairs. Keypoint
  speeds cross-correlated (Pose2Sim's way) were tried first and dropped: a steady walk is
  periodic, and its speed curves match at the wrong lags.
- :func:`offsets_from_rig` (with a calibration): for each camera and candidate lag against the
  reference, the median distance of its keypoints from the epipolar lines of the reference's
  (undistorted, in pixels); the minimum, refined by a parabola, is the offset. Exact where the
  person moves, and independent of how the motion looks from each side.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Optional, Sequence

import cv2
import numpy as np
import torch

from calibration.camera import Camera, Rig
from calibration.projection import undistort_points
from mvspin.errors import CalibrationError, check_shape
from mvspin.progress import Progress, no_progress

__all__ = ["SyncResult", "offsets_from_epipolar", "offsets_from_rig", "robust_fundamental", "robust_essential",
           "essential_matrix", "initial_essential", "shift_keypoints"]


@dataclass
class SyncResult:
    """Per camera (in order): ``offsets`` (frames; the reference has 0) and ``scores`` (epipolar:
    the mean robust epipolar cost against the reference, lower is better; rig: the triangulation
    error at the offset, pixels); ``method``: ``"epipolar"`` or ``"rig"``."""

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


def _sampson(F: np.ndarray, xa: np.ndarray, xb: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Sampson distances ``(N,)`` of correspondences ``xa, xb (N, 2)`` from ``x_b^T F x_a = 0`` (the
    first-order distance to the nearest exact correspondence, in the points' units) and the
    squared gradient norms ``(N,)`` that normalise the algebraic residuals."""
    ha = np.concatenate([xa, np.ones((len(xa), 1))], axis=1)
    hb = np.concatenate([xb, np.ones((len(xb), 1))], axis=1)
    fa, fb = ha @ F.T, hb @ F
    grad = fa[:, 0] ** 2 + fa[:, 1] ** 2 + fb[:, 0] ** 2 + fb[:, 1] ** 2
    return np.abs((hb * fa).sum(axis=1)) / np.sqrt(np.maximum(grad, 1e-300)), grad


def _hartley(x: np.ndarray) -> np.ndarray:
    """The 3x3 similarity that moves points ``(N, 2)`` to mean 0 and mean distance sqrt(2)."""
    c = x.mean(axis=0)
    s = np.sqrt(2.0) / max(float(np.linalg.norm(x - c, axis=1).mean()), 1e-12)
    return np.array([[s, 0.0, -s * c[0]], [0.0, s, -s * c[1]], [0.0, 0.0, 1.0]])


def robust_fundamental(xa: np.ndarray, xb: np.ndarray, loss_scale: float,
                       iterations: int = 20) -> tuple[np.ndarray, np.ndarray]:
    """``(F, distances)``: the matrix with ``x_b^T F x_a = 0`` fitted to ``(N, 2)`` correspondences
    by iteratively reweighted least squares (weighted 8-point on Hartley-normalised points, each
    residual weighted by its Sampson normalisation and a Cauchy weight of scale ``loss_scale``),
    and every correspondence's Sampson distance. Deterministic (no random sampling), so the cost
    moves smoothly with the data; the Cauchy weights make it robust as RANSAC would."""
    Ta, Tb = _hartley(xa), _hartley(xb)
    na, nb = xa @ Ta[:2, :2].T + Ta[:2, 2], xb @ Tb[:2, :2].T + Tb[:2, 2]
    A = np.concatenate([nb[:, :1] * na, nb[:, :1], nb[:, 1:] * na, nb[:, 1:], na, np.ones((len(na), 1))], axis=1)
    w = np.ones(len(xa))
    F = np.eye(3)
    dist = np.zeros(len(xa))
    for _ in range(iterations):
        _, vecs = np.linalg.eigh((A * w[:, None]).T @ A)
        U, S, Vt = np.linalg.svd(vecs[:, 0].reshape(3, 3))
        F = Tb.T @ (U * np.array([S[0], S[1], 0.0])) @ Vt @ Ta
        dist, grad = _sampson(F, xa, xb)
        w = 1.0 / np.maximum(grad, 1e-300) / (1.0 + (dist / loss_scale) ** 2)
        w = w / w.max()
    return F, dist


def _skew(t: np.ndarray) -> np.ndarray:
    return np.array([[0.0, -t[2], t[1]], [t[2], 0.0, -t[0]], [-t[1], t[0], 0.0]])


def initial_essential(xa: np.ndarray, xb: np.ndarray, threshold: float) -> tuple[np.ndarray, np.ndarray]:
    """``(R, t)`` (``x_b = R x_a + t``, ``|t| = 1``) from ``(N, 2)`` normalised correspondences by
    OpenCV's five-point RANSAC with a fixed random seed (the same data give the same pose)."""
    cv2.setRNGSeed(0)
    E, mask = cv2.findEssentialMat(xa, xb, np.eye(3), method=cv2.RANSAC, prob=0.9999, threshold=threshold)
    if E is None or E.shape != (3, 3):
        raise CalibrationError("no essential matrix fits the keypoints of a camera pair")
    _, R, t, _ = cv2.recoverPose(E, xa, xb, np.eye(3), mask=mask.copy())
    return R, t.reshape(3)


def robust_essential(xa: np.ndarray, xb: np.ndarray, loss_scale: float, start: tuple[np.ndarray, np.ndarray],
                     max_evaluations: int = 50) -> tuple[np.ndarray, np.ndarray]:
    """``(E, distances)``: the essential matrix ``[t]x R`` of normalised correspondences ``(N, 2)``
    (5 degrees of freedom: a rotation and a direction) minimising the Cauchy loss (scale
    ``loss_scale``) of their signed Sampson distances, from the pose ``start`` (``(R, t)``);
    and every correspondence's Sampson distance."""
    from scipy.optimize import least_squares

    R0, t0 = start
    t0 = t0 / np.linalg.norm(t0)
    basis = np.linalg.svd(t0[None])[2][1:]  # (2, 3): the plane orthogonal to t0

    def matrix(p: np.ndarray) -> np.ndarray:
        t = t0 + p[3:] @ basis
        return _skew(t / np.linalg.norm(t)) @ cv2.Rodrigues(p[:3])[0] @ R0

    ha = np.concatenate([xa, np.ones((len(xa), 1))], axis=1)
    hb = np.concatenate([xb, np.ones((len(xb), 1))], axis=1)

    def signed(p: np.ndarray) -> np.ndarray:
        E = matrix(p)
        fa, fb = ha @ E.T, hb @ E
        grad = fa[:, 0] ** 2 + fa[:, 1] ** 2 + fb[:, 0] ** 2 + fb[:, 1] ** 2
        return (hb * fa).sum(axis=1) / np.sqrt(np.maximum(grad, 1e-300))

    result = least_squares(signed, np.zeros(5), loss="cauchy", f_scale=loss_scale, max_nfev=max_evaluations,
                           x_scale=1.0, method="trf")
    return matrix(result.x), np.abs(signed(result.x))


def _matched(ka: np.ndarray, kb: np.ndarray, lag: float, min_confidence: float, min_overlap: int,
             frames: slice = slice(None)) -> Optional[tuple[np.ndarray, np.ndarray]]:
    """Camera a's confident keypoints ``(T, K, 3)`` in ``frames`` and camera b's ``lag`` frames
    later (interpolated) as ``(N, 2)`` correspondences; None with under ``min_overlap`` common
    frames (of 3+ common keypoints)."""
    kb_at = shift_keypoints(kb[:, None], [lag], frames=len(ka))[frames, 0]
    ka = ka[frames]
    ok = (ka[..., 2] >= min_confidence) & (kb_at[..., 2] >= min_confidence)
    if (ok.sum(axis=1) >= 3).sum() < min_overlap:
        return None
    return ka[..., :2][ok], kb_at[..., :2][ok]


def _pair_epipolar_cost(ka: np.ndarray, kb: np.ndarray, lag: float, min_confidence: float, loss_scale: float,
                        min_overlap: int, frames: slice = slice(None)) -> float:
    """Mean Cauchy loss (``log(1 + (d / loss_scale)^2)``, d the Sampson distance in pixels) of
    camera a's keypoints ``(T, K, 3)`` (pixels) against camera b's ``lag`` frames later
    (interpolated), after fitting a fundamental matrix to them; NaN with under ``min_overlap``
    common frames. The robust mean, not a median: it counts every correspondence, so it moves
    smoothly with the lag. ``frames``: camera a's frames used."""
    pts = _matched(ka, kb, lag, min_confidence, min_overlap, frames)
    if pts is None:
        return float("nan")
    _, dist = robust_fundamental(pts[0], pts[1], loss_scale)
    return float(np.mean(np.log1p((dist / loss_scale) ** 2)))


def _pair_essential_costs(ka: np.ndarray, kb: np.ndarray, lags: np.ndarray, min_confidence: float, loss_scale: float,
                          focal: float, min_overlap: int, frames: slice = slice(None)) -> np.ndarray:
    """:func:`_pair_epipolar_cost` at each of ``lags`` for normalised keypoints, with essential
    matrices (all refined from the one pose RANSAC finds at the middle lag, so that the costs
    differ by the lag only)."""
    centre = _matched(ka, kb, float(lags[len(lags) // 2]), min_confidence, min_overlap, frames)
    if centre is None:
        return np.full(len(lags), np.nan)
    start = initial_essential(centre[0], centre[1], loss_scale / focal)
    out = np.full(len(lags), np.nan)
    for j, lag in enumerate(lags):
        pts = _matched(ka, kb, float(lag), min_confidence, min_overlap, frames)
        if pts is not None:
            _, dist = robust_essential(pts[0], pts[1], loss_scale / focal, start)
            out[j] = np.mean(np.log1p((dist * focal / loss_scale) ** 2))
    return out


def offsets_from_epipolar(keypoints: np.ndarray, intrinsics: Optional[Sequence[Camera]] = None, max_offset: int = 60,
                          min_confidence: float = 0.5, reference: int = 0, min_overlap: int = 20,
                          loss_scale_px: float = 5.0, progress: Progress = no_progress) -> SyncResult:
    """Per-camera offsets without a calibration, from the epipolar geometry that the keypoints
    themselves imply: only at the right offset do all of a person's keypoints in two cameras fit
    one fundamental matrix (moving limbs seen at different moments do not).

    For every pair of cameras and every whole-frame lag, :func:`robust_fundamental` is fitted to
    all the confident keypoint correspondences of all the common frames and the lag scored by the
    robust mean of their Sampson distances. The whole-frame offsets minimise the sum of all pairs'
    costs together (a pair of cameras facing each other can have a flat curve; the others decide
    for it). Each pair's lag is then refined within two frames on a quarter-frame grid (camera
    b's keypoints interpolated between frames; the same frames of camera a for every candidate)
    by a least-squares parabola, and all pairs' lags give the offsets by weighted least squares.
    With ``intrinsics`` the keypoints are undistorted first and the sub-frame step fits
    essential matrices (5 degrees of freedom, fewer to absorb a wrong lag with).

    A time shift of a person walking straight at constant speed is a translation of the whole
    scene, which a wrong epipolar geometry can absorb: what tells the lags apart is how the
    limbs move and how the walk turns. On short straight walks expect a frame or two of error
    (see the tests); a calibration (:func:`offsets_from_rig`) does better.

    Args:
        keypoints: ``(T, V, K, 3)`` one person's pixels and confidence per frame and camera; use
            well-defined body keypoints (joints), not clusters of face or hand points.
        intrinsics: V cameras whose ``K`` and ``dist`` are used, or None.
        max_offset: largest offset searched, frames (either sign).
        min_confidence: keypoints below it are not used.
        reference: the camera whose offset is 0.
        min_overlap: fewest common frames (with 3+ common keypoints) a lag is scored on.
        loss_scale_px: the Cauchy loss's scale, pixels (detectors place a joint a few pixels
            differently from view to view).
        progress: stage ``"pairs"``.

    Returns:
        :class:`SyncResult` with ``method`` ``"epipolar"``; ``scores``: the mean robust cost at
        each camera's offset against the reference (lower is better).

    Raises:
        CalibrationError: cameras that share no frames at any lag.
    """
    kp = np.array(keypoints, dtype=np.float64)
    check_shape("offsets_from_epipolar: keypoints", kp, ["T", "V", "K", 3])
    t_count, v, k_count, _ = kp.shape
    kp[..., 2] = np.where(np.isfinite(kp[..., :2]).all(-1), kp[..., 2], 0.0)
    kp[..., :2] = np.nan_to_num(kp[..., :2])
    pix, norm, focal = kp, kp, 1.0  # pixels for the whole-frame scan, normalised for the sub-frame step
    if intrinsics is not None:
        if len(intrinsics) != v:
            raise CalibrationError(f"{len(intrinsics)} intrinsics for {v} cameras")
        focal = float(np.mean([0.5 * (c.K[0, 0] + c.K[1, 1]) for c in intrinsics]))
        norm, pix = kp.copy(), kp.copy()
        for i, c in enumerate(intrinsics):
            flat = torch.from_numpy(np.ascontiguousarray(kp[:, i, :, :2].reshape(-1, 2)))
            und = undistort_points(flat, torch.from_numpy(c.K), torch.from_numpy(c.dist) if c.dist.size
                                   else None).numpy().reshape(t_count, k_count, 2)
            norm[:, i, :, :2] = und
            pix[:, i, :, :2] = und @ c.K[:2, :2].T + c.K[:2, 2]  # undistorted pixels
    lags = np.arange(-max_offset, max_offset + 1)
    pairs = [(a, b) for a in range(v) for b in range(a + 1, v)]
    curves = np.full((len(pairs), len(lags)), np.nan)
    for n, (a, b) in enumerate(pairs):
        # Whole frames: the fundamental matrix (7 degrees of freedom) on (undistorted) pixels.
        curves[n] = [_pair_epipolar_cost(pix[:, a], pix[:, b], float(d), min_confidence, loss_scale_px, min_overlap)
                     for d in lags]
        progress("pairs", n + 1, len(pairs))
    if not np.isfinite(curves).any(axis=1).all():
        bad = [f"{a}-{b}" for (a, b), c in zip(pairs, curves) if not np.isfinite(c).any()]
        raise CalibrationError(f"camera pairs {', '.join(bad)} share under {min_overlap} frames with 3+ common "
                               f"confident keypoints at every lag within {max_offset} frames")
    whole = _joint_integer_offsets(curves, pairs, v, max_offset, reference)
    # Sub-frame: each pair's lag within ``window`` frames of the joint solution's, on a
    # quarter-frame grid, all candidates scored on the same frames of camera a (a frame set that
    # changes with the lag biases the comparison: the recording's ends differ from its middle),
    # a least-squares parabola through the costs within a frame of the lowest; then all pairs'
    # lags together by least squares.
    window = 2
    pair_lags: dict[tuple[int, int], tuple[float, float]] = {}
    pair_cost: dict[tuple[int, int], float] = {}
    for a, b in pairs:
        centre = float(whole[b] - whole[a])
        fine = centre + np.arange(-4 * window, 4 * window + 1) * 0.25
        frames = slice(max(0, -int(np.floor(fine[0]))), min(t_count, t_count - 1 - int(np.ceil(fine[-1]))))
        if intrinsics is not None:
            fine_cost = _pair_essential_costs(norm[:, a], norm[:, b], fine, min_confidence, loss_scale_px, focal,
                                              min_overlap, frames)
        else:
            fine_cost = np.array([_pair_epipolar_cost(pix[:, a], pix[:, b], float(d), min_confidence, loss_scale_px,
                                                      min_overlap, frames) for d in fine])
        if not np.isfinite(fine_cost).any():
            continue
        low = fine[int(np.nanargmin(fine_cost))]
        near = np.isfinite(fine_cost) & (np.abs(fine - low) <= 1.0)
        if near.sum() < 5:
            continue
        c2, c1, _ = np.polyfit(fine[near] - low, fine_cost[near], 2)
        lag = low + float(np.clip(-c1 / (2 * c2), -1.0, 1.0)) if c2 > 0 else low
        # Weight: the parabola's curvature relative to the cost (a flat pair says little).
        pair_lags[(a, b)] = (float(lag), max(float(c2), 1e-6) / max(float(np.nanmin(fine_cost)), 1e-6))
        pair_cost[(a, b)] = pair_cost[(b, a)] = float(np.nanmin(fine_cost))
    offsets = whole.astype(np.float64)
    try:
        offsets = _solve_offsets(pair_lags, v, reference)
    except CalibrationError:
        pass  # some camera has no sub-frame estimate: the whole-frame solution stands
    # The sub-frame step refines; it must not undo the joint whole-frame search.
    offsets = whole + np.clip(offsets - whole, -window, window)
    scores = [0.0 if i == reference else pair_cost.get((reference, i), float("nan")) for i in range(v)]
    return SyncResult(offsets=[float(o) for o in offsets], scores=scores, method="epipolar", reference=reference)


def _joint_integer_offsets(curves: np.ndarray, pairs: list[tuple[int, int]], v: int, max_offset: int,
                           reference: int) -> np.ndarray:
    """Whole-frame offsets ``(V,)`` (the reference's 0, each within ``max_offset``) minimising
    the sum over camera pairs of their cost curves ``(P, 2 max_offset + 1)`` (each over its
    median, so that every pair counts alike; a lag outside a curve costs its median) at the
    offsets' differences. Joint, because some pairs (cameras facing each other, say) have flat
    curves whose minimum means nothing: the other pairs decide for them. Exhaustive for up to
    four cameras, coordinate descent from the best pairs' lags beyond."""
    norm = curves / np.nanmedian(curves, axis=1, keepdims=True)
    norm = np.where(np.isfinite(norm), norm, 1.0)
    span = 2 * max_offset + 1

    def pair_cost(n: int, lag: np.ndarray) -> np.ndarray:
        idx = lag + max_offset
        inside = (idx >= 0) & (idx < span)
        return np.where(inside, norm[n][np.clip(idx, 0, span - 1)], 1.0)

    free = [i for i in range(v) if i != reference]
    values = np.arange(-max_offset, max_offset + 1)
    if span ** len(free) <= 4_000_000:
        grids = np.meshgrid(*([values] * len(free)), indexing="ij")
        off = [np.zeros_like(grids[0]) for _ in range(v)]
        for i, g in zip(free, grids):
            off[i] = g
        total = np.sum([pair_cost(n, off[b] - off[a]) for n, (a, b) in enumerate(pairs)], axis=0)
        best = np.unravel_index(int(np.argmin(total)), total.shape)
        out = np.zeros(v, dtype=int)
        out[free] = values[list(best)]
        return out
    out = np.zeros(v, dtype=int)
    for i in free:  # start: each camera's best lag from the reference
        n = pairs.index((min(reference, i), max(reference, i)))
        lag = int(values[int(np.argmin(norm[n]))])
        out[i] = lag if i > reference else -lag
    for _ in range(10):
        before = out.copy()
        for i in free:
            trial = np.repeat(out[None], span, axis=0)
            trial[:, i] = values
            out[i] = values[int(np.argmin(sum(pair_cost(n, trial[:, b] - trial[:, a])
                                              for n, (a, b) in enumerate(pairs))))]
        if (out == before).all():
            break
    return out


def essential_matrix(rig: Rig, a: int, b: int) -> np.ndarray:
    """Essential matrix ``E`` of cameras a and b of ``rig``: ``x_b^T E x_a = 0`` for undistorted
    normalised coordinates."""
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
            E = essential_matrix(rig, a, b)
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
