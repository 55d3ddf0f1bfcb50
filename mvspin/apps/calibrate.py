"""The ``calibrate`` jobs: a rig from board recordings, a printable board, a format conversion.

- :func:`run` (:class:`CalibrateConfig`): detect the board in one video or image folder per
  camera, calibrate intrinsics (or take them from a file) and extrinsics (bundle adjustment with
  aniposelib), write the rig in any supported format with a per-camera reprojection report;
- :func:`run_intrinsics` (:class:`IntrinsicsConfig`): each camera's intrinsics from its own board
  stills or video, with a report per image;
- :func:`run_person` (:class:`PersonCalibrateConfig`): extrinsics from one person walking
  through the volume (keypoint folders, or videos through ``mvspin detect``), known intrinsics;
- :func:`run_board_image` (:class:`BoardImageConfig`): a PNG of the board that records its DPI,
  so printing at 100 % gives squares of the described size;
- :func:`run_convert` (:class:`ConvertConfig`): a calibration file in another format.

Every calibration is checked before it is written: an implausible one raises
:class:`~mvspin.errors.CalibrationRefusedError` (its ``table`` is the per-camera report) and
writes nothing, unless ``force`` (the ``.toml`` then says so in ``[metadata]``).

The work is :mod:`calibration`'s (``calibrate_rig``, ``write_board_png``, ``load_rig`` /
``save_rig``); these functions check every output and option first.

Example:
    >>> from mvspin.apps.calibrate import CalibrateConfig, run  # doctest: +SKIP
    >>> report = run(CalibrateConfig(board=Path("board.yaml"), videos=[Path("a.mp4"), Path("b.mp4")],
    ...                              out=Path("rig.toml")))  # doctest: +SKIP
"""
from __future__ import annotations

import json
import logging
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Literal, Optional

from calibration import Rig
from calibration.board_calibration import CalibrationReport
from calibration.formats import FORMATS
from mvspin.atomic import check_output_location, removed_if_unused, write_bytes_atomic
from mvspin.config import ConfigError, check_range
from mvspin.progress import Progress, no_progress

__all__ = ["CalibrateConfig", "CalibrateReport", "run", "IntrinsicsConfig", "IntrinsicsJobReport", "run_intrinsics",
           "load_intrinsics", "save_checked", "PersonCalibrateConfig", "PersonCalibrateReport", "run_person", "main_person",
           "person_keypoints", "detect_keypoints",
           "BoardImageConfig", "BoardImageReport", "run_board_image",
           "ConvertConfig", "ConvertReport", "run_convert", "MAX_DPI", "MAX_BOARD_PIXELS"]

log = logging.getLogger("mvspin")

MAX_DPI = 2400
"""The finest print resolution :func:`run_board_image` renders for (dots per inch; photo printers)."""
MAX_BOARD_PIXELS = 250_000_000
"""The largest board image :func:`run_board_image` renders (pixels; 250 MB of grey levels): a
7 x 5 board of 8 cm squares is 43 Mpx at 300 dpi."""


def _check_format(name: str, value: Optional[str]) -> None:
    if value is not None and value not in FORMATS:
        raise ConfigError(f"{name} must be one of {', '.join(FORMATS)}, got {value!r}", field=name)


