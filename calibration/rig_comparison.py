"""How far one calibration is from another of the same cameras, after a similarity alignment.

Two calibrations of one rig agree up to the choice of world frame and, for calibrations without a
metric reference, of scale. :func:`compare_rigs` finds the similarity (rotation, translation,
scale; Umeyama's least squares on the camera centres,
:func:`calibration.procrustes.similarity_procrustes`, the rotation refined with the cameras'
orientations) that maps one rig's world onto the other's and reports per camera the remaining
centre distance and the angle between the orientations.

A reference calibration can itself disagree with the images it is compared on (a camera moved
since, another video mode, a camera's frames out of step). :func:`epipolar_consistency` checks any
calibration against keypoints without a reference: for every pair of cameras, how far one
camera's detections lie from the epipolar lines of the other's. A pair's figure depends on those
two cameras only, so a camera the calibration has wrong (or a camera out of sync with a moving
person) stands out in each of its pairs and in none of the others; and a detector misplaces
joints from view to view, but not every joint of a camera to the same side of the lines, so the
median *signed* distance is what a wrong camera moves. Judge a calibration on frames it was not
made from.

A wrong camera and a camera out of step both move the signed distance; they differ in how. A
camera whose frames show another moment than the other's puts a moving keypoint ahead of or
behind where the other camera's ray says, by its image speed across the epipolar line times the
offset; a camera the calibration has wrong moves every keypoint, moving or still. So each pair's
signed distances are also fitted as ``still + lag * speed`` (robustly): ``still_signed_px``, the
part no motion explains (a calibration error), and ``offset_frames`` (a timing error, in
``mvspin sync``'s convention).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import NamedTuple

import numpy as np
import torch

from calibration.camera import Rig
from calibration.intrinsics import format_table
from calibration.procrustes import similarity_procrustes
from calibration.projection import undistort_points
from calibration.sync import essential_matrix
from mvspin.errors import CalibrationError, check_shape

__all__ = ["RigComparison", "compare_rigs", "similarity_transform", "EpipolarConsistency", "epipolar_consistency",
           "consistency_table", "cameras_off_in_geometry", "CameraOff"]


def similarity_transform(source: np.ndarray, target: np.ndarray) -> tuple[np.ndarray, np.ndarray, float]:
    """``(R, t, s)`` minimising ``sum |s R source_i + t - target_i|^2`` over ``(N, 3)`` point sets
    (N >= 3, not collinear): :func:`calibration.procrustes.similarity_procrustes` on numpy arrays."""
    _, s, R, t = similarity_procrustes(torch.from_numpy(np.asarray(source, dtype=np.float64)),
                                       torch.from_numpy(np.asarray(target, dtype=np.float64)))
    return R.numpy(), t.numpy(), float(s)


@dataclass
class RigComparison:
    """Per camera (in order): ``names``, ``centre_error_m``, ``rotation_error_deg``; and the
    similarity's ``scale`` (reference units per compared units)."""

    names: list[str]
    centre_error_m: list[float]
    rotation_error_deg: list[float]
    scale: float

    def table(self) -> str:
        rows = [(n, f"{c * 100:.1f}", f"{r:.2f}") for n, c, r in zip(self.names, self.centre_error_m, self.rotation_error_deg)]
        return (format_table(("camera", "centre error cm", "rotation error deg"), rows)
                + f"\nafter a similarity alignment (scale {self.scale:.4f})")


def _angle(R: np.ndarray) -> float:
    return float(np.degrees(np.arccos(np.clip((np.trace(R) - 1) / 2, -1.0, 1.0))))


def compare_rigs(rig: Rig, reference: Rig) -> RigComparison:
    """Compare ``rig`` with ``reference`` (same cameras, same order), see the module docstring.

    Raises:
        CalibrationError: different camera counts, or fewer than 3 cameras.
    """
    if len(rig) != len(reference) or len(rig) < 3:
        raise CalibrationError(f"compare_rigs needs the same 3+ cameras in both rigs, got {len(rig)} and {len(reference)}")
    src = np.stack([c.center for c in rig])
    dst = np.stack([c.center for c in reference])
    R, t, s = similarity_transform(src, dst)
    # Refine the rotation with the orientations as well: R_ref = R_cam' R^T for each camera,
    # so R should be close to R_ref^T R_cam for all of them (chordal mean with the centres' R).
    M = R.copy() * len(rig)
    for a, b in zip(rig, reference):
        M += b.R.T @ a.R
    U, _, Vt = np.linalg.svd(M)
    R = U @ np.diag([1.0, 1.0, np.sign(np.linalg.det(U @ Vt))]) @ Vt
    t = dst.mean(axis=0) - s * R @ src.mean(axis=0)
    centre_err = [float(np.linalg.norm(s * R @ c + t - d)) for c, d in zip(src, dst)]
    rot_err = [_angle((a.R @ R.T) @ b.R.T) for a, b in zip(rig, reference)]
    return RigComparison(names=list(reference.names), centre_error_m=centre_err, rotation_error_deg=rot_err, scale=s)


