"""The fits store: the best MV-SMPLify fit of every bundle of a training set (one HDF5 file).

MV-SPIN (Li et al., WACV 2021, section 3.4, after SPIN, Kolotouros et al., ICCV 2019) keeps, per
bundle, the best fit found so far: a new in-the-loop fit replaces the stored one only when its SPIN fitting loss is lower
(:mod:`mvspin.learning.fit_acceptance`). Per bundle the store holds the shared body pose
``(23, 3, 3)`` and betas, each view's root orientation ``(V, 3, 3)``, the fit's loss
(``error``) and mean reprojection distance (``error_px``), and the training step that produced it.

Frames. Bundles are augmented when read (flip shared by the views, per-view in-plane rotation and
crop scale, :mod:`mvspin.learning.augment`); the store keeps every fit in the **un-augmented**
frame: orientations in each view's un-augmented crop camera frame, the pose of the subject as
recorded (not mirrored). :func:`to_augmented` and :func:`from_augmented` map between the two
with the bundle's camera map ``M_v`` and flip, exactly as the training dataset maps ground-truth
SMPL. ``error`` is SPIN's fitting loss (mean over keypoints of ``conf^2 * GMoF``, pixels squared,
mean over the bundle's used views) and ``error_px`` the mean reprojection distance, both from the
residuals in **un-augmented pixels of the 224 px fitting crop** (fits run in SPIN's 224 px crop
whatever the network's crop size, :mod:`mvspin.learning.fit_frame`; the augmentation's rotation,
flip and crop scale are undone on the residuals), so a fit made under any augmentation is
compared with the stored one without re-evaluating either.

Identity. Entries are addressed by ``(dataset_index, bundle_index)`` (the training dataset's
fields). The file records a fingerprint of every bundle file (dataset name, split, bundle and
view counts, a hash of the crop boxes), so a store of another training set is refused before
any work (:class:`FitsStoreError`).

Layout (HDF5, ``format = "mvspin-fits"``, version 2): datasets ``body_pose (N, 23, 3, 3)``,
``betas (N, 10)``, ``global_orient (N, V, 3, 3)`` float32, ``error (N,)`` and ``error_px (N,)``
float32 (``inf``: no fit yet), ``step (N,)`` int64 (-1: none; 0 for fits made before training by ``fit-dataset``);
attribute ``sources`` (JSON list of fingerprints, in dataset order) and ``offsets``. Version 1
stored a mean pixel error (crop pixels) as ``error``: such a store is refused (re-run
``mvspin fit-dataset``).
"""
from __future__ import annotations

import hashlib
import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import h5py
import numpy as np
import torch
from torch import Tensor

from mvspin.atomic import atomic_path
from mvspin.body.keypoint_sets import get_keypoint_set
from mvspin.data.bundle_format import BundleFile
from mvspin.errors import FitsStoreError

__all__ = ["FitsStore", "FitsStoreError", "source_fingerprint", "to_augmented", "from_augmented",
           "flip_body_pose"]

FORMAT = "mvspin-fits"
VERSION = 2
_FIELDS = ("body_pose", "betas", "global_orient", "error", "error_px", "step")
_SMPL_BODY_FLIP = torch.as_tensor(np.asarray(get_keypoint_set("smpl24").flip_permutation)[1:] - 1)
_MIRROR = torch.diag(torch.tensor([-1.0, 1.0, 1.0]))


def source_fingerprint(bundles: BundleFile) -> dict:
    """What identifies a bundle file for the store: dataset, split, sizes and a hash of its crop
    boxes (cheap to read, different for any two captures)."""
    h = hashlib.sha1()
    for name in ("center", "scale"):
        h.update(np.ascontiguousarray(bundles.read_field(name), dtype=np.float64).tobytes())
    return {"name": bundles.path.name, "dataset": str(bundles.attrs.get("dataset", "")),
            "split": str(bundles.attrs.get("split", "")), "num_bundles": len(bundles),
            "num_views": bundles.num_views, "boxes_sha1": h.hexdigest()}


def flip_body_pose(body_pose: Tensor) -> Tensor:
    """Mirror a body pose ``(..., 23, 3, 3)`` left <-> right (torch twin of
    :func:`mvspin.learning.augment.flip_smpl_pose` for rotation matrices)."""
    m = _MIRROR.to(body_pose)
    return m @ body_pose[..., _SMPL_BODY_FLIP.to(body_pose.device), :, :] @ m


def to_augmented(global_orient: Tensor, body_pose: Tensor, camera_augmentation: Tensor,
                 flip: Tensor) -> tuple[Tensor, Tensor]:
    """Un-augmented fit -> the frame of an augmented bundle.

    Args:
        global_orient: ``(B, V, 3, 3)`` per-view root orientations.
        body_pose: ``(B, 23, 3, 3)``.
        camera_augmentation: ``(B, V, 3, 3)`` the bundles' ``M_v`` (training dataset field).
        flip: ``(B,)`` bool.

    Returns:
        ``(M_v R_v [F], flipped pose)``, as :func:`mvspin.learning.augment.augment_global_orient`.
    """
    m = _MIRROR.to(global_orient)
    orient = camera_augmentation @ global_orient
    f = flip.view(-1, 1, 1, 1)
    orient = torch.where(f, orient @ m, orient)
    pose = torch.where(f, flip_body_pose(body_pose), body_pose)
    return orient, pose


