"""View sets (``views``): images of one person at one moment from several uncalibrated cameras,
fused into one body.

The shared body pose and betas are the rotation mean / mean of the per-view predictions
(:func:`~mvspin.fitting.view_estimates.fuse_view_predictions`), or MV-SMPLify's per-view fit with
``refine``; each view keeps its own root orientation and camera.

Outputs (all or nothing): ``views.npz`` with one row per view (shared body pose and betas,
per-view ``global_orient``/``transl``/``K``, ``view_names``), ``views.obj`` (the fused body in the
first view's camera frame) and, with ``render``, ``views_<name>_overlay.png`` per view and
``views_side.png``.
"""
from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np
import torch

from mvspin.apps.infer.config import InferConfig
from mvspin.apps.infer.images import read_image_input
from mvspin.apps.infer.inputs import InferInput
from mvspin.apps.infer.session import (
    InferError,
    InferItem,
    InferReport,
    InferSession,
    boxes_of,
    keypoint_set,
    output_group,
)
from mvspin.progress import Progress, no_progress
from mvspin.regressor.predictor import fuse_view_predictions, posed_prediction, refine_views_with_mvsmplify

__all__ = ["run_views", "views_files"]


def views_files(config: InferConfig) -> list[Path]:
    """The files a view set will write (for the output check before any work)."""
    return [config.out / f"views.{config.mesh_format}", config.out / "views.npz"]


def run_views(session: InferSession, items: list[InferInput], report: InferReport,
              progress: Progress = no_progress) -> None:
    """Fuse ``items`` (the views) into one body and write it; progress is reported as stage
    ``views`` (views read).

    Raises:
        InferError: fewer than 2 views, a video among them, a view that cannot be read, or
            (with refine) views without keypoints.
    """
    from mvspin.io_outputs import overlay_image, side_view_image, write_image, write_mesh, write_prediction_npz

    cfg, body, predictor = session.config, session.body, session.predictor
    if len(items) < 2:
        raise InferError(f"views needs at least 2 images, got {len(items)}")
    videos = [str(i.path) for i in items if i.kind == "video"]
    if videos:
        raise InferError(f"views takes images, not videos: {videos[0]}")
    pending = []
    progress("views", 0, len(items))
    for item in items:
        try:
            pending.append(read_image_input(session, item, report))
        except (OSError, ValueError) as err:
            raise InferError(f"{item.path}: {str(err).removeprefix(f'{item.path}: ')}") from None
        progress("views", len(pending), len(items))
    people = [p.people[0] for p in pending]
    centers, scales = boxes_of(people)
    pred = predictor.predict_crops(torch.cat([p.crops for p in pending]), centers, scales, with_vertices=False,
                                   timings=report.timings)
    errors = None
    if session.fit_settings is not None:
        keypoints = [p.keypoints for p in people]
        if any(k is None for k in keypoints):
            raise InferError("refine with views needs OpenPose keypoints for every view (openpose)")
        if len({len(k) for k in keypoints}) != 1:
            raise InferError("views: the OpenPose files hold different keypoint counts")
        with report.time("refine"):
            fused, errors_t = refine_views_with_mvsmplify(pred, np.stack(keypoints), body,
                                                          keypoint_set=keypoint_set(len(keypoints[0])),
                                                          config=cfg.fit)
        errors = errors_t.numpy()
    else:
        with report.time("body model"):
            body_rot, betas = fuse_view_predictions(pred.rotmat[None], pred.betas[None])
            v = len(pred)
            rotmat = torch.cat([pred.rotmat[:, :1], body_rot[0].expand(v, 23, 3, 3)], dim=1)
            fused = posed_prediction(pred, body, rotmat, betas[0].expand(v, -1), focal_length=predictor.focal_length)
    out = Path(cfg.out)
    with output_group() as group:
        with report.time("write"):
            write_prediction_npz(
                group.path(out / "views.npz"), fused, model=body.name,
                image_size=np.array([[p.image.shape[1], p.image.shape[0]] for p in pending]),
                source=np.array([str(i.path) for i in items]), checkpoint=session.checkpoint_name,
                betas=fused.betas[0], reprojection_error=errors,
                extra={"view_names": np.array([i.prefix.name for i in items])})
            write_mesh(group.path(out / f"views.{cfg.mesh_format}"), fused.vertices[0].numpy(), body.faces)
        if cfg.render:
            for i, p in enumerate(pending):
                with report.time("render"):
                    picture = overlay_image(p.image, [(fused.vertices[i].numpy(), fused.K[i].numpy())], body.faces)
                    side = side_view_image(fused.vertices[i].numpy(), body.faces, fused.K[i].numpy(),
                                           p.image.shape[1], p.image.shape[0]) if i == 0 else None
                with report.time("write"):
                    # Named by the input's unique prefix: cam1/000.jpg and cam2/000.jpg differ.
                    write_image(group.path(out / f"views_{p.item.prefix.name}_overlay.png"), picture)
                    if side is not None:
                        write_image(group.path(out / "views_side.png"), side)
    report.written += group.committed
    report.items.append(InferItem(items[0].path, dataclasses.replace(fused, vertices=None), group.committed))
    report.images += len(items)
    report.people += 1