@dataclass
class EpipolarConsistency:
    """Per camera pair ``(a, b)`` (a before b in the rig): ``pairs`` (names), ``observations``
    (keypoints both see), ``median_distance_px`` (b's detections from a's epipolar lines, the
    median absolute distance in b's pixels) and ``median_signed_px`` (the median signed distance:
    near zero where the two cameras are right)."""

    pairs: list[tuple[str, str]]
    observations: list[int]
    median_distance_px: list[float]
    median_signed_px: list[float]
    still_signed_px: list[float]
    """The signed distance of a keypoint that does not move across the lines (in b's image):
    the part of the disagreement that is geometry, not timing."""
    offset_frames: list[float]
    """The timing part: b's frames are this many frames off a's (``mvspin sync``'s convention,
    frame ``f + offset`` of b shows a's frame f), from how the signed distance grows with b's
    keypoint speed across the lines; only as good as the pair's motion across them (a walk along
    the pair's epipolar lines leaves it loose)."""

    def table(self) -> str:
        rows = [(f"{a}-{b}", str(n), f"{d:.1f}", f"{s:+.1f}", f"{g:+.1f}", f"{o:+.2f}") for (a, b), n, d, s, g, o in
                zip(self.pairs, self.observations, self.median_distance_px, self.median_signed_px,
                    self.still_signed_px, self.offset_frames)]
        return format_table(("cameras", "observations", "median px", "median signed px", "still px", "offset frames"),
                            rows)


def _still_and_lag(signed: np.ndarray, speed: np.ndarray, iterations: int = 20) -> tuple[float, float]:
    """Robust line ``signed = still + lag * speed`` (least squares reweighted by Huber weights at
    1.5 robust standard deviations): ``(still, lag)``; NaN for fewer than 3 points."""
    if len(signed) < 3:
        return float("nan"), float("nan")
    A = np.stack([np.ones_like(speed), speed], 1)
    w = np.ones_like(signed)
    coef = np.zeros(2)
    for _ in range(iterations):
        coef = np.linalg.lstsq(A * w[:, None], signed * w, rcond=None)[0]
        r = signed - A @ coef
        scale = 1.4826 * float(np.median(np.abs(r))) + 1e-12
        w = np.sqrt(1.0 / np.maximum(1.0, np.abs(r) / (1.5 * scale)))
    return float(coef[0]), float(coef[1])


def epipolar_consistency(rig: Rig, keypoints: np.ndarray, min_confidence: float = 0.5) -> EpipolarConsistency:
    """Every camera pair's epipolar distances (see the module docstring).

    Args:
        rig: V >= 2 cameras.
        keypoints: ``(T, V, K, 3)`` pixels and confidence of one person, synchronised, frames in
            order (consecutive frames give the speeds).
        min_confidence: detections below it are not used.

    Raises:
        CalibrationError: keypoints of another camera count than the rig's.
    """
    kp = np.asarray(keypoints, dtype=np.float64)
    check_shape("epipolar_consistency: keypoints", kp, ["T", "V", "K", 3])
    v = kp.shape[1]
    if v != len(rig) or v < 2:
        raise CalibrationError(f"epipolar_consistency needs keypoints of the rig's cameras: {v} cameras of keypoints, "
                               f"{len(rig)} in the rig")
    seen = np.isfinite(kp[..., :2]).all(-1) & (kp[..., 2] >= min_confidence)  # (T, V, K)
    # b's keypoint moves between the frames before and after (its speed there, per frame)
    moving = np.zeros_like(seen)
    moving[1:-1] = seen[:-2] & seen[2:]
    homog = []
    for i, cam in enumerate(rig):
        flat = torch.from_numpy(np.ascontiguousarray(np.nan_to_num(kp[:, i, :, :2]).reshape(-1, 2)))
        norm = undistort_points(flat, torch.from_numpy(cam.K), torch.from_numpy(cam.dist) if cam.dist.size else None)
        homog.append(np.concatenate([norm.numpy(), np.ones((len(flat), 1))], axis=1).reshape(kp.shape[0], -1, 3))
    out = EpipolarConsistency([], [], [], [], [], [])
    for a in range(v):
        for b in range(a + 1, v):
            both = seen[:, a] & seen[:, b]
            focal = 0.5 * (rig[b].K[0, 0] + rig[b].K[1, 1])
            lines = homog[a][both] @ essential_matrix(rig, a, b).T  # epipolar lines in b, normalised
            length = np.linalg.norm(lines[:, :2], axis=-1)
            signed = (lines * homog[b][both]).sum(-1) / length * focal
            out.pairs.append((rig[a].name, rig[b].name))
            out.observations.append(int(both.sum()))
            out.median_distance_px.append(float(np.median(np.abs(signed))) if both.any() else float("nan"))
            out.median_signed_px.append(float(np.median(signed)) if both.any() else float("nan"))
            # b's image speed across the line: the frames before and after, central difference
            t, k = np.nonzero(both)
            inner = moving[t, b, k]
            t, k = t[inner], k[inner]
            velocity = (homog[b][t + 1, k, :2] - homog[b][t - 1, k, :2]) * (0.5 * focal)
            speed = (velocity * lines[inner, :2]).sum(-1) / length[inner]
            still, lag = _still_and_lag(signed[inner], speed)
            # frame t of b shows the moment t + lag of a's: sync's offset of b is -lag
            out.still_signed_px.append(still)
            out.offset_frames.append(0.0 - lag)
    return out


