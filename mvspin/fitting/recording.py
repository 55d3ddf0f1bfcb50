"""Fit a calibrated multi-camera recording: association, then one sequence fit per subject.

:func:`fit_recording` is what ``mvspin fit-rig`` runs, callable from Python:

    >>> from calibration import load_rig
    >>> from mvspin.body import BodyModel
    >>> from mvspin.data.recording_keypoints import read_recording_keypoints
    >>> rig = load_rig("rig.toml")  # doctest: +SKIP
    >>> rec = read_recording_keypoints("keypoints/", rig.names)  # doctest: +SKIP
    >>> fit = fit_recording(BodyModel.free(), rec.keypoints, rig, rec.keypoint_set, fps=30)  # doctest: +SKIP
    >>> fit.subjects[0].result.smpl_params()["body_pose"].shape     # (T, 69)  # doctest: +SKIP
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, Callable, Optional

import numpy as np
import torch
from torch import Tensor

from calibration import Rig
from mvspin.body import BodyModel
from mvspin.errors import NoFrameFittedError, RecordingError
from mvspin.fitting.association import Association, AssociationConfig, associate_subjects
from mvspin.fitting.sequence import SequenceFitConfig, SequenceResult, fit_sequence
from mvspin.fitting.view_estimates import WorldEstimate
from mvspin.progress import Progress, no_progress

__all__ = ["RigFitConfig", "SubjectFit", "RecordingFit", "RecordingError", "fit_recording", "check_rig_units"]


@dataclass
class RigFitConfig:
    """``mvspin fit-rig``: association and sequence fitting (see their configs)."""

    association: AssociationConfig = field(default_factory=AssociationConfig)
    sequence: SequenceFitConfig = field(default_factory=SequenceFitConfig)
    max_camera_spread_m: float = 200.0
    """Cameras farther apart than this (metres) mean a calibration in other units (millimetres)."""


@dataclass
class SubjectFit:
    """One subject of a recording.

    Attributes:
        subject_id: 0, 1, ... (longest track first).
        result: the sequence fit (T frames).
        keypoints: ``(T, V, K, 3)`` the subject's detections used (after association).
        failed: ``{frame index: reason}`` for frames not fitted.
    """

    subject_id: int
    result: SequenceResult
    keypoints: Tensor
    failed: dict[int, str]
    network_frames: Optional[int] = None
    """Frames with a network estimate (a camera saw the subject); None without one."""


@dataclass
class RecordingFit:
    """All subjects of a recording, with the association behind them."""

    subjects: list[SubjectFit]
    association: Association
    camera_names: list[str]
    frames: np.ndarray
    fps: float
    keypoint_set: str
    initialisation: str = "triangulation"
    """How the key frames started: ``"triangulation"``, or ``"network"`` (a world estimate per
    frame from ``fit_recording(initial_estimate=...)``)."""


def check_rig_units(rig: Rig, max_spread_m: float = 200.0) -> None:
    """Raise :class:`RecordingError` when the cameras stand implausibly far apart for metres."""
    centres = np.stack([c.center for c in rig])
    spread = float(np.linalg.norm(centres - centres.mean(0), axis=1).max())
    if spread > max_spread_m:
        raise RecordingError(f"camera centres are up to {spread:.0f} units from their mean: the calibration looks "
                             f"like millimetres; mvspin expects metres (re-export it in metres)")


def _failure_reason(found: bool, views: int, min_views: int) -> str:
    if not found:
        return "subject not found (no detections that triangulate together in at least 2 cameras)"
    if views == 0:
        return "no usable keypoints in any camera"
    return f"seen by {views} camera(s) only"


def fit_recording(
    body: BodyModel,
    detections: Tensor | np.ndarray,
    rig: Rig,
    keypoint_set: str,
    num_subjects: int = 1,
    config: Optional[RigFitConfig] = None,
    fps: float = 30.0,
    frames: Optional[np.ndarray] = None,
    progress: Progress = no_progress,
    initial_estimate: Optional[Callable[[int, Tensor], WorldEstimate]] = None,
    initialisation: Optional[str] = None,
) -> RecordingFit:
    """Associate the detections to subjects and fit each over the whole recording.

    Args:
        body: the body model.
        detections: ``(T, V, P, K, 3)`` per frame, camera and listed person (image pixels).
        rig: the V calibrated cameras, metres.
        keypoint_set: the detections' keypoint set.
        num_subjects: people to fit, each with its own id (longest tracks first).
        fps: frame rate (tracking gate, outputs).
        frames: ``(T,)`` frame numbers (default ``0..T-1``).
        progress: ``progress(stage, done, total)`` with stage ``"associate"`` or ``"fit <id>"``.
        initial_estimate: ``initial_estimate(subject_id, keypoints (T, V, K, 3))`` -> a
            :class:`~mvspin.fitting.view_estimates.WorldEstimate` per frame, called after
            association for each subject; the sequence fit starts from it (e.g. a regressor on
            the subject's crops, :func:`mvspin.apps.rig.network_start.network_world_estimate`).
            None: the fit starts from triangulation.
        initialisation: how the report names the start (default ``"network"`` with
            ``initial_estimate``, else ``"triangulation"``), e.g. the checkpoint.

    Raises:
        RecordingError: millimetre calibration, or no subject found in any frame (cameras that
            do not see the keypoints, or keypoints matched to the wrong cameras).
    """
    c = config or RigFitConfig()
    det = torch.as_tensor(np.asarray(detections, dtype=np.float32)) if isinstance(detections, np.ndarray) \
        else detections.float()
    if det.ndim != 5:
        raise ValueError(f"detections must be (T, V, P, K, 3), got {tuple(det.shape)}")
    t, v = det.shape[:2]
    if v != len(rig):
        raise RecordingError(f"keypoints are for {v} cameras but the rig has {len(rig)}")
    check_rig_units(rig, c.max_camera_spread_m)
    how = c.sequence.keyframe.calibrated_init
    if initial_estimate is not None and how == "triangulation":
        raise RecordingError("a network initial estimate was given but sequence.keyframe.calibrated_init="
                             "triangulation ignores it; use auto or network")
    if initial_estimate is None and how == "network":
        raise RecordingError("sequence.keyframe.calibrated_init=network needs a network initial estimate "
                             "(fit-rig: --checkpoint with --videos)")
    frames = np.arange(t) if frames is None else np.asarray(frames)
    assoc = associate_subjects(det, rig, keypoint_set, num_subjects, c.association, fps, progress=progress)
    not_seen = ("the cameras do not see these keypoints (wrong calibration or units, or keypoint folders matched "
                "to the wrong cameras)")
    if not bool(assoc.found.any()):
        raise RecordingError(f"no frame has detections that triangulate together in 2 or more cameras: {not_seen}")
    subjects = []
    for s in range(assoc.num_subjects):
        if not bool(assoc.found[s].any()):
            continue
        kp = assoc.keypoints[s]
        try:
            start = None if initial_estimate is None else initial_estimate(s, kp)
            result = fit_sequence(body, kp, rig, keypoint_set, c.sequence,
                                  progress=lambda _, done, total: progress(f"fit {s}", done, total), init=start,
                                  fps=fps)
        except NoFrameFittedError:
            raise RecordingError(f"subject {s}: no frame could be fitted: {not_seen}") from None
        views = (kp[..., 2] > 0).any(-1).sum(-1)
        failed = {i: _failure_reason(bool(assoc.found[s, i]), int(views[i]), c.association.min_views)
                  for i in range(t) if not bool(result.fitted[i]) or not bool(assoc.found[s, i])}
        subjects.append(SubjectFit(s, result, kp, failed, None if start is None else int(start.valid.sum())))
    return RecordingFit(subjects, assoc, list(rig.names), frames, float(fps), keypoint_set,
                        initialisation or ("triangulation" if initial_estimate is None else "network"))


def recording_summary(fit: RecordingFit) -> dict:
    """The report's numbers: per subject, frames fitted and failed (with reasons), per-camera
    mean reprojection error (pixels) and the per-frame error over time."""
    out: dict[str, Any] = {"fps": fit.fps, "frames": int(len(fit.frames)), "cameras": fit.camera_names,
           "keypoint_set": fit.keypoint_set, "initialisation": fit.initialisation, "subjects": []}
    for sub in fit.subjects:
        r = sub.result
        view_err = r.view_reprojection_error.detach().cpu().numpy()
        per_camera = {}
        for v, name in enumerate(fit.camera_names):
            finite = np.isfinite(view_err[:, v])
            per_camera[name] = {"mean_px": float(view_err[finite, v].mean()) if finite.any() else None,
                                "frames_seen": int(finite.sum())}
        err = r.reprojection_error.detach().cpu().numpy()
        out["subjects"].append({
            "id": sub.subject_id,
            "frames_with_network_estimate": sub.network_frames,
            "frames_fitted": int((~np.isin(np.arange(r.num_frames), list(sub.failed))).sum()),
            "frames_failed": [{"frame": int(fit.frames[i]), "reason": why} for i, why in sorted(sub.failed.items())],
            "mean_reprojection_px": float(err[np.isfinite(err)].mean()) if np.isfinite(err).any() else None,
            "per_camera": per_camera,
            "per_frame_px": [None if not math.isfinite(float(e)) else round(float(e), 3) for e in err],
            "betas": [float(b) for b in r.betas.detach().cpu()],
        })
    return out
