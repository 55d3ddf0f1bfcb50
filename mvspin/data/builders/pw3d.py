"""3DPW -> single-view bundle files with SMPL ground truth.

Layout: ``<root>/sequenceFiles/<split>/<sequence>.pkl`` and
``<root>/imageFiles/<sequence>/image_XXXXX.jpg`` (0-based, 5 digits). Each pickle (written by
Python 2; read with ``encoding="latin1"``) is a dict with, per person, lists of ``poses (F, 72)``
(SMPL axis-angle, world frame), ``betas`` (10 or more; the first 10 are used), ``trans (F, 3)``,
``genders`` (``'m'``/``'f'``), ``jointPositions (F, 72)`` (SMPL's 24 joints, world, metres),
``poses2d (F, 3, 18)`` (OpenPose detections) and ``campose_valid (F,)``; per frame
``cam_poses (F, 4, 4)`` (world-to-camera) and one ``cam_intrinsics (3, 3)``. Pose frame ``i``
is image ``image_{i:05d}.jpg``, as in SPIN's and VIBE's preprocessing; ``img_frame_ids`` is the
index array that down-sampled the 60 Hz capture to the image frames, not an image number, and is
not used.

Why a restricted unpickler: a pickle can name any Python callable and have it run while
loading (``os.system``, ``eval``, ...); these files come from the internet. The loader
resolves only what numpy arrays need (``numpy...multiarray._reconstruct``, ``numpy.ndarray``,
``numpy.dtype``, numpy scalars, and ``_codecs.encode`` which Python 3 uses for byte strings)
and refuses every other global before anything is called.

Bundles (V = 1): one per valid person and frame. 2D keypoints are the ``smpl24`` joints
(``jointPositions``) projected with the frame's camera (confidence 1 inside the image, 0
otherwise), so they agree exactly with the stored 3D joints and cameras; SMPL parameters in the
world frame with the person's gender. The crop follows SPIN's 3DPW preprocessing: the box of the
confident ``poses2d`` detections enlarged by 1.2, falling back to the projected joints when a
frame has fewer than two confident detections.
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Optional

import numpy as np

from mvspin.body.keypoint_sets import get_keypoint_set
from mvspin.body.safe_pickle import UnsafePickleError, load_restricted_pickle
from mvspin.data.builders import (
    BuildReport,
    project_world_points,
    read_source_image,
    with_progress,
)
from mvspin.data.bundle_format import BundleWriter
from mvspin.geometry.crop import (
    KEYPOINT_MIN_CONFIDENCE,
    SPIN_BBOX_SCALE_FACTOR,
    keypoint_crop_box,
    points_inside_image,
)
from mvspin.progress import Progress, no_progress

__all__ = ["PW3D_SPLITS", "UnsafePickleError", "load_3dpw_pickle", "build_3dpw"]

PW3D_SPLITS = ("train", "validation", "test")
_GENDERS = {"m": "male", "f": "female", "male": "male", "female": "female"}
_SMPL24 = get_keypoint_set("smpl24")
_REQUIRED = ("poses", "betas", "trans", "genders", "jointPositions", "cam_poses", "cam_intrinsics",
             "campose_valid")


def load_3dpw_pickle(path: str | os.PathLike) -> dict[str, Any]:
    """Load a 3DPW sequence pickle without running code from it.

    Raises:
        UnsafePickleError: the file references a global other than numpy array reconstruction.
        ValueError: the file is not a pickle of a dict.
    """
    path = Path(path)
    try:
        data = load_restricted_pickle(path, model_containers=False)
    except (UnsafePickleError, OSError):
        raise
    except Exception as e:  # truncated or not a pickle
        raise ValueError(f"{path}: cannot unpickle: {type(e).__name__}: {e}") from None
    if not isinstance(data, dict):
        raise ValueError(f"{path}: expected a dict, got {type(data).__name__}")
    return data


def build_3dpw(
    root: str | os.PathLike,
    out_path: str | os.PathLike,
    *,
    split: str = "test",
    every_nth: int = 1,
    sequences: Optional[list[str]] = None,
    image_storage: str = "bytes",
    bbox_scale_factor: float = SPIN_BBOX_SCALE_FACTOR,
    progress: Progress = no_progress,
) -> BuildReport:
    """Build 3DPW single-view bundles (one per valid person-frame) with SMPL ground truth.

    Args:
        root: folder holding ``sequenceFiles/`` and ``imageFiles/``.
        out_path: output bundle file.
        split: ``"test"`` (default), ``"validation"`` or ``"train"``.
        every_nth: frame step.
        sequences: only these sequence names (pickle stems).
        image_storage: ``"bytes"`` (jpgs embedded unchanged) or ``"paths"`` (relative to
            ``root``).
        bbox_scale_factor: crop box enlargement.
        progress: told ``(stage, done, total)`` as sequences (or bundles) finish.

    Returns:
        the :class:`BuildReport`; subjects are named ``<sequence>/person<i>``.

    Raises:
        FileNotFoundError: the split's ``sequenceFiles`` folder does not exist.
        ValueError: unknown split.
    """
    root = Path(root)
    out_path = Path(out_path)
    if split not in PW3D_SPLITS:
        raise ValueError(f"unknown 3DPW split {split!r}; known: {', '.join(PW3D_SPLITS)}")
    if every_nth < 1:
        raise ValueError(f"every_nth must be >= 1, got {every_nth}")
    seq_dir = root / "sequenceFiles" / split
    if not seq_dir.is_dir():
        raise FileNotFoundError(f"{seq_dir}: 3DPW sequence folder not found")
    files = sorted(seq_dir.glob("*.pkl"))
    if sequences is not None:
        files = [p for p in files if p.stem in set(sequences)]
    report = BuildReport("3dpw", split, out_path)
    attrs = {"source": str(root.resolve()), "every_nth": int(every_nth),
             "bbox_scale_factor": float(bbox_scale_factor)}
    with BundleWriter(out_path, allow_empty=False, dataset="3dpw", split=split, num_views=1, keypoint_set="smpl24",
                      joints_3d_keypoint_set="smpl24", joints_3d_frame="world", cameras=True, smpl=True,
                      image_storage=image_storage,
                      image_root=str(root.resolve()) if image_storage == "paths" else None,
                      attrs=attrs) as writer:
        for path in with_progress(files, progress, "3DPW sequences"):
            _build_sequence(path, root, every_nth, image_storage, bbox_scale_factor, writer, report)
    return report


def _person_arrays(data: dict[str, Any], path: Path) -> tuple[int, int, dict[str, Any]]:
    """Validate a pickle's layout; return persons, frames and converted arrays."""
    missing = [k for k in _REQUIRED if k not in data]
    if missing:
        raise ValueError(f"{path}: missing key(s) {', '.join(missing)}")
    persons = len(data["poses"])
    cam_poses = np.asarray(data["cam_poses"], dtype=np.float64)
    if cam_poses.ndim != 3 or cam_poses.shape[1:] != (4, 4):
        raise ValueError(f"{path}: cam_poses has shape {cam_poses.shape}, expected (frames, 4, 4)")
    frames = len(cam_poses)
    K = np.asarray(data["cam_intrinsics"], dtype=np.float64)
    if K.shape != (3, 3):
        raise ValueError(f"{path}: cam_intrinsics has shape {K.shape}, expected (3, 3)")
    out: dict[str, Any] = {"cam_poses": cam_poses, "K": K}
    for key, tail in (("poses", (72,)), ("trans", (3,)), ("jointPositions", (72,)), ("campose_valid", ()),
                      ("poses2d", (3, 18))):
        if key not in data:
            continue
        if len(data[key]) != persons:
            raise ValueError(f"{path}: {key} has {len(data[key])} persons, poses has {persons}")
        arrays = [np.asarray(a, dtype=np.float64) for a in data[key]]
        for p, a in enumerate(arrays):
            if a.shape != (frames,) + tail:
                raise ValueError(f"{path}: {key}[{p}] has shape {a.shape}, expected {(frames,) + tail}")
        out[key] = arrays
    betas = []
    for p, b in enumerate(data["betas"]):
        b = np.asarray(b, dtype=np.float64).reshape(-1)
        if b.size < 10:
            raise ValueError(f"{path}: betas[{p}] has {b.size} values, expected at least 10")
        betas.append(b[:10])
    out["betas"] = betas
    genders = []
    for p, g in enumerate(data["genders"]):
        g = g.decode("latin1") if isinstance(g, bytes) else str(g)
        if g.lower() not in _GENDERS:
            raise ValueError(f"{path}: genders[{p}] is {g!r}, expected 'm' or 'f'")
        genders.append(_GENDERS[g.lower()])
    if len(betas) != persons or len(genders) != persons:
        raise ValueError(f"{path}: betas/genders list {len(betas)}/{len(genders)} persons, "
                         f"poses has {persons}")
    out["genders"] = genders
    return persons, frames, out