@dataclass
class CalibrateConfig:
    """Everything ``mvspin calibrate`` needs."""

    # Optional in type only: the command line parses them after `calibrate board-image` is ruled
    # out; __post_init__ requires them.
    board: Optional[Path]
    """Board description file (.yaml or .toml; anipose's config.toml [calibration] table works too)."""
    videos: Optional[list[Path]]
    """One video file or image folder per camera, in rig order (frame i of each is the same moment)."""
    out: Optional[Path]
    """Calibration file to write (format from the suffix: .toml anipose, a folder or intri.yml
    EasyMocap, .qca.txt Qualisys, .json/.h5 Human3.6M, .calibration MPI-INF-3DHP)."""
    format: Optional[str] = None
    """Output format instead of the suffix's: anipose, easymocap, qualisys, h36m, mpi_inf_3dhp."""
    names: Optional[list[str]] = None
    """Camera names (default: the video or folder names)."""
    every_nth: int = 1
    """Use every n-th frame (board detection is the slow part)."""
    floor_frames: list[int] = field(default_factory=list)
    """Frames in which the board lies on the floor: the world becomes up-up with its origin on the
    floor (default: the first camera's frame)."""
    up: Literal["z", "y"] = "z"
    """World up axis with floor_frames."""
    report: Optional[Path] = None
    """Also write the calibration report as JSON here."""
    intrinsics: Optional[list[Path]] = None
    """Calibration file(s) whose cameras' intrinsics to use, fixed (matched by camera name, else
    in order; e.g. from calibrate intrinsics). Default: each camera's own board views."""
    refine_intrinsics: bool = False
    """Let the bundle adjustment refine focal length and k1 of given intrinsics."""
    max_median_error_px: float = 2.0
    """Refuse the calibration when a camera's median reprojection error is over this, pixels."""
    force: bool = False
    """Write a calibration that is refused as implausible anyway (the file says so)."""

    def __post_init__(self) -> None:
        check_range("max_median_error_px", self.max_median_error_px, 0, low_open=True)
        if self.intrinsics is not None:
            self.intrinsics = [Path(p) for p in self.intrinsics]
        for name in ("board", "videos", "out"):
            if getattr(self, name) is None:
                raise ConfigError(f"{name} is required for a calibration", field=name)
        self.board, self.out = Path(self.board), Path(self.out)
        self.videos = [Path(v) for v in self.videos]
        _check_format("format", self.format)
        check_range("every_nth", self.every_nth, 1, integer=True)
        if len(self.videos) < 2:
            raise ConfigError(f"videos: a rig calibration needs at least 2 cameras, got {len(self.videos)}",
                              field="videos")
        if self.names is not None and len(self.names) != len(self.videos):
            raise ConfigError(f"names: {len(self.names)} names for {len(self.videos)} cameras", field="names")
        for frame in self.floor_frames:
            check_range("floor_frames", frame, 0, integer=True)
        if self.up not in ("z", "y"):
            raise ConfigError(f"up must be z or y, got {self.up!r}", field="up")


@dataclass
class CalibrateReport:
    """What :func:`run` did."""

    rig: Rig
    """The calibrated rig (metres)."""
    calibration: CalibrationReport
    """Per-camera detections and reprojection errors (its ``table()`` prints them)."""
    path: Path
    """The calibration file written."""
    format: str
    """Its format."""
    report_path: Optional[Path] = None
    """The JSON report, when asked for."""


def run(config: CalibrateConfig, progress: Progress = no_progress) -> CalibrateReport:
    """Calibrate the rig of ``config.videos`` and write it to ``config.out``.

    Every output (its format included) is checked before the first frame is read.

    Raises:
        CalibrationError: a bad board file, an output name of no known format, too few
            detections, a failed calibration.
        OutputLocationError: an output cannot be written.
    """
    from calibration.boards import load_board
    from calibration.formats import format_for_output
    from calibration.formats.easymocap import easymocap_paths

    board = load_board(config.board)
    fmt = config.format or format_for_output(config.out)  # a bad output name fails before the long work
    target = easymocap_paths(config.out)[0] if fmt == "easymocap" else config.out
    # an unwritable place fails before the long work (this also removes temporaries a killed run left there)
    with removed_if_unused(target.parent):
        check_output_location(target, what="out")
        return _calibrate(config, board, fmt, progress)


def _calibrate(config: CalibrateConfig, board: Any, fmt: str, progress: Progress) -> CalibrateReport:
    from calibration.board_calibration import calibrate_rig

    if config.report is not None:
        check_output_location(config.report, what="report")
    log.info("board: %s %d x %d squares of %.1f mm; %d cameras", board.type, board.squares_x, board.squares_y,
             board.square_length * 1000, len(config.videos))
    intrinsics = None
    if config.intrinsics:
        names = config.names or _source_names(config.videos)
        intrinsics = load_intrinsics(config.intrinsics, names)
    rig, report = calibrate_rig(board, config.videos, names=config.names, every_nth=config.every_nth,
                                floor_frames=config.floor_frames, up=config.up, progress=progress,
                                intrinsics=intrinsics, refine_intrinsics=config.refine_intrinsics,
                                max_median_error_px=config.max_median_error_px)
    path = save_checked(rig, config.out, fmt, report.problems, report.table(), config.force)
    if config.report is not None:
        write_bytes_atomic(config.report, json.dumps(report.to_dict(), indent=1).encode())
    return CalibrateReport(rig=rig, calibration=report, path=path, format=fmt, report_path=config.report)


