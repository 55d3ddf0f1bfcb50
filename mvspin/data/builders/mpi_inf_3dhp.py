"""MPI-INF-3DHP -> bundle files (four-view training bundles, single-view test bundles).

Training layout (``split="train"``), per subject ``S1..S8`` and sequence ``Seq1``, ``Seq2``:

- ``annot.mat`` (MATLAB v5, ``scipy.io.loadmat``): cell arrays with one cell per camera (0..13):
  ``annot2`` (frames, 28*2) pixels, ``annot3`` and ``univ_annot3`` (frames, 28*3) millimetres in
  that camera's frame;
- ``camera.calibration`` (text, "Skeletool Camera Calibration File V1.0"): per camera ``name``,
  ``sensor``, ``size`` (w h), ``animated``, ``intrinsic`` (16 numbers, 4x4 row-major; K is its
  top-left 3x3), ``extrinsic`` (16 numbers, 4x4 row-major world-to-camera, mm), ``radial``;
- ``imageSequence/video_<camera>.avi``.

Bundles use cameras 0, 2, 7, 8 and every 10th frame where all four views hold all 17 joints
inside the image (MV-SPIN). 2D keypoints are the dataset's ``annot2``; ``joints_3d`` is view 0's
``annot3`` mapped to the world frame with its extrinsics (world = the studio frame of the
calibration), metres; cameras are stored (no lens distortion: the dataset's ``radial`` is 0).

Test layout (``split="test"``), ``TS1..TS6`` (under ``<root>`` or
``<root>/mpi_inf_3dhp_test_set``): ``annot_data.mat`` (MATLAB v7.3 = HDF5, read with h5py;
MATLAB writes arrays transposed, so h5py sees ``annot2`` as (frames, 1, 17, 2)) with ``annot2``,
``annot3``, ``univ_annot3``, ``valid_frame``; images ``imageSequence/img_XXXXXX.jpg`` (1-based).
Each valid frame is a single-view bundle; ``joints_3d`` is ``univ_annot3`` (the evaluation
protocol's ground truth) in the camera frame (``coordinate_frame="view0_camera"``), since the
test set ships no extrinsics; no cameras are stored.
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Optional, Sequence

import h5py
import numpy as np
import scipy.io

from calibration import Camera
from calibration.formats.mpi_inf_3dhp import read_mpi_calibration as read_mpi_rig
from mvspin.body.keypoint_sets import get_keypoint_set
from mvspin.data.builders import (
    BuildReport,
    FrameSink,
    read_source_image,
    with_progress,
)
from mvspin.data.bundle_format import BundleWriter
from mvspin.data.video import VideoError, iter_video_frames, video_info
from mvspin.geometry.crop import SPIN_BBOX_SCALE_FACTOR, keypoint_crop_box, points_inside_image
from mvspin.progress import Progress, no_progress

__all__ = [
    "MPI28_JOINT_NAMES",
    "MPI28_TO_MPI17",
    "MPI_TRAIN_SUBJECTS",
    "MPI_TRAIN_SEQUENCES",
    "MPI_TRAIN_CAMERAS",
    "MPI_TEST_SEQUENCES",
    "read_mpi_calibration",
    "build_mpi_inf_3dhp",
]

MPI28_JOINT_NAMES: tuple[str, ...] = (
    "spine3", "spine4", "spine2", "spine", "pelvis", "neck", "head", "head_top",
    "left_clavicle", "left_shoulder", "left_elbow", "left_wrist", "left_hand",
    "right_clavicle", "right_shoulder", "right_elbow", "right_wrist", "right_hand",
    "left_hip", "left_knee", "left_ankle", "left_foot", "left_toe",
    "right_hip", "right_knee", "right_ankle", "right_foot", "right_toe",
)
"""The 28 annotated joints of the training set, in ``annot2``/``annot3`` order (the dataset's
``mpii_get_joint_set('all')``)."""

_MPI17 = get_keypoint_set("mpi_inf_3dhp17")
# The 17 test joints are named like their training counterparts, so the map follows by name.
MPI28_TO_MPI17: tuple[int, ...] = tuple(MPI28_JOINT_NAMES.index(n) for n in _MPI17.names)
"""Rows of the 28 training joints giving the ``mpi_inf_3dhp17`` set (test order)."""

MPI_TRAIN_SUBJECTS: tuple[str, ...] = tuple(f"S{i}" for i in range(1, 9))
MPI_TRAIN_SEQUENCES: tuple[str, ...] = ("Seq1", "Seq2")
MPI_TRAIN_CAMERAS: tuple[int, ...] = (0, 2, 7, 8)  # MV-SPIN's four views
MPI_TEST_SEQUENCES: tuple[str, ...] = tuple(f"TS{i}" for i in range(1, 7))
_SPLIT_STEP = {"train": 10, "test": 1}
_NUM_RAW = len(MPI28_JOINT_NAMES)


def read_mpi_calibration(path: str | os.PathLike) -> dict[str, Camera]:
    """Parse an MPI-INF-3DHP ``camera.calibration`` file: ``{camera name: Camera}`` (metres; the
    parser is :func:`calibration.formats.mpi_inf_3dhp.read_mpi_calibration`).

    Raises:
        FileNotFoundError: the file does not exist.
        ValueError: a line or a camera entry is malformed (names the file, camera and key).
    """
    return {c.name: c for c in read_mpi_rig(path)}


def build_mpi_inf_3dhp(
    root: str | os.PathLike,
    out_path: str | os.PathLike,
    *,
    split: str = "train",
    every_nth: Optional[int] = None,
    subjects: Optional[Sequence[str]] = None,
    sequences: Optional[Sequence[str]] = None,
    cameras: Sequence[int] = MPI_TRAIN_CAMERAS,
    image_storage: str = "bytes",
    frames_dir: Optional[str | os.PathLike] = None,
    jpeg_quality: int = 95,
    bbox_scale_factor: float = SPIN_BBOX_SCALE_FACTOR,
    require_joints_in_image: Optional[bool] = None,
    progress: Progress = no_progress,
) -> BuildReport:
    """Build MPI-INF-3DHP bundles.

    Args:
        root: dataset root (``S1..S8`` for train; ``TS1..TS6`` or ``mpi_inf_3dhp_test_set/`` for
            test).
        out_path: output bundle file.
        split: ``"train"`` (four-view bundles from the videos) or ``"test"`` (single view).
        every_nth: frame step (default 10 for train, 1 for test).
        subjects: training subjects (default S1..S8); ignored for test.
        sequences: ``Seq1``/``Seq2`` for train, ``TS1``.. for test (default: all).
        cameras: training cameras, one view each, in order (default 0, 2, 7, 8).
        image_storage: ``"bytes"`` (embedded) or ``"paths"`` (train: extracted frames under
            ``frames_dir``, default ``<out stem>_frames/``; test: the original jpgs, relative
            to the test-set folder).
        jpeg_quality: JPEG quality of frames extracted from videos.
        bbox_scale_factor: crop box enlargement over the 17 joints' bounding box.
        require_joints_in_image: skip frames with any of the 17 joints outside any view (default:
            True for train, the MV-SPIN rule; False for test, where such joints get confidence 0).
        progress: told ``(stage, done, total)`` as sequences (or bundles) finish.

    Returns:
        the :class:`BuildReport`.

    Raises:
        FileNotFoundError: ``root`` does not exist.
        ValueError: unknown split.
    """
    root = Path(root)
    out_path = Path(out_path)
    if split not in _SPLIT_STEP:
        raise ValueError(f"unknown MPI-INF-3DHP split {split!r}; known: {', '.join(_SPLIT_STEP)}")
    if not root.is_dir():
        raise FileNotFoundError(f"{root}: MPI-INF-3DHP root folder not found")
    step = int(every_nth) if every_nth is not None else _SPLIT_STEP[split]
    if step < 1:
        raise ValueError(f"every_nth must be >= 1, got {step}")
    require = (split == "train") if require_joints_in_image is None else bool(require_joints_in_image)
    if split == "train":
        return _build_train(root, out_path, step, tuple(subjects or MPI_TRAIN_SUBJECTS),
                            tuple(sequences or MPI_TRAIN_SEQUENCES), tuple(int(c) for c in cameras),
                            image_storage, frames_dir, jpeg_quality, bbox_scale_factor, require, progress)
    return _build_test(root, out_path, step, tuple(sequences or MPI_TEST_SEQUENCES), image_storage,
                       bbox_scale_factor, require, progress)


# --- training set --------------------------------------------------------------------------
def _load_train_annotations(path: Path, cameras: Sequence[int]) -> tuple[np.ndarray, np.ndarray]:
    """``annot2 (V, F, 28, 2)`` pixels and ``annot3 (V, F, 28, 3)`` metres for the cameras."""
    try:
        mat = scipy.io.loadmat(str(path))
    except NotImplementedError:
        raise ValueError(f"{path}: MATLAB v7.3 annot.mat is not supported for training sequences "
                         "(the dataset ships v5 files)") from None
    except Exception as e:  # scipy raises assorted types for damaged files
        raise ValueError(f"{path}: cannot read MATLAB file: {e}") from None
    out = []
    for key, dims in (("annot2", 2), ("annot3", 3)):
        if key not in mat:
            raise ValueError(f"{path}: missing variable {key!r}")
        cells = np.asarray(mat[key], dtype=object).reshape(-1)
        per_cam = []
        for c in cameras:
            if c >= len(cells):
                raise ValueError(f"{path}: {key} has {len(cells)} camera cells, camera {c} requested")
            a = np.asarray(cells[c], dtype=np.float64)
            if a.ndim != 2 or a.shape[1] != _NUM_RAW * dims:
                raise ValueError(f"{path}: {key}{{{c}}} has shape {a.shape}, "
                                 f"expected (frames, {_NUM_RAW * dims})")
            per_cam.append(a.reshape(len(a), _NUM_RAW, dims))
        frames = min(len(a) for a in per_cam)
        out.append(np.stack([a[:frames] for a in per_cam]))
    frames = min(out[0].shape[1], out[1].shape[1])
    return out[0][:, :frames], out[1][:, :frames] / 1000.0


def _build_train(root: Path, out_path: Path, step: int, subjects: tuple[str, ...], sequences: tuple[str, ...],
                 cameras: tuple[int, ...], image_storage: str, frames_dir: Optional[str | os.PathLike],
                 jpeg_quality: int, bbox_factor: float, require: bool, progress: Progress) -> BuildReport:
    sink = FrameSink(image_storage, out_path, jpeg_quality=jpeg_quality,
                     frames_dir=Path(frames_dir) if frames_dir is not None else None)
    report = BuildReport("mpi_inf_3dhp", "train", out_path)
    cam_names = [str(c) for c in cameras]
    attrs = {"source": str(root.resolve()), "every_nth": step, "bbox_scale_factor": float(bbox_factor),
             "require_joints_in_image": require}
    work = [(s, q) for s in subjects for q in sequences]
    with BundleWriter(out_path, allow_empty=False, dataset="mpi_inf_3dhp", split="train", num_views=len(cameras),
                      keypoint_set="mpi_inf_3dhp17", joints_3d_keypoint_set="mpi_inf_3dhp17",
                      joints_3d_frame="world", cameras=True, image_storage=image_storage,
                      image_root=sink.image_root, attrs=attrs) as writer:
        for subject, seq in with_progress(work, progress, "MPI-INF-3DHP sequences"):
            seq_dir = root / subject / seq
            if not seq_dir.is_dir():
                report.skip(subject, seq, None, f"missing sequence folder {seq_dir}")
                continue
            _train_sequence(subject, seq, seq_dir, cameras, cam_names, step, sink, bbox_factor, require,
                            writer, report)
    return report


def _train_sequence(subject: str, seq: str, seq_dir: Path, cameras: tuple[int, ...], cam_names: list[str],
                    step: int, sink: FrameSink, bbox_factor: float, require: bool,
                    writer: BundleWriter, report: BuildReport) -> None:
    calib_path = seq_dir / "camera.calibration"
    annot_path = seq_dir / "annot.mat"
    videos = [seq_dir / "imageSequence" / f"video_{c}.avi" for c in cameras]
    for p in (calib_path, annot_path):
        if not p.is_file():
            report.skip(subject, seq, None, f"missing file {p}")
            return
    missing = [(n, v) for n, v in zip(cam_names, videos) if not v.is_file()]
    for name, video in missing:
        report.skip(subject, seq, None, f"missing video {video}", camera=name)
    if missing:
        return
    try:
        calibration = read_mpi_calibration(calib_path)
        absent = [n for n in cam_names if n not in calibration]
        if absent:
            raise ValueError(f"{calib_path}: no camera {', '.join(absent)}")
        cams = [calibration[n] for n in cam_names]
        annot2, annot3 = _load_train_annotations(annot_path, cameras)
        for cam, video in zip(cams, videos):
            info = video_info(video)
            if (info.width, info.height) != cam.image_size:
                raise ValueError(f"{video}: frames are {info.width}x{info.height} but {calib_path} "
                                 f"gives camera {cam.name} size {cam.image_size[0]}x{cam.image_size[1]}")
    except (ValueError, VideoError) as e:
        report.skip(subject, seq, None, str(e))
        return

    kp2d = annot2[:, :, list(MPI28_TO_MPI17)]  # (V, F, 17, 2)
    cam3d = annot3[:, :, list(MPI28_TO_MPI17)]  # (V, F, 17, 3) camera frames, metres
    frames = list(range(0, kp2d.shape[1], step))
    streams = [iter_video_frames(v, frames) for v in videos]
    try:
        for frame, *decoded in zip(frames, *streams):
            images = [img for _, img in decoded]
            absent = [n for n, img in zip(cam_names, images) if img is None]
            if absent:
                report.skip(subject, seq, frame, "missing video frame: video of camera "
                            f"{', '.join(absent)} ends before frame {frame}", camera=absent[0])
                continue
            xy = kp2d[:, frame]
            if not (np.all(np.isfinite(xy)) and np.all(np.isfinite(cam3d[:, frame]))):
                report.skip(subject, seq, frame, f"non-finite annotations in {seq_dir / 'annot.mat'}")
                continue
            inside = np.stack([points_inside_image(xy[v], cams[v].image_size) for v in range(len(cams))])
            if require and not inside.all():
                v = int(np.argmin(inside.all(axis=1)))
                names = [_MPI17.names[j] for j in np.flatnonzero(~inside[v])]
                report.skip(subject, seq, frame, f"joints outside the image: camera {cam_names[v]}: "
                            f"{', '.join(names)}", camera=cam_names[v])
                continue
            keypoints = np.concatenate([xy, inside[..., None].astype(np.float64)], axis=-1)
            try:
                crops = [keypoint_crop_box(keypoints[v], scale_factor=bbox_factor) for v in range(len(cams))]
            except ValueError as e:
                report.skip(subject, seq, frame, f"no crop: {e}")
                continue
            # World joints from the first view: x_world = R^T (x_cam - t).
            world = (cam3d[0, frame] - cams[0].t) @ cams[0].R
            stored = [sink.store(img, f"{subject}/{seq}/video_{n}/{frame:06d}")
                      for n, img in zip(cam_names, images)]
            writer.append({
                sink.field: stored,
                "image_size": np.array([c.image_size for c in cams], dtype=np.int32),
                "center": np.stack([c for c, _ in crops]),
                "scale": np.array([s for _, s in crops]),
                "keypoints_2d": keypoints,
                "joints_3d": np.concatenate([world, np.ones((len(world), 1))], axis=1),
                "camera_K": np.stack([c.K for c in cams]),
                "camera_dist": np.stack([c.dist for c in cams]),
                "camera_R": np.stack([c.R for c in cams]),
                "camera_t": np.stack([c.t for c in cams]),
                "subject": subject,
                "sequence": seq,
                "frame": frame,
                "camera_names": cam_names,
            })
            report.bundles.append((subject, seq, frame))
    except VideoError as e:
        report.skip(subject, seq, None, str(e))
    finally:
        for s in streams:
            s.close()


# --- test set ------------------------------------------------------------------------------
def _frames_first(matlab: np.ndarray, tail: tuple[int, int], key: str, path: Path) -> np.ndarray:
    """MATLAB's ``(dims, joints, 1, frames)`` array -> ``(frames, joints, dims)``."""
    a = np.asarray(matlab, dtype=np.float64)
    joints, dims = tail
    if a.ndim < 2 or a.shape[:2] != (dims, joints):
        raise ValueError(f"{path}: {key} has MATLAB shape {a.shape}, expected ({dims}, {joints}, 1, frames)")
    return a.reshape(dims, joints, -1).transpose(2, 1, 0)


