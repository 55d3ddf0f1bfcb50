"""The ``sync`` job: per-camera frame offsets of unsynchronised recordings of one person.

:func:`run` (:class:`SyncConfig`) reads 2D keypoints (a folder per camera; or detects them in
videos first with ``mvspin detect``), keeps per frame and camera the main person
(:func:`mvspin.apps.calibrate_person.main_person`) and estimates the offsets with
:mod:`calibration.sync`: without a calibration from the epipolar geometry the keypoints imply
(with the cameras' intrinsics if given), or with a rig from the triangulation error.
The offsets file (JSON) says per camera by how many frames it is ahead::

    {"convention": "frame f + offset of a camera shows the moment of the reference's frame f",
     "reference": "cam01", "method": "epipolar", "offsets": {"cam01": 0.0, "cam02": 7.02, ...},
     "scores": {...}}

``mvspin fit-rig --offsets offsets.json`` reads it (:func:`read_offsets`) and shifts every
camera's keypoints onto the reference's frame numbers (:func:`calibration.sync.shift_keypoints`).
"""
from __future__ import annotations

import json
import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Optional

from mvspin.atomic import check_output_location, write_bytes_atomic
from mvspin.config import ConfigError, check_range
from mvspin.progress import Progress, no_progress

if TYPE_CHECKING:
    import numpy as np

    from calibration import Rig

__all__ = ["SyncConfig", "SyncReport", "run", "read_offsets", "CONVENTION"]

log = logging.getLogger("mvspin")

CONVENTION = "frame f + offset of a camera shows the moment of the reference's frame f"


@dataclass
class SyncConfig:
    """Everything ``mvspin sync`` needs."""

    out: Path
    """Offsets file to write (.json)."""
    keypoints: Optional[Path] = None
    """Folder with one sub-folder (or .npz) of 2D keypoint files per camera."""
    videos: Optional[list[Path]] = None
    """One video per camera: keypoints are detected first (mvspin detect) into <out>.keypoints/."""
    rig: Optional[Path] = None
    """A calibration of the cameras: offsets from the triangulation error (else from the epipolar
    geometry of the keypoints alone); a camera it has wrong is named in a warning (its offset may
    be making up for it)."""
    intrinsics: Optional[list[Path]] = None
    """Without a rig: calibration file(s) whose cameras' intrinsics to use (any format; one file
    for all cameras or one per camera), matched by camera name: undistorts the keypoints and fits
    essential matrices."""
    keypoint_set: Optional[str] = None
    """The files' keypoint set (default: from the keypoint count)."""
    max_offset: int = 60
    """Largest offset searched, frames (either sign)."""
    min_confidence: float = 0.5
    """Keypoints with a lower detector confidence are not used."""
    reference: Optional[str] = None
    """The camera whose offset is 0 (default: the first)."""

    def __post_init__(self) -> None:
        self.out = Path(self.out)
        if (self.keypoints is None) == (not self.videos):
            raise ConfigError("give keypoints (a folder of 2D keypoint files) or videos, one of the two",
                              field="keypoints", related=("videos",))
        if self.rig is not None and self.intrinsics:
            raise ConfigError("give a rig or intrinsics, not both (a rig has its cameras' intrinsics)", field="intrinsics",
                              related=("rig",))
        self.intrinsics = [Path(p) for p in self.intrinsics] if self.intrinsics else None
        check_range("max_offset", self.max_offset, 1, 100000, integer=True)
        check_range("min_confidence", self.min_confidence, 0, 1)
        if self.out.suffix.lower() != ".json":
            raise ConfigError(f"out {self.out}: the offsets file is JSON; give a name ending in .json", field="out")


@dataclass
class SyncReport:
    """What :func:`run` found: ``offsets`` and ``scores`` per camera name (see
    :class:`calibration.sync.SyncResult`), the ``method`` and the file written."""

    offsets: dict[str, float]
    scores: dict[str, float]
    method: str
    reference: str
    path: Path
    warnings: list[str] = field(default_factory=list)
    """With a rig: cameras the rig has wrong in geometry, whose offsets may make up for it (also
    logged as warnings, and in the file's ``warnings``)."""

    def table(self) -> str:
        from calibration.intrinsics import format_table

        score = "epipolar cost" if self.method == "epipolar" else "triangulation px"
        rows = [(n, f"{o:+.2f}", f"{self.scores[n]:.3f}") for n, o in self.offsets.items()]
        return (format_table(("camera", "offset frames", score), rows)
                + f"\nreference {self.reference}; {CONVENTION}; method: {self.method}")


def _camera_names(config: SyncConfig) -> list[str]:
    from calibration import load_rig
    from mvspin.data.recording_keypoints import _camera_sources, natural_key

    if config.rig is not None:
        return list(load_rig(config.rig).names)
    assert config.keypoints is not None
    return sorted(_camera_sources(Path(config.keypoints)), key=natural_key)


