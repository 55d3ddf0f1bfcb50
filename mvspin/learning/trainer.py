"""The collaborative training loop of MV-SPIN (sections 3.2-3.5) after SPIN.

MV-SPIN: Li, Oskarsson, Heyden, *3D Human Pose and Shape Estimation Through Collaborative
Learning and Multi-view Model-fitting*, WACV 2021. SPIN: Kolotouros, Pavlakos, Black, Daniilidis,
*Learning to Reconstruct 3D Human Pose and Shape via Model-fitting in the Loop*, ICCV 2019.

One step, for a batch of B bundles of V views (``(B, V, ...)`` throughout):

1. the regressor runs on the ``B * V`` crops (flattened only at the network call);
2. MV-SMPLify fits one shared body per bundle to the 2D keypoints of its views, started from the
   network's per-view estimates (detached): ``per_view`` (crop cameras, the paper) in SPIN's
   224 px crop whatever ``data.crop_size`` is (:mod:`mvspin.learning.fit_frame`: SMPLify's
   weights are tuned for 224 px residuals) or, with ``fits.fitting.mode: calibrated`` and
   cameras in every file, one world-frame body on the stored cameras
   (:mod:`mvspin.learning.calibrated_targets`, scored in the same 224 px crop units);
3. the new fit is compared with the bundle's stored fit (:mod:`mvspin.learning.fits_store`,
   un-augmented frame, mapped through the bundle's augmentation when read) and the better one is
   kept, in the store and as the step's target, ranked by SPIN's fitting loss; a target whose
   loss is not below ``fits.reject_loss`` (SPIN: 100) supervises no pose / betas / mesh term, one
   with any ``|beta| > 3`` has its betas target zeroed (SPIN; ``fits.extreme_betas``)
   (:mod:`mvspin.learning.fit_acceptance`). Ground-truth SMPL, where a bundle has it, replaces
   the fit (``fits.use_ground_truth_smpl``);
4. losses (:mod:`mvspin.learning.training_losses`): 2D keypoints of all views, 3D joints where
   known, pose/betas/mesh against the target, SPIN's camera-scale penalty; Adam step.

Outputs under ``out_dir``: ``checkpoints/step_NNNNNNN.pt`` (loadable by
:func:`mvspin.regressor.checkpoint.load_regressor_checkpoint`, SPIN's layout: ``model``,
``optimizer``, ``epoch``, ``batch_idx``, ``batch_size``, ``dataset_perm``,
``total_step_count``, plus ``train_state`` with every RNG and the sampler position), beside it
``step_NNNNNNN_fits.h5`` (the fits store) and ``step_NNNNNNN.yaml`` (the resolved config),
written together or not at all; ``metrics.jsonl`` (one JSON object per logged step with every
scalar); ``tensorboard/`` (the same scalars and image grids); ``config.yaml``.

Exact resume: the data order depends only on (seed, epoch) and the sampler position, the
augmentation on (seed, epoch, item), fitting is deterministic, and the checkpoint restores the
model, optimiser, store and the torch / numpy / python RNGs of every process, so on CPU
``N steps + resume + N steps`` equals ``2N steps`` bit for bit.

Distributed: under ``torchrun`` each process takes ``batch_size / world_size`` bundles of every
global batch (a :class:`~torch.utils.data.distributed.DistributedSampler` over the epoch's
plan), DistributedDataParallel averages the gradients, every process applies every process's
new fits to its copy of the store (gathered with ``torch.distributed``, applied in rank order,
lower error wins), and only rank 0 writes files.
"""
from __future__ import annotations

import json
import logging
import math
import os
import random
import re
import shutil
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterator, Optional, cast

import numpy as np
import torch
from torch import Tensor, nn
from torch.utils.data import DataLoader
from torch.utils.data.distributed import DistributedSampler

from mvspin.atomic import OutputGroup, check_output_location, write_bytes_atomic
from mvspin.body import BodyModel
from mvspin.config import ConfigError, config_to_dict, save_config
from mvspin.errors import TrainingError, import_optional
from mvspin.fitting import MVSMPLify, PerViewEstimate
from mvspin.learning.calibrated_targets import fit_calibrated_batch, network_start
from mvspin.learning.distributed import setup_distributed
from mvspin.learning.fit_acceptance import accept_fits, score_fit
from mvspin.learning.fit_frame import fitting_config, to_fitting_frame
from mvspin.learning.fits_store import FitsStore, from_augmented, source_fingerprint, to_augmented
from mvspin.learning.threads import torch_threads
from mvspin.learning.train_config import TrainConfig, learning_rate, validate_train_config
from mvspin.learning.training_dataset import TrainingDataset, seed_worker
from mvspin.learning.training_losses import LossInputs, training_losses
from mvspin.progress import Progress, no_progress, stage_progress
from mvspin.regressor.backbone import load_imagenet_weights
from mvspin.regressor.checkpoint import load_regressor_checkpoint, save_regressor_checkpoint
from mvspin.regressor.hmr import HMRRegressor, RegressorOutput

