"""One camera's intrinsics from its own board stills or video, and the plausibility checks every
calibration passes before it is written.

:func:`calibrate_intrinsics` runs OpenCV's ``calibrateCamera`` on the board corners of one
camera's frames (sub-pixel refined, :func:`calibration.board_calibration.detect_corners`), then
drops the views that do not fit (a blurred or misdetected frame pulls the focal length) and
calibrates again. Nothing is assumed about other cameras: intrinsics are calibrated once per
camera, extrinsics every session.

:func:`plausibility_problems` says in words what makes a calibrated camera implausible: a focal
length far outside what its image size allows, a principal point far from the image centre, a
lens model that folds over inside the image (absurd distortion), a large reprojection error. A
calibration with any problem is refused (:class:`mvspin.errors.CalibrationRefusedError`) unless
the caller forces it.

The distortion model fitted is ``(k1, k2, p1, p2, k3)`` with ``p1 = p2 = k3 = 0`` held fixed:
5-10 stills of a planar board do not determine more (tangential terms and k3 trade off against
the principal point and k2, and overfit).
"""
from __future__ import annotations

import os
from dataclasses import asdict, dataclass, field
from typing import Any, Optional, Sequence

import cv2
import numpy as np

from calibration.board_calibration import BoardDetections, detect_board
from calibration.boards import BoardDescription
from calibration.camera import Camera
from mvspin.errors import CalibrationError
from mvspin.progress import Progress, no_progress

__all__ = ["ViewReport", "IntrinsicsReport", "calibrate_intrinsics", "intrinsics_from_detections",
           "plausibility_problems", "focal_range", "format_table", "MIN_VIEWS"]

MIN_VIEWS = 3
"""Fewest board views an intrinsics calibration accepts (OpenCV needs 3 for focal and distortion)."""
_MIN_CORNERS = 6  # a ChArUco view with fewer corners constrains little and is often misdetected
_FLAGS = cv2.CALIB_ZERO_TANGENT_DIST | cv2.CALIB_FIX_K3


def focal_range(image_size: tuple[int, int]) -> tuple[float, float]:
    """Plausible focal lengths ``(low, high)`` in pixels for a frame of ``(width, height)``:
    from a 140-degree fisheye-like field of view across the long side (0.18 x long side) to a
    6-degree telephoto one (10 x long side). Phones, webcams, action and machine-vision cameras
    all lie inside."""
    long_side = float(max(image_size))
    return 0.18 * long_side, 10.0 * long_side


def _radial_fold(camera: Camera) -> Optional[str]:
    """Why ``camera``'s radial distortion is absurd inside its image, or None.

    The distorted radius ``r (1 + k1 r^2 + k2 r^4 + k3 r^6)`` must grow with ``r`` out to the image
    corners (else two rays land on one pixel: the lens model folds) and stay within a factor of
    2 of the undistorted radius there."""
    w, h = camera.image_size
    if not w or not h:
        return None
    d = np.zeros(5)
    d[: min(5, camera.dist.size)] = camera.dist[:5]
    k1, k2, k3 = d[0], d[1], d[4]
    corner = np.hypot(max(camera.K[0, 2], w - camera.K[0, 2]) / camera.K[0, 0],
                      max(camera.K[1, 2], h - camera.K[1, 2]) / camera.K[1, 1])
    r = np.linspace(0.0, corner, 200)
    factor = 1 + k1 * r**2 + k2 * r**4 + k3 * r**6
    slope = 1 + 3 * k1 * r**2 + 5 * k2 * r**4 + 7 * k3 * r**6
    if slope.min() <= 0:
        return (f"its lens distortion (k1 {k1:.3g}, k2 {k2:.3g}, k3 {k3:.3g}) folds over inside the image "
                f"(at {r[np.argmax(slope <= 0)] / corner:.0%} of the way to the corner)")
    if not 0.5 <= factor[-1] <= 2.0:
        return (f"its lens distortion (k1 {k1:.3g}, k2 {k2:.3g}, k3 {k3:.3g}) scales the image corners by "
                f"{factor[-1]:.2f}, beyond 0.5-2")
    return None


