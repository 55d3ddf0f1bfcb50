"""``fit_rig``: SMPL bodies over a calibrated multi-camera recording, the whole job in one call.

Stages, in order: check every output location and open every input (rig, keypoints, videos,
checkpoint, body model) -> network start (with ``checkpoint``) -> association and sequence fit
(:func:`mvspin.fitting.recording.fit_recording`) -> per-subject files and the report
(:mod:`mvspin.apps.rig.outputs`) -> overlay videos -> the resolved config.

Example:
    >>> from mvspin.apps.rig import FitRigConfig, fit_rig
    >>> report = fit_rig(FitRigConfig(rig="rig.toml", keypoints="keypoints/", out="fit/"))  # doctest: +SKIP
    >>> report.summary["subjects"][0]["mean_reprojection_px"]  # doctest: +SKIP
    2.1
"""
from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Optional

from mvspin.body.config import BodyModelConfig
from mvspin.config import ConfigError, check_range
from mvspin.fitting.recording import RecordingFit, RigFitConfig
from mvspin.progress import Progress, no_progress

__all__ = ["FitRigConfig", "RigReport", "fit_rig"]

log = logging.getLogger("mvspin")

# Frame rate of a recording given neither as fps nor by its videos (most keypoint files carry none).
DEFAULT_FPS = 30.0

# Files a run may write besides the per-subject ones (checked before any work).
_REPORT_FILES = ("report.json", "report.png", "config.yaml")


@dataclass(kw_only=True)
class FitRigConfig(RigFitConfig):
    """Every setting of ``mvspin fit-rig``: inputs, outputs, and the association and sequence
    fitting (``association``, ``sequence``, inherited from
    :class:`~mvspin.fitting.recording.RigFitConfig`; see ``configs/fit_rig.yaml``)."""

    rig: Path
    """Calibration file in any supported format (anipose/Pose2Sim/FreeMoCap TOML, EasyMocap,
    Qualisys .qca.txt, Human3.6M, MPI-INF-3DHP), metres."""
    keypoints: Optional[Path] = None
    """Folder with one sub-folder (or .npz) of 2D keypoint files per rig camera (default: detect
    them in videos first, into OUT/keypoints/, reused when rerun)."""
    out: Path
    """Output folder."""
    model_dir: Optional[Path] = None
    """Folder holding the BlazePose files when keypoints are detected from videos (default: the
    model cache, see `mvspin detect install-model`)."""
    keypoint_set: Optional[str] = None
    """The files' keypoint set (default: from the keypoint count; BODY_25B must be named:
    openpose25b)."""
    fps: Optional[float] = None
    """Frame rate of the recording, frames per second (default: the videos' when given, else 30)."""
    subjects: int = 1
    """People to fit, each with its own id."""
    meshes: bool = False
    """Also write one .obj per subject and frame (meshes/)."""
    bvh: bool = False
    """Also write subject<id>.bvh: the skeleton's motion for animation tools (Y-up, centimetres)."""
    trc: bool = False
    """Also write subject<id>.trc: the fitted keypoints and SMPL joints as OpenSim/Pose2Sim markers
    (Y-up, millimetres)."""
    y_up: bool = False
    """The rig's world is Y-up (default: Z-up)."""
    allow_missing_frames: bool = False
    """Cameras may lack files for some frames (else frame counts must agree)."""
    videos: Optional[list[Path]] = None
    """One video (or image folder) per camera, matched by file stem, else in order: writes
    overlay_<camera>.mp4 with the fitted skeletons (video frame n is keypoint frame n; an image's
    frame is the last number in its name)."""
    checkpoint: Optional[Path] = None
    """HMR regressor checkpoint (SPIN's or mvspin's): the fit starts from the network run on
    each camera's crop of the subject (needs videos; default: start from triangulation)."""
    batch_size: int = 32
    """Crops per network call with a checkpoint."""
    device: Optional[str] = None
    """Torch device, e.g. cpu or cuda:0 (default: cuda if available, else cpu)."""
    body: BodyModelConfig = field(default_factory=BodyModelConfig)
    """The body model."""
    offsets: Optional[Path] = None
    """Per-camera frame offsets from mvspin sync (JSON): each camera's keypoints are shifted onto
    the reference camera's frame numbers before fitting (unsynchronised recordings)."""

    def __post_init__(self) -> None:
        from mvspin.body.keypoint_sets import KEYPOINT_SETS

        self.rig, self.out = Path(self.rig), Path(self.out)
        self.keypoints = None if self.keypoints is None else Path(self.keypoints)
        if self.keypoints is None and not self.videos:
            raise ConfigError("give keypoints (a folder of 2D keypoint files per camera) or videos to detect them in",
                              field="keypoints")
        if self.videos is not None:
            self.videos = [Path(v) for v in self.videos]
            if not self.videos:
                raise ConfigError("videos must name at least one video (or leave it unset)", field="videos")
        check_range("fps", self.fps, 0, 10000, low_open=True)
        check_range("subjects", self.subjects, 1, 64, integer=True)
        check_range("batch_size", self.batch_size, 1, 4096, integer=True)
        if self.keypoint_set is not None and self.keypoint_set not in KEYPOINT_SETS:
            raise ConfigError(f"keypoint_set {self.keypoint_set!r} is not a keypoint set; known: "
                              f"{', '.join(KEYPOINT_SETS)}", field="keypoint_set")
        if self.checkpoint is not None and not self.videos:
            raise ConfigError("checkpoint needs videos (one per camera): the network runs on each camera's crop "
                              "of the subject", field="checkpoint", related=("videos",))
        if self.checkpoint is not None and self.sequence.keyframe.calibrated_init == "triangulation":
            raise ConfigError("checkpoint: sequence.keyframe.calibrated_init=triangulation would ignore the "
                              "network; set it to auto or network", field="checkpoint")