def run(config: SyncConfig, progress: Progress = no_progress) -> SyncReport:
    """Estimate the cameras' frame offsets and write them to ``config.out``.

    Raises:
        KeypointFileError: unreadable keypoints; CalibrationError: recordings too short to overlap.
    """
    from mvspin.atomic import removed_if_unused

    with removed_if_unused(Path(config.out).parent):  # a failed job leaves no folder it made
        return _run(config, progress)


def _run(config: SyncConfig, progress: Progress) -> SyncReport:
    import numpy as np

    from calibration import load_rig
    from calibration.sync import offsets_from_epipolar, offsets_from_rig
    from mvspin.apps.calibrate import load_intrinsics
    from mvspin.apps.calibrate_person import main_person, person_keypoints
    from mvspin.data.recording_keypoints import read_recording_keypoints

    check_output_location(config.out, what="out")
    rig = load_rig(config.rig) if config.rig is not None else None
    if config.videos:
        from mvspin.apps.calibrate_person import detect_keypoints

        config.keypoints = detect_keypoints(config.videos, config.out.with_name(config.out.name + ".keypoints"), progress)
    names = _camera_names(config)
    rec = read_recording_keypoints(config.keypoints, names, config.keypoint_set, allow_missing_frames=True,
                                   progress=progress)
    if config.reference is not None and config.reference not in rec.camera_names:
        raise ConfigError(f"reference: no camera {config.reference} (cameras: {', '.join(rec.camera_names)})",
                          field="reference")
    ref = rec.camera_names.index(config.reference) if config.reference else 0
    kp = np.asarray(main_person(rec.keypoints), dtype=np.float64)
    if rig is not None:
        result = offsets_from_rig(kp, rig, config.max_offset, config.min_confidence, reference=ref)
    else:
        intrinsics = load_intrinsics(config.intrinsics, rec.camera_names) if config.intrinsics else None
        result = offsets_from_epipolar(kp[:, :, person_keypoints(rec.keypoint_set)], intrinsics, config.max_offset,
                                       config.min_confidence, reference=ref, progress=progress)
    offsets = dict(zip(rec.camera_names, result.offsets))
    scores = dict(zip(rec.camera_names, result.scores))
    warnings = [] if rig is None else _rig_warnings(rig, kp[:, :, person_keypoints(rec.keypoint_set)], result.offsets,
                                                    config.min_confidence)
    for w in warnings:
        log.warning("%s", w)
    data: dict[str, Any] = {"convention": CONVENTION, "reference": rec.camera_names[ref], "method": result.method,
                            "offsets": offsets, "scores": scores, "warnings": warnings}
    write_bytes_atomic(config.out, json.dumps(data, indent=1).encode())
    return SyncReport(offsets=offsets, scores=scores, method=result.method, reference=rec.camera_names[ref],
                      path=config.out, warnings=warnings)


def _rig_warnings(rig: Rig, keypoints: np.ndarray, offsets: list[float], min_confidence: float) -> list[str]:
    """The rig's offsets minimise the triangulation error, so a camera the rig has wrong gets the
    offset that moves the walking person to where its geometry says: say so where the keypoints,
    moved onto the found offsets, show a camera off at keypoints that do not move
    (:func:`calibration.rig_comparison.cameras_off_in_geometry`)."""
    from calibration.rig_comparison import cameras_off_in_geometry, epipolar_consistency
    from calibration.sync import shift_keypoints

    consistency = epipolar_consistency(rig, shift_keypoints(keypoints, offsets), min_confidence)
    off = cameras_off_in_geometry(rig, consistency)
    return [f"the rig's {name} disagrees with the keypoints where they do not move ({o.words()}): a calibration "
            f"error of that camera, not of its timing, which its offset here ({offsets[list(rig.names).index(name)]:+.2f} frames) "
            f"may be making up for; `mvspin sync` without --rig finds the offsets from the keypoints alone"
            for name, o in off.items()]


def read_offsets(path: Path, camera_names: list[str]) -> list[float]:
    """Per camera of ``camera_names`` (in that order) its offset from a ``mvspin sync`` file.

    Raises:
        ConfigError: (field ``offsets``) unreadable file or a camera missing from it.
    """
    try:
        data = json.loads(Path(path).read_text(encoding="utf-8"))
        offsets = {str(k): float(v) for k, v in data["offsets"].items()}
    except (OSError, ValueError, KeyError, TypeError, AttributeError) as e:
        raise ConfigError(f"offsets {path}: not an offsets file written by mvspin sync ({e})", field="offsets") from None
    missing = [n for n in camera_names if n not in offsets]
    if missing:
        raise ConfigError(f"offsets {path}: no offset for cameras {', '.join(missing)} (it has {', '.join(offsets)})",
                          field="offsets")
    return [offsets[n] for n in camera_names]
