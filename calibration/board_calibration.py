"""Rig calibration from synchronised videos (or image folders) of a ChArUco or checkerboard board.

:func:`calibrate_rig` detects the board in every camera's frames, checks that every camera sees
it and that the cameras are linked by shared views, then lets aniposelib do the calibration
(intrinsics initialised per camera, extrinsics from board poses seen by camera pairs, iterative
bundle adjustment of extrinsics, one focal length and the first radial distortion coefficient
per camera; the principal point stays at the image centre). The result is a :class:`Rig` in
metres whose world frame is the first camera's (or, with ``floor_frames``, a Z-up or Y-up frame
with the floor where the board lay in those frames), and a :class:`CalibrationReport` with per-camera
detection counts and reprojection errors.

A checkerboard is used only where it is seen whole (a partial one has no corner identities) and
its corners are numbered from the pattern (:func:`detect_corners`), which a board with one odd and
one even number of squares (7 x 6) allows whichever way it is turned; a symmetric one (8 x 6)
does not, and is warned about.

Frames are matched by index: frame ``i`` of every video (or the ``i``-th image of every folder,
in natural name order) is the same moment.

aniposelib's bundle adjustment imports JAX (multithreaded, and it switches JAX to 64-bit): a
program that forks worker processes afterwards (e.g. PyTorch DataLoader workers) should run the
calibration in a spawned subprocess.
"""
from __future__ import annotations

import contextlib
import io
import logging
import os
import re
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Iterator, Optional, Sequence

import cv2
import numpy as np
import torch

from calibration.anipose_group import from_camera_group
from calibration.boards import BoardDescription
from calibration.camera import Rig
from calibration.triangulation import triangulate_points
from calibration.world_frame import UP_AXES, align_world, check_floor_boards, transform_rig
from mvspin.errors import CalibrationError
from mvspin.progress import Progress, no_progress

__all__ = ["calibrate_rig", "CalibrationReport", "CameraCalibrationReport", "detect_board", "detect_corners",
           "checkerboard_is_symmetric", "BoardDetections", "IMAGE_SUFFIXES"]

log = logging.getLogger("calibration")

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff")
_MIN_CORNERS_INTRINSICS = 9  # aniposelib's default for a view to enter the intrinsics estimate
_MIN_CORNERS_SHARED = 8  # aniposelib keeps views with at least 8 corners for extrinsics

@dataclass
class BoardDetections:
    """The board found in one camera's frames.

    Attributes:
        name: camera name; source: the video file or image folder.
        image_size: (width, height) of its frames.
        frames: number of frames read.
        rows: aniposelib detection rows (``framenum``, ``corners``, ``ids``, ``filled``), one per
            frame with a detection.
    """

    name: str
    source: str
    image_size: tuple[int, int]
    frames: int
    rows: list[dict[str, Any]] = field(default_factory=list)

    def corners_per_frame(self) -> dict[int, int]:
        """``{frame index: detected corners}`` for the frames with a detection."""
        return {int(r["framenum"][1]): int(np.sum(~np.isnan(r["filled"].reshape(-1, 2)[:, 0]))) for r in self.rows}


@dataclass
class CameraCalibrationReport:
    """One camera's line of the report.

    ``frames_with_board``: frames with a detection; ``corners``: corners detected in all of them;
    ``shared_views``: frames in which this and another camera both saw 8+ corners (what links
    the cameras); errors in pixels over its corners that another camera also saw, reprojected
    from their triangulation with the calibrated rig; ``focal_px``: the calibrated focal length."""

    name: str
    source: str
    frames: int
    frames_with_board: int
    corners: int
    shared_views: int
    mean_error_px: float
    median_error_px: float
    max_error_px: float
    focal_px: float