class CameraOff(NamedTuple):
    """A camera :func:`cameras_off_in_geometry` names: ``pairs_off`` of its ``pairs`` are off, by
    ``smallest_px`` to ``largest_px`` (still part, absolute)."""

    pairs_off: int
    pairs: int
    smallest_px: float
    largest_px: float

    def words(self) -> str:
        """E.g. ``10-19 px in 3 of its 3 camera pairs``."""
        return f"{self.smallest_px:.0f}-{self.largest_px:.0f} px in {self.pairs_off} of its {self.pairs} camera pairs"


def cameras_off_in_geometry(rig: Rig, consistency: EpipolarConsistency, min_deg: float = 0.2) -> dict[str, CameraOff]:
    """Cameras of ``rig`` that most of their pairs in ``consistency`` (:func:`epipolar_consistency`
    of that rig) find off at keypoints that do not move: a pair is off when its still part is over
    ``min_deg`` (over the focal length of the pair's second camera), and a camera is named when at
    least two and more than half of its pairs are. Any one camera of a 4-camera rig turned by half
    a degree or a degree is off by 10-34 px in two or three of its three pairs; the third can be
    blind to it, when the turn moves the camera's view along that pair's epipolar lines. 0.2
    degrees is about twice the largest still part of a pair without cam03 on the Pose2Sim demo
    under its lab calibration (3.4 px at 1,680 px). With 3 cameras a camera is named when both its
    pairs are off; where every camera would be named, none is (the rig as a whole disagrees with
    the keypoints: wrong intrinsics, or keypoints of another recording)."""
    index = {n: i for i, n in enumerate(rig.names)}
    pairs: dict[str, list[tuple[float, bool]]] = {n: [] for n in rig.names}
    for (a, b), still in zip(consistency.pairs, consistency.still_signed_px):
        if np.isfinite(still):
            focal = 0.5 * (rig[index[b]].K[0, 0] + rig[index[b]].K[1, 1])
            for name in (a, b):
                pairs[name].append((abs(still), float(np.degrees(abs(still) / focal)) > min_deg))
    off = {}
    for name, seen in pairs.items():
        bad = [px for px, is_off in seen if is_off]
        if len(bad) >= 2 and 2 * len(bad) > len(seen):
            off[name] = CameraOff(len(bad), len(seen), min(bad), max(bad))
    return {} if len(off) == len(rig) else off


def consistency_table(rows: list[tuple[str, EpipolarConsistency]], split: bool = False) -> str:
    """Several :class:`EpipolarConsistency` of the same cameras side by side, a row each (label,
    then per camera pair ``median / median signed`` px; with ``split``, ``still px / offset
    frames``: the signed distance's geometric and timing parts)."""
    pairs = rows[0][1].pairs
    if split:
        body = [(label, *[f"{g:+5.1f} / {o:+5.2f}" for g, o in zip(c.still_signed_px, c.offset_frames)])
                for label, c in rows]
    else:
        body = [(label, *[f"{d:4.1f} / {s:+5.1f}" for d, s in zip(c.median_distance_px, c.median_signed_px)])
                for label, c in rows]
    return format_table(("calibration; judged on", *[f"{a}-{b}" for a, b in pairs]), body)
