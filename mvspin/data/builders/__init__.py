"""Dataset builders: raw dataset files -> bundle files (:mod:`mvspin.data.bundle_format`).

Each builder is a function ``build_<dataset>(root, out_path, split=..., every_nth=..., ...)``
returning a :class:`BuildReport`: the bundles written and every frame or sequence skipped, with
the reason (missing video or camera file with its path, missing video frames, joints outside
an image, NaNs, ...). Unusable frames are skipped and listed; a bad sequence never aborts the
rest of the build. :func:`build` dispatches by dataset name (used by ``mvspin data build``).
"""
from __future__ import annotations

import importlib
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterator, Optional, Sequence, TypeVar

import numpy as np
import torch

from mvspin.atomic import write_bytes_atomic
from mvspin.data.video import encode_image
from mvspin.geometry.cameras import perspective_projection
from mvspin.progress import Progress

T = TypeVar("T")

__all__ = [
    "BuildReport",
    "SkippedItem",
    "BUILDERS",
    "build",
    "project_world_points",
    "FrameSink",
]

# Crop boxes and the "inside the image" rule are mvspin.geometry.crop's (keypoint_crop_box,
# points_inside_image, SPIN_BBOX_SCALE_FACTOR): one rule for builders, synthetic data and inference.


@dataclass(frozen=True)
class SkippedItem:
    """One skipped frame (``frame`` set) or a whole skipped sequence/subject (``frame`` None).

    Attributes:
        subject, sequence: ids as in the bundle file (sequence may be empty for a subject).
        frame: 0-based frame index, or None when a whole sequence/subject is skipped.
        camera: camera id the problem concerns, or None.
        reason: human-readable cause, naming the file where a file is at fault.
    """

    subject: str
    sequence: str
    frame: Optional[int]
    camera: Optional[str]
    reason: str