@dataclass
class CalibrationReport:
    """What :func:`calibrate_rig` did: the board, per-camera lines and the overall error."""

    board: BoardDescription
    cameras: list[CameraCalibrationReport]
    shared_frames: int
    median_error_px: float
    world: str

    def table(self) -> str:
        """The per-camera report as an aligned text table."""
        head = ("camera", "frames", "with board", "corners", "shared", "mean px", "median px", "max px", "focal px")
        rows = [(c.name, str(c.frames), str(c.frames_with_board), str(c.corners), str(c.shared_views),
                 f"{c.mean_error_px:.3f}", f"{c.median_error_px:.3f}", f"{c.max_error_px:.3f}", f"{c.focal_px:.1f}")
                for c in self.cameras]
        widths = [max(len(r[i]) for r in [head, *rows]) for i in range(len(head))]
        fmt = lambda r: "  ".join(v.ljust(w) if i == 0 else v.rjust(w) for i, (v, w) in enumerate(zip(r, widths)))  # noqa: E731
        lines = [fmt(head), fmt(tuple("-" * w for w in widths)), *map(fmt, rows)]
        lines.append(f"{self.shared_frames} frames with the board in 2+ cameras; median reprojection error "
                     f"{self.median_error_px:.3f} px; world frame: {self.world}")
        return "\n".join(lines)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready dictionary."""
        return asdict(self)


def _natural_key(name: str) -> list[Any]:
    return [int(p) if p.isdigit() else p.lower() for p in re.split(r"(\d+)", name)]


def _frames(source: Path) -> tuple[Iterator[np.ndarray], int]:
    """Grayscale frames of a video or an image folder, and their count (0 if unknown)."""
    if source.is_dir():
        files = sorted((p for p in source.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES), key=lambda p: _natural_key(p.name))
        if not files:
            raise CalibrationError(f"{source}: no images ({', '.join(IMAGE_SUFFIXES)}) in this folder")

        def images() -> Iterator[np.ndarray]:
            for f in files:
                image = cv2.imread(str(f), cv2.IMREAD_GRAYSCALE)
                if image is None:
                    raise CalibrationError(f"{f}: not a readable image")
                yield image
        return images(), len(files)
    if not source.is_file():
        raise FileNotFoundError(f"{source}: no such video or image folder")
    cap = cv2.VideoCapture(str(source))
    if not cap.isOpened():
        raise CalibrationError(f"{source}: not a readable video")
    total = max(int(cap.get(cv2.CAP_PROP_FRAME_COUNT)), 0)

    def video() -> Iterator[np.ndarray]:
        read = 0
        try:
            while True:
                ok, frame = cap.read()
                if not ok:
                    break
                read += 1
                yield frame if frame.ndim == 2 else cv2.cvtColor(frame, cv2.COLOR_BGR2GRAY)
        finally:
            cap.release()
        if total and read < 0.95 * total:  # a truncated or damaged file: say so, the rest is calibrated
            log.warning("%s: read %d of the %d frames the video claims (truncated or damaged?); calibrating "
                        "with those", source, read, total)
    return video(), total


def checkerboard_is_symmetric(board: BoardDescription) -> bool:
    """True when a checkerboard looks the same turned by 180 degrees (``squares_x + squares_y``
    even, square boards included): its corners cannot be numbered from the image alone, and two
    cameras may number them from opposite ends. Boards with one odd and one even side (7 x 6)
    can be numbered unambiguously (:func:`detect_corners` does)."""
    return board.type == "checkerboard" and (board.squares_x + board.squares_y) % 2 == 0


def _checkerboard_in_board_order(gray: np.ndarray, corners: np.ndarray, board: BoardDescription) -> np.ndarray:
    """``(N, 1, 2)`` checkerboard corners renumbered in board order (row by row from the corner at
    the top-left black square, as :meth:`BoardDescription.object_points` numbers them).

    OpenCV numbers a checkerboard's corners from any end of the grid: mirrored orders are undone
    by the image-space handedness of the grid (a board seen from its printed side keeps x right of
    y), the 180-degree turn by the colour of the squares (inner square ``(i, j)`` is black when
    ``i + j`` is even), which only a board with one odd and one even side can tell."""
    cols, rows = board.squares_x - 1, board.squares_y - 1
    grid = corners.reshape(rows, cols, 2)
    along_x, along_y = grid[0, 1] - grid[0, 0], grid[1, 0] - grid[0, 0]
    if along_x[0] * along_y[1] - along_x[1] * along_y[0] < 0:  # a mirrored numbering
        grid = grid[:, ::-1]
    if not checkerboard_is_symmetric(board):
        centres = (grid[:-1, :-1] + grid[1:, :-1] + grid[:-1, 1:] + grid[1:, 1:]) / 4.0  # inner squares
        h, w = gray.shape
        u = np.clip(np.rint(centres[..., 0]).astype(int), 0, w - 1)
        v = np.clip(np.rint(centres[..., 1]).astype(int), 0, h - 1)
        values = gray[v, u].astype(np.float64)
        black = (np.add.outer(np.arange(rows - 1), np.arange(cols - 1)) % 2) == 0
        if values[black].mean() > values[~black].mean():  # numbered from the far end
            grid = grid[::-1, ::-1]
    return np.ascontiguousarray(grid.reshape(-1, 1, 2))


def detect_corners(board: BoardDescription, gray: np.ndarray, detector: Any = None) -> tuple[Optional[np.ndarray], Optional[np.ndarray]]:
    """The board's corners in one grayscale image ``(H, W)`` uint8.

    ChArUco: aniposelib's detector (``detector``, default ``board.to_aniposelib()``).
    Checkerboard: OpenCV's ``findChessboardCorners`` with aniposelib's settings, only when the
    whole board is found (a partly seen checkerboard has no corner identities), refined to
    sub-pixel and numbered in board order (see :func:`checkerboard_is_symmetric`).

    Returns:
        ``(corners (N, 1, 2) float32 pixels, ids (N,) int)``, or ``(None, None)`` when the board
        is not found.
    """
    detector = board.to_aniposelib() if detector is None else detector
    if board.type == "charuco":
        corners, ids = detector.detect_image(gray)
        return (corners, ids) if corners is not None and len(corners) > 0 else (None, None)
    size = (board.squares_x - 1, board.squares_y - 1)
    found, corners = cv2.findChessboardCorners(gray, size, type(detector).DETECT_PARAMS)
    if not found or corners is None or len(corners) != board.inner_corners:
        return None, None
    corners = cv2.cornerSubPix(gray, corners, (3, 3), (-1, -1), type(detector).SUBPIX_CRITERIA)
    return _checkerboard_in_board_order(gray, corners, board), np.arange(board.inner_corners)


def detect_board(board: BoardDescription, source: str | os.PathLike, name: str, every_nth: int = 1,
                 progress: Progress = no_progress) -> BoardDetections:
    """Find ``board`` in every ``every_nth`` frame of one camera's video or image folder.

    ``progress`` is called as ``progress(f"detect {name}", frames_read, frames_total)`` after each
    frame (``frames_total`` is 0 when the video does not tell).

    Raises:
        FileNotFoundError: no such source.
        CalibrationError: unreadable video/images, no frames, or frames of different sizes.
    """
    if every_nth < 1:
        raise CalibrationError(f"every_nth must be at least 1, got {every_nth}")
    source = Path(source)
    frames, total = _frames(source)
    detector = board.to_aniposelib()
    size: Optional[tuple[int, int]] = None
    rows = []
    count = 0
    for index, gray in enumerate(frames):
        count += 1
        shape = (gray.shape[1], gray.shape[0])
        if size is None:
            size = shape
        elif shape != size:
            raise CalibrationError(f"{source}: frame {index} is {shape[0]}x{shape[1]}, the first was {size[0]}x{size[1]}")
        if index % every_nth == 0:
            corners, ids = detect_corners(board, gray, detector)
            if corners is not None:
                rows.append({"framenum": (0, index), "corners": corners, "ids": ids})
        progress(f"detect {name}", count, total)
    if size is None:
        raise CalibrationError(f"{source}: no frames")
    return BoardDetections(name=name, source=str(source), image_size=size, frames=count,
                           rows=detector.fill_points_rows(rows))


def _camera_names(sources: Sequence[Path]) -> list[str]:
    for candidate in ([s.stem for s in sources], [s.parent.name for s in sources]):
        if all(candidate) and len(set(candidate)) == len(candidate):
            return candidate
    return [f"cam_{i}" for i in range(len(sources))]


def _check_coverage(detections: Sequence[BoardDetections]) -> None:
    """Every camera sees the board well enough for intrinsics, and the cameras form one group
    linked by frames in which two of them see it."""
    seen = []
    for d in detections:
        counts = d.corners_per_frame()
        if not counts:
            raise CalibrationError(f"camera {d.name} ({d.source}): the board was not detected in any of its "
                                   f"{d.frames} frames")
        if max(counts.values()) < _MIN_CORNERS_INTRINSICS:
            raise CalibrationError(f"camera {d.name} ({d.source}): the board was seen in {len(counts)} frames but never "
                                   f"with {_MIN_CORNERS_INTRINSICS}+ corners; show it closer or more frontally")
        seen.append({f for f, n in counts.items() if n >= _MIN_CORNERS_SHARED})
    group = {0}
    frontier = [0]
    while frontier:
        a = frontier.pop()
        for b in range(len(detections)):
            if b not in group and seen[a] & seen[b]:
                group.add(b)
                frontier.append(b)
    if len(group) < len(detections):
        inside = ", ".join(detections[i].name for i in sorted(group))
        outside = ", ".join(d.name for i, d in enumerate(detections) if i not in group)
        raise CalibrationError(f"cameras share no board views: {outside} never see(s) the board in the same frame as "
                               f"{inside}; record frames where cameras of both groups see the board at once")


def _reprojection(rig: Rig, detections: Sequence[BoardDetections], board: BoardDescription) -> tuple[list[np.ndarray], int]:
    """Per camera, pixel errors of its corners in frames where 2+ cameras saw them; and the
    number of such frames."""
    frames = sorted({f for d in detections for f in d.corners_per_frame()})
    index = {f: i for i, f in enumerate(frames)}
    points = np.full((len(rig), len(frames), board.inner_corners, 2), np.nan)
    for v, d in enumerate(detections):
        for r in d.rows:
            points[v, index[int(r["framenum"][1])]] = r["filled"].reshape(-1, 2)
    seen = ~np.isnan(points[..., 0])
    shared = seen.sum(axis=0) >= 2  # (F, M)
    flat = torch.as_tensor(np.nan_to_num(points).reshape(len(rig), -1, 2), dtype=torch.float64)
    weights = torch.as_tensor((seen & shared[None]).reshape(len(rig), -1), dtype=torch.float64)
    tri = triangulate_points(flat, weights, rig.to_torch(torch.float64), threshold_px=None)
    projected = rig.project(tri.points.numpy())  # (V, F*M, 2)
    errors = np.linalg.norm(projected - flat.numpy(), axis=-1)
    mask = (weights.numpy() > 0) & tri.valid.numpy()[None]
    return [errors[v][mask[v]] for v in range(len(rig))], int(shared.any(axis=1).sum())


def calibrate_rig(
    board: BoardDescription,
    sources: Sequence[str | os.PathLike],
    names: Optional[Sequence[str]] = None,
    every_nth: int = 1,
    floor_frames: Sequence[int] = (),
    up: str = "z",
    progress: Progress = no_progress,
) -> tuple[Rig, CalibrationReport]:
    """Calibrate a rig from synchronised board recordings, one per camera.

    Args:
        board: the printed board (lengths in metres).
        sources: per camera, a video file or a folder of images (same moments at the same index).
        names: camera names (default: the file or folder names; ``cam_<i>`` if they repeat).
        every_nth: use every n-th frame (board detection is the slow part).
        floor_frames: frame indices in which the board lies flat on the floor, seen by 2+ cameras
            (several, spread over the floor, give a steadier plane): the world becomes
            ``up``-up with its origin on the floor under the first of these boards. Default (no
            frames): the world is the first camera's frame.
        up: ``"z"`` or ``"y"``, with ``floor_frames``.
        progress: :class:`mvspin.progress.Progress`, one stage per camera while detecting the
            board: ``progress(f"detect {name}", frames_read, frames_total)``.

    Returns:
        ``(rig, report)``: the calibrated :class:`Rig` (metres) and a :class:`CalibrationReport`.

    Raises:
        CalibrationError: fewer than 2 cameras, a camera that never sees the board, cameras that
            share no views, a floor frame without the board in 2+ cameras, or a failed calibration.

    Example:
        >>> rig, report = calibrate_rig(load_board("board.yaml"), ["cam1.mp4", "cam2.mp4"])  # doctest: +SKIP
        >>> print(report.table())                                                         # doctest: +SKIP
    """
    from aniposelib.cameras import Camera as AniCamera, CameraGroup

    if floor_frames and up not in UP_AXES:
        raise CalibrationError(f"up must be one of {', '.join(UP_AXES)}, got {up!r}")
    paths = [Path(s) for s in sources]
    if len(paths) < 2:
        raise CalibrationError(f"a rig calibration needs at least 2 cameras, got {len(paths)}")
    names = list(names) if names is not None else _camera_names(paths)
    if len(names) != len(paths) or len(set(names)) != len(names):
        raise CalibrationError(f"need {len(paths)} distinct camera names, got {names}")
    if checkerboard_is_symmetric(board):
        log.warning("a %d x %d checkerboard looks the same turned by 180 degrees: cameras that see it turned "
                    "differently number its corners from opposite ends and the calibration fails; a board with "
                    "one odd and one even number of squares (e.g. 7 x 6) avoids this",
                    board.squares_x, board.squares_y)
    detections = []
    for path, name in zip(paths, names):
        detections.append(detect_board(board, path, name, every_nth, progress))
    _check_coverage(detections)
    detector = board.to_aniposelib()
    group = CameraGroup([AniCamera(name=d.name, size=list(d.image_size)) for d in detections])
    rows = [[dict(r) for r in d.rows] for d in detections]  # aniposelib adds pose entries
    try:
        with contextlib.redirect_stdout(io.StringIO()):  # aniposelib prints its progress
            group.calibrate_rows(rows, detector, init_intrinsics=True, init_extrinsics=True, verbose=False)
    except ValueError as e:
        raise CalibrationError(f"aniposelib could not calibrate the rig: {' '.join(str(e).split())}") from None
    rig = from_camera_group(group)
    rig = transform_rig(rig, rig[0].R, rig[0].t)  # world = the first camera's frame, exactly
    world = f"camera {rig[0].name}"
    errors, shared_frames = _reprojection(rig, detections, board)
    if floor_frames:
        rig = _align_to_floor_boards(rig, detections, board, floor_frames, up)
        world = f"{up}-up, origin on the floor under the board of frame {floor_frames[0]}"
    good = [{f for f, n in d.corners_per_frame().items() if n >= _MIN_CORNERS_SHARED} for d in detections]
    cams = []
    for v, (d, e_px, c) in enumerate(zip(detections, errors, rig)):
        counts = d.corners_per_frame()
        others = set().union(*(g for u, g in enumerate(good) if u != v))
        cams.append(CameraCalibrationReport(
            name=d.name, source=d.source, frames=d.frames, frames_with_board=len(counts), corners=sum(counts.values()),
            shared_views=len(good[v] & others),
            mean_error_px=float(e_px.mean()) if e_px.size else float("nan"),
            median_error_px=float(np.median(e_px)) if e_px.size else float("nan"),
            max_error_px=float(e_px.max()) if e_px.size else float("nan"), focal_px=float(c.K[0, 0])))
    all_errors = np.concatenate(errors)
    report = CalibrationReport(board=board, cameras=cams, shared_frames=shared_frames,
                               median_error_px=float(np.median(all_errors)) if all_errors.size else float("nan"),
                               world=world)
    return rig, report


def _align_to_floor_boards(rig: Rig, detections: Sequence[BoardDetections], board: BoardDescription,
                           frames: Sequence[int], up: str) -> Rig:
    """Triangulate the board corners of ``frames`` (the board lying on the floor) and make their
    plane the floor; the origin goes under the first of those boards."""
    floor, origin = [], None
    for frame in frames:
        views = [(v, r) for v, d in enumerate(detections) for r in d.rows if int(r["framenum"][1]) == frame]
        if len(views) < 2:
            raise CalibrationError(f"floor frame {frame}: the board is seen by {len(views)} camera(s) in that "
                                   "frame (frames skipped by every_nth are not searched); it needs 2 or more")
        points = np.zeros((len(rig), board.inner_corners, 2))
        weights = np.zeros((len(rig), board.inner_corners))
        for v, r in views:
            filled = r["filled"].reshape(-1, 2)
            ok = ~np.isnan(filled[:, 0])
            points[v, ok], weights[v, ok] = filled[ok], 1.0
        usable = (weights > 0).sum(axis=0) >= 2
        tri = triangulate_points(torch.as_tensor(points), torch.as_tensor(weights * usable), rig.to_torch(torch.float64))
        valid = tri.valid.numpy() & usable
        if valid.sum() < 3:
            raise CalibrationError(f"floor frame {frame}: fewer than 3 board corners are seen by 2+ cameras")
        floor.append(tri.points.numpy()[valid])
        if origin is None:
            origin = floor[-1].mean(axis=0)
    check_floor_boards(rig, floor, frames)  # flat, in one plane, facing up: else heights come out wrong
    # One plane through every floor board: several boards spread over the floor fix its tilt far
    # better than one (a single board's corner noise tilts the plane by a degree or so).
    return align_world(rig, np.concatenate(floor), up=up, origin=origin)
