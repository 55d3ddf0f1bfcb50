"""Network initialisation of rig fitting: a regressor on each camera's crop of the subject, fused
into one world-frame start per frame.

For a subject already associated across cameras and frames (its 2D keypoints ``(T, V, K, 3)``),
:func:`predict_rig_views` cuts SPIN's crop around the keypoints in every camera and frame
(:func:`mvspin.geometry.keypoint_crop_boxes`, the one crop rule) from the camera's video, and runs
the regressor on the crops in batches (:class:`mvspin.regressor.predictor.Predictor`). A camera
that does not see the subject in a frame (fewer than two confident keypoints) is skipped there.
:func:`network_world_estimate` then fuses each frame's views in the rig's world frame
(:func:`mvspin.fitting.view_estimates.world_estimate_from_views`): body pose and betas by rotation
mean / mean, the root orientation through each crop's camera and each camera's rotation
(``R_v^T R_crop^T R_net``) and averaged on SO(3). The fitter solves the translation from the
keypoints, as it does for its triangulation start.

Video frame ``n`` is keypoint frame number ``n`` (the convention of the overlay videos); in an
image folder per camera the frame number is the last number in the file name, as for keypoint
files.

Example:
    >>> predictor, about = load_rig_predictor("model_checkpoint.pt", body)  # doctest: +SKIP
    >>> estimate = network_world_estimate(predictor, videos, keypoints, rig)  # doctest: +SKIP
    >>> fit_sequence(body, keypoints, rig, "openpose25", init=estimate)  # doctest: +SKIP
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable, Iterator, Optional, Sequence

import numpy as np
import torch
from torch import Tensor

from calibration import Rig, undistort_points
from mvspin.body import BodyModel
from mvspin.data.keypoint_files import frame_number
from mvspin.data.video import IMAGE_SUFFIXES, VideoError, VideoFrames
from mvspin.errors import check_shape
from mvspin.fitting.view_estimates import WorldEstimate, world_estimate_from_views
from mvspin.geometry import keypoint_crop_boxes
from mvspin.progress import Progress, no_progress
from mvspin.regressor.checkpoint import CheckpointError, checkpoint_input_size, load_regressor_checkpoint
from mvspin.regressor.predictor import Predictor
from mvspin.regressor.preprocess import preprocessing_for_checkpoint, read_image

__all__ = ["RigViewPredictions", "load_rig_predictor", "camera_frames", "predict_rig_views", "network_world_estimate",
           "world_estimate_from_rig_views"]


@dataclass
class RigViewPredictions:
    """The regressor's estimates of one subject in every camera and frame.

    Attributes:
        rotmat: ``(T, V, 24, 3, 3)`` rotations, joint 0 the root in the crop's camera frame
            (identity where not seen).
        betas: ``(T, V, num_betas)`` (zero where not seen).
        crop_center: ``(T, V, 2)`` crop box centres, image pixels. crop_scale: ``(T, V)`` box
            side / 200.
        seen: ``(T, V)`` bool: the camera saw the subject and the network ran on its crop.
    """

    rotmat: Tensor
    betas: Tensor
    crop_center: Tensor
    crop_scale: Tensor
    seen: Tensor

    @property
    def num_crops(self) -> int:
        return int(self.seen.sum())


def load_rig_predictor(checkpoint: str | os.PathLike[str], body: BodyModel,
                       device: torch.device | str = "cpu", batch_size: int = 32) -> tuple[Predictor, str]:
    """A :class:`Predictor` for a regressor checkpoint, checked against ``body`` before any work.

    The checkpoint's own input size (``checkpoint_input_size``, 224 when it does not say) and
    preprocessing (SPIN's for SPIN's files) are used.

    Returns:
        ``(predictor, a line saying what was loaded)``.

    Raises:
        FileNotFoundError: no such file.
        CheckpointError: not an HMR regressor checkpoint, trained for another body model (or
            another number of betas), or with an input size the network cannot take.
    """
    path = Path(checkpoint)
    if not path.is_file():
        raise FileNotFoundError(f"checkpoint {path}: no such file")
    model, meta = load_regressor_checkpoint(path, map_location=device)
    input_size = checkpoint_input_size(meta, body, path)
    num_betas = int(model.init_shape.shape[-1])
    if num_betas != body.num_betas:
        raise CheckpointError(f"{path}: predicts {num_betas} betas but the body model {body.name} has "
                              f"{body.num_betas}")
    preprocessing = preprocessing_for_checkpoint(meta)
    try:
        predictor = Predictor(model, body, device=device, batch_size=batch_size, input_size=input_size,
                              preprocessing=preprocessing)
    except ValueError as err:
        raise CheckpointError(f"{path}: {err}") from None
    epoch = f", epoch {meta['epoch']}" if "epoch" in meta else ""
    return predictor, (f"{path} (ResNet-{model.depth} HMR regressor{epoch}, {input_size} px crops, "
                       f"{preprocessing} preprocessing)")


def _undistorted_centres(center: Tensor, rig: Rig) -> Tensor:
    """Crop centres ``(T, V, 2)`` moved to where a distortion-free camera would see them (the
    crop camera's viewing ray is the undistorted one)."""
    cams = rig.to_torch(torch.float64)
    xy = undistort_points(center.double().transpose(0, 1), cams.K, cams.dist)  # (V, T, 2) normalised
    K = cams.K[:, None]
    u = K[..., 0, 0] * xy[..., 0] + K[..., 0, 1] * xy[..., 1] + K[..., 0, 2]
    v = K[..., 1, 1] * xy[..., 1] + K[..., 1, 2]
    return torch.stack([u, v], -1).transpose(0, 1)


def camera_frames(source: str | os.PathLike[str], wanted: Iterable[int]) -> Iterator[tuple[int, np.ndarray]]:
    """``(frame number, (H, W, 3) uint8 RGB image)`` for the ``wanted`` frame numbers, in order,
    from a video (frame ``n`` is the ``n``-th decoded frame, read in order up to the last one
    wanted) or a folder of images (the frame number is the last number in the file name, as for
    keypoint files).

    Raises:
        VideoError: missing or unreadable source, or a wanted frame it does not have.
    """
    path = Path(source)
    want = sorted(set(int(n) for n in wanted))
    if not want:
        return
    if path.is_dir():
        images: dict[int, Path] = {}
        for f in sorted(path.iterdir()):
            number = frame_number(f) if f.suffix.lower() in IMAGE_SUFFIXES else None
            if number is not None:
                images.setdefault(number, f)
        missing = [n for n in want if n not in images]
        if missing:
            raise VideoError(f"{path}: no image for frame {missing[0]} ({len(missing)} of the {len(want)} frames "
                             f"with keypoints have none; frame numbers come from the file names)")
        for n in want:
            try:
                image = read_image(images[n])
            except (OSError, ValueError) as err:  # the message names the file
                raise VideoError(str(err)) from None
            yield n, image
        return
    video = VideoFrames(path)
    wanted_set, last, count = set(want), want[-1], 0
    try:
        for n, image in enumerate(video):
            count = n + 1
            if n in wanted_set:
                yield n, image
            if n >= last:
                break
    finally:
        video.close()
    if count <= last:
        raise VideoError(f"{path}: has {count} frames but the keypoints go up to frame {last}")


def predict_rig_views(
    predictor: Predictor,
    videos: Sequence[str | os.PathLike[str]],
    keypoints: Tensor,
    rig: Rig,
    frames: Optional[np.ndarray] = None,
    progress: Progress = no_progress,
) -> RigViewPredictions:
    """Run the regressor on the subject's crop in every camera and frame that sees it.

    Args:
        predictor: the regressor (:func:`load_rig_predictor`).
        videos: one video (or image folder, :func:`camera_frames`) per rig camera, in the rig's
            order.
        keypoints: ``(T, V, K, 3)`` the subject's image-pixel keypoints per frame and camera
            (confidence 0 where missing), e.g. ``fit_recording``'s associated keypoints.
        rig: the V cameras (image sizes, when known, are checked against the videos).
        frames: ``(T,)`` keypoint frame numbers (video frame ``n`` = frame number ``n``;
            default ``0..T-1``).
        progress: :class:`~mvspin.progress.Progress`, stage ``"network"``: crops done after each batch.

    Returns:
        :class:`RigViewPredictions`.

    Raises:
        VideoError: a video missing, unreadable, shorter than the frame numbers, or of another
            size than its camera's calibration.
        ValueError: wrong shapes or counts.
    """
    check_shape("keypoints", keypoints, (None, len(rig), None, 3))
    t, v = keypoints.shape[:2]
    if len(videos) != v:
        raise ValueError(f"{len(videos)} videos for a rig of {v} cameras")
    frames = np.arange(t) if frames is None else np.asarray(frames)
    if frames.shape != (t,):
        raise ValueError(f"frames must be ({t},), got {frames.shape}")
    boxes = keypoint_crop_boxes(keypoints.detach().double().cpu())
    seen = boxes.valid
    total = int(seen.sum())
    nb = predictor.body.num_betas
    rotmat = torch.eye(3).repeat(t, v, 24, 1, 1)
    betas = torch.zeros(t, v, nb)
    done = 0
    for view, (path, cam) in enumerate(zip(videos, rig)):
        wanted = {int(frames[i]): i for i in range(t) if bool(seen[i, view])}
        if not wanted:
            continue
        crops: list[Tensor] = []
        rows: list[int] = []

        def flush() -> None:
            nonlocal done
            if not rows:
                return
            idx = torch.tensor(rows)
            pred = predictor.predict_crops(torch.stack(crops), boxes.center[idx, view].numpy(),
                                           boxes.scale[idx, view].numpy(), with_vertices=False)
            rotmat[idx, view] = pred.rotmat
            betas[idx, view] = pred.betas
            done += len(rows)
            crops.clear()
            rows.clear()
            progress("network", done, total)

        for n, image in camera_frames(path, wanted):
            if min(cam.image_size) > 0 and (image.shape[1], image.shape[0]) != tuple(cam.image_size):
                raise VideoError(f"{path}: frames are {image.shape[1]}x{image.shape[0]} but camera {cam.name} is "
                                 f"calibrated for {cam.image_size[0]}x{cam.image_size[1]}")
            i = wanted[n]
            crops.append(predictor.crop(image, boxes.center[i, view].numpy(), float(boxes.scale[i, view])))
            rows.append(i)
            if len(rows) == predictor.batch_size:
                flush()
        flush()
    return RigViewPredictions(rotmat, betas, boxes.center.float(), boxes.scale.float(), seen)


def network_world_estimate(
    predictor: Predictor,
    videos: Sequence[str | os.PathLike[str]],
    keypoints: Tensor,
    rig: Rig,
    frames: Optional[np.ndarray] = None,
    progress: Progress = no_progress,
) -> WorldEstimate:
    """The regressor's world-frame start for one subject, per frame (module doc).

    Args: as :func:`predict_rig_views`.

    Returns:
        :class:`~mvspin.fitting.view_estimates.WorldEstimate` of T frames (float64); frames no
        camera saw are ``valid = False``.
    """
    views = predict_rig_views(predictor, videos, keypoints, rig, frames, progress)
    return world_estimate_from_rig_views(views, rig)


def world_estimate_from_rig_views(views: RigViewPredictions, rig: Rig) -> WorldEstimate:
    """Fuse :class:`RigViewPredictions` in the rig's world frame (each view's crop camera, then
    its camera rotation; views not seen weigh zero)."""
    cams = rig.to_torch(torch.float64)
    return world_estimate_from_views(views.rotmat.double(), views.betas.double(), cams.R, views.seen.double(),
                                     _undistorted_centres(views.crop_center, rig), cams.K)