def _build_sequence(path: Path, root: Path, step: int, image_storage: str, bbox_factor: float,
                    writer: BundleWriter, report: BuildReport) -> None:
    try:
        data = load_3dpw_pickle(path)
        seq = str(data.get("sequence", path.stem))
        persons, frames, arr = _person_arrays(data, path)
    except (ValueError, UnsafePickleError, OSError) as e:
        report.skip("", path.stem, None, str(e))
        return
    size: Optional[tuple[int, int]] = None
    K, dist = arr["K"], np.zeros(5)
    for i in range(0, frames, step):
        frame = i  # pose frame i is image i (SPIN/VIBE), whatever img_frame_ids says
        rel = f"imageFiles/{seq}/image_{frame:05d}.jpg"
        image_path = root / rel
        image_bytes: Optional[bytes] = None
        for p in range(persons):
            subject = f"{seq}/person{p}"
            if not arr["campose_valid"][p][i]:
                report.skip(subject, seq, frame, "campose_valid is false")
                continue
            values = [arr["cam_poses"][i], arr["poses"][p][i], arr["trans"][p][i],
                      arr["jointPositions"][p][i], arr["betas"][p]]
            if not all(np.all(np.isfinite(v)) for v in values):
                report.skip(subject, seq, frame, f"non-finite values in {path}")
                continue
            if not image_path.is_file():
                report.skip(subject, seq, frame, f"image not found: {image_path}")
                continue
            if image_bytes is None:
                try:  # decoded completely: a cut or corrupt jpg is skipped and named
                    image_bytes, size = read_source_image(image_path)
                except (ValueError, OSError) as e:
                    report.skip(subject, seq, frame, f"bad source image: {e}")
                    continue
            R, t = arr["cam_poses"][i][:3, :3], arr["cam_poses"][i][:3, 3]
            if not np.allclose(R @ R.T, np.eye(3), atol=1e-4) or np.linalg.det(R) < 0:
                report.skip(subject, seq, frame, f"cam_poses[{i}] is not a rigid transform in {path}")
                continue
            joints = arr["jointPositions"][p][i].reshape(len(_SMPL24), 3)
            uv, depth = project_world_points(joints, K, dist, R, t)
            inside = (depth > 0) & points_inside_image(uv, size)
            keypoints = np.concatenate([np.where(depth[:, None] > 0, uv, 0.0),
                                        inside[:, None].astype(np.float64)], axis=1)
            try:
                center, scale = _crop(arr, p, i, keypoints, bbox_factor)
            except ValueError as e:
                report.skip(subject, seq, frame, f"no crop: {e}")
                continue
            bundle: dict[str, Any] = {
                "image_size": np.array([size], dtype=np.int32),
                "center": center[None],
                "scale": np.array([scale]),
                "keypoints_2d": keypoints[None],
                "joints_3d": np.concatenate([joints, np.ones((len(joints), 1))], axis=1),
                "camera_K": K[None],
                "camera_dist": dist[None],
                "camera_R": R[None],
                "camera_t": t[None],
                "smpl_global_orient": arr["poses"][p][i][:3],
                "smpl_body_pose": arr["poses"][p][i][3:],
                "smpl_betas": arr["betas"][p],
                "smpl_transl": arr["trans"][p][i],
                "smpl_gender": arr["genders"][p],
                "has_smpl": True,
                "subject": subject,
                "sequence": seq,
                "frame": frame,
                "camera_names": [seq],  # one moving phone camera per sequence
            }
            if image_storage == "bytes":
                if image_bytes is None:
                    image_bytes = image_path.read_bytes()
                bundle["images"] = [image_bytes]
            else:
                bundle["image_paths"] = [rel]
            writer.append(bundle)
            report.bundles.append((subject, seq, frame))


def _crop(arr: dict[str, Any], person: int, index: int, projected: np.ndarray,
          factor: float) -> tuple[np.ndarray, float]:
    if "poses2d" in arr:
        detections = arr["poses2d"][person][index].T  # (18, 3): x, y, confidence
        if np.all(np.isfinite(detections)) and np.count_nonzero(detections[:, 2] > KEYPOINT_MIN_CONFIDENCE) >= 2:
            return keypoint_crop_box(detections, scale_factor=factor)
    return keypoint_crop_box(projected, scale_factor=factor)
