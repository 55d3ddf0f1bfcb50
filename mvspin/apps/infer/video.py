"""Videos: one person per frame, frames batched through the network.

Outputs per video: ``<prefix>.npz`` with one row per frame (``fps`` from the video,
``box_detected``: whether the frame's box came from its own box / OpenPose file), ``<prefix>.glb``
(the body animated over the frames, seen as the camera saw it, one shape: the frames' mean) and,
with ``render``, ``<prefix>_overlay.mp4``. With ``smooth`` the per-frame bodies are smoothed over
time (:func:`smooth_prediction`) before any file is written. A frame without a file, or whose OpenPose file holds nobody,
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
    return [item.prefix.with_suffix(".npz"), item.prefix.with_suffix(".glb"), suffixed(item.prefix, "_overlay.mp4")]


def smooth_prediction(pred: Prediction, body: Any, window: int) -> Prediction:
    """The per-frame bodies smoothed over ``window`` frames: rotations by
    :func:`~mvspin.geometry.smooth_rotations` (Savitzky-Golay in 6D), betas and translation by
    the same filter per component; joints recomputed (vertices dropped). The crop boxes and
    cameras (``K``) stay each frame's own."""
    import torch
    from scipy.signal import savgol_filter

    from mvspin.geometry import smooth_rotations

    n = len(pred)
    w = min(window if window % 2 else window + 1, n if n % 2 else n - 1)
    if w < 4:
        return pred

    def filtered(x: torch.Tensor) -> torch.Tensor:
        return torch.as_tensor(savgol_filter(x.double().numpy(), w, 2, axis=0, mode="interp"), dtype=x.dtype)

    rotmat, betas, transl = smooth_rotations(pred.rotmat, w), filtered(pred.betas), filtered(pred.transl)
    device = body.J_template.device
    with torch.no_grad():
        joints = body(body_pose=rotmat[:, 1:].to(device), betas=betas.to(device), global_orient=rotmat[:, 0].to(device),
                      transl=transl.to(device)).joints.cpu()
    return dataclasses.replace(pred, rotmat=rotmat, betas=betas, transl=transl, joints=joints, vertices=None)


def _write_video_glb(path: Path, pred: Prediction, body: Any, fps: float) -> None:
    """The sequence as an animated ``.glb`` in the camera's view: OpenCV's camera axes (y down,
    z forward) turned to glTF's (y up, looking along -z), one shape (the frames' mean betas)."""
    import torch

    from mvspin.body import SMPL_JOINT_NAMES, SMPL_PARENTS
    from mvspin.io_outputs import write_animated_gltf

    device = body.J_template.device
    with torch.no_grad():
        betas = pred.betas.mean(0, keepdim=True).to(device)
        rest = body(betas=betas).vertices[0].cpu().numpy()
        rest_joints = body.rest_joints(betas)[0].cpu().numpy()
    write_animated_gltf(path, rest_vertices=rest, faces=body.faces,
                        skin_weights=body.smpl.lbs_weights.detach().cpu().numpy(), parents=SMPL_PARENTS,
                        rest_joints=rest_joints, joint_rotations=pred.rotmat.numpy(),
                        root_translation=pred.transl.numpy() + rest_joints[0], fps=fps, joint_names=SMPL_JOINT_NAMES,
                        world_rotation=np.diag([1.0, -1.0, -1.0]), extras={"model": body.name})


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


def _render_smoothed(session: InferSession, path: Path, pred: Prediction, video: Any, report: InferReport) -> None:
    """Second pass over the video: each frame with its smoothed body."""
    import torch

    from mvspin.io_outputs import overlay_image

    body = session.body
    device = body.J_template.device
    for start, image in enumerate(VideoFrames(path)):
        if start >= len(pred):
            break
        row = pred.select([start])
        with torch.no_grad(), report.time("render"):
            verts = body(body_pose=row.rotmat[:, 1:].to(device), betas=row.betas.to(device),
                         global_orient=row.rotmat[:, 0].to(device), transl=row.transl.to(device)).vertices.cpu()
            picture = overlay_image(image, overlay_meshes(dataclasses.replace(row, vertices=verts), [0]), body.faces)
        with report.time("write"):
            video.write(picture)


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
            render_now = video is not None and not cfg.smooth  # smoothed bodies are drawn after the pass
            pred = predictor.predict_crops(crops, centers, scales, with_vertices=render_now,
                                           timings=report.timings)
            if session.fit_settings is not None:
                with report.time("refine"):
                    pred, batch_errors = session.refine(pred, batch_people)
                errors.append(batch_errors)
            for i, img in enumerate(batch_images):
                if render_now:
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
            if cfg.smooth:
                pred = smooth_prediction(pred, session.body, cfg.smooth)
                if video is not None:
                    _render_smoothed(session, item.path, pred, video, report)
            with report.time("write"):
                if video is not None:
                    video.close()
                _write_video_glb(group.path(item.prefix.with_suffix(".glb")), pred, session.body, frames.fps)
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
