"""Videos: one person per frame, frames batched through the network.

Outputs per video: ``<prefix>.npz`` with one row per frame (``fps`` from the video,
``box_detected``: whether the frame's box came from its own box / OpenPose file) and, with
``render``, ``<prefix>_overlay.mp4``. A frame without a file, or whose OpenPose file holds nobody,
keeps the previous frame's box (the whole frame before the first detection). The files are
written together or not at all.
"""
from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any, Optional

import numpy as np

from mvspin.apps.infer.inputs import InferInput, InputError, NoPersonError, PersonBox, check_image_size, people_in_image
from mvspin.apps.infer.session import (
    InferItem,
    InferReport,
    InferSession,
    boxes_of,
    crops_of,
    output_group,
    overlay_meshes,
    suffixed,
)
from mvspin.data.keypoint_files import frame_files
from mvspin.data.video import VideoFrames
from mvspin.progress import Progress, no_progress
from mvspin.regressor.predictor import Prediction

__all__ = ["run_video", "video_files"]


def video_files(item: InferInput) -> list[Path]:
    """The files a video input will write (for the output check before any work)."""
    return [item.prefix.with_suffix(".npz"), suffixed(item.prefix, "_overlay.mp4")]


def _frame_person(session: InferSession, index: int, width: int, height: int, keypoint_files: Any,
                  bbox_files: Any, last: Optional[PersonBox]) -> tuple[PersonBox, bool]:
    """(the frame's person, whether its box came from this frame's own files)."""
    kp = keypoint_files.get(index) if isinstance(keypoint_files, dict) else keypoint_files
    bb = bbox_files.get(index) if isinstance(bbox_files, dict) else bbox_files
    missing = (isinstance(keypoint_files, dict) and kp is None) or (isinstance(bbox_files, dict) and bb is None)
    if not missing:
        try:
            return people_in_image(width, height, kp, bb, session.person, session.preprocessing)[0], True
        except NoPersonError:
            pass
    if last is not None:
        return PersonBox("", last.center, last.scale), False
    return people_in_image(width, height)[0], False


def run_video(session: InferSession, item: InferInput, report: InferReport,
              progress: Progress = no_progress) -> None:
    """Predict and write one video; progress is reported as stage ``frames of <name>`` (total:
    the frame count the container reports, 0 when unknown).

    Raises:
        InputError, VideoError, OSError: the video cannot be processed (nothing of it is kept).
    """
    from mvspin.io_outputs import VideoWriter, overlay_image, write_prediction_npz

    cfg, predictor = session.config, session.predictor
    if session.person == "all":
        raise InputError("person all needs people tracked across frames; videos take one person per frame")
    try:
        keypoint_files = frame_files(cfg.openpose, item.path)
        bbox_files = frame_files(cfg.bbox, item.path)
    except FileNotFoundError as err:
        raise InputError(str(err)) from None
    with report.time("read"):
        frames = VideoFrames(item.path)
    stage, total = f"frames of {item.path.name}", int(frames.reported_frames or 0)
    parts: list[Prediction] = []
    errors: list[np.ndarray] = []
    detected: list[bool] = []
    size: Optional[tuple[int, int]] = None
    batch_images: list[np.ndarray] = []
    batch_people: list[PersonBox] = []
    last: Optional[PersonBox] = None
    progress(stage, 0, total)

    with output_group() as group:
        video = None if not cfg.render else VideoWriter(group.path(suffixed(item.prefix, "_overlay.mp4")), frames.fps)

        def flush() -> None:
            if not batch_images:
                return
            with report.time("crop"):
                crops = crops_of(predictor, batch_images, batch_people)
            centers, scales = boxes_of(batch_people)
            pred = predictor.predict_crops(crops, centers, scales, with_vertices=video is not None,
                                           timings=report.timings)
            if session.fit_settings is not None:
                with report.time("refine"):
                    pred, batch_errors = session.refine(pred, batch_people)
                errors.append(batch_errors)
            for i, img in enumerate(batch_images):
                if video is not None:
                    with report.time("render"):
                        picture = overlay_image(img, overlay_meshes(pred.select([i]), [0]), session.body.faces)
                    with report.time("write"):
                        video.write(picture)
            parts.append(dataclasses.replace(pred, vertices=None))  # the sequence file needs no meshes
            batch_images.clear()
            batch_people.clear()
            progress(stage, len(detected), max(total, len(detected)))

        try:
            decoded = iter(frames)
            for index in range(1 << 62):
                with report.time("read"):
                    image = next(decoded, None)
                if image is None:
                    break
                height, width = image.shape[:2]
                if size is None:
                    check_image_size(width, height, item.path)
                    size = (width, height)
                with report.time("crop"):
                    person, found = _frame_person(session, index, width, height, keypoint_files, bbox_files, last)
                last = person
                detected.append(found)
                batch_images.append(image)
                batch_people.append(person)
                if len(batch_images) >= cfg.batch_size:
                    flush()
            flush()
            pred = Prediction.concatenate(parts)
            with report.time("write"):
                if video is not None:
                    video.close()
                write_prediction_npz(
                    group.path(item.prefix.with_suffix(".npz")), pred, model=session.body.name,
                    image_size=list(size), source=str(item.path), checkpoint=session.checkpoint_name,
                    fps=frames.fps, betas=pred.betas,
                    reprojection_error=np.concatenate(errors) if errors else None,
                    extra={"box_detected": np.array(detected)})
        except BaseException:
            if video is not None:
                video.abort()
            frames.close()
            raise
    report.written += group.committed
    report.items.append(InferItem(item.path, pred, group.committed))
    report.videos += 1
    report.frames += len(pred)
    has_sources = cfg.openpose is not None or cfg.bbox is not None
    report.frames_without_box += sum(not d for d in detected) if has_sources else 0