@dataclass
class RigReport:
    """What :func:`fit_rig` did.

    Attributes:
        out: the output folder.
        files: every file written, final paths.
        summary: the report's numbers (``report.json``: per subject frames fitted and failed,
            per-camera reprojection error in pixels, betas).
        fit: the fit itself (per subject a :class:`~mvspin.fitting.sequence.SequenceResult`).
        camera_names: the rig's cameras, in its order.
        keypoint_sources: the keypoint folder (or file) read for each camera, in the rig's order.
        matched_by: ``"name"`` (folders carry the cameras' names) or ``"order"``.
        body_model: the body model's name.
        initialisation: how the key frames started (triangulation or the network).
    """

    out: Path
    files: list[Path]
    summary: dict[str, Any]
    fit: RecordingFit
    camera_names: list[str]
    keypoint_sources: list[Path]
    matched_by: str
    body_model: str
    initialisation: str


def _planned_files(config: FitRigConfig, camera_names: list[str]) -> list[Path]:
    out = config.out
    files = [out / name for name in _REPORT_FILES]
    exts = ("npz", "glb") + ("bvh",) * config.bvh + ("trc",) * config.trc
    files += [out / f"subject{i}.{ext}" for i in range(config.subjects) for ext in exts]
    files += [out / f"overlay_{name}.mp4" for name in camera_names] if config.videos else []
    return files


def fit_rig(config: FitRigConfig, progress: Progress = no_progress) -> RigReport:
    """Run ``mvspin fit-rig``: fit SMPL bodies to a calibrated rig recording's 2D keypoints.

    Every output location and input is checked before any fitting: a bad ``out`` (a file, a
    folder that cannot be written, a full disk, an output name blocked by a folder), a
    calibration or keypoint folder that does not load, videos that do not open, a checkpoint
    that does not fit the body model: each raises an :class:`~mvspin.errors.MvspinError` (or
    ``OSError``) naming the file, and nothing is written.

    Args:
        config: the job's settings (:class:`FitRigConfig`).
        progress: stages ``"read keypoints"``, ``"associate"``, ``"fit <id>"``, ``"write"``,
            ``"overlays"`` (and ``"network <id>"`` with a checkpoint).

    Returns:
        A :class:`RigReport`; the files are in ``config.out``.
    """
    from mvspin.atomic import output_folder

    with output_folder(config.out, what="out"):  # removed again if the job fails before writing anything
        return _fit_rig(config, progress)