def plausibility_problems(camera: Camera, median_error_px: Optional[float] = None,
                          max_median_error_px: float = 2.0) -> list[str]:
    """What makes ``camera`` (calibrated, with its ``image_size``) implausible, in words; empty
    when nothing does.

    Checks: focal lengths inside :func:`focal_range`, ``fx`` and ``fy`` within 5 % of each other,
    the principal point inside the middle half of the image, a radial distortion that neither
    folds over nor scales the corners beyond 0.5-2 (see the module docstring), and (when given)
    a median reprojection error at most ``max_median_error_px`` pixels.
    """
    problems = []
    fx, fy = float(camera.K[0, 0]), float(camera.K[1, 1])
    w, h = camera.image_size
    if w and h:
        low, high = focal_range(camera.image_size)
        f = 0.5 * (fx + fy)
        if not low <= f <= high:
            problems.append(f"focal length {f:.0f} px is outside {low:.0f}-{high:.0f} px, "
                            f"the plausible range for a {w}x{h} image")
        cx, cy = float(camera.K[0, 2]), float(camera.K[1, 2])
        if not (0.25 * w <= cx <= 0.75 * w and 0.25 * h <= cy <= 0.75 * h):
            problems.append(f"principal point ({cx:.0f}, {cy:.0f}) px is outside the middle half of the {w}x{h} image")
    if abs(fx - fy) > 0.05 * max(fx, fy):
        problems.append(f"fx {fx:.0f} and fy {fy:.0f} px differ by more than 5 % (square pixels expected)")
    fold = _radial_fold(camera)
    if fold:
        problems.append(fold)
    if median_error_px is not None and not median_error_px <= max_median_error_px:
        problems.append(f"median reprojection error {median_error_px:.2f} px is over {max_median_error_px:g} px")
    return problems


@dataclass
class ViewReport:
    """One image (frame) of an intrinsics calibration.

    ``corners``: board corners found (0: no board); ``error_px``: RMS reprojection error of its
    corners with the final intrinsics (NaN when not used); ``used``: whether it entered the final
    calibration; ``note``: why not, when not."""

    image: str
    corners: int
    error_px: float
    used: bool
    note: str = ""