def from_augmented(global_orient: Tensor, body_pose: Tensor, camera_augmentation: Tensor,
                   flip: Tensor) -> tuple[Tensor, Tensor]:
    """Inverse of :func:`to_augmented` (``M_v`` is orthogonal, the flip an involution)."""
    m = _MIRROR.to(global_orient)
    f = flip.view(-1, 1, 1, 1)
    orient = torch.where(f, global_orient @ m, global_orient)
    orient = camera_augmentation.transpose(-1, -2) @ orient
    pose = torch.where(f, flip_body_pose(body_pose), body_pose)
    return orient, pose


@dataclass
class FitsStore:
    """Best fit per bundle, in memory (numpy); :meth:`save` / :meth:`load` the HDF5 file.

    Attributes:
        sources: one fingerprint per bundle file (:func:`source_fingerprint`), dataset order.
        offsets: ``(S + 1,)`` first flat index of each source.
        body_pose, betas, global_orient, error, error_px, step: the arrays of the module docstring.

    Example:
        >>> store = FitsStore.empty([fp], num_views=4)  # doctest: +SKIP
        >>> flat = store.flat_index(torch.tensor([0]), torch.tensor([3]))  # doctest: +SKIP
    """

    sources: list[dict]
    offsets: np.ndarray
    body_pose: np.ndarray
    betas: np.ndarray
    global_orient: np.ndarray
    error: np.ndarray
    error_px: np.ndarray
    step: np.ndarray

    # --- construction ---------------------------------------------------------------------
    @classmethod
    def empty(cls, sources: Sequence[dict], num_views: int, num_betas: int = 10) -> "FitsStore":
        """Every bundle without a fit: identity rotations, zero betas, errors inf, step -1."""
        sizes = [int(s["num_bundles"]) for s in sources]
        n = int(sum(sizes))
        eye = np.eye(3, dtype=np.float32)
        return cls(sources=[dict(s) for s in sources], offsets=np.concatenate([[0], np.cumsum(sizes)]).astype(np.int64),
                   body_pose=np.tile(eye, (n, 23, 1, 1)), betas=np.zeros((n, num_betas), np.float32),
                   global_orient=np.tile(eye, (n, num_views, 1, 1)), error=np.full(n, np.inf, np.float32),
                   error_px=np.full(n, np.inf, np.float32), step=np.full(n, -1, np.int64))

    @classmethod
    def for_bundle_files(cls, files: Sequence[BundleFile], num_betas: int = 10) -> "FitsStore":
        """An empty store for these bundle files (their fingerprints)."""
        return cls.empty([source_fingerprint(f) for f in files], files[0].num_views, num_betas)

    @classmethod
    def load(cls, path: str | os.PathLike, expected_sources: Sequence[dict] | None = None) -> "FitsStore":
        """Read a store; with ``expected_sources`` check that it belongs to that training set.

        Raises:
            FileNotFoundError: no such file.
            FitsStoreError: not a fits store, damaged, or made for other bundle files (names the
                first difference).
        """
        path = Path(path)
        if not path.is_file():
            raise FileNotFoundError(f"fits store {path} does not exist")
        try:
            with h5py.File(path, "r") as f:
                if f.attrs.get("format") != FORMAT:
                    raise FitsStoreError(f"{path}: not an mvspin fits store (format attribute "
                                         f"{f.attrs.get('format')!r})")
                version = int(f.attrs.get("version", -1))
                if version == 1:
                    raise FitsStoreError(f"{path}: fits store version 1 ranks fits by a pixel error; this mvspin "
                                         f"stores SPIN's fitting loss (version {VERSION}): re-run `mvspin fit-dataset`")
                if version != VERSION:
                    raise FitsStoreError(f"{path}: fits store version {f.attrs.get('version')} is not supported "
                                         f"(expected {VERSION})")
                missing = [k for k in _FIELDS if k not in f]
                if missing:
                    raise FitsStoreError(f"{path}: damaged fits store, missing {', '.join(missing)}")
                sources = json.loads(f.attrs["sources"])
                arrays = {k: f[k][()] for k in _FIELDS}
                offsets = np.asarray(f.attrs["offsets"], dtype=np.int64)
        except (OSError, KeyError, ValueError) as err:
            if isinstance(err, FitsStoreError):
                raise
            raise FitsStoreError(f"{path}: unreadable fits store ({err})") from None
        n = int(offsets[-1])
        if any(len(a) != n for a in arrays.values()):
            raise FitsStoreError(f"{path}: damaged fits store, arrays do not all hold {n} bundles")
        store = cls(sources=sources, offsets=offsets, **arrays)
        if expected_sources is not None:
            store.check_sources(expected_sources, path)
        return store

    def check_sources(self, expected: Sequence[dict], path: str | os.PathLike = "fits store") -> None:
        """Raise :class:`FitsStoreError` unless the store was made for exactly these bundle files."""
        if len(expected) != len(self.sources):
            raise FitsStoreError(f"{path}: made for {len(self.sources)} bundle files, the training set has "
                                 f"{len(expected)}: it belongs to another dataset")
        for i, (mine, want) in enumerate(zip(self.sources, expected)):
            for key in ("dataset", "split", "num_bundles", "num_views", "boxes_sha1"):
                if mine.get(key) != want.get(key):
                    raise FitsStoreError(
                        f"{path}: made for another dataset: bundle file {i} ({want.get('name')}) has {key}="
                        f"{want.get(key)!r}, the store's {mine.get('name')} has {mine.get(key)!r}")

    # --- access -----------------------------------------------------------------------------
    def __len__(self) -> int:
        return int(self.offsets[-1])

    @property
    def num_views(self) -> int:
        return int(self.global_orient.shape[1])

    def flat_index(self, dataset_index: Tensor | np.ndarray, bundle_index: Tensor | np.ndarray) -> np.ndarray:
        """``(B,)`` flat entries of ``(dataset_index, bundle_index)`` pairs."""
        d = np.asarray(dataset_index, dtype=np.int64)
        b = np.asarray(bundle_index, dtype=np.int64)
        return self.offsets[d] + b

    def read(self, flat: np.ndarray, device: torch.device | str = "cpu") -> dict[str, Tensor]:
        """Entries ``flat`` as tensors: ``body_pose (B, 23, 3, 3)``, ``betas (B, 10)``,
        ``global_orient (B, V, 3, 3)``, ``error (B,)``, ``error_px (B,)``, ``step (B,)``
        (un-augmented frame)."""
        return {k: torch.as_tensor(getattr(self, k)[flat], device=device) for k in _FIELDS}

    def update(self, flat: np.ndarray, body_pose: np.ndarray, betas: np.ndarray, global_orient: np.ndarray,
               error: np.ndarray, *, error_px: np.ndarray, step: int | np.ndarray) -> np.ndarray:
        """Keep each new fit whose fitting loss ``error`` is lower than the stored one (SPIN:
        ``new < stored``); returns ``(B,)`` bool, replaced. ``error_px`` is stored beside it.

        Entries are applied in order, so a bundle appearing twice keeps the better of the two.
        """
        flat = np.asarray(flat, dtype=np.int64)
        error = np.asarray(error, dtype=np.float32)
        error_px = np.broadcast_to(np.asarray(error_px, dtype=np.float32), flat.shape)
        steps = np.broadcast_to(np.asarray(step, dtype=np.int64), flat.shape)
        replaced = np.zeros(flat.shape, dtype=bool)
        for i, j in enumerate(flat):
            if np.isfinite(error[i]) and error[i] < self.error[j]:
                self.body_pose[j] = body_pose[i]
                self.betas[j] = betas[i]
                self.global_orient[j] = global_orient[i]
                self.error[j] = error[i]
                self.error_px[j] = error_px[i]
                self.step[j] = steps[i]
                replaced[i] = True
        return replaced

    def statistics(self, reject_loss: float | None = None, max_abs_beta: float | None = None) -> dict[str, float]:
        """``fitted_share`` (bundles with a fit), their ``mean_error`` (fitting loss) and
        ``mean_error_px`` (pixels, 224 px crop), and with ``reject_loss`` the ``accepted_share``:
        bundles whose fit would supervise (loss ``< reject_loss``; with ``max_abs_beta`` also no
        ``|beta|`` above it, for ``extreme_betas="reject"``)."""
        have = np.isfinite(self.error)
        out = {"fitted_share": float(have.mean()) if len(self) else 0.0,
               "mean_error": float(self.error[have].mean()) if have.any() else float("nan"),
               "mean_error_px": float(self.error_px[have].mean()) if have.any() else float("nan")}
        if reject_loss is not None:
            accepted = self.error < reject_loss
            if max_abs_beta is not None:
                accepted &= (np.abs(self.betas) <= max_abs_beta).all(-1)
            out["accepted_share"] = float(accepted.mean()) if len(self) else 0.0
        return out

    # --- files ------------------------------------------------------------------------------
    def save(self, path: str | os.PathLike) -> Path:
        """Write the store atomically (a temporary file renamed when complete)."""
        with atomic_path(path, fsync=True) as tmp:
            self.write_to(tmp)
        return Path(path)

    def write_to(self, path: str | os.PathLike) -> None:
        """Write the HDF5 file at ``path`` directly (for :class:`mvspin.atomic.OutputGroup` paths)."""
        with h5py.File(path, "w") as f:
            f.attrs["format"] = FORMAT
            f.attrs["version"] = VERSION
            f.attrs["sources"] = json.dumps(self.sources)
            f.attrs["offsets"] = self.offsets
            for k in _FIELDS:
                f.create_dataset(k, data=getattr(self, k))

    def equal(self, other: "FitsStore") -> bool:
        """Bit-exact equality of every entry and of the sources."""
        return self.sources == other.sources and all(np.array_equal(getattr(self, k), getattr(other, k))
                                                     for k in _FIELDS)