def _source_names(sources: list[Path]) -> list[str]:
    from calibration.board_calibration import _camera_names

    return _camera_names(sources)


def load_intrinsics(files: list[Path], names: list[str]) -> list[Any]:
    """The cameras of ``files`` (any calibration format; several files are concatenated) for the
    camera ``names``: by name where every name is found, else in order when the counts agree.

    Raises:
        ConfigError: (field ``intrinsics``) the cameras cannot be matched.
    """
    from calibration import load_rig

    cameras = [c for f in files for c in load_rig(f)]
    by_name = {c.name: c for c in cameras}
    if all(n in by_name for n in names):
        return [by_name[n] for n in names]
    if len(cameras) == len(names):
        log.info("intrinsics matched to the cameras in order (%s)",
                 ", ".join(f"{c.name} -> {n}" for c, n in zip(cameras, names)))
        return cameras
    raise ConfigError(f"intrinsics: {len(cameras)} cameras ({', '.join(by_name)}) in {', '.join(map(str, files))} "
                      f"for {len(names)} cameras ({', '.join(names)}); name them alike or give one per camera",
                      field="intrinsics")


def refuse_or_note(problems: list[str], table: str, force: bool) -> dict[str, Any]:
    """Raise :class:`~mvspin.errors.CalibrationRefusedError` for a calibration with ``problems``
    unless ``force``; with ``force``, the ``[metadata]`` entries that say so in the file."""
    from mvspin.errors import CalibrationRefusedError

    if not problems:
        return {}
    if not force:
        raise CalibrationRefusedError(
            f"calibration refused, nothing written: {problems[0]}"
            + (f" (and {len(problems) - 1} more problems)" if len(problems) > 1 else "")
            + "; force writes it anyway", table=table, problems=problems)
    log.warning("writing a calibration refused as implausible because force is set: %s", "; ".join(problems))
    return {"forced": "written with force although refused as implausible", "problems": problems}


def save_checked(rig: Rig, out: Path, fmt: str, problems: list[str], table: str, force: bool) -> Path:
    """Write ``rig`` unless it has ``problems`` (see :func:`refuse_or_note`)."""
    from calibration.formats import save_rig

    metadata = refuse_or_note(problems, table, force)
    if metadata and fmt != "anipose":
        log.warning("a %s file cannot say that it was forced: only the anipose .toml records it", fmt)
    return save_rig(rig, out, format=fmt, metadata=metadata or None)


@dataclass
class IntrinsicsConfig:
    """Everything ``mvspin calibrate intrinsics`` needs."""

    board: Path
    """Board description file (.yaml or .toml)."""
    images: list[Path]
    """One image folder or video per camera, each calibrated on its own (not synchronised)."""
    out: Path
    """Calibration file to write (.toml; the cameras with identity extrinsics)."""
    names: Optional[list[str]] = None
    """Camera names (default: the folder or video names)."""
    every_nth: int = 1
    """Use every n-th frame of a video."""
    max_view_error_px: float = 1.0
    """Drop views whose RMS reprojection error is over 3 x the median view's or this, pixels."""
    max_median_error_px: float = 2.0
    """Refuse a camera whose median reprojection error is over this, pixels."""
    force: bool = False
    """Write intrinsics refused as implausible anyway (the file says so)."""
    report: Optional[Path] = None
    """Also write the per-image report as JSON here."""

    def __post_init__(self) -> None:
        self.board, self.out = Path(self.board), Path(self.out)
        self.images = [Path(p) for p in self.images]
        if not self.images:
            raise ConfigError("images: give one image folder or video per camera", field="images")
        if self.names is not None and len(self.names) != len(self.images):
            raise ConfigError(f"names: {len(self.names)} names for {len(self.images)} cameras", field="names")
        check_range("every_nth", self.every_nth, 1, integer=True)
        check_range("max_view_error_px", self.max_view_error_px, 0, low_open=True)
        check_range("max_median_error_px", self.max_median_error_px, 0, low_open=True)


@dataclass
class IntrinsicsJobReport:
    """What :func:`run_intrinsics` did: per camera its :class:`calibration.intrinsics.IntrinsicsReport`."""

    rig: Rig
    cameras: list[Any]
    path: Path

    def table(self) -> str:
        return "\n\n".join(c.table() for c in self.cameras)