@dataclass
class IntrinsicsReport:
    """What :func:`calibrate_intrinsics` did for one camera."""

    name: str
    source: str
    image_size: tuple[int, int]
    views: list[ViewReport]
    rms_px: float
    """RMS reprojection error over the used views' corners, pixels."""
    median_error_px: float
    """Median per-corner reprojection error over the used views, pixels."""
    focal_px: tuple[float, float]
    principal_point: tuple[float, float]
    distortion: list[float]
    problems: list[str] = field(default_factory=list)
    """Plausibility problems (:func:`plausibility_problems`); empty for a usable calibration."""

    @property
    def used_views(self) -> int:
        return sum(v.used for v in self.views)

    def table(self) -> str:
        """One line per image: corners, error, used or why not; then the camera's summary."""
        rows = [(v.image, str(v.corners), "-" if np.isnan(v.error_px) else f"{v.error_px:.3f}",
                 "yes" if v.used else f"no: {v.note}") for v in self.views]
        lines = [f"camera {self.name} ({self.source}, {self.image_size[0]}x{self.image_size[1]})",
                 format_table(("image", "corners", "rms px", "used"), rows)]
        lines.append(f"{self.used_views} of {len(self.views)} images used; focal {self.focal_px[0]:.1f} "
                     f"{self.focal_px[1]:.1f} px, centre ({self.principal_point[0]:.1f}, {self.principal_point[1]:.1f}), "
                     f"k1 {self.distortion[0]:.4f} k2 {self.distortion[1]:.4f}; RMS {self.rms_px:.3f} px, "
                     f"median {self.median_error_px:.3f} px")
        lines += [f"PROBLEM: {p}" for p in self.problems]
        return "\n".join(lines)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def format_table(head: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    """An aligned text table (first column left-aligned, the others right-aligned)."""
    widths = [max(len(str(r[i])) for r in [head, *rows]) for i in range(len(head))]
    fmt = lambda r: "  ".join(str(v).ljust(w) if i == 0 else str(v).rjust(w) for i, (v, w) in enumerate(zip(r, widths)))  # noqa: E731
    return "\n".join([fmt(head), fmt(tuple("-" * w for w in widths)), *map(fmt, rows)])


def _view_points(board: BoardDescription, detections: BoardDetections) -> list[tuple[int, np.ndarray, np.ndarray]]:
    """``(frame, object points (N, 3) float32, image points (N, 2) float32)`` per detection."""
    obj_all = board.object_points().astype(np.float32)
    views = []
    for r in detections.rows:
        ids = np.asarray(r["ids"]).reshape(-1).astype(int)
        corners = np.asarray(r["corners"], dtype=np.float32).reshape(-1, 2)
        views.append((int(r["framenum"][1]), obj_all[ids], corners))
    return views


def _spans_plane(obj: np.ndarray) -> bool:
    """The board points are not (nearly) on one line: they constrain a homography."""
    centred = obj[:, :2] - obj[:, :2].mean(axis=0)
    sv = np.linalg.svd(centred, compute_uv=False)
    return len(obj) >= _MIN_CORNERS and sv[1] > 0.2 * sv[0]


def _calibrate(views: list[tuple[int, np.ndarray, np.ndarray]], size: tuple[int, int],
               K0: Optional[np.ndarray]) -> tuple[float, np.ndarray, np.ndarray, list[float]]:
    flags = _FLAGS | (cv2.CALIB_USE_INTRINSIC_GUESS if K0 is not None else 0)
    rms, K, dist, rvecs, tvecs = cv2.calibrateCamera(
        [o for _, o, _ in views], [i for _, _, i in views], size, None if K0 is None else K0.copy(), None,
        flags=flags, criteria=(cv2.TERM_CRITERIA_EPS + cv2.TERM_CRITERIA_COUNT, 100, 1e-9))
    errors = []
    for (_, obj, img), rv, tv in zip(views, rvecs, tvecs):
        proj, _ = cv2.projectPoints(obj, rv, tv, K, dist)
        errors.append(np.linalg.norm(proj.reshape(-1, 2) - img, axis=1))
    return float(rms), K, dist.reshape(-1), errors


def intrinsics_from_detections(board: BoardDescription, detections: BoardDetections,
                               max_view_error_px: float = 1.0, max_median_error_px: float = 2.0) -> tuple[Camera, IntrinsicsReport]:
    """Intrinsics of one camera from its board detections (:func:`detect_board`).

    Views whose RMS error is over ``max(3 x the median view's, max_view_error_px)`` pixels are
    dropped and the camera calibrated again (up to three rounds, keeping :data:`MIN_VIEWS`).

    Returns:
        ``(camera, report)``: the camera (identity extrinsics, ``(k1, k2, 0, 0, 0)`` distortion)
        and its per-image report; ``report.problems`` lists what makes it implausible.

    Raises:
        CalibrationError: fewer than :data:`MIN_VIEWS` usable views.
    """
    size = detections.image_size
    notes: dict[int, str] = {}
    views = []
    for frame, obj, img in _view_points(board, detections):
        if _spans_plane(obj):
            views.append((frame, obj, img))
        else:
            notes[frame] = f"too few corners off one line (need {_MIN_CORNERS}+ spanning two directions)"
    if len(views) < MIN_VIEWS:
        raise CalibrationError(
            f"camera {detections.name} ({detections.source}): the board is usable in {len(views)} of "
            f"{detections.frames} frames; intrinsics need at least {MIN_VIEWS} views, tilted differently")
    K0 = None
    for _ in range(4):
        rms, K, dist, errors = _calibrate(views, size, K0)
        view_rms = np.array([np.sqrt(np.mean(e**2)) for e in errors])
        limit = max(3.0 * float(np.median(view_rms)), max_view_error_px)
        bad = [i for i in np.argsort(-view_rms) if view_rms[i] > limit][: max(0, len(views) - MIN_VIEWS)]
        if not bad:
            break
        for i in bad:
            notes[views[i][0]] = f"does not fit ({view_rms[i]:.2f} px RMS, limit {limit:.2f})"
        views = [v for i, v in enumerate(views) if i not in set(bad)]
        K0 = K
    used = {frame: float(np.sqrt(np.mean(e**2))) for (frame, _, _), e in zip(views, errors)}
    counts = detections.corners_per_frame()
    reports = [ViewReport(image=detections.label(f), corners=counts.get(f, 0), error_px=used.get(f, float("nan")),
                          used=f in used, note="" if f in used else notes.get(f, "no board found"))
               for f in range(detections.frames)]
    camera = Camera(K=K, R=np.eye(3), t=np.zeros(3), dist=np.array([dist[0], dist[1], 0.0, 0.0, 0.0]),
                    image_size=size, name=detections.name)
    all_errors = np.concatenate(errors)
    median = float(np.median(all_errors))
    report = IntrinsicsReport(
        name=detections.name, source=detections.source, image_size=size, views=reports, rms_px=rms,
        median_error_px=median, focal_px=(float(K[0, 0]), float(K[1, 1])),
        principal_point=(float(K[0, 2]), float(K[1, 2])), distortion=[float(v) for v in camera.dist],
        problems=plausibility_problems(camera, median, max_median_error_px))
    return camera, report


def calibrate_intrinsics(board: BoardDescription, source: str | os.PathLike, name: str, every_nth: int = 1,
                         max_view_error_px: float = 1.0, max_median_error_px: float = 2.0,
                         progress: Progress = no_progress) -> tuple[Camera, IntrinsicsReport]:
    """Calibrate one camera from its own board video or image folder (see
    :func:`intrinsics_from_detections`); ``progress`` gets ``progress(f"detect {name}", done, total)``.

    Raises:
        FileNotFoundError: no such source.
        CalibrationError: unreadable frames, or too few views with the board.
    """
    from calibration.board_calibration import no_board_message

    detections = detect_board(board, source, name, every_nth, progress)
    if not detections.rows:
        raise CalibrationError(no_board_message(board, detections))
    return intrinsics_from_detections(board, detections, max_view_error_px, max_median_error_px)
