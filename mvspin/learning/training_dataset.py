"""The training dataset: multi-view bundles from one or more bundle files, cropped and augmented.

:class:`TrainingDataset` reads bundle files (:class:`~mvspin.data.bundle_format.BundleFile`),
samples them by ratio (MV-SPIN: 90% Human3.6M, 10% MPI-INF-3DHP) from a seeded generator, crops
every view with OpenCV and augments it (:mod:`mvspin.learning.augment`: a flip shared by the bundle's
views, per-view rotation, scale and channel gains), and returns one dict of tensors per bundle
with an explicit view axis ``(V, ...)`` (``(B, V, ...)`` once batched by a DataLoader).

Returned fields (float32 unless noted; ``S`` = crop size, 224):

- ``images (V, 3, S, S)``: RGB crops, ImageNet-normalised.
- ``keypoints_2d (V, K, 3)``: (x, y, confidence) in **augmented crop pixels** (pixel centres at
  integers, crop centre ``S / 2``); missing keypoints are (0, 0, 0); keypoints the augmentation
  moves outside the crop keep their confidence (as in SPIN). SPIN's normalised
  ``[-1, 1]`` coordinates are ``2 x / S - 1`` (:func:`mvspin.learning.augment.normalize_keypoints`).
- ``joints_3d (V, K3, 4)``: (x, y, z, confidence), metres, in each view's **augmented camera
  frame** (``M_v @ X_cam``; see ``camera_augmentation``); confidence 0 where unknown.
  ``joints_3d_root_relative`` (bool) tells that the source only had pelvis-relative joints.
- ``crop_K (V, 3, 3)``: the augmented crop camera: projecting ``joints_3d`` with it gives the
  augmented 2D keypoints (exact for distortion-free cameras). Zero when ``has_camera`` is False.
- ``crop_transform (V, 3, 3)``: full-image pixels -> augmented crop pixels (affine).
- ``camera_augmentation (V, 3, 3)``: ``M_v``, the orthogonal map of camera-frame points
  (in-plane rotation, mirrored x when flipped; det -1 then).
- ``camera_R (V, 3, 3)``, ``camera_t (V, 3)``: the stored world-to-camera extrinsics (not
  augmented), ``camera_K (V, 3, 3)`` the stored image intrinsics (pixels) and ``camera_dist (V, 5)``
  the stored OpenCV distortion (k1, k2, p1, p2, k3), ``has_camera`` (bool); all zero without
  cameras. With them and ``crop_transform`` a fit in the rig's world frame can be projected into
  the augmented crops exactly, distortion included (:mod:`mvspin.learning.calibrated_targets`).
- ``smpl_global_orient (V, 3, 3)``: root orientation in each augmented camera frame;
  ``smpl_body_pose (23, 3, 3)`` shared by the views (mirrored when flipped); ``smpl_betas (10,)``;
  ``has_smpl`` (bool; needs SMPL ground truth and cameras). Translation is not returned (SPIN's
  losses use the regressor's own crop camera).
- ``center (V, 2)``, ``scale (V,)``, ``image_size (V, 2)`` int64: the stored crop boxes.
- ``flip`` (bool), ``rotation_deg (V,)``, ``scale_factor (V,)``: the augmentation drawn.
- ``dataset_index``, ``bundle_index`` (int64): which file (position in ``files``) and which bundle
  in it: the key of the fits store.

Keypoints of every file are mapped onto one 2D set and one 3D set by anatomical point
(:func:`mvspin.body.keypoint_sets.keypoint_index_map`); keypoints a file lacks get confidence 0.

Determinism: the epoch's sampling plan depends on ``(seed, epoch)`` and the augmentation of item
``i`` on ``(seed, epoch, i)``, so a batch is the same whatever the number of DataLoader workers.
Call :meth:`TrainingDataset.set_epoch` before iterating each epoch (with non-persistent workers,
which receive a fresh copy of the dataset per epoch).
"""
from __future__ import annotations

import logging
import os
import random
from dataclasses import dataclass, field
from typing import Any, Optional, Sequence

import cv2
import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset

