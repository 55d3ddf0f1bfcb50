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

import logging
import math
from dataclasses import dataclass, field
from typing import Any, Callable, Optional

import numpy as np
import torch
from torch import Tensor

from calibration import Rig
from mvspin.body import BodyModel
from mvspin.errors import ArgumentError, NoFrameFittedError, RecordingError
from mvspin.fitting.association import (
    Association,
    AssociationConfig,
    agreeing_cameras,
    associate_subjects,
    best_camera_order,
    camera_pair_agreement,
)
from mvspin.fitting.sequence import SequenceFitConfig, SequenceResult, fit_sequence
from mvspin.fitting.view_estimates import WorldEstimate
from mvspin.progress import Progress, no_progress

__all__ = ["RigFitConfig", "SubjectFit", "RecordingFit", "RecordingError", "fit_recording", "check_rig_units",
           "check_camera_order", "dropped_cameras"]

log = logging.getLogger("mvspin")


@dataclass
class RigFitConfig:
    """``mvspin fit-rig``: association and sequence fitting (see their configs)."""

    association: AssociationConfig = field(default_factory=AssociationConfig)
    sequence: SequenceFitConfig = field(default_factory=SequenceFitConfig)
    max_camera_spread_m: float = 200.0
    """Cameras farther apart than this (metres) mean a calibration in other units (millimetres)."""
    allow_dropped_cameras: bool = False
    """Fit even when half the rig or more never agrees with the other cameras (else an error:
    such a fit rests on too few cameras to be trusted)."""
    min_camera_agreement: float = 0.1
    """A camera whose detections support the subject in fewer than this share of the frames
    where it lists someone is reported as dropped (a warning with the likely cause)."""


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
    warnings: list[str] = field(default_factory=list)
    """What the user must know about the result (dropped cameras, fewer subjects than asked,
    keypoint sources put in another order): logged, and in the report."""
    dropped_cameras: dict[str, str] = field(default_factory=dict)
    """Cameras whose detections never agreed with the others: ``{name: likely cause}``."""
    camera_order: Optional[dict[str, Any]] = None
    """With ``check_order``: how the keypoint sources were matched to the cameras by geometry
    (``order``: the source index of each camera, ``residual_m``, ``given_residual_m``)."""


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
    check_order: bool = False,
    source_names: Optional[list[str]] = None,
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
        check_order: the detections' camera order is a guess (keypoint folders that do not name
            the cameras): check it against the geometry and use the assignment that agrees
            (:func:`check_camera_order`; ``RecordingFit.camera_order`` says what was done).
        source_names: the keypoint sources' names, for ``check_order``'s messages.

    Raises:
        ArgumentError: an argument of the wrong type or value (named).
        RecordingError: millimetre calibration, no positive confidence, no subject found in any
            frame (cameras that do not see the keypoints, or keypoints matched to the wrong
            cameras), keypoint sources that match no camera order, or half the rig or more
            dropped (unless ``allow_dropped_cameras``).
    """
    c = _check_arguments(body, detections, rig, keypoint_set, num_subjects, config, fps, frames)
    det = torch.as_tensor(np.asarray(detections, dtype=np.float32)) if isinstance(detections, np.ndarray) \
        else detections.float()
    t, v = det.shape[:2]
    check_rig_units(rig, c.max_camera_spread_m)
    how = c.sequence.keyframe.calibrated_init
    if initial_estimate is not None and how == "triangulation":
        raise RecordingError("a network initial estimate was given but sequence.keyframe.calibrated_init="
                             "triangulation ignores it; use auto or network")
    if initial_estimate is None and how == "network":
        raise RecordingError("sequence.keyframe.calibrated_init=network needs a network initial estimate "
                             "(fit-rig: --checkpoint with --videos)")
    frames = np.arange(t) if frames is None else np.asarray(frames)
    _check_confidences(det)
    warnings: list[str] = []
    order_note = None
    if check_order:
        order, order_note = check_camera_order(det, rig, c.association.radius_m, source_names)
        det = det[:, order]
        if order_note["reordered"]:
            warnings.append(order_note["message"])
    assoc = associate_subjects(det, rig, keypoint_set, num_subjects, c.association, fps, progress=progress)
    not_seen = ("the cameras do not see these keypoints (wrong calibration or units, or keypoint folders matched "
                "to the wrong cameras)")
    if not bool(assoc.found.any()):
        raise RecordingError(f"no frame has detections that triangulate together in 2 or more cameras: {not_seen}")
    dropped = dropped_cameras(det, rig, assoc, c.min_camera_agreement, c.association.min_joints)
    for name, why in dropped.items():
        warnings.append(f"camera {name} dropped: {why}")
    if dropped and 2 * len(dropped) >= v and not c.allow_dropped_cameras:
        raise RecordingError(
            f"{len(dropped)} of {v} cameras never agree with the others, too few left to trust the fit: "
            + "; ".join(f"{n}: {w}" for n, w in dropped.items()) + " (set allow_dropped_cameras to fit anyway)")
    if dropped:  # fitted without them: their detections would pull the body towards a wrong place
        keep = torch.tensor([n not in dropped for n in rig.names])
        det = det * keep[None, :, None, None, None]
        assoc = associate_subjects(det, rig, keypoint_set, num_subjects, c.association, fps, progress=progress)
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
    if len(subjects) < num_subjects:
        warnings.append(f"asked for {num_subjects} subjects, found {len(subjects)} in the recording (people seen "
                        f"together by {c.association.min_views} or more cameras)")
    for w in warnings:
        log.warning("%s", w)
    return RecordingFit(subjects, assoc, list(rig.names), frames, float(fps), keypoint_set,
                        initialisation or ("triangulation" if initial_estimate is None else "network"),
                        warnings, dropped, order_note)


def _check_arguments(body: Any, detections: Any, rig: Any, keypoint_set: Any, num_subjects: Any, config: Any,
                     fps: Any, frames: Any) -> RigFitConfig:
    """Public-entry checks of :func:`fit_recording` (once per call, not in the fitting loop)."""
    from mvspin.body import get_keypoint_set

    if not isinstance(body, BodyModel):
        raise ArgumentError(f"body must be a BodyModel (e.g. BodyModel.free()), got {type(body).__name__}")
    if not isinstance(detections, (np.ndarray, Tensor)):
        raise ArgumentError(f"detections must be a numpy array or torch tensor (T, V, P, K, 3), got "
                            f"{type(detections).__name__}")
    if not isinstance(rig, Rig):
        raise ArgumentError(f"rig must be a calibration.Rig (calibration.load_rig(path)), got {type(rig).__name__}")
    if config is not None and not isinstance(config, RigFitConfig):
        raise ArgumentError(f"config must be a RigFitConfig, got {type(config).__name__} (build one: "
                            f"RigFitConfig(association=AssociationConfig(...), ...))")
    if not isinstance(keypoint_set, str):
        raise ArgumentError(f"keypoint_set must be a keypoint set's name, got {type(keypoint_set).__name__}")
    try:
        size = len(get_keypoint_set(keypoint_set))
    except KeyError as err:
        raise ArgumentError(f"keypoint_set: {err.args[0] if err.args else keypoint_set}") from None
    if isinstance(num_subjects, bool) or not isinstance(num_subjects, (int, np.integer)) or num_subjects < 1:
        raise ArgumentError(f"num_subjects must be an integer >= 1, got {num_subjects!r}")
    if isinstance(fps, bool) or not isinstance(fps, (int, float, np.number)) or not 0 < float(fps) < math.inf:
        raise ArgumentError(f"fps must be a finite number > 0, got {fps!r}")
    shape = tuple(detections.shape)
    if len(shape) != 5 or shape[-1] != 3 or shape[-2] != size:
        raise ArgumentError(f"detections must be (T, V, P, {size}, 3) {keypoint_set} keypoints, got {shape}")
    if shape[0] == 0 or shape[2] == 0:
        raise ArgumentError(f"detections hold no frame or no person: shape {shape}")
    if shape[1] != len(rig):
        raise RecordingError(f"keypoints are for {shape[1]} cameras but the rig has {len(rig)}")
    if frames is not None and len(frames) != shape[0]:
        raise ArgumentError(f"frames must give one number per frame ({shape[0]}), got {len(frames)}")
    return config or RigFitConfig()


def _check_confidences(det: Tensor) -> None:
    """Detections whose confidences are all 0 or negative (or NaN) carry nothing to fit: say so,
    rather than let the association report cameras that do not agree."""
    conf = det[..., 2]
    if not bool((conf > 0).any()):
        finite = conf[torch.isfinite(conf)]
        what = "NaN" if finite.numel() == 0 else f"between {float(finite.min()):g} and {float(finite.max()):g}"
        raise RecordingError(f"no keypoint has a positive confidence (all are {what}): the third value of each "
                             f"keypoint must be its detection confidence > 0 (0 = not seen)")


def check_camera_order(detections: Tensor, rig: Rig, radius_m: float = 0.15,
                       source_names: Optional[list[str]] = None) -> tuple[list[int], dict[str, Any]]:
    """Check keypoint sources matched to the cameras by order (folders that do not name the
    cameras) against the geometry: the assignment whose pairs triangulate together.

    Args:
        detections: ``(T, V, P, K, 3)`` in the given source order.
        rig: the V cameras.
        radius_m: agreement threshold (``association.radius_m``): an assignment agrees when its
            median camera pair meets within this distance.
        source_names: the sources' names for the messages (default ``source 0``, ...).
    Returns:
        ``(order, note)``: ``order[a]`` is camera ``a``'s source; ``note`` for the report
        (``order``, ``reordered``, ``residual_m``, ``given_residual_m``, ``message``).
    Raises:
        RecordingError: no assignment agrees, or the given one does not and two others agree
            about equally (the evidence: each camera pair's residual).
    """
    names = source_names or [f"source {i}" for i in range(len(rig))]
    found = best_camera_order(camera_pair_agreement(detections, rig))
    pair = found.pair_residual_m
    finite = pair[torch.isfinite(pair)]
    median = float(finite.median()) if finite.numel() else math.inf
    given_ok = found.given_residual_m <= radius_m
    if median > radius_m or (found.reordered and found.residual_m > 0.5 * found.given_residual_m and not given_ok):
        evidence = ", ".join(f"{rig.names[a]}+{rig.names[b]} {float(pair[a, b]):.2f} m"
                             for a in range(len(rig)) for b in range(a + 1, len(rig)))
        raise RecordingError(
            f"keypoint folders ({', '.join(names)}) do not name the rig's cameras and no assignment of them to "
            f"the cameras triangulates together (best: each camera pair's detections meet within {evidence}; "
            f"agreeing cameras meet within {radius_m} m): name the folders after the cameras "
            f"({', '.join(rig.names)}) or check the calibration")
    note: dict[str, Any] = {"order": [names[i] for i in found.order], "reordered": found.reordered,
                            "residual_m": round(found.residual_m, 4),
                            "given_residual_m": round(found.given_residual_m, 4), "searched": found.searched}
    if found.reordered:
        note["message"] = (
            "keypoint folders do not name the cameras and their natural order disagrees with the calibration "
            f"(cameras meet within {found.given_residual_m:.3f} m); matched by geometry instead (within "
            f"{found.residual_m:.3f} m): " + ", ".join(f"{names[i]} -> {n}" for i, n in zip(found.order, rig.names)))
    else:
        note["message"] = f"keypoint folder order checked against the calibration (cameras meet within " \
                          f"{found.residual_m:.3f} m)"
    return found.order, note


def dropped_cameras(detections: Tensor, rig: Rig, assoc: Association, min_share: float = 0.1,
                    min_joints: int = 5) -> dict[str, str]:
    """Cameras whose detections (almost) never support the subjects the other cameras agree on.

    Args:
        detections: ``(T, V, P, K, 3)``.
        rig: the V cameras.
        assoc: the association of ``detections``.
        min_share: a camera supporting a found subject in fewer than this share of the frames
            where it lists someone is dropped.
        min_joints: joints a listed person needs to count.
    Returns:
        ``{camera name: likely cause}`` for each dropped camera.
    """
    listed = ((detections[..., 2] > 0).sum(-1) >= min_joints).any(-1)  # (T, V)
    found = assoc.found.any(0)  # (T,)
    support = ((assoc.person_index >= 0) & assoc.found[..., None]).any(0)  # (T, V)
    pair = camera_pair_agreement(detections, rig, given_order=True)
    v = len(rig)
    pair = torch.stack([torch.stack([pair[a, b, a, b] for b in range(v)]) for a in range(v)])
    group = agreeing_cameras(pair)
    out = {}
    for v, cam in enumerate(rig):
        chances = int((listed[:, v] & found).sum())
        share = int((support[:, v] & listed[:, v]).sum()) / max(chances, 1)
        if chances >= 3 and share < min_share:
            why = f"its detections agree with the other cameras in {share:.0%} of the {chances} frames where it sees someone"
        elif v not in group and chances >= 3:
            others = [rig.names[g] for g in group]
            closest = min(float(pair[v, g]) for g in group)
            why = (f"its detections do not triangulate with {', '.join(others)}, which agree with each other "
                   f"(it meets them within {closest:.2f} m at best)")
        else:
            continue
        out[cam.name] = f"{why}; likely cause: {_likely_cause(cam, detections[:, v], assoc)}"
    return out


def _likely_cause(cam: Any, det: Tensor, assoc: Association) -> str:
    """The most likely reason a camera disagrees, from what can be checked alone."""
    w, h = cam.image_size
    fx, fy, cx, cy = cam.K[0, 0], cam.K[1, 1], cam.K[0, 2], cam.K[1, 2]
    seen = det[..., 2] > 0
    xy = det[..., :2][seen].double().numpy()
    if w > 0 and h > 0 and len(xy):
        outside = float(((xy[:, 0] < -0.5 * w) | (xy[:, 0] > 1.5 * w) | (xy[:, 1] < -0.5 * h) |
                         (xy[:, 1] > 1.5 * h)).mean())
        if outside > 0.5:
            return (f"its keypoints lie far outside its {w}x{h} image (up to {np.abs(xy).max():.3g} px): "
                    f"not pixels, or another image size")
        if not (0 <= cx <= w and 0 <= cy <= h):
            return f"its principal point ({cx:.0f}, {cy:.0f}) is outside its {w}x{h} image (intrinsics)"
    if len(cam.dist) and float(np.abs(cam.dist).max()) > 10:
        return f"absurd lens distortion ({', '.join(f'{d:.3g}' for d in cam.dist)})"
    if not (0.2 < fx / max(fy, 1e-9) < 5):
        return f"focal lengths fx={fx:.0f}, fy={fy:.0f} px disagree (intrinsics)"
    centres = assoc.centre[assoc.found].double().numpy()
    if len(centres):
        uv = cam.project(centres)
        depth = (centres @ cam.R.T + cam.t)[:, 2]
        inside = (depth > 0) & (uv[:, 0] >= 0) & (uv[:, 0] <= w) & (uv[:, 1] >= 0) & (uv[:, 1] <= h)
        if w > 0 and h > 0 and float(inside.mean()) < 0.5:
            return ("the calibration puts the subject outside this camera's view: its extrinsics are wrong "
                    "(camera-to-world instead of world-to-camera, swapped with another camera's, or other units)")
        return ("the subject is where the calibration says, but this camera's detections are elsewhere in the image: "
                "a rotated or rolled camera, wrong intrinsics or distortion, or another camera's keypoints")
    return "its calibration or its keypoint folder"


def recording_summary(fit: RecordingFit) -> dict:
    """The report's numbers: per subject, frames fitted and failed (with reasons), per-camera
    reprojection error (pixels: mean, median and 95th percentile over the frames the camera saw,
    each frame the mean over its keypoints) and the per-frame error over time."""
    out: dict[str, Any] = {"fps": fit.fps, "frames": int(len(fit.frames)), "cameras": fit.camera_names,
           "keypoint_set": fit.keypoint_set, "initialisation": fit.initialisation,
           "warnings": list(fit.warnings), "dropped_cameras": dict(fit.dropped_cameras), "subjects": []}
    if fit.camera_order is not None:
        out["camera_order"] = {k: v for k, v in fit.camera_order.items() if k != "message"}
    for sub in fit.subjects:
        r = sub.result
        view_err = r.view_reprojection_error.detach().cpu().numpy()
        per_camera = {}
        for v, name in enumerate(fit.camera_names):
            finite = np.isfinite(view_err[:, v])
            seen = view_err[finite, v]
            per_camera[name] = {"mean_px": float(seen.mean()) if finite.any() else None,
                                "median_px": float(np.median(seen)) if finite.any() else None,
                                "p95_px": float(np.percentile(seen, 95)) if finite.any() else None,
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
