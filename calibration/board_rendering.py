"""Synthetic recordings of a calibration board: the printed board seen by a known camera.

:func:`render_board_views` draws :func:`calibration.boards.render_board`'s image onto the board
plane in each pose and images it through a :class:`~calibration.camera.Camera`, lens distortion
included: every output pixel is undistorted with :func:`calibration.projection.undistort_points`
(the package's one lens model; no second formula), cast as a ray onto the board plane and looked
up in the board image (``cv2.remap``). Rendering happens at ``supersample`` times the size and is
area-averaged down, so edges are anti-aliased as a real sensor integrates them. What this gives is
ground truth for calibration tests and for trying a rig layout before recording it.
"""
from __future__ import annotations

from typing import Sequence

import cv2
import numpy as np
import torch

from calibration.boards import BoardDescription, render_board
from calibration.camera import Camera
from calibration.projection import undistort_points
from mvspin.errors import CalibrationError

__all__ = ["render_board_views", "undistorted_rays"]

_OUTSIDE = -1.0e5  # a remap coordinate far outside the board image: the background shows there


def _lens_grid_step(image_size: tuple[int, int]) -> int:
    """Pixels between evaluations of the lens model: 2 where the frame size allows it."""
    return 2 if image_size[0] % 2 == 0 and image_size[1] % 2 == 0 else 1


def undistorted_rays(camera: Camera, supersample: int = 1) -> np.ndarray:
    """``(s H, s W, 2)`` float32 undistorted normalised coordinates ``(X / Z, Y / Z)`` of the rays
    through the pixel centres of ``camera.scaled(s)`` (``s = supersample``).

    The lens model (:func:`calibration.projection.undistort_points`) is evaluated at the centres
    of ``g x g`` pixel blocks of ``camera`` (``g`` = 2 for even frame sizes, else 1; on a grid one
    block wider on each side) and interpolated linearly to the output pixels: ``cv2.resize``'s
    pixel geometry is :meth:`Camera.scaled`'s, and the map is smooth enough that interpolation
    moves a ray by under 0.005 px of ``camera`` (k1 = -0.25 at the frame corners; the tests check it).
    """
    w, h = camera.image_size
    g, s = _lens_grid_step(camera.image_size), supersample
    cols, rows = w // g + 2, h // g + 2
    v, u = np.mgrid[0:rows, 0:cols].astype(np.float64)
    centres = np.stack([u, v], axis=-1).reshape(-1, 2) * g + (g - 1) / 2.0 - g  # block centres, one block outside
    dist = torch.from_numpy(camera.dist) if camera.dist.size else None
    xy = undistort_points(torch.from_numpy(centres), torch.from_numpy(camera.K), dist).numpy()
    fine = cv2.resize(xy.reshape(rows, cols, 2), (cols * g * s, rows * g * s), interpolation=cv2.INTER_LINEAR)
    return fine[g * s:-g * s, g * s:-g * s].astype(np.float32)


def render_board_views(
    board: BoardDescription,
    camera: Camera,
    poses: Sequence[tuple[np.ndarray, np.ndarray]],
    pixels_per_square: int = 160,
    supersample: int = 3,
    background: int = 90,
) -> list[np.ndarray]:
    """Grayscale frames of ``board`` seen by ``camera``, one per board pose.

    Args:
        board: the printed board.
        camera: intrinsics, extrinsics (world to camera) and distortion of the camera; its
            ``image_size`` is the frame size.
        poses: board-to-world ``(R (3, 3), t (3,))`` per frame: a board point ``p`` in the board
            frame of :meth:`BoardDescription.object_points` (metres, z = 0 on the board, origin at
            the top-left outer corner of the squares) lies at ``R @ p + t`` in the world.
        pixels_per_square: resolution of the board image that is projected.
        supersample: render at this many times the size, then area-average down (anti-aliasing).
        background: gray value (0-255) where the board is not.

    Returns:
        ``len(poses)`` frames ``(H, W)`` uint8.

    Example:
        >>> cam = Camera.look_at(eye=(0, -1, 0.5), target=(0, 0, 0.5), up=(0, 0, 1), focal=400,
        ...                      image_size=(320, 240), dist=(-0.2, 0, 0, 0))
        >>> board = BoardDescription("checkerboard", 7, 6, square_length=0.04)
        >>> upright = np.array([[1.0, 0, 0], [0, 0, -1], [0, 1, 0]]).T  # board y down, facing the camera
        >>> (frame,) = render_board_views(board, cam, [(upright, np.array([-0.14, 0, 0.62]))])
        >>> frame.shape, frame.dtype.name
        ((240, 320), 'uint8')
    """
    if supersample < 1:
        raise CalibrationError(f"supersample must be at least 1, got {supersample}")
    if not 0 <= background <= 255:
        raise CalibrationError(f"background must be a gray value 0-255, got {background}")
    if min(camera.image_size) <= 0:
        raise CalibrationError(f"camera {camera.name!r} has no image size")
    margin = pixels_per_square // 2
    image = render_board(board, pixels_per_square=pixels_per_square, margin_px=margin)
    big = camera.scaled(supersample)
    rays = undistorted_rays(camera, supersample).reshape(-1, 1, 2)  # the same for every pose: computed once
    scale = pixels_per_square / board.square_length
    to_image = np.array([[scale, 0.0, margin - 0.5], [0.0, scale, margin - 0.5], [0.0, 0.0, 1.0]])  # metres -> pixels
    frames = []
    for R, t in poses:
        R, t = np.asarray(R, dtype=np.float64), np.asarray(t, dtype=np.float64).reshape(3)
        Rc, tc = big.R @ R, big.R @ t + big.t  # board -> camera
        to_board = np.linalg.inv(np.column_stack([Rc[:, 0], Rc[:, 1], tc]))  # ray (x, y, 1) -> board (bx, by, 1) / depth
        H = to_image @ to_board
        maps = cv2.perspectiveTransform(rays, H).reshape(big.image_size[1], big.image_size[0], 2)
        # Rays meeting the board plane behind the camera (negative depth) see no board.
        behind = (rays[:, 0] @ to_board[2, :2].astype(np.float32) + np.float32(to_board[2, 2])) <= 0
        maps.reshape(-1, 2)[behind] = _OUTSIDE
        frame = cv2.remap(image, maps[..., 0], maps[..., 1], cv2.INTER_LINEAR, borderMode=cv2.BORDER_CONSTANT,
                          borderValue=int(background))
        frames.append(cv2.resize(frame, camera.image_size, interpolation=cv2.INTER_AREA))
    return frames
