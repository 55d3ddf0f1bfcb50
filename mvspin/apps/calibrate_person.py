"""The ``calibrate person`` job: a rig's extrinsics from one person walking through the volume.

:func:`run_person` (:class:`PersonCalibrateConfig`) reads keypoint folders (or detects them in
videos through ``mvspin detect``), picks the walking person in every frame (:func:`main_person`),
takes the cameras' intrinsics from calibration files, and calls
:func:`calibration.person_calibration.calibrate_from_keypoints`; the result is checked and
written as :func:`mvspin.apps.calibrate.run`'s are (refused when implausible unless ``force``).
:func:`main_person` and :func:`person_keypoints` also serve ``mvspin sync``.

Example:
    >>> from mvspin.apps.calibrate_person import PersonCalibrateConfig, run_person  # doctest: +SKIP
    >>> report = run_person(PersonCalibrateConfig(intrinsics=[Path("Calib.qca.txt")], keypoints=Path("kp"),
    ...                                           out=Path("rig.toml")))  # doctest: +SKIP
"""
from __future__ import annotations

import json
import logging
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Literal, Optional

from calibration import Rig
from mvspin.apps.calibrate import load_intrinsics, save_checked
from mvspin.atomic import check_output_location, removed_if_unused, write_bytes_atomic
from mvspin.config import ConfigError, check_range
from mvspin.progress import Progress, no_progress

__all__ = ["PersonCalibrateConfig", "PersonCalibrateReport", "run_person", "main_person", "person_keypoints",
           "person_keypoint_roles", "detect_keypoints"]

log = logging.getLogger("mvspin.calibrate")


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
    error against it after a similarity alignment, and (with halves) how the reference and the
    rig of each half agree with the frames they were not made from (epipolar distances per
    camera pair: a reference that disagrees with these images shows there)."""
    offsets: Optional[Path] = None
    """Per-camera frame offsets from mvspin sync (JSON; without a rig, from the keypoints alone):
    unsynchronised cameras' keypoints are shifted onto the reference camera's frames by whole
    frames first, and the bundle adjustment sees each camera's remaining fraction of a frame."""
    halves: bool = True
    """Also calibrate from each half of the frames alone and report per camera how far the two
    agree: repeatability without a reference (doubles the time)."""

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
    held_out: list[tuple[str, Any]] = field(default_factory=list)
    """With a reference and the halves: ``(label, EpipolarConsistency)`` of the rig from each half
    and of the reference, judged on the other half's frames (whether the reference itself
    agrees with these images); :meth:`held_out_table`."""

    reference_warnings: list[str] = field(default_factory=list)
    """With a reference: its cameras that disagree with these keypoints in geometry
    (:func:`calibration.rig_comparison.cameras_off_in_geometry`; also logged as warnings): their
    comparison figures, and through the alignment the others', carry the reference's error."""

    def held_out_table(self) -> str:
        from calibration.rig_comparison import consistency_table

        if not self.held_out:
            return ""
        return ("agreement with the frames a calibration was not made from (per camera pair: median / median "
                "signed distance from the epipolar lines, px; a camera whose pairs all sit off to one side is "
                "wrong in that calibration, or out of step)\n" + consistency_table(self.held_out))


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


def person_keypoint_roles(set_name: str) -> tuple[list[int], list[int], list[int], float, list[int]]:
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
    from calibration.person_calibration import calibrate_from_keypoints, held_out_consistency
    from calibration.rig_comparison import cameras_off_in_geometry, compare_rigs, epipolar_consistency
    from calibration.sync import shift_keypoints
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
    used, foot, head, ratio, mirror = person_keypoint_roles(rec.keypoint_set)
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
        halves=config.halves, progress=progress)
    comparison = compare_rigs(rig, reference) if reference is not None else None
    held_out, reference_warnings = [], []
    if reference is not None:
        synced = np.asarray(kp if time_offsets is None else shift_keypoints(kp, np.round(time_offsets)), dtype=np.float64)
        held_out = held_out_consistency(report, synced, reference, config.reference.name)
        off = cameras_off_in_geometry(reference, epipolar_consistency(reference, synced, config.min_confidence))
        reference_warnings = [f"the reference's {name} disagrees with these keypoints where they do not move "
                              f"({o.words()}): the comparison's figures carry that error" for name, o in off.items()]
        for w in reference_warnings:
            log.warning("%s", w)
    path = save_checked(rig, config.out, fmt, report.problems, report.table(), config.force)
    if config.report is not None:
        data = report.to_dict()
        if comparison is not None:
            data["comparison"] = asdict(comparison)
        if held_out:
            data["held_out"] = [{"calibration": label, **asdict(c)} for label, c in held_out]
        if reference is not None:
            data["reference_warnings"] = reference_warnings
        write_bytes_atomic(config.report, json.dumps(data, indent=1).encode())
    return PersonCalibrateReport(rig=rig, calibration=report, path=path, comparison=comparison, held_out=held_out,
                                 reference_warnings=reference_warnings)


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