def _fit_rig(config: FitRigConfig, progress: Progress) -> RigReport:
    from calibration import load_rig
    from mvspin.apps.rig.outputs import match_videos, write_overlay_videos, write_recording_outputs
    from mvspin.config import resolve_device, save_config
    from mvspin.data.recording_keypoints import read_recording_keypoints
    from mvspin.data.video import VideoError, video_info
    from mvspin.fitting.recording import fit_recording, recording_summary
    from mvspin.io_outputs import check_output_folder

    rig = load_rig(config.rig)
    check_output_folder(config.out, _planned_files(config, list(rig.names)), what="out")
    videos: list[Path] = []
    rates: list[float] = []  # the frame rates the video files report
    if config.videos:
        videos = match_videos(config.videos, list(rig.names))  # a count mismatch before any fitting
        for v in videos:
            if not v.is_dir():
                rates.append(video_info(v).fps)  # opening it raises VideoError naming the file
            elif not any(v.iterdir()):
                raise VideoError(f"{v}: image folder is empty")
    log.info("rig: %d cameras (%s) from %s", len(rig), ", ".join(rig.names), config.rig)
    keypoints = config.keypoints if config.keypoints is not None else _detect_first(config, rig, videos, progress)
    rec = read_recording_keypoints(keypoints, rig.names, config.keypoint_set, config.allow_missing_frames,
                                   progress=progress)
    if config.offsets is not None:  # unsynchronised cameras: onto the reference's frame numbers
        from calibration.sync import shift_keypoints
        from mvspin.apps.sync import read_offsets

        rec.keypoints = shift_keypoints(rec.keypoints, read_offsets(config.offsets, rec.camera_names))
        log.info("keypoints shifted by the offsets of %s", config.offsets)
    if rec.matched_by == "order":
        log.info("keypoint folders matched to the rig's cameras in order (no folder carries a camera's name): %s",
                 ", ".join(f"{s.name} -> {n}" for s, n in zip(rec.sources, rec.camera_names)))
    log.info("keypoints: %d frames, %s, up to %d people per camera", rec.num_frames, rec.keypoint_set,
             rec.keypoints.shape[2])
    device = resolve_device(config.device, what="device")
    body = config.body.load(device)
    initial_estimate, initialisation = None, None
    if config.checkpoint is not None:
        initial_estimate, initialisation = _network_start(config, body, device, rig, rec.frames, videos, progress)
    fps = config.fps or _videos_fps(rates) or DEFAULT_FPS
    # Folders that do not name the cameras: the order is checked against the geometry (warnings,
    # dropped cameras and fewer subjects than asked are logged by fit_recording and in the report).
    fit = fit_recording(body, rec.keypoints, rig, rec.keypoint_set, config.subjects, config=config, fps=fps,
                        frames=rec.frames, progress=progress, initial_estimate=initial_estimate,
                        initialisation=initialisation, check_order=rec.matched_by == "order",
                        source_names=[s.name for s in rec.sources])
    if fit.camera_order is not None:
        rec.sources = [rec.sources[[s.name for s in rec.sources].index(n)] for n in fit.camera_order["order"]]
        log.info("%s", fit.camera_order["message"])
    skipped = {"skipped_keypoint_files": [{"file": str(f), "why": why} for f, why in rec.skipped]}
    written = write_recording_outputs(fit, body, config.out, gender=config.body.gender, z_up=not config.y_up,
                                      meshes=config.meshes, bvh=config.bvh, trc=config.trc, progress=progress,
                                      extra=skipped)
    if videos:
        written += write_overlay_videos(fit, body, rig, videos, config.out, progress=progress)
    save_config(config, config.out / "config.yaml")
    written.append(config.out / "config.yaml")
    return RigReport(out=config.out, files=written, summary={**recording_summary(fit), **skipped}, fit=fit,
                     camera_names=list(rig.names), keypoint_sources=list(rec.sources), matched_by=rec.matched_by,
                     body_model=body.name, initialisation=fit.initialisation)


def _videos_fps(reported: list[float]) -> Optional[float]:
    """The recording's frame rate from what its video files report (the first plausible one);
    None when none does (image folders, containers without a rate)."""
    rates = [r for r in reported if r and 0 < r < 10000]
    if rates:
        log.info("frame rate: %.3g frames/s, from the videos", rates[0])
    return rates[0] if rates else None


def _detect_first(config: FitRigConfig, rig, videos: list[Path], progress: Progress) -> Path:
    """No keypoints given: detect them in the videos (one per rig camera, in its order) into
    ``OUT/keypoints/`` with BlazePose; an earlier run's cameras with the same videos are reused.

    Raises:
        DetectionError: a video failed, or the videos have different frame counts (unless
            ``allow_missing_frames``), naming them.
    """
    from mvspin.apps.detect import DetectConfig, run as detect
    from mvspin.errors import DetectionError

    folder = config.out / "keypoints"
    report = detect(DetectConfig(inputs=[str(v) for v in videos], out=str(folder), camera_names=list(rig.names),
                                 model_dir=None if config.model_dir is None else str(config.model_dir), reuse=True),
                    progress)
    if report.failed:
        raise DetectionError("; ".join(f"{c.source}: {c.error}" if c.source not in (c.error or "") else str(c.error)
                                       for c in report.failed))
    counts = {c.source: c.frames for c in report.cameras}
    if len(set(counts.values())) > 1 and not config.allow_missing_frames:
        most = max(counts.values())
        short = ", ".join(f"{Path(s).name} has {n}" for s, n in counts.items() if n < most)
        raise DetectionError(f"videos of different lengths: {short} frames, the others {most} (trim them, or set "
                             f"allow_missing_frames to fit the frames they lack with fewer cameras)")
    for c, cam in zip(report.cameras, rig):
        if c.image_size and min(cam.image_size) > 0 and tuple(c.image_size) != tuple(cam.image_size):
            log.warning("%s: the video is %dx%d but the calibration describes %dx%d: its keypoints are used as they are "
                        "(pixels from the top-left corner)", c.source, *c.image_size, *cam.image_size)
    log.info("keypoints detected (%s) into %s: %s", report.detector, folder,
             ", ".join(f"{c.name} {c.fps:.0f} frames/s" + (" (reused)" if c.reused else "") for c in report.cameras))
    return folder


def _network_start(config: FitRigConfig, body, device, rig, frames, videos: list[Path], progress: Progress):
    """Load and check the regressor (before any fitting) and return fit_recording's
    ``initial_estimate``: the network on each subject's crops."""
    from mvspin.apps.rig.network_start import load_rig_predictor, network_world_estimate

    predictor, about = load_rig_predictor(config.checkpoint, body, device, config.batch_size)
    log.info("network initialisation: %s", about)

    def estimate(subject: int, keypoints):
        return network_world_estimate(predictor, videos, keypoints, rig, frames,
                                      lambda _, done, total: progress(f"network {subject}", done, total))

    return estimate, f"network: {about}"
