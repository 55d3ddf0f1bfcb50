"""Static fits before training (``mvspin fit-dataset``): one MV-SMPLify fit per bundle, as a fits store.

SPIN starts training from static fits of every training image; MV-SPIN's loop does the same per
bundle. Every bundle is read once without augmentation (so the store's un-augmented frame is the
frame of the fit) and fitted in the configured mode: ``per_view``, started from the regressor's
estimates when ``model.init_checkpoint`` is given, else from the body model's mean parameters;
``calibrated`` (:mod:`mvspin.learning.calibrated_targets`), started from the regressor's
estimates when given, else from triangulated keypoints (the mean pose with the identity
orientation says nothing about where a calibrated body faces). Under
``torchrun`` the bundles are sharded over the processes (a
:class:`~torch.utils.data.distributed.DistributedSampler`), the results gathered with
``torch.distributed`` and written by rank 0 only.
"""
from __future__ import annotations

import dataclasses
import logging
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Optional

import numpy as np
import torch
from torch.utils.data import DataLoader
from torch.utils.data.distributed import DistributedSampler

from mvspin.atomic import check_output_location
from mvspin.config import ConfigError, check_range
from mvspin.errors import FitError
from mvspin.fitting import MVSMPLify, PerViewEstimate
from mvspin.learning.calibrated_targets import fit_calibrated_batch, network_start
from mvspin.learning.distributed import setup_distributed
from mvspin.learning.fit_acceptance import score_fit
from mvspin.learning.fit_frame import fitting_config, to_fitting_frame
from mvspin.learning.fits_store import FitsStore
from mvspin.learning.threads import torch_threads
from mvspin.learning.train_config import TrainConfig, validate_train_config
from mvspin.learning.trainer import build_body_model, build_regressor
from mvspin.learning.training_dataset import TrainingDataset
from mvspin.progress import Progress, no_progress, stage_progress

__all__ = ["FitDatasetSummary", "fit_dataset"]

log = logging.getLogger("mvspin")


@dataclass
class FitDatasetSummary:
    """What :func:`fit_dataset` wrote: the store, bundle count, statistics, wall time and processes."""

    path: Path
    num_bundles: int
    store: dict[str, float]
    wall_seconds: float
    world_size: int = 1
    is_main: bool = True


def fit_dataset(config: TrainConfig, out: Path, batch_size: Optional[int] = None,
                progress: Progress = no_progress) -> FitDatasetSummary:
    """Fit every bundle of ``config.data.files`` once and write the fits store ``out`` (atomically).

    Args:
        config: the training job (data, model, fitting and rejection settings are used).
        out: the fits store to write (``.h5``).
        batch_size: bundles per fitting batch per process (default ``optim.batch_size``).
        progress: told ``("fit-dataset", batches done, batches)`` after each batch (rank 0 only).

    Returns:
        :class:`FitDatasetSummary` (statistics with the training rejection threshold).

    Raises:
        ConfigError: a bad setting (before any work).
        OutputLocationError: ``out`` cannot be written (before any work).
        FitError: no bundle could be fitted (``out`` is not written: a store of failed fits
            would start training from nothing).
    """
    start = time.perf_counter()
    validate_train_config(config)
    if not config.fits.enabled:
        raise ConfigError("fits.enabled is false: there is nothing to fit", field="fits.enabled")
    if batch_size is not None:
        check_range("batch_size", batch_size, 1, integer=True)
    out = check_output_location(out, what="out")  # before the first fit, not after the last
    ctx = setup_distributed(config.optim.device)
    try:
        data = dataclasses.replace(config.data, sequential=True, augmentation=False)
        dataset = TrainingDataset.from_config(data)
        body = build_body_model(config, ctx.device)
        store = FitsStore.for_bundle_files(dataset.sources, body.num_betas)
        # Fits run in SPIN's 224 px crop whatever data.crop_size is (mvspin.learning.fit_frame).
        fit_cfg = fitting_config(config.fits.fitting)
        fitter = MVSMPLify(body, fit_cfg, dataset.keypoint_set)
        calibrated = fit_cfg.mode == "calibrated"
        model = build_regressor(config, body).to(ctx.device).eval() if config.model.init_checkpoint else None
        sampler: DistributedSampler = DistributedSampler(dataset, num_replicas=ctx.world_size, rank=ctx.rank, shuffle=False, drop_last=False)
        loader = DataLoader(dataset, batch_size=batch_size or config.optim.batch_size, sampler=sampler,
                            num_workers=config.optim.num_workers)
        update = stage_progress(progress if ctx.is_main else no_progress, "fit-dataset", len(loader))
        update(0)
        results = []
        for batch in loader:
            kp = to_fitting_frame(batch["keypoints_2d"].to(ctx.device), config.data.crop_size)
            b, v = kp.shape[:2]
            if model is not None:
                with torch.no_grad():
                    images = batch["images"].to(ctx.device)
                    pred = model(images.reshape(b * v, *images.shape[2:])).reshape_leading(b, v)
                init = PerViewEstimate(rotmat=pred.rotmat, betas=pred.betas, cam=pred.cam)
            else:
                init = PerViewEstimate.mean(body, b, v, ctx.device)
            if calibrated:  # world-frame fit on the stored cameras (no augmentation: the store's frame)
                on_device = {k: x.to(ctx.device) for k, x in batch.items()}
                net_start = None if model is None else network_start(pred.rotmat, pred.betas,
                                                                 on_device["camera_augmentation"], on_device["flip"])
                with torch_threads(config.optim.fitting_threads if ctx.device.type == "cpu" else None):
                    cal = fit_calibrated_batch(fitter, on_device, net_start, config.data.crop_size,
                                               config.fits.calibrated_agreement_deg)
                fit, scores = cal.fit, cal.scores
            else:
                with torch_threads(config.optim.fitting_threads if ctx.device.type == "cpu" else None):
                    fit = fitter.fit_per_view(kp, init)
                    scores = score_fit(fitter, kp, fit)  # SPIN's fitting loss, 224 px crop (no augmentation)
            flat = store.flat_index(batch["dataset_index"].numpy(), batch["bundle_index"].numpy())
            results.append((flat, fit.body_pose.cpu().numpy(), fit.betas.cpu().numpy(), fit.global_orient.cpu().numpy(),
                            scores.loss.cpu().numpy(), scores.error_px.cpu().numpy()))
            update(len(results))
        gathered = ctx.all_gather(results)
        # Every process decides alike (all hold every result): none waits at a barrier alone.
        if not any(np.isfinite(r[4]).any() for rank_results in gathered for r in rank_results):
            hint = (" (fits.fitting.mode=calibrated: do the files' cameras see the keypoints?)" if calibrated
                    else "")
            raise FitError(f"no bundle of {', '.join(map(str, config.data.files))} could be fitted: every fit "
                           f"ended without a finite loss{hint}; {out} was not written")
        if ctx.is_main:
            for rank_results in gathered:
                for r in rank_results:
                    store.update(*r[:5], error_px=r[5], step=0)
            store.save(out)
        ctx.barrier()
        stats = store.statistics(config.fits.reject_loss, config.fits.rejecting_beta_bound)
        return FitDatasetSummary(path=Path(out), num_bundles=len(store), store=stats,
                                 wall_seconds=time.perf_counter() - start, world_size=ctx.world_size,
                                 is_main=ctx.is_main)
    finally:
        ctx.close()
