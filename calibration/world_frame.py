"""Choosing a rig's world frame: Z-up or Y-up with the origin on the floor.

A calibration's world frame is whatever the calibration made it (the first camera, or the board
in some frame). Fitting and export want a physical one: the floor as a coordinate plane, the up
axis along +Z (Blender, AMASS, most mocap) or +Y (glTF, Unity). :func:`align_world` moves a rig
into such a frame from points on the floor; :func:`transform_rig` applies any similarity;
:func:`set_up_axis` switches an aligned rig between Z-up and Y-up. The choice is kept as
:attr:`Rig.world <calibration.camera.Rig.world>` and saved by formats that can hold it
(anipose TOML ``[metadata]``, EasyMocap ``extri.yml``).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Optional, Sequence

import numpy as np
from numpy.typing import ArrayLike

from calibration.camera import Camera, Rig
from mvspin.errors import CalibrationError, check_shape

__all__ = ["WorldFrame", "UP_AXES", "transform_rig", "align_world", "set_up_axis", "check_floor_boards", "cameras_up_guess"]

UP_AXES = ("z", "y")
"""Supported up axes of an aligned world frame."""

# Z-up -> Y-up: (x, y, z) -> (x, z, -y), a +90 degree turn about x. Right-handed both ways.
_Z_UP_TO_Y_UP = np.array([[1.0, 0.0, 0.0], [0.0, 0.0, 1.0], [0.0, -1.0, 0.0]])


@dataclass(frozen=True)
class WorldFrame:
    """How a rig's world frame was chosen.

    Attributes:
        up: ``"z"`` or ``"y"``: the world axis pointing up (away from the floor).
        origin: where the origin is, in words (``"floor"``: on the floor plane).
    """

    up: str
    origin: str = "floor"

    def __post_init__(self) -> None:
        if self.up not in UP_AXES:
            raise CalibrationError(f"world up axis must be one of {', '.join(UP_AXES)}, got {self.up!r}")
        if not self.origin or "\n" in self.origin:
            raise CalibrationError(f"world origin must be a non-empty one-line text, got {self.origin!r}")


def transform_rig(rig: Rig, rotation: np.ndarray, translation: ArrayLike = (0.0, 0.0, 0.0),
                  scale: float = 1.0, world: Optional[WorldFrame] = None) -> Rig:
    """The same cameras in a new world frame ``x_new = scale * rotation @ x_old + translation``.

    Args:
        rig: cameras in the old frame.
        rotation: ``(3, 3)`` rotation from the old world axes to the new ones.
        translation: ``(3,)`` new position of the old origin, in the new units.
        scale: unit change (e.g. ``0.001`` for millimetres to metres); camera translations scale too.
        world: the new frame's description (default: the rig's, unchanged).

    Returns:
        A new :class:`Rig`; every camera sees the moved points at the same pixels.

    Example:
        >>> cam = Camera.look_at(eye=(0, -4, 1), target=(0, 0, 1), up=(0, 0, 1), focal=800, image_size=(640, 480))
        >>> moved = transform_rig(Rig([cam]), np.eye(3), (0, 0, -1))
        >>> bool(np.allclose(moved[0].center, (0, -4, 0)))
        True
    """
    Rw = np.asarray(rotation, dtype=np.float64)
    tw = np.asarray(translation, dtype=np.float64).reshape(3)
    check_shape("transform_rig: rotation", Rw, [3, 3])
    if not np.allclose(Rw @ Rw.T, np.eye(3), atol=1e-6) or np.linalg.det(Rw) < 0:
        raise CalibrationError("transform_rig: rotation must be a rotation matrix")
    if not scale > 0:
        raise CalibrationError(f"transform_rig: scale must be positive, got {scale}")
    cameras = []
    for c in rig:
        R = c.R @ Rw.T
        cameras.append(Camera(K=c.K.copy(), R=R, t=scale * c.t - R @ tw, dist=c.dist.copy(),
                              image_size=c.image_size, name=c.name))
    return Rig(cameras, world=rig.world if world is None else world)


def _unit(v: np.ndarray) -> np.ndarray:
    return v / np.linalg.norm(v)


def cameras_up_guess(rig: Rig) -> np.ndarray:
    """``(3,)`` unit vector: the rig's likely up direction (against gravity), from the cameras'
    image "up" axes (OpenCV's -y) averaged: cameras are mounted upright, tilted at most
    moderately, so their average up points away from the floor."""
    ups = np.stack([-c.R[1] for c in rig])  # row 1 of R: the camera's y axis (image down) in world
    return _unit(ups.mean(axis=0))


def check_floor_boards(rig: Rig, boards: Sequence[np.ndarray], frames: Optional[Sequence[int]] = None,
                       max_tilt_deg: float = 10.0, max_offset_m: float = 0.05,
                       max_up_angle_deg: float = 45.0) -> np.ndarray:
    """Check boards said to lie on the floor before a floor frame is built on them: each flat on
    the floor, all in one plane, and the plane facing the cameras' up (a board standing upright
    would make a wall the floor, and every height wrong).

    Args:
        rig: the cameras (current frame).
        boards: per floor frame the board's triangulated points ``(N_i, 3)``, N_i >= 3.
        frames: the frame numbers, for the messages (default 0, 1, ...).
        max_tilt_deg: largest angle between a board's normal and the boards' mean normal.
        max_offset_m: largest distance of a board's centre from the common plane.
        max_up_angle_deg: largest angle between the boards' normal and
            :func:`cameras_up_guess` (gravity as the cameras see it).

    Returns:
        ``(3,)`` the floor normal, pointing towards the cameras.

    Raises:
        CalibrationError: naming the frames that are not flat on a common floor, with the angles.
    """
    frames = list(range(len(boards))) if frames is None else list(frames)
    up = cameras_up_guess(rig)
    normals, centres = [], []
    for pts in boards:
        pts = np.asarray(pts, dtype=np.float64)
        centre = pts.mean(axis=0)
        _, sv, vt = np.linalg.svd(pts - centre)
        n = vt[2] if sv[1] > 1e-9 * max(sv[0], 1e-12) else up
        normals.append(n if n @ up >= 0 else -n)
        centres.append(centre)
    angles = [float(np.degrees(np.arccos(np.clip(n @ up, -1, 1)))) for n in normals]
    standing = [(f, a) for f, a in zip(frames, angles) if a > max_up_angle_deg]
    if standing:
        raise CalibrationError(
            f"floor frame{'s' if len(standing) > 1 else ''} {', '.join(str(f) for f, _ in standing)}: the board "
            f"stands {', '.join(f'{a:.0f}' for _, a in standing)} degrees away from lying flat (its normal against "
            f"the cameras' up; at most {max_up_angle_deg:g}): in floor frames the board must lie flat on the floor, "
            f"not stand upright (or the cameras are mounted sideways)")
    normal = _unit(np.mean(normals, axis=0))
    for frame, n in zip(frames, normals):
        tilt = float(np.degrees(np.arccos(np.clip(n @ normal, -1, 1))))
        if tilt > max_tilt_deg:
            raise CalibrationError(
                f"floor frame {frame}: the board is tilted {tilt:.0f} degrees against the other floor boards "
                f"(at most {max_tilt_deg:g}): in every floor frame the board must lie flat on the floor")
    offsets = [(c - centres[0]) @ normal for c in centres]
    spread = float(max(offsets) - min(offsets))
    if spread > max_offset_m:
        worst = frames[int(np.argmax(np.abs(np.array(offsets) - np.median(offsets))))]
        raise CalibrationError(
            f"floor frames: the boards are not in one plane (heights differ by {spread:.2f} m, at most "
            f"{max_offset_m:g}; frame {worst} is farthest): each floor frame's board must lie on the floor itself")
    return normal


def align_world(rig: Rig, floor_points: np.ndarray, up: str = "z",
                origin: Optional[Sequence[float]] = None,
                forward: Optional[Sequence[float]] = None) -> Rig:
    """Re-orient ``rig`` so the floor is the world's ``z = 0`` (Z-up) or ``y = 0`` (Y-up) plane.

    Args:
        rig: cameras in their calibration frame.
        floor_points: ``(N, 3)``, N >= 3, points on the floor in the rig's current frame (for
            example the corners of a board lying on the floor, see
            :meth:`calibration.boards.BoardDescription.object_points`).
        up: ``"z"`` or ``"y"``. Up is the side of the floor the cameras are on.
        origin: ``(3,)`` point (current frame) whose foot on the floor becomes the origin;
            default: the centroid of ``floor_points``.
        forward: ``(3,)`` direction (current frame) whose floor projection becomes the new +X
            axis; default: the current +X axis (or +Y if that is vertical).

    Returns:
        The rig in the new frame with ``world = WorldFrame(up, "floor")``.

    Raises:
        CalibrationError: fewer than 3 points, collinear points, or an unknown ``up``.
    """
    frame = WorldFrame(up=up, origin="floor")
    pts = np.asarray(floor_points, dtype=np.float64)
    check_shape("align_world: floor_points", pts, ["N", 3])
    if pts.shape[0] < 3 or not np.isfinite(pts).all():
        raise CalibrationError(f"align_world: floor_points must be (N, 3) with N >= 3 finite points, got {pts.shape}")
    centroid = pts.mean(axis=0)
    _, sv, vt = np.linalg.svd(pts - centroid)
    if sv[1] < 1e-9 * max(sv[0], 1e-12):
        raise CalibrationError("align_world: floor points are collinear; they do not define a plane")
    normal = vt[2]
    centres = np.stack([c.center for c in rig])
    if np.mean((centres - centroid) @ normal) < 0:
        normal = -normal
    x_dir = np.asarray(forward if forward is not None else (1.0, 0.0, 0.0), dtype=np.float64)
    x_dir = x_dir - (x_dir @ normal) * normal
    if np.linalg.norm(x_dir) < 1e-6:
        x_dir = np.array([0.0, 1.0, 0.0]) - normal[1] * normal
    x_axis = _unit(x_dir)
    y_axis = np.cross(normal, x_axis)
    rotation = np.stack([x_axis, y_axis, normal])  # rows: new axes in old coordinates (Z-up)
    if up == "y":
        rotation = _Z_UP_TO_Y_UP @ rotation
    foot = centroid if origin is None else np.asarray(origin, dtype=np.float64).reshape(3)
    foot = foot - ((foot - centroid) @ normal) * normal
    return transform_rig(rig, rotation, -rotation @ foot, world=frame)


def set_up_axis(rig: Rig, up: str) -> Rig:
    """Switch an aligned rig between Z-up and Y-up (a +/-90 degree turn about X; the floor origin
    stays). Returns the rig unchanged when it already has that up axis.

    Raises:
        CalibrationError: the rig's world frame was never aligned (``rig.world is None``).
    """
    target = WorldFrame(up=up, origin="floor" if rig.world is None else rig.world.origin)
    if rig.world is None:
        raise CalibrationError("set_up_axis: the rig's world frame has no known up axis; "
                               "align it first (calibration.align_world)")
    if rig.world.up == up:
        return rig
    rotation = _Z_UP_TO_Y_UP if up == "y" else _Z_UP_TO_Y_UP.T
    return transform_rig(rig, rotation, world=target)