def run_intrinsics(config: IntrinsicsConfig, progress: Progress = no_progress) -> IntrinsicsJobReport:
    """Calibrate each camera's intrinsics from its own board images and write them.

    Raises:
        CalibrationError: a camera without enough board views.
        CalibrationRefusedError: a camera's calibration is implausible (unless ``force``).
    """
    with removed_if_unused(Path(config.out).parent):  # a refused job leaves no folder it made
        return _run_intrinsics(config, progress)


def _run_intrinsics(config: IntrinsicsConfig, progress: Progress) -> IntrinsicsJobReport:
    from calibration.boards import load_board
    from calibration.formats import format_for_output
    from calibration.intrinsics import calibrate_intrinsics

    board = load_board(config.board)
    fmt = format_for_output(config.out)
    check_output_location(config.out, what="out")
    if config.report is not None:
        check_output_location(config.report, what="report")
    names = config.names or _source_names(config.images)
    cameras, reports = [], []
    for source, name in zip(config.images, names):
        camera, report = calibrate_intrinsics(board, source, name, config.every_nth, config.max_view_error_px,
                                              config.max_median_error_px, progress)
        cameras.append(camera)
        reports.append(report)
    rig = Rig(cameras)
    problems = [f"camera {r.name}: {p}" for r in reports for p in r.problems]
    job = IntrinsicsJobReport(rig=rig, cameras=reports, path=config.out)
    job.path = save_checked(rig, config.out, fmt, problems, job.table(), config.force)
    if config.report is not None:
        write_bytes_atomic(config.report, json.dumps([r.to_dict() for r in reports], indent=1).encode())
    return job


@dataclass
class BoardImageConfig:
    """Everything ``mvspin calibrate board-image`` needs."""

    board: Path
    """Board description file (.yaml or .toml)."""
    out: Path
    """PNG file to write."""
    dpi: float = 300.0
    """Print resolution, dots per inch."""

    def __post_init__(self) -> None:
        self.board, self.out = Path(self.board), Path(self.out)
        check_range("dpi", self.dpi, 0, MAX_DPI, low_open=True)
        if self.out.suffix.lower() != ".png":
            raise ConfigError(f"out {self.out}: the board image is a PNG; give a name ending in .png", field="out")


@dataclass
class BoardImageReport:
    """What :func:`run_board_image` wrote."""

    path: Path
    """The PNG."""
    pixels: tuple[int, int]
    """Its width and height, pixels."""
    page_m: tuple[float, float]
    """The printed page at 100 % (board and margin), width and height in metres."""
    board: Any
    """The :class:`calibration.boards.BoardDescription` drawn."""


def board_image_pixels(board: Any, dpi: float) -> tuple[int, int]:
    """Width and height in pixels of the image ``write_board_png`` renders for ``board`` at ``dpi``
    (the squares plus half a square of margin on each side)."""
    px = int(round(board.square_length / 0.0254 * dpi))
    margin = px // 2
    return board.squares_x * px + 2 * margin, board.squares_y * px + 2 * margin


def run_board_image(config: BoardImageConfig) -> BoardImageReport:
    """Write a printable PNG of the board of ``config.board``.

    Raises:
        ConfigError: the image would be larger than :data:`MAX_BOARD_PIXELS` (a huge board or
            dpi), before anything is drawn.
    """
    from calibration.boards import load_board, write_board_png

    board = load_board(config.board)
    w, h = board_image_pixels(board, config.dpi)
    if w * h > MAX_BOARD_PIXELS:
        raise ConfigError(f"dpi {config.dpi:g}: a {board.squares_x} x {board.squares_y} board would be {w} x {h} "
                          f"pixels, more than {MAX_BOARD_PIXELS // 1_000_000} megapixels; lower dpi or use a "
                          "smaller board", field="dpi")
    check_output_location(config.out, what="out")
    path, page = write_board_png(board, config.out, dpi=config.dpi)
    return BoardImageReport(path=path, pixels=(w, h), page_m=page, board=board)