__all__ = ["TrainSummary", "TrainingError", "train", "latest_checkpoint", "build_body_model", "build_regressor",
           "checkpoint_paths", "previous_run", "remove_previous_run"]

log = logging.getLogger("mvspin")
_CKPT = re.compile(r"^step_(\d+)\.pt$")
STEP_TIMES = ("data", "network", "fitting", "backward", "store_io")


@dataclass
class TrainSummary:
    """What :func:`train` did.

    Attributes:
        final_step: global steps done (including those before a resume).
        epoch: epoch the next step would be in.
        checkpoint: the last checkpoint written.
        fits_store: its fits store (None without fitting).
        wall_seconds: time of this call.
        final_losses: the last step's unweighted terms and ``total`` (averaged over processes).
        store: statistics of the final store (fitted share, mean error, accepted share).
        steps_run: steps done by this call.
        is_main: this process is rank 0 (the one that wrote the files and reports).
        checkpoint_seconds: time to write the last checkpoint with its fits store (rank 0).
        cpu_seconds: CPU seconds (user + system, every thread) this process spent training the
            run so far, earlier invocations included (each checkpoint carries the sum, so a
            resumed run counts the steps its checkpoint holds, not those redone after it).
    """

    final_step: int
    epoch: int
    checkpoint: Path
    fits_store: Optional[Path]
    wall_seconds: float
    final_losses: dict[str, float] = field(default_factory=dict)
    store: dict[str, float] = field(default_factory=dict)
    steps_run: int = 0
    is_main: bool = True
    checkpoint_seconds: float = 0.0
    cpu_seconds: float = 0.0


def checkpoint_paths(out_dir: Path, step: int) -> dict[str, Path]:
    """The files of the checkpoint at ``step``: ``checkpoint`` (.pt), ``fits`` (.h5), ``config`` (.yaml)."""
    base = Path(out_dir) / "checkpoints" / f"step_{step:07d}"
    return {"checkpoint": base.with_suffix(".pt"), "fits": Path(f"{base}_fits.h5"), "config": base.with_suffix(".yaml")}


def latest_checkpoint(out_dir: Path) -> Optional[tuple[int, Path]]:
    """``(step, path)`` of the newest complete checkpoint under ``out_dir/checkpoints``, or None."""
    folder = Path(out_dir) / "checkpoints"
    if not folder.is_dir():
        return None
    found = sorted((int(m.group(1)), p) for p in folder.iterdir() if (m := _CKPT.match(p.name)))
    return found[-1] if found else None


def previous_run(out_dir: Path) -> list[str]:
    """What ``out_dir`` holds of an earlier training run: ``checkpoints/`` (any checkpoint file),
    ``metrics.jsonl``; empty when the folder holds none (or does not exist)."""
    out = Path(out_dir)
    found = []
    folder = out / "checkpoints"
    if folder.is_dir() and any(p.name.startswith("step_") for p in folder.iterdir()):
        found.append("checkpoints/")
    if (out / "metrics.jsonl").exists():
        found.append("metrics.jsonl")
    return found


def remove_previous_run(out_dir: Path) -> None:
    """Delete an earlier run's files from ``out_dir`` (checkpoints with their fits stores and
    configs, ``metrics.jsonl``, ``tensorboard/``, ``config.yaml``); other files stay.

    The checkpoints go first, in one rename of their folder: from that moment no resume can find
    a checkpoint of the old run, so an interruption part way never leaves a folder whose
    checkpoints and metrics belong to different runs that a resume would continue.
    """
    out = Path(out_dir)
    folder = out / "checkpoints"
    if folder.exists():
        trash = out / f".checkpoints.removing.{os.getpid()}"
        os.replace(folder, trash)
    for name in ("metrics.jsonl", "config.yaml"):
        (out / name).unlink(missing_ok=True)
    shutil.rmtree(out / "tensorboard", ignore_errors=True)
    for trash in out.glob(".checkpoints.removing.*"):  # this one, and any an interrupted removal left
        shutil.rmtree(trash, ignore_errors=True)


