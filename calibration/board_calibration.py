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
from calibration.camera import Camera, Rig
from calibration.triangulation import triangulate_points
from calibration.world_frame import UP_AXES, align_world, check_floor_boards, transform_rig
from mvspin.errors import CalibrationError, CalibrationRefusedError
from mvspin.progress import Progress, no_progress

__all__ = ["calibrate_rig", "check_synchronised", "no_board_message", "CalibrationReport", "CameraCalibrationReport", "detect_board", "detect_corners",
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
    labels: dict[int, str] = field(default_factory=dict)
    """``{frame index: image file name}`` for image folders (empty for videos)."""

    def label(self, frame: int) -> str:
        """The image file name of ``frame`` (``frame <i>`` in a video)."""
        return self.labels.get(frame, f"frame {frame}")

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
    problems: list[str] = field(default_factory=list)
    """What makes this camera implausible (:func:`calibration.intrinsics.plausibility_problems`)."""


@dataclass
class CalibrationReport:
    """What :func:`calibrate_rig` did: the board, per-camera lines and the overall error."""

    board: BoardDescription
    cameras: list[CameraCalibrationReport]
    shared_frames: int
    median_error_px: float
    world: str
    intrinsics: str = "own board views (OpenCV)"
    max_median_error_px: float = 2.0

    @property
    def problems(self) -> list[str]:
        """Every camera's problems, ``"camera <name>: <problem>"``; empty for a plausible rig."""
        return [f"camera {c.name}: {p}" for c in self.cameras for p in c.problems]

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
                     f"{self.median_error_px:.3f} px; intrinsics: {self.intrinsics}; world frame: {self.world}")
        lines += [f"PROBLEM: {p}" for p in self.problems]
        return "\n".join(lines)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready dictionary."""
        return asdict(self)


def _natural_key(name: str) -> list[Any]:
    return [int(p) if p.isdigit() else p.lower() for p in re.split(r"(\d+)", name)]


def _image_files(source: Path) -> list[Path]:
    files = sorted((p for p in source.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES), key=lambda p: _natural_key(p.name))
    if not files:
        raise CalibrationError(f"{source}: no images ({', '.join(IMAGE_SUFFIXES)}) in this folder")
    return files


def _frames(source: Path) -> tuple[Iterator[np.ndarray], int]:
    """Grayscale frames of a video or an image folder, and their count (0 if unknown)."""
    if source.is_dir():
        files = _image_files(source)

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
    # Sub-pixel refinement in a window of about a third of a square (3 px is too small for the
    # 50-150 px squares of a full-HD frame: the corner's gradient field reaches further).
    spacing = float(np.median(np.linalg.norm(np.diff(corners.reshape(-1, 2), axis=0), axis=1)))
    win = int(np.clip(spacing / 6.0, 3, 11))
    corners = cv2.cornerSubPix(gray, corners, (win, win), (-1, -1),
                               (cv2.TERM_CRITERIA_EPS + cv2.TERM_CRITERIA_MAX_ITER, 50, 0.001))
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
    labels = {i: f.name for i, f in enumerate(_image_files(source))} if source.is_dir() else {}
    return BoardDetections(name=name, source=str(source), image_size=size, frames=count,
                           rows=detector.fill_points_rows(rows), labels=labels)


def _board_words(board: BoardDescription) -> str:
    return (f"a {board.type} of {board.squares_x - 1} x {board.squares_y - 1} inner corners "
            f"({board.squares_x} x {board.squares_y} squares, either way up)")


def no_board_message(board: BoardDescription, detections: BoardDetections, tries: int = 4) -> str:
    """The error when a camera's frames show no board: what was looked for, in how many frames,
    and, when a board one square larger or smaller each way is found in some of the first
    ``tries`` frames, the board file line that describes it (the squares / inner-corners mix-up)."""
    message = (f"camera {detections.name} ({detections.source}): looked for {_board_words(board)} in "
               f"{detections.frames} frames and found it in 0")
    if board.type != "checkerboard" or not Path(detections.source).exists():
        return message
    for delta in (1, -1):
        try:
            other = BoardDescription(board.type, board.squares_x + delta, board.squares_y + delta, board.square_length)
        except CalibrationError:
            continue
        frames, _ = _frames(Path(detections.source))
        found = sum(detect_corners(other, gray)[0] is not None for _, gray in zip(range(tries), frames))
        if found:
            return (f"{message}; a board of {other.squares_x - 1} x {other.squares_y - 1} inner corners is in {found} "
                    f"of the first {min(tries, detections.frames)}: if that is yours, the board file should say "
                    f"inner_corners: [{other.squares_x - 1}, {other.squares_y - 1}] (= squares: "
                    f"[{other.squares_x}, {other.squares_y}])")
    return message


def _camera_names(sources: Sequence[Path]) -> list[str]:
    for candidate in ([s.stem for s in sources], [s.parent.name for s in sources]):
        if all(candidate) and len(set(candidate)) == len(candidate):
            return candidate
    return [f"cam_{i}" for i in range(len(sources))]


def _check_coverage(detections: Sequence[BoardDetections], board: BoardDescription) -> None:
    """Every camera sees the board well enough for intrinsics, and the cameras form one group
    linked by frames in which two of them see it."""
    seen = []
    for d in detections:
        counts = d.corners_per_frame()
        if not counts:
            raise CalibrationError(no_board_message(board, d))
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


def _board_poses(detections: BoardDetections, camera: Camera, board: BoardDescription) -> dict[int, tuple[np.ndarray, np.ndarray]]:
    """``{frame: (R, t)}`` board-to-camera poses (solvePnP) of the frames with 8+ corners."""
    obj_all = board.object_points()
    poses = {}
    for r in detections.rows:
        ids = np.asarray(r["ids"]).reshape(-1).astype(int)
        if ids.size < _MIN_CORNERS_SHARED:
            continue
        ok, rvec, tvec = cv2.solvePnP(obj_all[ids], np.asarray(r["corners"], dtype=np.float64).reshape(-1, 2),
                                      camera.K, camera.dist, flags=cv2.SOLVEPNP_IPPE)
        if ok:
            poses[int(r["framenum"][1])] = (cv2.Rodrigues(rvec)[0], tvec.reshape(3))
    return poses


def _angle_deg(R: np.ndarray) -> float:
    return float(np.degrees(np.arccos(np.clip((np.trace(R) - 1.0) / 2.0, -1.0, 1.0))))


def check_synchronised(detections: Sequence[BoardDetections], cameras: Sequence[Camera], board: BoardDescription,
                       max_rotation_deg: float = 5.0) -> None:
    """Refuse sources that are not synchronised although given as such.

    In a fixed rig, the board seen by cameras ``a`` and ``b`` at the same moment gives the same
    relative pose ``T_b T_a^-1`` in every frame. For each pair of cameras that see the board in
    2+ common frames, the median angle between each frame's relative rotation and the most
    central one must stay under ``max_rotation_deg`` (board corner noise gives well under a
    degree; unrelated moments give tens).

    Raises:
        CalibrationRefusedError: naming the first pair of cameras that disagree, the spread and
            the frames.
    """
    poses = [_board_poses(d, c, board) for d, c in zip(detections, cameras)]
    for a in range(len(poses)):
        for b in range(a + 1, len(poses)):
            shared = sorted(set(poses[a]) & set(poses[b]))
            if len(shared) < 2:
                continue
            rel = [poses[b][f][0] @ poses[a][f][0].T for f in shared]
            spread = np.array([[_angle_deg(Ri @ Rj.T) for Rj in rel] for Ri in rel])
            centre = int(np.argmin(np.median(spread, axis=1)))
            median = float(np.median(np.delete(spread[centre], centre)))
            if median > max_rotation_deg:
                da, db = detections[a], detections[b]
                raise CalibrationRefusedError(
                    f"the sources are not synchronised: cameras {da.name} and {db.name} both see the board in "
                    f"{len(shared)} frames ({', '.join(da.label(f) for f in shared[:4])}{', ...' if len(shared) > 4 else ''}), "
                    f"but the board's poses imply their relative rotation changes by {median:.1f} degrees (median) "
                    f"from frame to frame; in a fixed rig it does not. Frame i of every source must be the same "
                    f"moment: calibrate intrinsics per camera on its own stills (calibrate intrinsics), and "
                    f"extrinsics from recordings in which several cameras see the board at once",
                    problems=[f"cameras {da.name} and {db.name}: relative rotation varies by {median:.1f} degrees"])


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
    intrinsics: Optional[Sequence[Camera]] = None,
    refine_intrinsics: bool = False,
    max_median_error_px: float = 2.0,
) -> tuple[Rig, CalibrationReport]:
    """Calibrate a rig from synchronised board recordings, one per camera.

    Each camera's intrinsics come from ``intrinsics`` (one camera per source, e.g. from
    :func:`calibration.intrinsics.calibrate_intrinsics` run on its own stills) or, without them,
    from its own board views (OpenCV, :func:`calibration.intrinsics.intrinsics_from_detections`).
    The board poses they imply must agree with a fixed rig (:func:`check_synchronised`: image
    sets taken at different moments are refused); then aniposelib's bundle adjustment solves the
    extrinsics, intrinsics fixed unless ``refine_intrinsics``. The report lists every camera's
    plausibility problems (``report.problems``: focal, distortion, a median reprojection error over
    ``max_median_error_px``); the caller decides whether to write a calibration that has any.

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
        intrinsics: known intrinsics, one camera per source (their extrinsics are ignored).
        refine_intrinsics: let the bundle adjustment refine focal length and k1 too.
        max_median_error_px: a camera whose median reprojection error is larger has a problem.

    Returns:
        ``(rig, report)``: the calibrated :class:`Rig` (metres) and a :class:`CalibrationReport`.

    Raises:
        CalibrationError: fewer than 2 cameras, a camera that never sees the board, cameras that
            share no views, a floor frame without the board in 2+ cameras, or a failed calibration.
        CalibrationRefusedError: the sources are not synchronised (:func:`check_synchronised`).

    Example:
        >>> rig, report = calibrate_rig(load_board("board.yaml"), ["cam1.mp4", "cam2.mp4"])  # doctest: +SKIP
        >>> print(report.table())                                                         # doctest: +SKIP
    """
    from calibration.quiet import aniposelib_modules

    cameras_module = aniposelib_modules()[1]
    AniCamera, CameraGroup = cameras_module.Camera, cameras_module.CameraGroup

    from calibration.intrinsics import intrinsics_from_detections, plausibility_problems

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
    _check_coverage(detections, board)
    if intrinsics is not None and len(intrinsics) != len(detections):
        raise CalibrationError(f"{len(intrinsics)} intrinsics for {len(detections)} cameras")
    own = intrinsics is None
    cameras = list(intrinsics) if intrinsics is not None else [intrinsics_from_detections(board, d)[0] for d in detections]
    check_synchronised(detections, cameras, board)
    detector = board.to_aniposelib()
    group = CameraGroup([AniCamera(name=d.name, size=list(d.image_size), matrix=c.K.copy(),
                                   dist=np.pad(c.dist[:5], (0, max(0, 5 - c.dist.size))))
                         for d, c in zip(detections, cameras)])
    rows = [[dict(r) for r in d.rows] for d in detections]  # aniposelib adds pose entries
    try:
        with contextlib.redirect_stdout(io.StringIO()):  # aniposelib prints its progress
            group.calibrate_rows(rows, detector, init_intrinsics=False, init_extrinsics=True, verbose=False,
                                 only_extrinsics=not refine_intrinsics)
    except ValueError as e:
        raise CalibrationError(f"aniposelib could not calibrate the rig: {' '.join(str(e).split())}") from None
    rig = from_camera_group(group)
    if not refine_intrinsics:  # aniposelib keeps one radial term; the fixed intrinsics are the given ones
        rig = Rig([Camera(K=k.K, R=c.R, t=c.t, dist=k.dist, image_size=c.image_size, name=c.name)
                   for c, k in zip(rig, cameras)], world=rig.world)
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
            max_error_px=float(e_px.max()) if e_px.size else float("nan"), focal_px=float(c.K[0, 0]),
            problems=plausibility_problems(c, float(np.median(e_px)) if e_px.size else float("inf"),
                                           max_median_error_px)))
    all_errors = np.concatenate(errors)
    report = CalibrationReport(board=board, cameras=cams, shared_frames=shared_frames,
                               median_error_px=float(np.median(all_errors)) if all_errors.size else float("nan"),
                               world=world, intrinsics="own board views (OpenCV)" if own else "given",
                               max_median_error_px=max_median_error_px)
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