@dataclass
class ConvertConfig:
    """Everything ``mvspin calibrate convert`` needs."""

    input: Path
    """Calibration file (EasyMocap: its folder or intri.yml)."""
    out: Path
    """File to write (.toml, a folder or intri.yml, .qca.txt, .json/.h5, .calibration)."""
    format: Optional[str] = None
    """Output format instead of the suffix's: anipose, easymocap, qualisys, h36m, mpi_inf_3dhp."""
    subject: Optional[str] = None
    """Human3.6M input files: which subject's cameras."""
    world_up: Optional[Literal["z", "y"]] = None
    """The input's world is z-up (or y-up) with its origin on the floor: for inputs that cannot
    record it (Qualisys, Human3.6M, MPI-INF-3DHP), so the output (.toml, EasyMocap) keeps it."""

    def __post_init__(self) -> None:
        self.input, self.out = Path(self.input), Path(self.out)
        _check_format("format", self.format)
        if self.world_up not in (None, "z", "y"):
            raise ConfigError(f"world_up must be z or y, got {self.world_up!r}", field="world_up")


@dataclass
class ConvertReport:
    """What :func:`run_convert` did."""

    rig: Rig
    """The rig read."""
    input_format: str
    """The input's format (detected)."""
    path: Path
    """The file written."""


def run_convert(config: ConvertConfig) -> ConvertReport:
    """Read ``config.input`` in any supported format and write it to ``config.out``."""
    from calibration import WorldFrame, detect_format, load_rig, save_rig
    from calibration.formats import format_for_output
    from calibration.formats.easymocap import easymocap_paths

    fmt = config.format or format_for_output(config.out)
    check_output_location(easymocap_paths(config.out)[0] if fmt == "easymocap" else config.out, what="out")
    world = None if config.world_up is None else WorldFrame(up=config.world_up, origin="floor")
    input_format = detect_format(config.input)
    rig = load_rig(config.input, subject=config.subject, world=world)
    path = save_rig(rig, config.out, format=fmt)
    return ConvertReport(rig=rig, input_format=input_format, path=path)


@dataclass
class PersonCalibrateConfig:
    """Everything ``mvspin calibrate person`` needs: extrinsics from one person moving through
    the volume, seen by synchronised cameras with known intrinsics."""

    intrinsics: list[Path]
    """Calibration file(s) whose cameras' intrinsics to use (any format; one file for the rig or
    one per camera), matched to the keypoint folders by camera name, else in order."""
    out: Path
    """Calibration file to write (format from the suffix, as calibrate)."""
    keypoints: Optional[Path] = None
    """Folder with one sub-folder (or .npz) of 2D keypoint files per camera."""
    videos: Optional[list[Path]] = None
    """Synchronised videos, one per camera: keypoints are detected first (mvspin detect) into
    keypoints, or <out>.keypoints/ beside the output."""
    keypoint_set: Optional[str] = None
    """The files' keypoint set (default: from the keypoint count)."""
    person_height: float = 1.75
    """The person's height, metres: the calibration's scale (unless camera_distance)."""
    camera_distance: Optional[float] = None
    """A measured distance between two cameras (distance_between), metres: the scale instead."""
    distance_between: Optional[list[str]] = None
    """The two cameras camera_distance is measured between (names)."""
    up: Literal["z", "y"] = "z"
    """World up axis; the floor (under the lowest foot keypoints) is z = 0 (or y = 0)."""
    min_confidence: float = 0.5
    """Keypoints with a lower detector confidence are not used."""
    max_median_error_px: float = 15.0
    """Refuse the calibration when a camera's median reprojection error is over this, pixels
    (a marker-based lab calibration reprojects body keypoint detections at about 10 px)."""
    force: bool = False
    """Write a calibration that is refused as implausible anyway (the file says so)."""
    report: Optional[Path] = None
    """Also write the report as JSON here."""
    reference: Optional[Path] = None
    """A reference calibration of the same cameras: report each camera's centre and rotation
    error against it after a similarity alignment."""
    offsets: Optional[Path] = None
    """Per-camera frame offsets from mvspin sync (JSON; without a rig, from the keypoints alone):
    unsynchronised cameras' keypoints are shifted onto the reference camera's frames by whole
    frames first, and the bundle adjustment sees each camera's remaining fraction of a frame."""

    def __post_init__(self) -> None:
        self.intrinsics = [Path(p) for p in self.intrinsics]
        self.out = Path(self.out)
        if not self.intrinsics:
            raise ConfigError("intrinsics: give the calibration file(s) with the cameras' intrinsics", field="intrinsics")
        if (self.keypoints is None) == (not self.videos):
            raise ConfigError("give keypoints (a folder of 2D keypoint files) or videos, one of the two",
                              field="keypoints", related=("videos",))
        check_range("person_height", self.person_height, 0.5, 2.5)
        check_range("min_confidence", self.min_confidence, 0, 1)
        check_range("max_median_error_px", self.max_median_error_px, 0, low_open=True)
        if (self.camera_distance is None) != (self.distance_between is None):
            raise ConfigError("camera_distance and distance_between go together (a distance and two camera names)",
                              field="camera_distance", related=("distance_between",))
        if self.distance_between is not None and len(self.distance_between) != 2:
            raise ConfigError(f"distance_between names two cameras, got {self.distance_between}", field="distance_between")
        if self.camera_distance is not None:
            check_range("camera_distance", self.camera_distance, 0, low_open=True)
        if self.up not in ("z", "y"):
            raise ConfigError(f"up must be z or y, got {self.up!r}", field="up")