def build_body_model(config: TrainConfig, device: torch.device) -> BodyModel:
    """The body model of ``config.model`` (SMPL files or the free model) on ``device``."""
    m = config.model
    if m.smpl_dir is not None:
        return BodyModel.from_smpl_dir(m.smpl_dir, device=device)
    return BodyModel.free(m.body_resolution, device=device)


def build_regressor(config: TrainConfig, body: BodyModel) -> HMRRegressor:
    """A fresh regressor (seeded by ``optim.seed``), with ImageNet trunk weights or a starting
    checkpoint when configured; the body model's mean parameters are its initial estimate."""
    m = config.model
    torch.manual_seed(config.optim.seed)
    model = HMRRegressor(m.depth, mean_params=body.mean_params)
    if m.imagenet_weights is not None:
        load_imagenet_weights(model, m.imagenet_weights)
    if m.init_checkpoint is not None:
        start, _ = load_regressor_checkpoint(m.init_checkpoint, depth=m.depth)
        model.load_state_dict(start.state_dict(), strict=True)
    model.drop1.p = model.drop2.p = float(m.dropout)
    return model


def _set_train_mode(model: nn.Module, freeze_batchnorm: bool) -> None:
    model.train()
    if freeze_batchnorm:
        for module in model.modules():
            if isinstance(module, nn.modules.batchnorm._BatchNorm):
                module.eval()


def _rng_state() -> dict[str, Any]:
    """This process's torch / numpy / python RNG states as weights_only-loadable values."""
    np_state: Any = np.random.get_state()  # the legacy tuple
    py_state = random.getstate()
    state = {"torch": torch.get_rng_state(),
             "numpy": [str(np_state[0]), torch.from_numpy(np_state[1].astype(np.int64)), int(np_state[2]),
                       int(np_state[3]), float(np_state[4])],
             "python": [int(py_state[0]), list(py_state[1]), py_state[2]]}
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def _set_rng_state(state: dict[str, Any]) -> None:
    torch.set_rng_state(state["torch"])
    name, keys, pos, has_gauss, cached = state["numpy"]
    np.random.set_state((name, keys.numpy().astype(np.uint32), pos, has_gauss, cached))
    version, internal, gauss = state["python"]
    random.setstate((version, tuple(internal), gauss))
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


