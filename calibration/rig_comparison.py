"""How far one calibration is from another of the same cameras, after a similarity alignment.

Two calibrations of one rig agree up to the choice of world frame and, for calibrations without
a metric reference, of scale. :func:`compare_rigs` finds the similarity (rotation, translation,
scale; Umeyama's least squares on the camera centres, the rotation refined with the cameras'
orientations) that maps one rig's world onto the other's and reports per camera the remaining
centre distance and the angle between the orientations.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from calibration.camera import Rig
from calibration.intrinsics import format_table
from mvspin.errors import CalibrationError

__all__ = ["RigComparison", "compare_rigs", "similarity_transform"]


def similarity_transform(source: np.ndarray, target: np.ndarray) -> tuple[np.ndarray, np.ndarray, float]:
    """``(R, t, s)`` minimising ``sum |s R source_i + t - target_i|^2`` over ``(N, 3)`` point sets
    (Umeyama 1991; N >= 3, not collinear)."""
    mu_s, mu_t = source.mean(axis=0), target.mean(axis=0)
    a, b = source - mu_s, target - mu_t
    U, S, Vt = np.linalg.svd(b.T @ a / len(source))
    D = np.diag([1.0, 1.0, np.sign(np.linalg.det(U @ Vt))])
    R = U @ D @ Vt
    s = float(np.trace(np.diag(S) @ D) / (a**2).sum(axis=1).mean())
    return R, mu_t - s * R @ mu_s, s


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
