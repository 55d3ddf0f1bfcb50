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
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from calibration.camera import Rig
from calibration.intrinsics import format_table
from calibration.procrustes import similarity_procrustes
from calibration.projection import undistort_points
from calibration.sync import essential_matrix
from mvspin.errors import CalibrationError, check_shape

__all__ = ["RigComparison", "compare_rigs", "similarity_transform", "EpipolarConsistency", "epipolar_consistency",
           "consistency_table"]


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

    def table(self) -> str:
        rows = [(f"{a}-{b}", str(n), f"{d:.1f}", f"{s:+.1f}") for (a, b), n, d, s in
                zip(self.pairs, self.observations, self.median_distance_px, self.median_signed_px)]
        return format_table(("cameras", "observations", "median px", "median signed px"), rows)


def epipolar_consistency(rig: Rig, keypoints: np.ndarray, min_confidence: float = 0.5) -> EpipolarConsistency:
    """Every camera pair's epipolar distances (see the module docstring).

    Args:
        rig: V >= 2 cameras.
        keypoints: ``(T, V, K, 3)`` pixels and confidence of one person, synchronised.
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
    homog = []
    for i, cam in enumerate(rig):
        flat = torch.from_numpy(np.ascontiguousarray(np.nan_to_num(kp[:, i, :, :2]).reshape(-1, 2)))
        norm = undistort_points(flat, torch.from_numpy(cam.K), torch.from_numpy(cam.dist) if cam.dist.size else None)
        homog.append(np.concatenate([norm.numpy(), np.ones((len(flat), 1))], axis=1).reshape(kp.shape[0], -1, 3))
    out = EpipolarConsistency([], [], [], [])
    for a in range(v):
        for b in range(a + 1, v):
            both = seen[:, a] & seen[:, b]
            lines = homog[a][both] @ essential_matrix(rig, a, b).T  # epipolar lines in b, normalised
            signed = (lines * homog[b][both]).sum(-1) / np.linalg.norm(lines[:, :2], axis=-1)
            signed = signed * 0.5 * (rig[b].K[0, 0] + rig[b].K[1, 1])
            out.pairs.append((rig[a].name, rig[b].name))
            out.observations.append(int(both.sum()))
            out.median_distance_px.append(float(np.median(np.abs(signed))) if both.any() else float("nan"))
            out.median_signed_px.append(float(np.median(signed)) if both.any() else float("nan"))
    return out


def consistency_table(rows: list[tuple[str, EpipolarConsistency]]) -> str:
    """Several :class:`EpipolarConsistency` of the same cameras side by side, a row each (label,
    then per camera pair ``median / median signed`` px)."""
    pairs = rows[0][1].pairs
    body = [(label, *[f"{d:4.1f} / {s:+5.1f}" for d, s in zip(c.median_distance_px, c.median_signed_px)])
            for label, c in rows]
    return format_table(("calibration; judged on", *[f"{a}-{b}" for a, b in pairs]), body)
