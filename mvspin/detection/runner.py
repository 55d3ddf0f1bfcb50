"""One interface over the detector backends, and a sequence of frames through one of them.

A backend is a :class:`PoseDetector`: ``reset()`` before a new sequence (camera), then
``step(frame)`` per frame, which returns every person it sees with a persistent id. Backends:

- ``blazepose``: BlazePose (full) on ai-edge-litert (:mod:`mvspin.detection.blazepose`),
  keypoint set ``blazepose33``;
- ``onnx``: a user's RTMPose ONNX file (SimCC head, COCO-17 or HALPE-26) on onnxruntime, person
  boxes from the BlazePose detector (:mod:`mvspin.detection.onnx_pose`).
"""
from __future__ import annotations

import os
from dataclasses import dataclass, field
from typing import Callable, Iterable, Optional, Protocol

import numpy as np

from mvspin.detection.blazepose import BlazePose, BlazePoseOptions, PoseTracker
from mvspin.detection.models import find_blazepose
from mvspin.errors import DetectionError

__all__ = ["PoseDetector", "DetectorSettings", "BACKENDS", "load_detector", "detect_sequence", "FramePeople"]

BACKENDS = ("blazepose", "onnx")
"""Detector backends by name."""

FramePeople = list[tuple[int, np.ndarray]]
"""The people of one frame: ``[(person_id, keypoints (K, 3))]``, x, y in pixels (pixel centres
at integers, OpenPose's convention) and a confidence in [0, 1]."""


class PoseDetector(Protocol):
    """A backend: ``keypoint_set`` names its keypoints; ``reset()`` starts a new sequence (ids
    start again at 0); ``step(image_rgb)`` returns the people of the next frame."""

    keypoint_set: str
    name: str

    def reset(self) -> None: ...

    def step(self, image: np.ndarray) -> FramePeople: ...


@dataclass(frozen=True)
class DetectorSettings:
    """How to build a detector.

    Attributes:
        backend: one of :data:`BACKENDS`.
        model: the ONNX pose model file (backend ``onnx``).
        model_dir: folder of the BlazePose files (default: the model cache).
        threads: CPU threads of each model.
        blazepose: BlazePose thresholds and tracking options.
    """

    backend: str = "blazepose"
    model: Optional[str] = None
    model_dir: Optional[str] = None
    threads: int = 1
    blazepose: BlazePoseOptions = field(default_factory=BlazePoseOptions)


class BlazePoseDetector:
    """BlazePose (full) with per-person ROI tracking; keypoint set ``blazepose33``."""

    keypoint_set = "blazepose33"
    name = "blazepose"

    def __init__(self, model: BlazePose, options: BlazePoseOptions) -> None:
        self.model, self.options = model, options
        self.tracker = PoseTracker(model, options)

    def reset(self) -> None:
        self.tracker = PoseTracker(self.model, self.options)

    def step(self, image: np.ndarray) -> FramePeople:
        return self.tracker.step(image)


def load_detector(settings: DetectorSettings) -> PoseDetector:
    """Build the backend ``settings.backend``; every model file is checked here, before any frame.

    Raises:
        ModelFilesError: the BlazePose files are missing (names the install command).
        DetectionError: an unknown backend, no ``model`` for ``onnx``, a file that is not the
            expected kind of model, or a missing runtime package.
    """
    if settings.backend not in BACKENDS:
        raise DetectionError(f"unknown detector {settings.backend!r}; known: {', '.join(BACKENDS)}")
    pose_model = None
    if settings.backend == "onnx":  # the user's file first: a wrong file is the likelier mistake
        if not settings.model:
            raise DetectionError("detector onnx needs model: an RTMPose ONNX file (SimCC head, COCO-17 or HALPE-26)")
        from mvspin.detection.onnx_pose import OnnxPoseModel

        pose_model = OnnxPoseModel(os.fspath(settings.model), threads=settings.threads)
    blazepose = BlazePose(find_blazepose(settings.model_dir), threads=settings.threads)
    if pose_model is None:
        return BlazePoseDetector(blazepose, settings.blazepose)
    from mvspin.detection.onnx_pose import OnnxPoseDetector

    return OnnxPoseDetector(pose_model, blazepose, settings.blazepose)


def detect_sequence(frames: Iterable[np.ndarray], detector: PoseDetector, max_frames: Optional[int] = None,
                    progress: Optional[Callable[[int], None]] = None) -> list[FramePeople]:
    """Run ``detector`` over RGB frames in order (after ``reset()``); one list of people per frame.

    Args:
        frames: ``(H, W, 3)`` uint8 RGB images.
        max_frames: stop after this many frames (all when None).
        progress: called with the number of frames done.
    """
    detector.reset()
    out: list[FramePeople] = []
    for image in frames:
        if max_frames is not None and len(out) >= max_frames:
            break
        out.append(detector.step(np.ascontiguousarray(image)))
        if progress is not None:
            progress(len(out))
    return out
