"""Helpers for fabricating tiny dataset files in the real formats (videos, cameras)."""
from pathlib import Path

import cv2
import numpy as np
import pytest

VIDEO_W, VIDEO_H = 64, 48


def frame_color(frame: int, view: int) -> tuple[int, int, int]:
    """BGR colour of fabricated frame ``frame`` of camera ``view``: identifies both after decoding."""
    return (40 * view + 20, (5 * frame) % 250, 128)


def write_test_video(path: Path, num_frames: int, view: int, size=(VIDEO_W, VIDEO_H)) -> Path:
    """A uniform-colour video whose frame f has colour :func:`frame_color` (f, view)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fourcc = "MJPG" if path.suffix == ".avi" else "mp4v"
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*fourcc), 25, size)
    assert writer.isOpened(), f"cv2 cannot write {path}"
    for f in range(num_frames):
        writer.write(np.full((size[1], size[0], 3), frame_color(f, view), np.uint8))
    writer.release()
    return path


def assert_frame_is(image_rgb: np.ndarray, frame: int, view: int, tol: float = 8.0) -> None:
    """The decoded RGB image is fabricated frame ``frame`` of camera ``view`` (lossy codecs)."""
    b, g, r = frame_color(frame, view)
    mean = image_rgb.reshape(-1, 3).mean(axis=0)
    assert np.allclose(mean, (r, g, b), atol=tol), f"expected frame {frame} view {view}, got mean {mean}"


def look_at(center: np.ndarray, target: np.ndarray, up=(0.0, 0.0, 1.0)) -> np.ndarray:
    """World-to-camera rotation (OpenCV axes) of a camera at ``center`` looking at ``target``."""
    z = target - center
    z = z / np.linalg.norm(z)
    x = np.cross(z, np.asarray(up, float))
    x = x / np.linalg.norm(x)
    y = np.cross(z, x)
    return np.stack([x, y, z])


def cv2_project(points: np.ndarray, K, dist, R, t) -> np.ndarray:
    """Independent reference projection (OpenCV) of world points (P, 3) -> (P, 2)."""
    rvec, _ = cv2.Rodrigues(np.asarray(R, np.float64))
    uv, _ = cv2.projectPoints(np.asarray(points, np.float64).reshape(-1, 1, 3), rvec,
                              np.asarray(t, np.float64), np.asarray(K, np.float64), np.asarray(dist, np.float64))
    return uv.reshape(-1, 2)


@pytest.fixture
def fab():
    """Namespace of the fabrication helpers above."""

    class _Fab:
        pass

    ns = _Fab()
    for fn in (frame_color, write_test_video, assert_frame_is, look_at, cv2_project):
        setattr(ns, fn.__name__, staticmethod(fn))
    ns.W, ns.H = VIDEO_W, VIDEO_H
    return ns
