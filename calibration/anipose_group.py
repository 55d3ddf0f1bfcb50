"""Conversion between :class:`~calibration.camera.Rig` and aniposelib's ``CameraGroup``.

aniposelib (imported only when these functions are called: it pulls numba and jax) is what the
board calibration runs on; its cameras use the same OpenCV model (``matrix``, ``dist``, Rodrigues
``rvec``, ``tvec``, ``size`` as (width, height)). Fisheye cameras are refused: this package models
OpenCV's pinhole distortion only.
"""
from __future__ import annotations

from typing import Any

import cv2
import numpy as np

from calibration.camera import Camera, Rig
from calibration.world_frame import WorldFrame
from mvspin.errors import CalibrationError

__all__ = ["to_camera_group", "from_camera_group"]


def to_camera_group(rig: Rig) -> Any:
    """``aniposelib.cameras.CameraGroup`` of ``rig``'s cameras, in order (distortion padded to
    aniposelib's 5 coefficients; the world frame goes into ``metadata``)."""
    from aniposelib.cameras import Camera as AniCamera, CameraGroup

    cams = []
    for c in rig:
        dist = np.zeros(max(5, c.dist.size))
        dist[: c.dist.size] = c.dist
        cams.append(AniCamera(matrix=c.K.copy(), dist=dist, size=list(c.image_size),
                              rvec=cv2.Rodrigues(c.R)[0].reshape(3), tvec=c.t.copy(), name=c.name))
    metadata = {} if rig.world is None else {"world_up": rig.world.up, "world_origin": rig.world.origin}
    return CameraGroup(cams, metadata=metadata)


def from_camera_group(group: Any) -> Rig:
    """A :class:`Rig` from an aniposelib ``CameraGroup`` (cameras in the group's order).

    Raises:
        CalibrationError: a fisheye camera, or parameters that are not a valid camera.
    """
    cameras = []
    for i, cam in enumerate(group.cameras):
        name = cam.get_name() if cam.get_name() not in (None, "None") else f"cam_{i}"
        if type(cam).__name__ == "FisheyeCamera":
            raise CalibrationError(f"camera {name!r} is an aniposelib FisheyeCamera; only the OpenCV "
                                   "pinhole model is supported")
        size = cam.get_size()
        size = (0, 0) if size is None else (int(round(size[0])), int(round(size[1])))
        try:
            cameras.append(Camera(K=np.array(cam.get_camera_matrix()), R=cv2.Rodrigues(np.asarray(
                cam.get_rotation(), dtype=np.float64).reshape(3, 1))[0], t=np.array(cam.get_translation()),
                dist=np.array(cam.get_distortions()), image_size=size, name=str(name)))
        except ValueError as e:
            raise CalibrationError(f"aniposelib camera {name!r}: {e}") from None
    meta = getattr(group, "metadata", None) or {}
    world = WorldFrame(up=str(meta["world_up"]), origin=str(meta.get("world_origin", "floor"))) \
        if "world_up" in meta else None
    return Rig(cameras, world=world)