@dataclass
class PersonCalibrateReport:
    """What :func:`run_person` did."""

    rig: Rig
    calibration: Any
    """The :class:`calibration.person_calibration.PersonCalibrationReport` (``table()``)."""
    path: Path
    comparison: Any = None
    """With a reference: :class:`calibration.rig_comparison.RigComparison` (``table()``)."""


_HEAD_POINTS = (("left_eye", "right_eye"), ("left_ear", "right_ear"), ("nose",))
_HEAD_RATIOS = (0.936, 0.925, 0.915)  # of stature: eyes, ears, nose tip (adult proportions)
_FOOT_WORDS = ("ankle", "heel", "toe", "foot")
# Hand points (small, often misplaced) and face details (clustered next to the eyes and nose,
# where detectors approximate them) add little geometry and much bias.
_LEFT_OUT = ("pinky", "thumb", "index_", "middle_", "ring_", "hand", "eye_inner", "eye_outer", "mouth")


def main_person(keypoints: Any) -> Any:
    """``(T, V, K, 3)`` from ``(T, V, P, K, 3)`` detections: per frame and camera the listed person
    whose confident keypoints span the largest box (the subject walking through the volume is
    larger in the image than bystanders at the back)."""
    import numpy as np

    kp = np.asarray(keypoints)
    conf = kp[..., 2] > 0.3
    big, small = np.where(conf[..., None], kp[..., :2], -np.inf), np.where(conf[..., None], kp[..., :2], np.inf)
    span = np.nan_to_num(np.linalg.norm(big.max(axis=-2) - small.min(axis=-2), axis=-1), nan=0.0, posinf=0.0, neginf=0.0)
    best = span.argmax(axis=2)  # (T, V)
    return np.take_along_axis(kp, best[:, :, None, None, None], axis=2)[:, :, 0]


def person_keypoints(set_name: str) -> list[int]:
    """Indices of a keypoint set's well-defined body keypoints (joints, feet, eyes, ears, nose):
    hand points and face details are left out."""
    from mvspin.body import get_keypoint_set

    return [i for i, p in enumerate(get_keypoint_set(set_name).points) if not any(w in p for w in _LEFT_OUT)]


def _person_keypoint_roles(set_name: str) -> tuple[list[int], list[int], list[int], float, list[int]]:
    """For a keypoint set: (keypoints used (:func:`person_keypoints`), foot indices, head indices,
    head height ratio, mirror) with indices into the used keypoints."""
    from mvspin.body import get_keypoint_set

    kset = get_keypoint_set(set_name)
    used = person_keypoints(set_name)
    points = [kset.points[i] for i in used]
    foot = [j for j, p in enumerate(points) if any(w in p for w in _FOOT_WORDS)]
    for names, ratio in zip(_HEAD_POINTS, _HEAD_RATIOS):
        head = [j for j, p in enumerate(points) if p in names]
        if head:
            break
    if not foot or not head:
        raise ConfigError(f"keypoint_set {set_name}: person calibration needs foot keypoints (ankles, heels) and "
                          "head keypoints (eyes, ears or nose)", field="keypoint_set")
    flip = kset.flip_permutation
    mirror = [used.index(flip[i]) if flip[i] in used else j for j, i in enumerate(used)]
    return used, foot, head, ratio, mirror


