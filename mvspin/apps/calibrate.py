"""The ``calibrate`` jobs: a rig from board recordings, a printable board, a format conversion.

- :func:`run` (:class:`CalibrateConfig`): detect the board in one video or image folder per
  camera, calibrate intrinsics (or take them from a file) and extrinsics (bundle adjustment with
  aniposelib), write the rig in any supported format with a per-camera reprojection report;
- :func:`run_intrinsics` (:class:`IntrinsicsConfig`): each camera's intrinsics from its own board
  stills or video, with a report per image;
- :func:`run_board_image` (:class:`BoardImageConfig`): a PNG of the board that records its DPI,
  so printing at 100 % gives squares of the described size;
- :func:`run_convert` (:class:`ConvertConfig`): a calibration file in another format.

Extrinsics from a person walking (no board) are :mod:`mvspin.apps.calibrate_person`'s job.

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
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, Optional

from calibration import Rig
from calibration.board_calibration import CalibrationReport
from calibration.formats import FORMATS
from mvspin.atomic import check_output_location, removed_if_unused, write_bytes_atomic
from mvspin.config import ConfigError, check_range
from mvspin.progress import Progress, no_progress

__all__ = ["CalibrateConfig", "CalibrateReport", "run", "IntrinsicsConfig", "IntrinsicsJobReport", "run_intrinsics",
           "load_intrinsics", "save_checked",
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