def _load_test_annotations(path: Path) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``annot2 (F, 17, 2)`` pixels, ``univ_annot3 (F, 17, 3)`` metres, ``valid (F,)`` bool."""
    try:
        if h5py.is_hdf5(path):
            with h5py.File(path, "r") as f:
                # HDF5 stores MATLAB's column-major arrays with the axes reversed: undo that.
                raw = {k: np.asarray(f[k]).T for k in ("annot2", "univ_annot3", "valid_frame") if k in f}
        else:
            mat = scipy.io.loadmat(str(path))
            raw = {k: mat[k] for k in ("annot2", "univ_annot3", "valid_frame") if k in mat}
    except Exception as e:  # h5py/scipy raise assorted types for damaged files
        raise ValueError(f"{path}: cannot read MATLAB file: {e}") from None
    for key in ("annot2", "univ_annot3", "valid_frame"):
        if key not in raw:
            raise ValueError(f"{path}: missing variable {key!r}")
    joints = len(_MPI17)
    annot2 = _frames_first(raw["annot2"], (joints, 2), "annot2", path)
    univ = _frames_first(raw["univ_annot3"], (joints, 3), "univ_annot3", path) / 1000.0
    valid = np.asarray(raw["valid_frame"]).reshape(-1) != 0
    if not len(annot2) == len(univ) == len(valid):
        raise ValueError(f"{path}: annot2, univ_annot3 and valid_frame disagree on the frame count "
                         f"({len(annot2)}, {len(univ)}, {len(valid)})")
    return annot2, univ, valid


def _build_test(root: Path, out_path: Path, step: int, sequences: tuple[str, ...], image_storage: str,
                bbox_factor: float, require: bool, progress: Progress) -> BuildReport:
    base = root / "mpi_inf_3dhp_test_set"
    if not base.is_dir() or (root / sequences[0]).is_dir():
        base = root
    report = BuildReport("mpi_inf_3dhp", "test", out_path)
    if image_storage not in ("bytes", "paths"):
        raise ValueError(f"image_storage must be 'bytes' or 'paths', got {image_storage!r}")
    attrs = {"source": str(base.resolve()), "every_nth": step, "bbox_scale_factor": float(bbox_factor),
             "require_joints_in_image": require, "joints_3d_source": "univ_annot3"}
    with BundleWriter(out_path, allow_empty=False, dataset="mpi_inf_3dhp", split="test", num_views=1,
                      keypoint_set="mpi_inf_3dhp17", joints_3d_keypoint_set="mpi_inf_3dhp17",
                      joints_3d_frame="view0_camera", image_storage=image_storage,
                      image_root=str(base.resolve()) if image_storage == "paths" else None,
                      attrs=attrs) as writer:
        for seq in with_progress(sequences, progress, "MPI-INF-3DHP test sequences"):
            annot_path = base / seq / "annot_data.mat"
            if not annot_path.is_file():
                report.skip(seq, seq, None, f"missing file {annot_path}")
                continue
            try:
                annot2, univ, valid = _load_test_annotations(annot_path)
            except ValueError as e:
                report.skip(seq, seq, None, str(e))
                continue
            size: Optional[tuple[int, int]] = None
            for frame in range(0, len(annot2), step):
                if not valid[frame]:
                    report.skip(seq, seq, frame, "valid_frame is 0")
                    continue
                if not (np.all(np.isfinite(annot2[frame])) and np.all(np.isfinite(univ[frame]))):
                    report.skip(seq, seq, frame, f"non-finite annotations in {annot_path}")
                    continue
                rel = f"{seq}/imageSequence/img_{frame + 1:06d}.jpg"
                image_path = base / rel
                if not image_path.is_file():
                    report.skip(seq, seq, frame, f"image not found: {image_path}")
                    continue
                try:  # decoded completely: a cut or corrupt jpg is skipped and named
                    image_bytes, size = read_source_image(image_path)
                except (ValueError, OSError) as e:
                    report.skip(seq, seq, frame, f"bad source image: {e}")
                    continue
                inside = points_inside_image(annot2[frame], size)
                if require and not inside.all():
                    names = [_MPI17.names[j] for j in np.flatnonzero(~inside)]
                    report.skip(seq, seq, frame, f"joints outside the image: {', '.join(names)}", camera=seq)
                    continue
                keypoints = np.concatenate([annot2[frame], inside[:, None].astype(np.float64)], axis=1)
                try:
                    center, scale = keypoint_crop_box(annot2[frame], scale_factor=bbox_factor)
                except ValueError as e:
                    report.skip(seq, seq, frame, f"no crop: {e}")
                    continue
                bundle: dict[str, Any] = {
                    "image_size": np.array([size], dtype=np.int32),
                    "center": center[None],
                    "scale": np.array([scale]),
                    "keypoints_2d": keypoints[None],
                    "joints_3d": np.concatenate([univ[frame], np.ones((len(_MPI17), 1))], axis=1),
                    "subject": seq,
                    "sequence": seq,
                    "frame": frame,
                    "camera_names": [seq],  # one unnamed camera per test sequence
                }
                if image_storage == "bytes":
                    bundle["images"] = [image_bytes]
                else:
                    bundle["image_paths"] = [rel]
                writer.append(bundle)
                report.bundles.append((seq, seq, frame))
    return report
