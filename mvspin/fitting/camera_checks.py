"""Checks that a calibrated fit's cameras can describe its keypoints, before any fitting.

Wrong cameras are a common user error (a calibration exported camera-to-world instead of
world-to-camera, translations in millimetres, a NaN from a failed calibration) and the fit
cannot notice them by itself: it would converge somewhere and report thousands of pixels of
error. These checks turn such inputs into one :class:`CameraMismatchError` naming what looks
wrong; :meth:`~mvspin.fitting.FittingEngine.explains_keypoints` catches what is left after the
fit (such bundles are reported ``fitted=False``).
"""
from __future__ import annotations

import torch
from torch import Tensor

from calibration import CameraTensors, Triangulation
from mvspin.errors import CameraMismatchError

__all__ = ["CameraMismatchError", "check_camera_values", "check_cameras_explain_keypoints"]

# A rig whose triangulated body is this many times larger (or smaller) than the model is in
# other units: bodies are 1-2 m tall, a factor 5 is far outside any human's size.
_MAX_SCALE_RATIO = 5.0
# Share of the keypoints seen by two or more cameras that must triangulate consistently (in
# front of the cameras, within the inlier threshold); real rigs with wrong detections reach 50%+.
_MIN_CONSISTENT_SHARE = 0.1
# Tolerance on R^T R = I and det R = 1 (calibration files hold 6+ digits).
_ROTATION_TOL = 1e-3


def _views(mask: Tensor) -> str:
    """Indices of the views (last axis) where ``mask`` holds anywhere, as text."""
    flat = mask.reshape(-1, mask.shape[-1]).any(0)
    return ", ".join(str(i) for i in torch.nonzero(flat).flatten().tolist())


def check_camera_values(cams: CameraTensors) -> None:
    """Raise :class:`CameraMismatchError` when a camera holds NaN/inf, a non-positive focal
    length, or a rotation that is not one (``R^T R != I`` or ``det R != 1``)."""
    for name, x in (("intrinsics K", cams.K), ("rotation R", cams.R), ("translation t", cams.t),
                    ("distortion", cams.dist)):
        if x is None:
            continue
        bad = ~torch.isfinite(x).reshape(*x.shape[: cams.K.ndim - 2], -1).all(-1)
        if bool(bad.any()):
            raise CameraMismatchError(f"camera(s) {_views(bad)}: {name} contains NaN or inf")
    focal_bad = (cams.K[..., 0, 0] <= 0) | (cams.K[..., 1, 1] <= 0)
    if bool(focal_bad.any()):
        raise CameraMismatchError(f"camera(s) {_views(focal_bad)}: focal lengths in K must be positive")
    R = cams.R.double()
    eye = torch.eye(3, dtype=R.dtype, device=R.device)
    not_rotation = ((R.transpose(-1, -2) @ R - eye).abs().amax((-1, -2)) > _ROTATION_TOL) | (
        (torch.linalg.det(R) - 1).abs() > _ROTATION_TOL)
    if bool(not_rotation.any()):
        raise CameraMismatchError(f"camera(s) {_views(not_rotation)}: R is not a rotation matrix "
                                  "(orthonormal, determinant +1)")


def check_cameras_explain_keypoints(model_keypoints: Tensor, tri: Triangulation, seen: Tensor) -> None:
    """Raise :class:`CameraMismatchError` when the keypoints of the whole batch cannot come from
    a person in front of these cameras.

    Two symptoms, judged over the batch (the rig is shared): the keypoints seen by several
    cameras do not triangulate consistently (rays that do not meet, or meet behind the
    cameras: typically camera-to-world extrinsics given as world-to-camera), or they do but the
    triangulated person is far larger or smaller than a body (translations in millimetres or
    centimetres).

    Args:
        model_keypoints: ``(B, M, 3)`` the start body's matched keypoints, metres (any root
            transform: only distances are used).
        tri: robust triangulation of the matched keypoints (``points (B, M, 3)``).
        seen: ``(B, V, M)`` bool, confident keypoints of the views taking part.
    """
    multi = seen.sum(1) >= 2  # (B, M) seen by two cameras or more
    n_multi = int(multi.sum())
    if n_multi < 6:  # too little to judge (e.g. one camera): the fit's own check remains
        return
    consistent = multi & tri.valid
    share = int(consistent.sum()) / n_multi
    if share < _MIN_CONSISTENT_SHARE:
        raise CameraMismatchError(
            f"the cameras do not explain the keypoints: only {share:.0%} of the {n_multi} keypoints seen by two "
            "or more cameras triangulate in front of them within the inlier threshold; check that the extrinsics "
            "are world-to-camera (X_cam = R X_world + t), not camera-to-world, and belong to these keypoints")
    model = model_keypoints.to(torch.float64)
    pts = tri.points.to(torch.float64)
    pair = consistent[:, :, None] & consistent[:, None, :]  # (B, M, M)
    d_model = torch.cdist(model, model)
    use = pair & (d_model > 0.1)  # pairs at least 10 cm apart on the body
    if int(use.sum()) < 6:
        return
    ratio = float((torch.cdist(pts, pts)[use] / d_model[use]).median())
    if ratio > _MAX_SCALE_RATIO or ratio < 1.0 / _MAX_SCALE_RATIO:
        hint = ("; or the extrinsics are camera-to-world instead of world-to-camera (X_cam = R X_world + t)"
                if ratio < 1 else "")
        for unit, factor in (("millimetres", 1000.0), ("centimetres", 100.0)):
            if factor / 3 < ratio < factor * 3:
                hint = f"; the rig looks like it is in {unit}: divide the camera translations by {factor:g}"
                break
        raise CameraMismatchError(
            f"the cameras do not explain the keypoints: the triangulated person is {ratio:.3g} times the body "
            f"model's size (camera translations must be in metres, keypoints one person's){hint}")