class _Trainer:
    """State of one training run (one process of it)."""

    times: dict[str, float]  # seconds per STEP_TIMES part since the last log line (set by train)
    _last_log_step: int

    def __init__(self, config: TrainConfig, out_dir: Path, resume: bool, progress: Progress,
                 overwrite: bool = False) -> None:
        self.cpu_start = time.process_time()  # set-up (data, model, compile) counts as training
        validate_train_config(config)
        self.config = config
        self.out_dir = Path(out_dir)
        self.progress = progress
        o = config.optim
        if resume and overwrite:
            raise ConfigError("resume and overwrite exclude each other: continue the run in the folder, or replace it",
                              field="overwrite")
        # Checked by every process before any of them writes (rank 0 writes only after all joined).
        earlier = previous_run(self.out_dir)
        if earlier and not resume and not overwrite:
            raise ConfigError(f"{self.out_dir} already holds a training run ({', '.join(earlier)}): set resume to "
                              "continue it, or overwrite to replace it", field="resume", related=("overwrite",))
        check_output_location(self.out_dir, kind="folder", what="out")
        self.ctx = setup_distributed(o.device)
        ctx = self.ctx
        if earlier and overwrite and ctx.is_main:
            remove_previous_run(self.out_dir)
        if o.batch_size % ctx.world_size:
            raise TrainingError(f"optim.batch_size={o.batch_size} does not split over {ctx.world_size} processes")
        self.local_batch = o.batch_size // ctx.world_size
        self.device = ctx.device

        # Everything that can be refused is checked before the first step.
        self.dataset = TrainingDataset.from_config(config.data)
        self.sources = [source_fingerprint(s) for s in self.dataset.sources]
        self.steps_per_epoch = len(self.dataset) // o.batch_size
        if self.steps_per_epoch < 1:
            raise TrainingError(f"an epoch of {len(self.dataset)} bundles holds no batch of {o.batch_size}")
        self.total_steps = self.steps_per_epoch * o.epochs
        if o.max_steps is not None:
            self.total_steps = min(self.total_steps, o.max_steps)
        resume_from = None
        if resume:
            resume_from = latest_checkpoint(self.out_dir)
            if resume_from is None:
                raise ConfigError(f"resume: no checkpoint under {self.out_dir / 'checkpoints'}", field="resume")
        self.body = build_body_model(config, self.device)
        self.model = build_regressor(config, self.body).to(self.device)
        self.optimizer = torch.optim.Adam(self.model.parameters(), lr=o.lr, weight_decay=o.weight_decay)
        self.store = (FitsStore.load(config.fits.store, self.sources) if config.fits.store
                      else FitsStore.for_bundle_files(self.dataset.sources, self.body.num_betas))
        self.step, self.epoch, self.batch_idx = 0, 0, 0
        self.cpu_before = 0.0  # CPU seconds of earlier invocations (from the resumed checkpoint)
        if resume_from is not None:
            self._restore(*resume_from)
        else:
            torch.manual_seed(o.seed * 1000 + 1 + ctx.rank)  # dropout; distinct per process
            np.random.seed(o.seed)
            random.seed(o.seed)
        self.net: nn.Module = self.model
        if ctx.distributed:
            self.net = nn.parallel.DistributedDataParallel(
                self.model, device_ids=[self.device.index] if self.device.type == "cuda" else None)
        # Fits run in SPIN's 224 px crop whatever data.crop_size is (mvspin.learning.fit_frame).
        fit_cfg = fitting_config(config.fits.fitting)
        self.fitter = MVSMPLify(self.body, fit_cfg, self.dataset.keypoint_set) if config.fits.enabled else None
        self.calibrated = fit_cfg.mode == "calibrated"
        self.focal = fit_cfg.focal_length
        self.writer = None
        self.checkpoint_seconds = 0.0
        self.metrics_path = self.out_dir / "metrics.jsonl"

    # --- checkpoints ------------------------------------------------------------------------
    def _restore(self, step: int, path: Path) -> None:
        model, meta = load_regressor_checkpoint(path, depth=self.config.model.depth, map_location=self.device)
        self.model.load_state_dict(model.state_dict(), strict=True)
        self.optimizer.load_state_dict(meta["optimizer"])
        state = meta["train_state"]
        self.step, self.epoch, self.batch_idx = int(meta["total_step_count"]), int(meta["epoch"]), int(meta["batch_idx"])
        self.cpu_before = float(state.get("cpu_seconds", 0.0))  # absent in checkpoints of older versions
        if int(meta["batch_size"]) != self.config.optim.batch_size:
            raise TrainingError(f"{path}: written with batch_size={meta['batch_size']}, the config has "
                                f"{self.config.optim.batch_size}; resume with the same batch size")
        fits = checkpoint_paths(self.out_dir, step)["fits"]
        self.store = FitsStore.load(fits, self.sources)
        rngs = state["rng"]
        if len(rngs) == self.ctx.world_size:
            _set_rng_state(rngs[self.ctx.rank])
        else:
            log.warning("%s was written by %d processes, this run has %d: RNG streams restart from the seed",
                        path, len(rngs), self.ctx.world_size)
            torch.manual_seed(self.config.optim.seed * 1000 + 1 + self.step + self.ctx.rank)
        if self.ctx.is_main:
            log.info("resuming from %s (step %d, epoch %d, batch %d)", path, self.step, self.epoch, self.batch_idx)

    def save_checkpoint(self) -> dict[str, Path]:
        rngs = self.ctx.all_gather(_rng_state())
        paths = checkpoint_paths(self.out_dir, self.step)
        if self.ctx.is_main:
            t0 = time.perf_counter()
            paths["checkpoint"].parent.mkdir(parents=True, exist_ok=True)
            plan_idx = torch.from_numpy(self.dataset.plan()[1].copy())
            with OutputGroup(fsync=True) as group:
                save_config(self.config, group.path(paths["config"]))
                self.store.write_to(group.path(paths["fits"]))
                save_regressor_checkpoint(
                    group.path(paths["checkpoint"]), self.model, optimizer=self.optimizer.state_dict(),
                    epoch=self.epoch, batch_idx=self.batch_idx, batch_size=self.config.optim.batch_size,
                    dataset_perm=plan_idx, total_step_count=self.step,
                    train_state={"rng": rngs, "world_size": self.ctx.world_size,
                                 "config": json.dumps(config_to_dict(self.config)),
                                 "cpu_seconds": self.cpu_seconds()})
            self._prune_fits()
            self.checkpoint_seconds = time.perf_counter() - t0
            self.times["store_io"] += self.checkpoint_seconds
        self.ctx.barrier()
        return paths

    def cpu_seconds(self) -> float:
        """CPU seconds of this process's training so far, earlier invocations included."""
        return self.cpu_before + time.process_time() - self.cpu_start

    def _prune_fits(self) -> None:
        keep = self.config.optim.keep_fits
        folder = self.out_dir / "checkpoints"
        fits = sorted(folder.glob("step_*_fits.h5"))
        for old in fits[:max(len(fits) - max(keep, 1), 0)]:
            old.unlink(missing_ok=True)

    # --- data -------------------------------------------------------------------------------
    def _epoch_batches(self) -> Iterator[dict[str, Tensor]]:
        o = self.config.optim
        self.dataset.set_epoch(self.epoch)
        sampler: DistributedSampler = DistributedSampler(self.dataset, num_replicas=self.ctx.world_size, rank=self.ctx.rank,
                                     shuffle=False, drop_last=True)
        indices = list(sampler)[:self.steps_per_epoch * self.local_batch][self.batch_idx * self.local_batch:]
        generator = torch.Generator().manual_seed(o.seed * 1_000_003 + self.epoch * 1009 + self.ctx.rank)
        loader = DataLoader(self.dataset, batch_size=self.local_batch, sampler=indices, num_workers=o.num_workers,
                            worker_init_fn=seed_worker if o.num_workers else None, generator=generator,
                            drop_last=False, pin_memory=self.device.type == "cuda")
        yield from loader

    def _store_statistics(self) -> dict[str, float]:
        return self.store.statistics(self.config.fits.reject_loss, self.config.fits.rejecting_beta_bound)

    # --- one step ---------------------------------------------------------------------------
    def _targets(self, batch: dict[str, Tensor], pred: RegressorOutput) -> tuple[Tensor, Tensor, Tensor, Tensor, dict]:
        """Per-view target rotmat ``(B, V, 24, 3, 3)``, betas ``(B, 10)``, valid ``(B,)``, error
        ``(B,)`` and statistics; updates the store (all processes' new fits)."""
        b, v = pred.betas.shape[:2]
        dev, dt = self.device, pred.betas.dtype
        M = batch["camera_augmentation"]
        flip = batch["flip"]
        t_io = time.perf_counter()
        flat = self.store.flat_index(batch["dataset_index"].cpu().numpy(), batch["bundle_index"].cpu().numpy())
        stored = self.store.read(flat, dev)
        io_seconds = time.perf_counter() - t_io
        orient, pose = to_augmented(stored["global_orient"].to(dt), stored["body_pose"].to(dt), M, flip)
        betas, error = stored["betas"].to(dt), stored["error"].to(dt)
        stats: dict[str, float] = {}
        if self.fitter is not None:
            with torch_threads(self.config.optim.fitting_threads if self.device.type == "cpu" else None):
                if self.calibrated:  # world-frame fit on the stored cameras, in the store's frame
                    cal = fit_calibrated_batch(self.fitter, batch, network_start(pred.rotmat, pred.betas, M, flip),
                                               self.config.data.crop_size, self.config.fits.calibrated_agreement_deg)
                    fit, new_orient_un, new_pose_un, scores = cal.fit, cal.global_orient, cal.body_pose, cal.scores
                    fit_orient, fit_pose = to_augmented(new_orient_un, new_pose_un, M, flip)
                else:
                    keypoints = to_fitting_frame(batch["keypoints_2d"], self.config.data.crop_size)
                    fit = self.fitter.fit_per_view(keypoints, PerViewEstimate(
                        rotmat=pred.rotmat.detach(), betas=pred.betas.detach(), cam=pred.cam.detach()))
                    # SPIN's fitting loss, in the un-augmented frame of the 224 px fitting crop.
                    scores = score_fit(self.fitter, keypoints, fit, camera_augmentation=M,
                                       scale_factor=batch["scale_factor"])
                    fit_orient, fit_pose = fit.global_orient, fit.body_pose
                    new_orient_un, new_pose_un = from_augmented(fit.global_orient, fit.body_pose, M, flip)
            new_err, new_px = scores.loss.to(dt), scores.error_px.to(dt)
            better = new_err < error
            updates = self.ctx.all_gather((flat, new_pose_un.cpu().numpy(), fit.betas.cpu().numpy(),
                                           new_orient_un.cpu().numpy(), new_err.cpu().numpy(), new_px.cpu().numpy()))
            t_io = time.perf_counter()
            replaced = sum(int(self.store.update(*u[:5], error_px=u[5], step=self.step + 1).sum()) for u in updates)
            io_seconds += time.perf_counter() - t_io
            stats["fits/replaced_share"] = replaced / (b * self.ctx.world_size)
            finite = torch.isfinite(new_err)
            stats["fits/new_error"] = float(new_err[finite].mean()) if finite.any() else float("nan")
            stats["fits/new_error_px"] = float(new_px[finite].mean()) if finite.any() else float("nan")
            sel = better.view(b, 1, 1, 1)
            orient = torch.where(sel, fit_orient.to(dt), orient)
            pose = torch.where(sel, fit_pose.to(dt), pose)
            betas = torch.where(better.view(b, 1), fit.betas, betas)
            error = torch.where(better, new_err, error)
        f = self.config.fits
        valid, betas = accept_fits(error, betas, f.reject_loss, f.max_abs_beta, f.extreme_betas)
        if self.config.fits.use_ground_truth_smpl:
            gt = batch["has_smpl"]
            orient = torch.where(gt.view(b, 1, 1, 1), batch["smpl_global_orient"], orient)
            pose = torch.where(gt.view(b, 1, 1, 1), batch["smpl_body_pose"], pose)
            betas = torch.where(gt.view(b, 1), batch["smpl_betas"], betas)
            valid = valid | gt
        rotmat = torch.cat([orient.unsqueeze(2), pose.unsqueeze(1).expand(b, v, 23, 3, 3)], dim=2)
        stats["fits/accepted_share"] = float(valid.float().mean())
        self.times["store_io"] += io_seconds
        self.times["fitting"] -= io_seconds  # the caller times the whole call as fitting
        return rotmat, betas, valid, error, stats

    def train_step(self, batch: dict[str, Tensor]) -> dict[str, float]:
        c = self.config
        t0 = time.perf_counter()
        batch = {k: v.to(self.device, non_blocking=True) for k, v in batch.items()}
        images = batch["images"]
        b, v = images.shape[:2]
        _set_train_mode(self.model, c.model.freeze_batchnorm)
        out = self.net(images.reshape(b * v, *images.shape[2:]))
        pred = out.reshape_leading(b, v)
        t1 = time.perf_counter()
        # The fit starts from detached predictions: no gradient path to the network.
        rotmat_t, betas_t, valid, error, stats = self._targets(batch, pred)
        t2 = time.perf_counter()

        n = b * v
        rotmat = pred.rotmat.reshape(n, 24, 3, 3)
        pbetas = pred.betas.reshape(n, -1)
        zeros = rotmat.new_zeros(n, 3)
        set2, set3 = self.dataset.keypoint_set, self.dataset.joints_3d_set
        kp2 = self.body.keypoints(set2, rotmat[:, 1:], pbetas, rotmat[:, 0], zeros)
        kp3 = kp2 if set3 == set2 else self.body.keypoints(set3, rotmat[:, 1:], pbetas, rotmat[:, 0], zeros)
        target_rotmat = rotmat_t.reshape(n, 24, 3, 3)
        target_betas = betas_t.unsqueeze(1).expand(b, v, -1).reshape(n, -1)
        valid_n = valid.unsqueeze(1).expand(b, v).reshape(n)
        pred_vertices = target_vertices = None
        if c.loss.mesh > 0:  # against accepted fits or ground-truth SMPL
            pred_vertices = self.body(rotmat[:, 1:], pbetas, rotmat[:, 0], zeros).vertices
            with torch.no_grad():
                target_vertices = self.body(target_rotmat[:, 1:], target_betas, target_rotmat[:, 0], zeros).vertices
        inputs = LossInputs(
            pred_keypoints_2d_3d=kp2, pred_joints_3d=kp3, pred_rotmat=rotmat, pred_betas=pbetas,
            pred_cam=pred.cam.reshape(n, 3), pred_vertices=pred_vertices,
            keypoints_2d=batch["keypoints_2d"].reshape(n, *batch["keypoints_2d"].shape[2:]),
            joints_3d=batch["joints_3d"].reshape(n, *batch["joints_3d"].shape[2:]),
            target_rotmat=target_rotmat, target_betas=target_betas, target_vertices=target_vertices,
            target_valid=valid_n.to(rotmat.dtype))
        total, terms = training_losses(inputs, c.loss, c.data.crop_size, set3, self.focal)
        if not bool(torch.isfinite(total)):
            raise TrainingError(f"loss became {float(total)} at step {self.step + 1}"
                                f"{self._nonfinite_inputs(batch)} "
                                f"(terms: {', '.join(f'{k}={float(x):.4g}' for k, x in terms.items())})")
        self.optimizer.zero_grad(set_to_none=True)
        total.backward()
        if c.optim.grad_clip is not None:  # returns the norm before clipping (the one logged)
            grad_norm = torch.nn.utils.clip_grad_norm_(self.model.parameters(), c.optim.grad_clip)
        else:
            grad_norm = torch.sqrt(cast(Tensor, sum((p.grad.detach() ** 2).sum() for p in self.model.parameters()
                                                    if p.grad is not None)))
        for group in self.optimizer.param_groups:
            group["lr"] = learning_rate(c.optim, self.step, self.total_steps)
        self.optimizer.step()
        t3 = time.perf_counter()
        self.times["network"] += t1 - t0
        self.times["fitting"] += t2 - t1
        self.times["backward"] += t3 - t2
        self._last_pred, self._last_target = (pred, rotmat_t, betas_t), batch
        scalars = {f"loss/{k}": float(x) for k, x in terms.items()}
        scalars["loss/total"] = float(total.detach())
        scalars["grad_norm"] = float(grad_norm)
        scalars.update(stats)
        return scalars

    def _nonfinite_inputs(self, batch: dict[str, Tensor]) -> str:
        """``": <file> bundle <i>: <field> is not finite; ..."`` for the batch's bundles whose data
        hold NaN or infinite values (the likely cause of a non-finite loss), else ``""``."""
        found = []
        for key, value in batch.items():
            if not torch.is_floating_point(value) or value.dim() < 1:
                continue
            bad = ~torch.isfinite(value.reshape(value.shape[0], -1)).all(dim=1)
            for b in torch.nonzero(bad).flatten().tolist():
                source = self.dataset.sources[int(batch["dataset_index"][b])].path
                found.append(f"{source} bundle {int(batch['bundle_index'][b])}: {key} is not finite")
        return (": " + "; ".join(found[:3]) + ("; ..." if len(found) > 3 else "")) if found else ""

    # --- logging ----------------------------------------------------------------------------
    def _log(self, scalars: dict[str, float]) -> dict[str, float]:
        keys = sorted(scalars)
        values = self.ctx.mean(torch.tensor([scalars[k] for k in keys], dtype=torch.float64))
        merged = dict(zip(keys, values.tolist()))
        if not self.ctx.is_main:
            return merged
        merged.update({f"store/{k}": v for k, v in self._store_statistics().items()})
        merged["lr"] = self.optimizer.param_groups[0]["lr"]
        steps = max(self.step - self._last_log_step, 1)
        for k in STEP_TIMES:
            merged[f"time/{k}"] = self.times[k] / steps
        self.times = dict.fromkeys(STEP_TIMES, 0.0)
        self._last_log_step = self.step
        record = {"step": self.step, "epoch": self.epoch, **merged}
        with open(self.metrics_path, "a", encoding="utf-8") as f:
            f.write(json.dumps(record) + "\n")
        if self.writer is not None:
            for k, x in merged.items():
                if math.isfinite(x):
                    self.writer.add_scalar(k, x, self.step)
        return merged

    def _log_images(self) -> None:
        if self.writer is None or self._last_pred is None:
            return
        from mvspin.learning.training_images import training_image_grid

        (pred, rotmat_t, betas_t), batch = self._last_pred, self._last_target
        grid = training_image_grid(self.body, batch, pred, rotmat_t, betas_t, self.config.data.crop_size, self.focal)
        self.writer.add_image("bundle_0", grid, self.step, dataformats="HWC")

    # --- the loop ---------------------------------------------------------------------------
    def run(self) -> TrainSummary:
        start = time.perf_counter()
        o = self.config.optim
        ctx = self.ctx
        self.times = dict.fromkeys(STEP_TIMES, 0.0)
        self._last_log_step = self.step
        self._last_pred = None
        if ctx.is_main:
            self.out_dir.mkdir(parents=True, exist_ok=True)
            save_config(self.config, self.out_dir / "config.yaml")
            tensorboard = import_optional("torch.utils.tensorboard", extra="train", purpose="training logs",
                                          package="tensorboard")
            self.writer = tensorboard.SummaryWriter(str(self.out_dir / "tensorboard"), purge_step=self.step or None)
            if self.step == 0 and self.metrics_path.exists():
                self.metrics_path.unlink()
            elif self.step:
                _truncate_metrics(self.metrics_path, self.step)
            log.info("training %s: ResNet-%d, %s, %d bundle files, %d bundles/epoch, %d steps/epoch, batch %d x %d views, "
                     "%d process(es), device %s", self.out_dir, self.config.model.depth, self.body.name,
                     len(self.dataset.sources), len(self.dataset), self.steps_per_epoch, o.batch_size,
                     self.dataset.num_views, ctx.world_size, self.device)
        # Only rank 0 reports: one bar for the whole job, whatever the number of processes.
        update = stage_progress(self.progress if ctx.is_main else no_progress, "train", self.total_steps)
        update(self.step)
        steps_run = 0
        last: dict[str, float] = {}
        paths = None
        try:
            while self.step < self.total_steps:
                t_data = time.perf_counter()
                for batch in self._epoch_batches():
                    self.times["data"] += time.perf_counter() - t_data
                    scalars = self.train_step(batch)
                    self.step += 1
                    self.batch_idx += 1
                    steps_run += 1
                    if self.batch_idx >= self.steps_per_epoch:
                        self.epoch += 1
                        self.batch_idx = 0
                    if self.step % o.log_every == 0 or self.step == self.total_steps:
                        last = self._log(scalars)
                    if o.image_every and self.step % o.image_every == 0 and ctx.is_main:
                        self._log_images()
                    update(self.step)
                    if self.step % o.checkpoint_every == 0 or self.step == self.total_steps:
                        paths = self.save_checkpoint()
                    if self.step >= self.total_steps:
                        break
                    t_data = time.perf_counter()
            if paths is None:
                paths = self.save_checkpoint()
        finally:
            if self.writer is not None:
                self.writer.close()
        summary = TrainSummary(
            final_step=self.step, epoch=self.epoch, checkpoint=paths["checkpoint"], fits_store=paths["fits"],
            wall_seconds=time.perf_counter() - start,
            final_losses={k.removeprefix("loss/"): v for k, v in last.items() if k.startswith("loss/")},
            store=self._store_statistics(), steps_run=steps_run, is_main=self.ctx.is_main,
            checkpoint_seconds=self.checkpoint_seconds, cpu_seconds=self.cpu_seconds())
        return summary