from mvspin.body.keypoint_sets import get_keypoint_set, keypoint_index_map
from mvspin.data.bundle_format import BundleFile
from mvspin.errors import BundleFormatError
from mvspin.geometry import SPIN_CROP_SIZE, axis_angle_to_matrix
from mvspin.learning.augment import (
    AugmentConfig,
    AugmentParams,
    augment_global_orient,
    augmented_intrinsics,
    camera_augmentation_matrix,
    crop_and_augment,
    flip_smpl_pose,
    no_augmentation,
    sample_augmentation,
    swap_left_right,
    transform_keypoints,
)
from mvspin.regressor.preprocess import IMAGENET_MEAN, IMAGENET_STD

__all__ = [
    "DEFAULT_DATASET_RATIOS",
    "DataConfig",
    "TrainingDataset",
    "seed_worker",
    "make_loader",
]

log = logging.getLogger("mvspin")

DEFAULT_DATASET_RATIOS: dict[str, float] = {"h36m": 0.9, "mpi_inf_3dhp": 0.1}
"""MV-SPIN's mix (paper section 3): used when no ratios are given and every file is one of these."""

_MEAN = np.asarray(IMAGENET_MEAN, dtype=np.float32)
_STD = np.asarray(IMAGENET_STD, dtype=np.float32)


@dataclass
class DataConfig:
    """Typed configuration of the training data (merge with YAML via :func:`mvspin.config.load_config`).

    Attributes:
        files: bundle files (``.h5``).
        ratios: sampling share of each file; None: by dataset name with
            :data:`DEFAULT_DATASET_RATIOS` when every file is Human3.6M or MPI-INF-3DHP (MV-SPIN's
            90/10), otherwise proportional to the files' sizes.
        epoch_size: bundles per epoch (default: all bundles of all files).
        keypoint_set, joints_3d_set: output sets (default: the files' common set, else the first
            file's).
        crop_size: network input side (SPIN: 224).
        augment: augmentation strengths (MV-SPIN defaults); ``augmentation=False`` turns it off.
        sequential: visit every bundle of every file once, in order (evaluation, fits sweeps);
            ratios and epoch_size are ignored.
        seed: sampling and augmentation seed.
    """

    files: list[str] = field(default_factory=list)
    ratios: Optional[list[float]] = None
    epoch_size: Optional[int] = None
    keypoint_set: Optional[str] = None
    joints_3d_set: Optional[str] = None
    crop_size: int = SPIN_CROP_SIZE
    augment: AugmentConfig = field(default_factory=AugmentConfig)
    augmentation: bool = True
    sequential: bool = False
    seed: int = 0


def _largest_remainder(shares: np.ndarray, total: int) -> np.ndarray:
    """Integer counts summing to ``total`` closest to ``shares * total``."""
    raw = shares * total
    counts = np.floor(raw).astype(np.int64)
    rest = total - counts.sum()
    order = np.argsort(-(raw - counts), kind="stable")
    counts[order[:rest]] += 1
    return counts


def _index_map(source: str, target: str) -> tuple[np.ndarray, np.ndarray]:
    pairs = keypoint_index_map(source, target)
    if source == target:
        idx = np.arange(len(get_keypoint_set(source)))
        return idx, idx
    src = np.array([p[0] for p in pairs], dtype=np.int64)
    dst = np.array([p[1] for p in pairs], dtype=np.int64)
    return src, dst


def _remap(points: np.ndarray, index: tuple[np.ndarray, np.ndarray], size: int) -> np.ndarray:
    """``(..., Ks, C)`` -> ``(..., size, C)``: rows ``src`` go to ``dst``, the rest is zero."""
    src, dst = index
    out = np.zeros(points.shape[:-2] + (size, points.shape[-1]), dtype=np.float64)
    out[..., dst, :] = points[..., src, :]
    return out


def _check_finite(rec: dict[str, Any], path: Any, bundle: int) -> None:
    """A NaN in the data (a file edited or written by another tool: the writer refuses them)
    surfaces as the file, bundle and field when read, in one short line, before any loss."""
    for name, value in rec.items():
        arr = np.asarray(value)
        if arr.dtype.kind == "f" and not np.isfinite(arr).all():
            raise BundleFormatError(f"{path}: bundle {bundle}: {name} holds {int((~np.isfinite(arr)).sum())} NaN or "
                                    f"infinite values (fix or drop that bundle)")