def run_person(config: PersonCalibrateConfig, progress: Progress = no_progress) -> PersonCalibrateReport:
    """Calibrate a rig's extrinsics from a person moving through it and write it.

    Raises:
        CalibrationError: intrinsics or keypoints that do not match, too few common keypoints.
        CalibrationRefusedError: an implausible result (unless ``force``).
    """
    with removed_if_unused(Path(config.out).parent):  # a refused job leaves no folder it made
        return _run_person(config, progress)


def _run_person(config: PersonCalibrateConfig, progress: Progress) -> PersonCalibrateReport:
    import numpy as np

    from calibration import load_rig
    from calibration.formats import format_for_output
    from calibration.person_calibration import calibrate_from_keypoints
    from calibration.rig_comparison import compare_rigs
    from mvspin.data.recording_keypoints import read_recording_keypoints

    fmt = format_for_output(config.out)
    check_output_location(config.out, what="out")
    if config.report is not None:
        check_output_location(config.report, what="report")
    reference = load_rig(config.reference) if config.reference is not None else None
    cameras = [c for f in config.intrinsics for c in load_rig(f)]
    keypoints = config.keypoints
    if config.videos:
        keypoints = detect_keypoints(config.videos, config.keypoints or config.out.with_name(config.out.name + ".keypoints"),
                                     progress)
    assert keypoints is not None
    names = [c.name for c in cameras]
    rec = read_recording_keypoints(keypoints, names, config.keypoint_set, allow_missing_frames=True, progress=progress)
    intrinsics = load_intrinsics(config.intrinsics, rec.camera_names)
    used, foot, head, ratio, mirror = _person_keypoint_roles(rec.keypoint_set)
    kp = main_person(rec.keypoints)[:, :, used]
    time_offsets = None
    if config.offsets is not None:  # unsynchronised cameras: onto the reference's frame numbers
        from mvspin.apps.sync import read_offsets

        time_offsets = read_offsets(config.offsets, rec.camera_names)
        log.info("offsets of %s: %s", config.offsets, ", ".join(f"{n} {o:+.2f}" for n, o in zip(rec.camera_names, time_offsets)))
    distance = None
    if config.camera_distance is not None and config.distance_between is not None:
        missing = [n for n in config.distance_between if n not in rec.camera_names]
        if missing:
            raise ConfigError(f"distance_between: no camera {', '.join(missing)} (cameras: {', '.join(rec.camera_names)})",
                              field="distance_between")
        a, b = (rec.camera_names.index(n) for n in config.distance_between)
        distance = (a, b, float(config.camera_distance))
    log.info("person calibration: %d frames, %d cameras, %s (%d keypoints used)", kp.shape[0], kp.shape[1],
             rec.keypoint_set, len(used))
    rig, report = calibrate_from_keypoints(
        np.asarray(kp, dtype=np.float64), intrinsics, foot=foot, head=head, person_height=config.person_height,
        camera_distance=distance, head_height_ratio=ratio, up=config.up, min_confidence=config.min_confidence,
        max_median_error_px=config.max_median_error_px, mirror=mirror, time_offsets=time_offsets,
        progress=progress)
    comparison = compare_rigs(rig, reference) if reference is not None else None
    path = save_checked(rig, config.out, fmt, report.problems, report.table(), config.force)
    if config.report is not None:
        data = report.to_dict()
        if comparison is not None:
            data["comparison"] = asdict(comparison)
        write_bytes_atomic(config.report, json.dumps(data, indent=1).encode())
    return PersonCalibrateReport(rig=rig, calibration=report, path=path, comparison=comparison)


def detect_keypoints(videos: list[Path], folder: Path, progress: Progress = no_progress) -> Path:
    """Detect 2D keypoints in ``videos`` (mvspin detect, reusing what it found before) into
    ``folder`` and return it.

    Raises:
        ConfigError: (field ``videos``) no detector in this installation.
    """
    import importlib

    try:
        detect: Any = importlib.import_module("mvspin.apps.detect")  # the detector's app (optional here)
    except ImportError:
        raise ConfigError("videos: this installation has no keypoint detector (mvspin detect); give keypoints "
                          "detected elsewhere", field="videos") from None
    result = detect.run(detect.DetectConfig(inputs=[str(v) for v in videos], out=str(folder), reuse=True), progress)
    log.info("keypoints detected into %s", result.out)
    return Path(result.out)