def _truncate_metrics(path: Path, step: int) -> None:
    """Drop metrics lines after ``step`` (a run resumed from an earlier checkpoint repeats them)."""
    if not path.exists():
        return
    kept = [line for line in path.read_text(encoding="utf-8").splitlines() if line.strip()
            and json.loads(line).get("step", 0) <= step]
    write_bytes_atomic(path, ("\n".join(kept) + "\n" if kept else "").encode())


def train(config: TrainConfig, out_dir: Path, resume: bool = False, progress: Progress = no_progress,
          overwrite: bool = False) -> TrainSummary:
    """Train the regressor with the MV-SPIN loop; see the module docstring for what is written.

    Args:
        config: the job (:func:`mvspin.learning.train_config.load_train_config`).
        out_dir: output folder (created).
        resume: continue from the newest checkpoint in ``out_dir`` (bit-exact on CPU).
        progress: told ``("train", step, total_steps)`` after each step (rank 0 only).
        overwrite: ``out_dir`` may hold an earlier run: delete it first
            (:func:`remove_previous_run`). Without it (and without ``resume``) such a folder is
            refused before any work.

    Returns:
        :class:`TrainSummary`.

    Raises:
        ConfigError / CheckpointError / FitsStoreError / TrainingError: before the first step for
        a bad key or path, a checkpoint of another architecture, a fits store of another dataset,
        nothing to resume; ConfigError for an earlier run in ``out_dir`` without ``resume`` or
        ``overwrite``; TrainingError for a NaN loss.
        OutputLocationError: ``out_dir`` cannot be written (before any work).

    Example:
        >>> cfg = load_train_config("configs/synthetic_cpu.yaml", ["data.files=[train.h5]"])  # doctest: +SKIP
        >>> summary = train(cfg, Path("runs/a"))  # doctest: +SKIP
    """
    trainer = _Trainer(config, Path(out_dir), resume, progress, overwrite)
    try:
        return trainer.run()
    finally:
        trainer.ctx.close()