class TrainingDataset(Dataset):
    """Augmented multi-view bundles from several bundle files, sampled by ratio.

    Args:
        files: bundle files (paths or open :class:`BundleFile` objects); all must have the same
            number of views.
        ratios: sampling share per file (see :class:`DataConfig`).
        epoch_size: items per epoch (default: the total number of bundles).
        augment: augmentation strengths, or None for none (evaluation).
        keypoint_set, joints_3d_set: output keypoint sets (see :class:`DataConfig`).
        crop_size: crop side in pixels.
        seed: seeds the sampling plan and the augmentation.
        sequential: every bundle of every file once, in order.

    Raises:
        ValueError: files with different view counts, an empty file, bad ratios, or a file sharing
            no keypoint with the output set (messages name the files).
        BundleFormatError / FileNotFoundError: a file is missing, truncated or not a bundle file.

    Example:
        >>> ds = TrainingDataset(["h36m_train.h5", "mpi_train.h5"])  # 90/10 mix  # doctest: +SKIP
        >>> item = ds[0]; item["images"].shape  # (4, 3, 224, 224)  # doctest: +SKIP
    """

    def __init__(
        self,
        files: Sequence[str | os.PathLike | BundleFile],
        ratios: Optional[Sequence[float]] = None,
        *,
        epoch_size: Optional[int] = None,
        augment: Optional[AugmentConfig] = AugmentConfig(),
        keypoint_set: Optional[str] = None,
        joints_3d_set: Optional[str] = None,
        crop_size: int = SPIN_CROP_SIZE,
        seed: int = 0,
        sequential: bool = False,
    ) -> None:
        if not files:
            raise ValueError("TrainingDataset needs at least one bundle file")
        self.sources: list[BundleFile] = [f if isinstance(f, BundleFile) else BundleFile(f) for f in files]
        first = self.sources[0]
        for src in self.sources:
            if len(src) == 0:
                raise ValueError(f"{src.path}: bundle file holds no bundles")
            if src.num_views != first.num_views:
                raise ValueError(f"cannot mix bundle files with different camera counts: {first.path} has "
                                 f"{first.num_views} views per bundle, {src.path} has {src.num_views}")
        self.num_views = first.num_views
        self.crop_size = int(crop_size)
        self.augment = augment
        self.seed = int(seed)
        self.sequential = bool(sequential)
        self.dataset_names = [str(s.attrs.get("dataset", s.path.stem)) for s in self.sources]

        self.keypoint_set = keypoint_set or self._default_set([s.keypoint_set for s in self.sources], "2D")
        with_3d = [s.joints_3d_keypoint_set for s in self.sources if s.joints_3d_keypoint_set]
        self.joints_3d_set = joints_3d_set or (self._default_set(with_3d, "3D") if with_3d else self.keypoint_set)
        self._k = len(get_keypoint_set(self.keypoint_set))
        self._k3 = len(get_keypoint_set(self.joints_3d_set))
        self._maps2d, self._maps3d = [], []
        for src in self.sources:
            m2 = _index_map(src.keypoint_set, self.keypoint_set)
            if len(m2[0]) == 0:
                raise ValueError(f"{src.path}: its 2D keypoint set {src.keypoint_set} shares no keypoint with "
                                 f"the output set {self.keypoint_set}; choose keypoint_set explicitly")
            if len(m2[0]) < self._k:
                log.info("%s: %d of %d %s keypoints come from its %s keypoints", src.path, len(m2[0]), self._k,
                         self.keypoint_set, src.keypoint_set)
            self._maps2d.append(m2)
            m3 = None
            if src.joints_3d_keypoint_set:
                m3 = _index_map(src.joints_3d_keypoint_set, self.joints_3d_set)
                if len(m3[0]) == 0:
                    log.warning("%s: its 3D joint set %s shares no joint with %s: no 3D targets from it",
                                src.path, src.joints_3d_keypoint_set, self.joints_3d_set)
            self._maps3d.append(m3)

        self.lengths = np.array([len(s) for s in self.sources], dtype=np.int64)
        self.ratios = self._resolve_ratios(ratios)
        total = int(self.lengths.sum())
        if self.sequential:
            self.epoch_size = total
        else:
            self.epoch_size = int(epoch_size) if epoch_size is not None else total
            if self.epoch_size < 1:
                raise ValueError(f"epoch_size must be >= 1, got {epoch_size}")
        self.epoch = 0
        self._plan: Optional[tuple[np.ndarray, np.ndarray]] = None

    @classmethod
    def from_config(cls, config: DataConfig) -> "TrainingDataset":
        """Build from a :class:`DataConfig`."""
        return cls(config.files, config.ratios, epoch_size=config.epoch_size,
                   augment=config.augment if config.augmentation else None, keypoint_set=config.keypoint_set,
                   joints_3d_set=config.joints_3d_set, crop_size=config.crop_size, seed=config.seed,
                   sequential=config.sequential)

    # -- configuration helpers ---------------------------------------------------------------
    def _default_set(self, names: list[str], what: str) -> str:
        if len(set(names)) > 1:
            log.info("bundle files use different %s keypoint sets (%s): mapping them onto %s", what,
                     ", ".join(sorted(set(names))), names[0])
        return names[0]

    def _resolve_ratios(self, ratios: Optional[Sequence[float]]) -> np.ndarray:
        if ratios is None:
            if len(self.sources) > 1 and all(n in DEFAULT_DATASET_RATIOS for n in self.dataset_names):
                r = np.array([DEFAULT_DATASET_RATIOS[n] for n in self.dataset_names], dtype=np.float64)
                # Several files of one dataset share its share by size.
                for name in set(self.dataset_names):
                    same = np.array([n == name for n in self.dataset_names])
                    r[same] = DEFAULT_DATASET_RATIOS[name] * self.lengths[same] / self.lengths[same].sum()
            else:
                r = self.lengths.astype(np.float64)
        else:
            r = np.asarray(ratios, dtype=np.float64)
            if r.shape != (len(self.sources),):
                raise ValueError(f"got {r.size} ratios for {len(self.sources)} bundle files")
            if not np.all(np.isfinite(r)) or np.any(r < 0) or r.sum() <= 0:
                raise ValueError(f"ratios must be non-negative with a positive sum, got {r.tolist()}")
        return r / r.sum()

    # -- sampling ----------------------------------------------------------------------------
    def set_epoch(self, epoch: int) -> None:
        """Select the epoch: its sampling plan and augmentations (deterministic for the seed)."""
        if int(epoch) != self.epoch:
            self.epoch = int(epoch)
            self._plan = None

    def __len__(self) -> int:
        return self.epoch_size

    def plan(self) -> tuple[np.ndarray, np.ndarray]:
        """This epoch's ``(file index, bundle index)`` arrays, each ``(len(self),)``.

        Ratio sampling: each file gets its share of the epoch (rounded so the counts add up),
        drawn as a random permutation of its bundles (repeated when the share exceeds the file),
        then all items are shuffled together.
        """
        if self._plan is None:
            if self.sequential:
                src = np.repeat(np.arange(len(self.sources)), self.lengths)
                idx = np.concatenate([np.arange(n) for n in self.lengths])
            else:
                rng = np.random.default_rng([self.seed, self.epoch, 1])
                counts = _largest_remainder(self.ratios, self.epoch_size)
                src_parts, idx_parts = [], []
                for s, (count, n) in enumerate(zip(counts, self.lengths)):
                    if count == 0:
                        continue
                    reps = -(-count // n)
                    idx_parts.append(np.concatenate([rng.permutation(n) for _ in range(reps)])[:count])
                    src_parts.append(np.full(count, s))
                order = rng.permutation(self.epoch_size)
                src, idx = np.concatenate(src_parts)[order], np.concatenate(idx_parts)[order]
            self._plan = (src.astype(np.int64), idx.astype(np.int64))
        return self._plan

    def __getitem__(self, item: int) -> dict[str, torch.Tensor]:
        if not 0 <= item < self.epoch_size:
            raise IndexError(f"item {item} out of range for an epoch of {self.epoch_size}")
        src, idx = self.plan()
        if self.augment is None:
            params = no_augmentation(self.num_views)
        else:
            params = sample_augmentation(self.num_views, np.random.default_rng([self.seed, self.epoch, 2, item]),
                                         self.augment)
        return self.get(int(src[item]), int(idx[item]), params)

    # -- one bundle --------------------------------------------------------------------------
    def get(self, source: int, bundle: int, params: Optional[AugmentParams] = None) -> dict[str, torch.Tensor]:
        """Bundle ``bundle`` of file ``source`` under the augmentation ``params`` (None: none).

        Returns the dict described in the module docstring.
        """
        bf = self.sources[source]
        v_count = self.num_views
        p = params or no_augmentation(v_count)
        if p.num_views != v_count:
            raise ValueError(f"augmentation has {p.num_views} views, {bf.path} has {v_count}")
        rec = bf.read_bundle(bundle, fields=[f for f in bf.fields if f not in ("images", "image_paths")])
        _check_finite(rec, bf.path, bundle)
        images = bf.load_images(bundle)
        center = np.asarray(rec["center"], dtype=np.float64)
        scale = np.asarray(rec["scale"], dtype=np.float64)
        s = self.crop_size

        crops = np.empty((v_count, 3, s, s), np.float32)
        A = np.empty((v_count, 3, 3))
        M = np.empty((v_count, 3, 3))
        for v in range(v_count):
            crop, A[v] = crop_and_augment(images[v], center[v], float(scale[v]), p.rotation_deg[v], p.scale_factor[v],
                                          p.flip, p.channel_gain[v], s)
            # numpy, not torch: per-item torch ops with several intra-op threads cost ~20x more
            # on a busy CPU (and DataLoader workers are single-threaded anyway).
            crops[v] = ((crop.astype(np.float32) * (1.0 / 255.0) - _MEAN) / _STD).transpose(2, 0, 1)
            M[v] = camera_augmentation_matrix(p.rotation_deg[v], p.flip)

        kp = np.stack([transform_keypoints(rec["keypoints_2d"][v], A[v]) for v in range(v_count)])
        kp = _remap(kp, self._maps2d[source], self._k)
        if p.flip:
            kp = swap_left_right(kp, self.keypoint_set)

        has_camera = bf.has_cameras
        eye = np.broadcast_to(np.eye(3), (v_count, 3, 3))
        R = np.asarray(rec["camera_R"], dtype=np.float64) if has_camera else np.zeros((v_count, 3, 3))
        t = np.asarray(rec["camera_t"], dtype=np.float64) if has_camera else np.zeros((v_count, 3))
        K = np.asarray(rec["camera_K"], dtype=np.float64) if has_camera else np.zeros((v_count, 3, 3))
        dist = np.asarray(rec["camera_dist"], dtype=np.float64) if has_camera else np.zeros((v_count, 5))
        crop_K = augmented_intrinsics(K, A, M) if has_camera else np.zeros((v_count, 3, 3))

        joints, root_relative = self._joints_3d(bf, source, rec, R, t, M, p.flip)

        has_smpl = bool(bf.has_smpl and rec.get("has_smpl", False) and has_camera)
        if has_smpl:
            # One float64 call for the root and the 23 body joints.
            aa = np.concatenate([np.asarray(rec["smpl_global_orient"], dtype=np.float64).reshape(1, 3),
                                 np.asarray(rec["smpl_body_pose"], dtype=np.float64).reshape(23, 3)])
            rotmats = axis_angle_to_matrix(torch.from_numpy(aa)).numpy()
            orient = augment_global_orient(R @ rotmats[0], M, p.flip)
            pose = rotmats[1:]
            if p.flip:
                pose = flip_smpl_pose(pose)
            betas = np.asarray(rec["smpl_betas"], dtype=np.float64)
        else:
            orient, pose, betas = eye.copy(), np.broadcast_to(np.eye(3), (23, 3, 3)).copy(), np.zeros(10)

        f32 = lambda a: torch.as_tensor(np.ascontiguousarray(a), dtype=torch.float32)  # noqa: E731
        return {
            "images": torch.from_numpy(crops),
            "keypoints_2d": f32(kp),
            "joints_3d": f32(joints),
            "joints_3d_root_relative": torch.tensor(root_relative),
            "crop_K": f32(crop_K),
            "crop_transform": f32(A),
            "camera_augmentation": f32(M),
            "camera_R": f32(R),
            "camera_t": f32(t),
            "camera_K": f32(K),
            "camera_dist": f32(dist),
            "has_camera": torch.tensor(has_camera),
            "smpl_global_orient": f32(orient),
            "smpl_body_pose": f32(pose),
            "smpl_betas": f32(betas),
            "has_smpl": torch.tensor(has_smpl),
            "center": f32(center),
            "scale": f32(scale),
            "image_size": torch.as_tensor(np.asarray(rec["image_size"]), dtype=torch.int64),
            "flip": torch.tensor(bool(p.flip)),
            "rotation_deg": f32(p.rotation_deg),
            "scale_factor": f32(p.scale_factor),
            "dataset_index": torch.tensor(source, dtype=torch.int64),
            "bundle_index": torch.tensor(bundle, dtype=torch.int64),
        }

    def _joints_3d(self, bf: BundleFile, source: int, rec: dict[str, Any], R: np.ndarray, t: np.ndarray,
                   M: np.ndarray, flip: bool) -> tuple[np.ndarray, bool]:
        """``(V, K3, 4)`` joints in each augmented camera frame, and whether root-relative."""
        v_count = self.num_views
        out = np.zeros((v_count, self._k3, 4))
        mapping = self._maps3d[source]
        if "joints_3d" not in rec or mapping is None or len(mapping[0]) == 0:
            return out, False
        joints = np.asarray(rec["joints_3d"], dtype=np.float64)
        xyz, conf = joints[:, :3], joints[:, 3:]
        rel = bf.joints_3d_root_relative
        cam = np.zeros((v_count,) + xyz.shape)
        known = np.ones(v_count, dtype=bool)
        if bf.joints_3d_frame == "world":
            cam = np.einsum("vij,kj->vki", R, xyz) + (0.0 if rel else t[:, None])
        elif bf.has_cameras:  # view0_camera with cameras: through the world to every view
            rot = R @ R[0].T
            cam = np.einsum("vij,kj->vki", rot, xyz) + (0.0 if rel else (t - np.einsum("vij,j->vi", rot, t[0]))[:, None])
        else:  # view0_camera without cameras: only view 0 is known
            cam[0] = xyz
            known[1:] = False
        aug = np.einsum("vij,vkj->vki", M, cam)
        full = np.concatenate([aug, np.broadcast_to(conf, (v_count,) + conf.shape)], axis=-1) * known[:, None, None]
        out = _remap(full, mapping, self._k3)
        if flip:
            out = swap_left_right(out, self.joints_3d_set)
        return out, rel


def seed_worker(worker_id: int) -> None:
    """DataLoader ``worker_init_fn``: seed numpy, ``random`` and OpenCV from the worker's torch seed
    (the loader's generator + worker id).

    The dataset's own randomness does not depend on these (it is derived from seed, epoch and
    item); they cover any library code that draws from the global generators. OpenCV's thread
    count is left alone: ``cv2.setNumThreads`` in a worker forked after the parent used OpenCV's
    thread pool deadlocks.
    """
    seed = torch.initial_seed() % 2**32
    np.random.seed(seed)
    random.seed(seed)
    cv2.setRNGSeed(int(seed % 2**31))


def make_loader(dataset: TrainingDataset, batch_size: int, num_workers: int = 0, seed: int = 0,
                drop_last: bool = True, pin_memory: bool = False) -> DataLoader:
    """A DataLoader over ``dataset`` in its plan order (already shuffled by ratio sampling), with
    seeded workers. Batches are dicts of ``(B, V, ...)`` tensors.

    Call ``dataset.set_epoch(e)`` before each epoch; workers are not persistent so they see it.
    """
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    if num_workers < 0:
        raise ValueError(f"num_workers must be >= 0, got {num_workers}")
    return DataLoader(dataset, batch_size=batch_size, shuffle=False, num_workers=num_workers,
                      worker_init_fn=seed_worker if num_workers else None,
                      generator=torch.Generator().manual_seed(int(seed)), drop_last=drop_last,
                      pin_memory=pin_memory, persistent_workers=False)