@dataclass
class BuildReport:
    """What a builder wrote and what it skipped.

    Attributes:
        dataset, split: as stored in the file.
        out_path: the bundle file written.
        bundles: ``(subject, sequence, frame)`` of every bundle written, in file order.
        skipped: every skipped frame or sequence with its reason.
    """

    dataset: str
    split: str
    out_path: Path
    bundles: list[tuple[str, str, int]] = field(default_factory=list)
    skipped: list[SkippedItem] = field(default_factory=list)

    @property
    def num_bundles(self) -> int:
        """Bundles written."""
        return len(self.bundles)

    def skip(self, subject: str, sequence: str, frame: Optional[int], reason: str,
             camera: Optional[str] = None) -> None:
        """Record a skipped frame (or sequence when ``frame`` is None)."""
        self.skipped.append(SkippedItem(subject, sequence, frame, camera, reason))

    def skipped_sequences(self) -> list[SkippedItem]:
        """The entries that skip a whole sequence or subject."""
        return [s for s in self.skipped if s.frame is None]

    def summary(self) -> str:
        """A short text table: bundles per subject, skips per reason."""
        target = f"-> {self.out_path}" if self.num_bundles else f"(nothing written to {self.out_path})"
        lines = [f"{self.dataset} {self.split}: {self.num_bundles} bundles {target}"]
        per_subject: dict[str, int] = {}
        for subject, _, _ in self.bundles:
            per_subject[subject] = per_subject.get(subject, 0) + 1
        for subject, n in per_subject.items():
            lines.append(f"  {subject:<24} {n:>8} bundles")
        if self.skipped:
            reasons: dict[str, int] = {}
            for s in self.skipped:
                key = s.reason if s.frame is None else s.reason.split(":")[0]
                reasons[key] = reasons.get(key, 0) + 1
            lines.append(f"  skipped {len(self.skipped)}:")
            for reason, n in sorted(reasons.items(), key=lambda kv: -kv[1]):
                lines.append(f"    {n:>8}  {reason}")
        return "\n".join(lines)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form."""
        return {
            "dataset": self.dataset,
            "split": self.split,
            "out_path": str(self.out_path),
            "num_bundles": self.num_bundles,
            "bundles": [list(b) for b in self.bundles],
            "skipped": [vars(s) for s in self.skipped],
        }


# name -> "module:function"; aliases point to the same builder.
BUILDERS: dict[str, str] = {
    "h36m": "mvspin.data.builders.h36m:build_h36m",
    "h36m_spin_npz": "mvspin.data.builders.h36m:build_h36m_from_spin_npz",
    "mpi_inf_3dhp": "mvspin.data.builders.mpi_inf_3dhp:build_mpi_inf_3dhp",
    "3dpw": "mvspin.data.builders.pw3d:build_3dpw",
}
_ALIASES = {"human36m": "h36m", "human3.6m": "h36m", "mpi-inf-3dhp": "mpi_inf_3dhp",
            "3dhp": "mpi_inf_3dhp", "pw3d": "3dpw", "h36m-spin-npz": "h36m_spin_npz"}


def build(dataset_name: str, root: str | os.PathLike, out: str | os.PathLike, **opts: Any) -> BuildReport:
    """Build a bundle file for a dataset by name.

    Args:
        dataset_name: one of :data:`BUILDERS` (aliases: ``human36m``, ``mpi-inf-3dhp``,
            ``3dhp``, ``pw3d``).
        root: the dataset's root folder (for ``h36m_spin_npz``: the ``.npz`` file).
        out: output ``.h5`` file.
        **opts: the builder's keyword options (``split``, ``every_nth``, ...).

    Raises:
        ValueError: unknown dataset name (the message lists the known names).
    """
    return resolve_builder(dataset_name)(root, out, **opts)


def resolve_builder(dataset_name: str) -> Callable[..., BuildReport]:
    """The builder function for a dataset name or alias.

    Raises:
        ValueError: unknown dataset name (the message lists the known names).
    """
    key = dataset_name.lower()
    key = _ALIASES.get(key, key)
    if key not in BUILDERS:
        raise ValueError(f"unknown dataset {dataset_name!r}; known datasets: {', '.join(BUILDERS)} "
                         f"(aliases: {', '.join(_ALIASES)})")
    module, func = BUILDERS[key].split(":")
    return getattr(importlib.import_module(module), func)


# --- helpers shared by the builders --------------------------------------------------------
def with_progress(items: Sequence[T], progress: Progress, stage: str) -> Iterator[T]:
    """Yield ``items``, telling ``progress`` ``(stage, done, len(items))`` before the first and
    after each one (a builder's loop over its sequences or bundles)."""
    total = len(items)
    progress(stage, 0, total)
    for done, item in enumerate(items, 1):
        yield item
        progress(stage, done, total)


def read_source_image(path: Path) -> tuple[bytes, tuple[int, int]]:
    """A dataset's image file: its bytes (stored unchanged) and ``(width, height)``.

    The image is decoded completely, so a frame a builder writes is one training can read.

    Raises:
        ValueError: the file is not a decodable image or is truncated (names the file).
        OSError: it cannot be read.
    """
    from mvspin.data.bundle_format import decode_image

    data = Path(path).read_bytes()
    image = decode_image(data, str(path))
    return data, (int(image.shape[1]), int(image.shape[0]))


def project_world_points(points: np.ndarray, K: np.ndarray, dist: np.ndarray, R: np.ndarray,
                         t: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Project world points through one camera of the bundle format (OpenCV model), float64.

    Args:
        points: ``(..., P, 3)`` world points, metres.
        K: ``(3, 3)``; dist: ``(5,)`` (k1, k2, p1, p2, k3); R: ``(3, 3)``; t: ``(3,)`` metres.

    Returns:
        pixels ``(..., P, 2)`` and camera-frame depth ``(..., P)`` (metres; <= 0 behind).
    """
    pts = np.asarray(points, dtype=np.float64)
    R = np.asarray(R, dtype=np.float64)
    t = np.asarray(t, dtype=np.float64)
    depth = pts @ R[2] + t[2]
    uv = perspective_projection(torch.from_numpy(pts), torch.from_numpy(np.asarray(K, np.float64)),
                                torch.from_numpy(R), torch.from_numpy(t),
                                torch.from_numpy(np.asarray(dist, np.float64))).numpy()
    return uv, depth


class FrameSink:
    """Turns decoded video frames into what the bundle file stores.

    ``image_storage="bytes"``: the frame is encoded (JPEG by default) and embedded.
    ``image_storage="paths"``: the frame is written as an image file under ``frames_dir``
    (atomically) and its path relative to ``frames_dir`` is stored; ``frames_dir`` becomes the
    file's ``image_root``.
    """

    def __init__(self, image_storage: str, out_path: Path, *, ext: str = ".jpg", jpeg_quality: int = 95,
                 frames_dir: Optional[Path] = None) -> None:
        if image_storage not in ("bytes", "paths"):
            raise ValueError(f"image_storage must be 'bytes' or 'paths', got {image_storage!r}")
        self.image_storage = image_storage
        self.ext = ext
        self.jpeg_quality = jpeg_quality
        self.frames_dir = Path(frames_dir) if frames_dir is not None else \
            out_path.with_name(out_path.stem + "_frames")

    @property
    def field(self) -> str:
        """The bundle field this sink fills."""
        return "images" if self.image_storage == "bytes" else "image_paths"

    @property
    def image_root(self) -> Optional[str]:
        """Value for the file's ``image_root`` attribute (absolute), or None."""
        return str(self.frames_dir.resolve()) if self.image_storage == "paths" else None

    def store(self, frame_bgr: np.ndarray, relative_name: str) -> Any:
        """Encode or write one frame; returns the bytes or the relative path to store."""
        data = encode_image(frame_bgr, self.ext, self.jpeg_quality)
        if self.image_storage == "bytes":
            return data
        rel = relative_name + self.ext
        write_bytes_atomic(self.frames_dir / rel, data.tobytes())
        return rel
