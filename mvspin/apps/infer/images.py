"""Single images: one body per person, batched across images through the network.

Outputs per image (``<prefix>`` from :func:`~mvspin.apps.infer.inputs.collect_inputs`, ``_p<i>``
added per OpenPose person with ``person="all"``):

- ``<prefix>.npz``: SMPL parameters with AMASS keys plus the camera of the original image
  (:func:`mvspin.io_outputs.write_prediction_npz`);
- ``<prefix>.obj`` (or ``.ply``): the mesh in the camera frame (OpenCV axes: x right, y down,
  z forward);
- ``<prefix>_overlay.png`` (every mesh over the image) and ``<prefix>_side.png`` (turned 90
  degrees) with ``render``.

An image's files are written together or not at all; a failed image is listed in the report's
``failures`` and the run goes on.
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from pathlib import Path
from typing import Optional

import numpy as np
import torch

from mvspin.apps.infer.config import InferConfig
from mvspin.apps.infer.inputs import InferInput, InputError, PersonBox, check_image_size, people_in_image
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
from mvspin.data.keypoint_files import BBOX_NAME_PATTERNS, OPENPOSE_NAME_PATTERNS, matching_file
from mvspin.progress import Progress, no_progress, stage_progress
from mvspin.regressor.predictor import Prediction
from mvspin.regressor.preprocess import read_image

__all__ = ["ImageCrops", "image_files", "read_image_input", "run_images"]


@dataclass
class ImageCrops:
    """One image read and cut into network inputs.

    Attributes:
        item: the input.
        image: ``(H, W, 3)`` uint8 RGB.
        people: the crop box (and keypoints) of each person.
        crops: ``(P, 3, S, S)`` network inputs, one per person.
    """

    item: InferInput
    image: np.ndarray
    people: list[PersonBox]
    crops: torch.Tensor


def image_files(config: InferConfig, item: InferInput) -> list[Path]:
    """The files an image input will write (for the output check before any work)."""
    return [item.prefix.with_suffix(".npz"), item.prefix.with_suffix(f".{config.mesh_format}"),
            suffixed(item.prefix, "_overlay.png"), suffixed(item.prefix, "_side.png")]


def read_image_input(session: InferSession, item: InferInput, report: InferReport) -> ImageCrops:
    """Read an image, find its people's boxes (box / OpenPose files, else the whole image) and
    cut their crops.

    Raises:
        InputError: unreadable image, missing or unusable box / keypoint file.
    """
    cfg = session.config
    with report.time("read"):
        try:
            image = read_image(item.path)
        except (FileNotFoundError, ValueError) as err:
            raise InputError(str(err)) from None
    with report.time("crop"):
        height, width = image.shape[:2]
        check_image_size(width, height, item.path)
        try:
            keypoints_file = matching_file(cfg.openpose, item.path, OPENPOSE_NAME_PATTERNS, "OpenPose")
            bbox_file = matching_file(cfg.bbox, item.path, BBOX_NAME_PATTERNS, "bbox")
        except FileNotFoundError as err:
            raise InputError(str(err)) from None
        people = people_in_image(width, height, keypoints_file, bbox_file, session.person, session.preprocessing)
        crops = crops_of(session.predictor, [image] * len(people), people)
    return ImageCrops(item, image, people, crops)


def _write_outputs(session: InferSession, p: ImageCrops, rows: Prediction, errors: Optional[np.ndarray],
                   report: InferReport) -> list[Path]:
    """npz + mesh + side view per person and the image's overlay, all or nothing."""
    from mvspin.io_outputs import overlay_image, side_view_image, write_image, write_mesh, write_prediction_npz

    cfg, body = session.config, session.body
    height, width = p.image.shape[:2]
    with output_group() as group:
        for i, person in enumerate(p.people):
            prefix = suffixed(p.item.prefix, person.label)
            row = rows.select([i])
            vertices = row.vertices[0].numpy()
            side = None
            if cfg.render:
                with report.time("render"):
                    side = side_view_image(vertices, body.faces, row.K[0].numpy(), width, height)
            with report.time("write"):
                write_prediction_npz(group.path(prefix.with_suffix(".npz")), row, model=body.name,
                                     image_size=[width, height], source=str(p.item.path),
                                     checkpoint=session.checkpoint_name,
                                     reprojection_error=None if errors is None else errors[i:i + 1])
                write_mesh(group.path(prefix.with_suffix(f".{cfg.mesh_format}")), vertices, body.faces)
                if side is not None:
                    write_image(group.path(suffixed(prefix, "_side.png")), side)
        if cfg.render:
            with report.time("render"):
                picture = overlay_image(p.image, overlay_meshes(rows), body.faces)
            with report.time("write"):
                write_image(group.path(suffixed(p.item.prefix, "_overlay.png")), picture)
    return group.committed


def _finish(session: InferSession, pending: list[ImageCrops], report: InferReport) -> None:
    """One batched network call for every crop of ``pending``, then outputs per image."""
    if not pending:
        return
    people = [person for p in pending for person in p.people]
    centers, scales = boxes_of(people)
    try:
        pred = session.predictor.predict_crops(torch.cat([p.crops for p in pending]), centers, scales,
                                               timings=report.timings)
    except (ValueError, RuntimeError) as err:  # e.g. out of memory: every image of the batch fails
        for p in pending:
            report.failures.append((str(p.item.path), f"network: {err}"))
        return
    start = 0
    for p in pending:
        rows = pred.select(slice(start, start + len(p.people)))
        start += len(p.people)
        try:
            errors = None
            if session.fit_settings is not None:
                with report.time("refine"):
                    rows, errors = session.refine(rows, p.people)
            files = _write_outputs(session, p, rows, errors, report)
        except (OSError, ValueError) as err:
            report.failures.append((str(p.item.path), str(err)))
            continue
        report.written += files
        report.items.append(InferItem(p.item.path, dataclasses.replace(rows, vertices=None), files))
        report.images += 1
        report.people += len(p.people)


def run_images(session: InferSession, items: list[InferInput], report: InferReport,
               progress: Progress = no_progress) -> None:
    """Predict and write every image of ``items``, ``config.batch_size`` crops per network call;
    progress is reported as stage ``images``. Failures go to ``report.failures``."""
    update = stage_progress(progress, "images", len(items))
    pending: list[ImageCrops] = []
    done = 0
    update(0)
    for item in items:
        try:
            pending.append(read_image_input(session, item, report))
        except (OSError, ValueError) as err:
            report.failures.append((str(item.path), str(err)))
            done += 1
            update(done)
        if sum(len(p.people) for p in pending) >= session.config.batch_size:
            _finish(session, pending, report)
            done += len(pending)
            update(done)
            pending = []
    _finish(session, pending, report)
    update(done + len(pending))
