"""Human3.6M -> four-view bundle files.

Raw layout read by :func:`build_h36m` (the dataset's own release):

- ``<root>/S<n>/MyPoseFeatures/D3_Positions/<Action>.cdf``: CDF variable ``Pose``, 32 joints x
  (x, y, z) per frame, millimetres, world frame (read with ``cdflib``);
- ``<root>/S<n>/Videos/<Action>.<camera id>.mp4``, 50 fps, synchronised with the poses;
- camera parameters, in either of two files (found as ``<root>/cameras.h5`` or
  ``<root>/cameras.json`` unless ``camera_file`` is given):

  * ``cameras.h5`` as distributed with Martinez et al.'s 3d-pose-baseline: groups
    ``subject<n>/camera<m>`` (m = 1..4) with datasets ``R`` (3x3, stored transposed: the
    world-to-camera rotation is ``R.T``), ``T`` (3x1, camera centre in the world, mm), ``f``
    (2x1), ``c`` (2x1), ``k`` (3x1 radial), ``p`` (2x1 tangential) and ``Name`` (the camera id as
    character codes; when absent, camera m is the m-th of :data:`H36M_CAMERA_IDS`);
  * a JSON file documented here: ``{"S1": {"54138969": {"R": [[...], [...], [...]], "T": [x, y,
    z], "f": [fx, fy], "c": [cx, cy], "k": [k1, k2, k3], "p": [p1, p2]}, ...}, ...}`` where
    ``R`` is the world-to-camera rotation (``x_cam = R (x_world - T)``) and ``T`` the camera
    centre in mm.

  Both are converted to the bundle convention: ``camera_R = R``, ``camera_t = -R T / 1000``
  (metres), ``K = [[fx, 0, cx], [0, fy, cy], [0, 0, 1]]`` and OpenCV distortion
  ``(k1, k2, p1, p2, k3)``. Human3.6M's own projection code applies the tangential terms in a
  slightly different form than OpenCV (sub-pixel differences for its small ``p``); the builder
  projects with the OpenCV model so that stored 2D keypoints are exactly the projection of the
  stored 3D joints through the stored cameras.

Bundles: the 17 ``h36m17`` joints, world frame, metres, projected into all four cameras of the
same action and frame. Training subjects S1, S5, S6, S7, S8 use every 10th frame, test subjects
S9, S11 every 5th (MV-SPIN). The crop is the projected joints' bounding box enlarged by
``bbox_scale_factor`` (default 1.2, SPIN's factor for MPI-INF-3DHP and 3DPW).

:func:`build_h36m_from_spin_npz` instead reads SPIN's preprocessed ``.npz`` plus extracted frames
and groups the four cameras of each frame into a bundle.
"""
from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Any, Iterable, Optional, Sequence

import numpy as np

from calibration import Camera
from calibration.formats.h36m import H36M_CAMERA_IDS, read_h36m_cameras
from mvspin.body.keypoint_sets import get_keypoint_set
from mvspin.data.builders import (
    BuildReport,
    FrameSink,
    project_world_points,
    read_source_image,
    with_progress,
)
from mvspin.data.bundle_format import BundleWriter
from mvspin.data.video import VideoError, iter_video_frames, video_info
from mvspin.errors import import_optional
from mvspin.geometry.crop import SPIN_BBOX_SCALE_FACTOR, keypoint_crop_box, points_inside_image
from mvspin.progress import Progress, no_progress

__all__ = [
    "H36M_CAMERA_IDS",
    "H36M_TRAIN_SUBJECTS",
    "H36M_TEST_SUBJECTS",
    "H36M32_TO_H36M17",
    "load_h36m_cameras",
    "read_h36m_poses",
    "build_h36m",
    "build_h36m_from_spin_npz",
]

H36M_TRAIN_SUBJECTS: tuple[str, ...] = ("S1", "S5", "S6", "S7", "S8")
H36M_TEST_SUBJECTS: tuple[str, ...] = ("S9", "S11")
_SPLIT_DEFAULTS = {"train": (H36M_TRAIN_SUBJECTS, 10), "test": (H36M_TEST_SUBJECTS, 5)}  # MV-SPIN

H36M32_TO_H36M17: tuple[int, ...] = (
    0,           # pelvis          <- Hips
    6, 7, 8,     # left leg        <- LeftUpLeg, LeftLeg, LeftFoot
    1, 2, 3,     # right leg       <- RightUpLeg, RightLeg, RightFoot
    12,          # spine           <- Spine1
    13,          # thorax          <- Neck (base of the neck)
    14,          # neck            <- Head (joint; near the nose)
    15,          # head            <- head end site (top of the head)
    17, 18, 19,  # left arm        <- LeftArm, LeftForeArm, LeftHand
    25, 26, 27,  # right arm       <- RightArm, RightForeArm, RightHand
)
"""Rows of the raw 32-joint ``Pose`` giving the ``h36m17`` keypoint set in its order (left leg
first, as SPIN's ``J_regressor_h36m``); raw names from the dataset's skeleton metadata."""

_NUM_RAW_JOINTS = 32
_H36M17 = get_keypoint_set("h36m17")
assert len(H36M32_TO_H36M17) == len(_H36M17)


def load_h36m_cameras(path: str | os.PathLike) -> dict[str, dict[str, Camera]]:
    """Read Human3.6M camera parameters (``cameras.h5`` of 3d-pose-baseline, or the JSON layout
    in this module's docstring; parsed by :func:`calibration.formats.h36m.read_h36m_cameras`).

    Returns:
        ``{subject: {camera id: Camera}}`` with subjects named ``"S1"``, ``"S5"``, ...

    Raises:
        FileNotFoundError: the file does not exist.
        ValueError: the file does not follow either layout (names the file and the entry).
    """
    return {subject: {c.name: c for c in rig} for subject, rig in read_h36m_cameras(path).items()}


def read_h36m_poses(path: str | os.PathLike) -> np.ndarray:
    """Read a ``D3_Positions`` CDF file: ``(F, 32, 3)`` world joint positions in metres.

    Raises:
        ValueError: the file has no ``Pose`` variable or its size is not a multiple of 96.
    """
    cdflib = import_optional("cdflib", extra="datasets", purpose="Human3.6M CDF pose files")

    path = Path(path)
    try:
        cdf = cdflib.CDF(str(path))
        raw = np.asarray(cdf.varget("Pose"), dtype=np.float64)
    except Exception as e:  # cdflib raises assorted types for damaged files
        raise ValueError(f"{path}: cannot read CDF variable 'Pose': {e}") from None
    if raw.size == 0 or raw.size % (_NUM_RAW_JOINTS * 3) or raw.shape[-1] != _NUM_RAW_JOINTS * 3:
        raise ValueError(f"{path}: variable 'Pose' has shape {raw.shape}, expected (1, F, 96) or (F, 96)")
    return raw.reshape(-1, _NUM_RAW_JOINTS, 3) / 1000.0


def _find_camera_file(root: Path, camera_file: Optional[str | os.PathLike]) -> Path:
    if camera_file is not None:
        return Path(camera_file)
    tried = [root / "cameras.h5", root / "cameras.json"]
    for p in tried:
        if p.is_file():
            return p
    raise FileNotFoundError("Human3.6M camera parameters not found; tried "
                            + ", ".join(str(p) for p in tried) + " (pass camera_file=...)")


def build_h36m(
    root: str | os.PathLike,
    out_path: str | os.PathLike,
    *,
    split: str = "train",
    every_nth: Optional[int] = None,
    subjects: Optional[Sequence[str]] = None,
    actions: Optional[Iterable[str]] = None,
    cameras: Sequence[str] = H36M_CAMERA_IDS,
    camera_file: Optional[str | os.PathLike] = None,
    image_storage: str = "bytes",
    frames_dir: Optional[str | os.PathLike] = None,
    jpeg_quality: int = 95,
    bbox_scale_factor: float = SPIN_BBOX_SCALE_FACTOR,
    require_joints_in_image: bool = True,
    progress: Progress = no_progress,
) -> BuildReport:
    """Build Human3.6M multi-view bundles from the raw release (videos + D3_Positions).

    Args:
        root: folder holding ``S1``, ``S5``, ... (and ``cameras.h5``/``cameras.json``).
        out_path: output bundle file.
        split: ``"train"`` (S1, S5, S6, S7, S8; every 10th frame) or ``"test"`` (S9, S11; every
            5th frame).
        every_nth: frame step (default by split, as above); frames 0, n, 2n, ...
        subjects: override the split's subjects.
        actions: only these actions (file stems such as ``"Directions 1"``).
        cameras: camera ids, one view each, in this order.
        camera_file: camera parameter file (default: found under ``root``).
        image_storage: ``"bytes"`` (JPEG frames embedded) or ``"paths"`` (frames written under
            ``frames_dir``, default ``<out stem>_frames/`` beside the output).
        jpeg_quality: JPEG quality of stored frames.
        bbox_scale_factor: crop box enlargement over the joints' bounding box.
        require_joints_in_image: skip frames where a joint falls outside any view (otherwise such
            joints get confidence 0).
        progress: told ``(stage, done, total)`` as sequences (or bundles) finish.

    Returns:
        the :class:`BuildReport` (bundles written; frames/sequences skipped with reasons).

    Raises:
        FileNotFoundError: ``root`` or the camera file does not exist.
        ValueError: unknown split, or an unreadable camera file.
    """
    root = Path(root)
    out_path = Path(out_path)
    if split not in _SPLIT_DEFAULTS:
        raise ValueError(f"unknown Human3.6M split {split!r}; known: {', '.join(_SPLIT_DEFAULTS)}")
    if not root.is_dir():
        raise FileNotFoundError(f"{root}: Human3.6M root folder not found")
    default_subjects, default_step = _SPLIT_DEFAULTS[split]
    subjects = tuple(subjects) if subjects is not None else default_subjects
    step = int(every_nth) if every_nth is not None else default_step
    if step < 1:
        raise ValueError(f"every_nth must be >= 1, got {step}")
    cameras = tuple(str(c) for c in cameras)
    wanted_actions = None if actions is None else set(actions)
    cam_path = _find_camera_file(root, camera_file)
    all_cams = load_h36m_cameras(cam_path)

    sink = FrameSink(image_storage, out_path, jpeg_quality=jpeg_quality,
                     frames_dir=Path(frames_dir) if frames_dir is not None else None)
    report = BuildReport("h36m", split, out_path)

    # Collect (subject, cdf) work items first so the progress bar knows the total.
    work: list[tuple[str, Path]] = []
    for subject in subjects:
        d3 = root / subject / "MyPoseFeatures" / "D3_Positions"
        if not d3.is_dir():
            report.skip(subject, "", None, f"missing pose folder {d3}")
            continue
        cams = all_cams.get(subject, {})
        missing = [c for c in cameras if c not in cams]
        if missing:
            report.skip(subject, "", None, f"no camera parameters for {', '.join(missing)} in {cam_path}")
            continue
        for cdf in sorted(d3.glob("*.cdf")):
            if wanted_actions is not None and cdf.stem not in wanted_actions:
                continue
            work.append((subject, cdf))

    attrs = {"source": str(root.resolve()), "camera_file": str(cam_path.resolve()), "every_nth": step,
             "bbox_scale_factor": float(bbox_scale_factor),
             "require_joints_in_image": bool(require_joints_in_image)}
    with BundleWriter(out_path, allow_empty=False, dataset="h36m", split=split, num_views=len(cameras),
                      keypoint_set="h36m17", joints_3d_keypoint_set="h36m17", joints_3d_frame="world",
                      cameras=True, image_storage=image_storage, image_root=sink.image_root,
                      attrs=attrs) as writer:
        for subject, cdf in with_progress(work, progress, "Human3.6M sequences"):
            _build_sequence(subject, cdf, root, [all_cams[subject][c] for c in cameras], step,
                            sink, bbox_scale_factor, require_joints_in_image, writer, report)
    return report


def _build_sequence(subject: str, cdf: Path, root: Path, cams: list[Camera], step: int,
                    sink: FrameSink, bbox_factor: float, require_in_image: bool,
                    writer: BundleWriter, report: BuildReport) -> None:
    action = cdf.stem
    sequence = action.replace(" ", "_")  # the naming SPIN's frame files use ("Directions_1")
    if "_ALL" in action:
        report.skip(subject, sequence, None, f"aggregate file, not a sequence: {cdf}")
        return
    videos = [root / subject / "Videos" / f"{action}.{c.name}.mp4" for c in cams]
    missing = [(c.name, v) for c, v in zip(cams, videos) if not v.is_file()]
    for cam_name, video in missing:
        report.skip(subject, sequence, None, f"missing video {video}", camera=cam_name)
    if missing:
        return
    try:
        poses = read_h36m_poses(cdf)
        sizes = []
        for video in videos:
            info = video_info(video)
            sizes.append((info.width, info.height))
    except (ValueError, VideoError) as e:
        report.skip(subject, sequence, None, str(e))
        return

    joints = poses[:, list(H36M32_TO_H36M17)]  # (F, 17, 3) world, metres
    frames = list(range(0, len(joints), step))
    uv = np.empty((len(cams), len(frames), len(_H36M17), 2))
    depth = np.empty((len(cams), len(frames), len(_H36M17)))
    finite = np.all(np.isfinite(joints[frames]), axis=(1, 2))
    safe = np.where(np.isfinite(joints[frames]), joints[frames], 0.0)
    for v, cam in enumerate(cams):
        uv[v], depth[v] = project_world_points(safe, cam.K, cam.dist, cam.R, cam.t)

    streams = [iter_video_frames(video, frames) for video in videos]
    try:
        for k, (frame, *decoded) in enumerate(zip(frames, *streams)):
            images = [img for _, img in decoded]
            absent = [c.name for c, img in zip(cams, images) if img is None]
            if absent:
                report.skip(subject, sequence, frame, "missing video frame: video of camera "
                            f"{', '.join(absent)} ends before frame {frame}", camera=absent[0])
                continue
            if not finite[k]:
                report.skip(subject, sequence, frame, f"non-finite 3D joints in {cdf}")
                continue
            wrong = [c.name for c, img, s in zip(cams, images, sizes) if (img.shape[1], img.shape[0]) != s]
            if wrong:
                report.skip(subject, sequence, frame, "decoded frame size differs from the video's "
                            f"reported size: camera {', '.join(wrong)}", camera=wrong[0])
                continue
            inside = np.stack([(depth[v, k] > 0) & points_inside_image(uv[v, k], sizes[v])
                               for v in range(len(cams))])  # (V, 17)
            if require_in_image and not inside.all():
                v = int(np.argmin(inside.all(axis=1)))
                names = [_H36M17.names[j] for j in np.flatnonzero(~inside[v])]
                report.skip(subject, sequence, frame, f"joints outside the image: camera {cams[v].name}: "
                            f"{', '.join(names)}", camera=cams[v].name)
                continue
            keypoints = np.concatenate([uv[:, k], inside[..., None].astype(np.float64)], axis=-1)
            keypoints[depth[:, k] <= 0, :2] = 0.0  # a projection from behind the camera means nothing
            try:
                crops = [keypoint_crop_box(keypoints[v], scale_factor=bbox_factor) for v in range(len(cams))]
            except ValueError as e:
                report.skip(subject, sequence, frame, f"no crop: {e}")
                continue
            stored = [sink.store(img, f"{subject}/{sequence}.{c.name}/{frame:06d}")
                      for c, img in zip(cams, images)]
            writer.append({
                sink.field: stored,
                "image_size": np.array(sizes, dtype=np.int32),
                "center": np.stack([c for c, _ in crops]),
                "scale": np.array([s for _, s in crops]),
                "keypoints_2d": keypoints,
                "joints_3d": np.concatenate([joints[frame], np.ones((len(_H36M17), 1))], axis=1),
                "camera_K": np.stack([c.K for c in cams]),
                "camera_dist": np.stack([c.dist for c in cams]),
                "camera_R": np.stack([c.R for c in cams]),
                "camera_t": np.stack([c.t for c in cams]),
                "subject": subject,
                "sequence": sequence,
                "frame": frame,
                "camera_names": [c.name for c in cams],
            })
            report.bundles.append((subject, sequence, frame))
    except VideoError as e:
        report.skip(subject, sequence, None, str(e))
    finally:
        for s in streams:
            s.close()


# --- SPIN's preprocessed npz ---------------------------------------------------------------
_SPIN_IMGNAME = re.compile(r"^(S\d+)_(.+)\.(\d+)_(\d+)\.(jpg|jpeg|png)$", re.IGNORECASE)
_OPENPOSE_COUNT = 25
_SPIN_GT_COUNT = 24


def build_h36m_from_spin_npz(
    npz_path: str | os.PathLike,
    out_path: str | os.PathLike,
    *,
    image_root: Optional[str | os.PathLike] = None,
    split: str = "train",
    every_nth: int = 1,
    cameras: Sequence[str] = H36M_CAMERA_IDS,
    image_storage: str = "bytes",
    progress: Progress = no_progress,
) -> BuildReport:
    """Build four-view bundles from SPIN's preprocessed Human3.6M ``.npz`` and extracted frames.

    The npz holds one row per image: ``imgname`` (frames named like
    ``S1_Directions_1.54138969_000001.jpg``, 1-based frame numbers), ``center (N, 2)``,
    ``scale (N,)``, ``part (N, 24, 3)`` (SPIN's 24 ground-truth joints, pixels + visibility),
    optionally ``S (N, 24, 4)`` (root-relative camera-frame joints, metres) and ``openpose
    (N, 25, 3)``. Rows of the same subject, action and frame from all ``cameras`` form a bundle.

    Stored 2D keypoints use the ``spin49`` set (OpenPose 25 from ``openpose`` when present, else
    confidence 0, then the 24 ground-truth joints); ``joints_3d`` (when ``S`` is present) is
    view 0's ``S`` in ``spin49`` order with ``coordinate_frame="view0_camera"`` and
    ``root_relative=True``. No cameras are stored (the npz has none).

    Args:
        npz_path: the ``.npz`` file.
        out_path: output bundle file.
        image_root: folder ``imgname`` is relative to (default: the npz's folder).
        split: split name stored in the file.
        every_nth: keep frames whose 0-based index is a multiple of this.
        cameras: camera ids forming the views, in order.
        image_storage: ``"bytes"`` (image files embedded unchanged) or ``"paths"``.
        progress: told ``(stage, done, total)`` as sequences (or bundles) finish.

    Raises:
        FileNotFoundError: the npz does not exist.
        ValueError: a required key is missing or has the wrong shape (names file and key).
    """
    npz_path = Path(npz_path)
    out_path = Path(out_path)
    image_root = Path(image_root) if image_root is not None else npz_path.parent
    if not npz_path.is_file():
        raise FileNotFoundError(f"{npz_path}: SPIN npz not found")
    if every_nth < 1:
        raise ValueError(f"every_nth must be >= 1, got {every_nth}")
    cameras = tuple(str(c) for c in cameras)
    try:
        with np.load(npz_path, allow_pickle=False) as npz:
            data = {k: npz[k] for k in npz.files}
    except ValueError as e:
        raise ValueError(f"{npz_path}: cannot read (object arrays need pickle, which is not "
                         f"allowed here): {e}") from None
    for key in ("imgname", "center", "scale", "part"):
        if key not in data:
            raise ValueError(f"{npz_path}: missing key {key!r} (has {', '.join(data)})")
    n = len(data["imgname"])
    expected = {"center": (n, 2), "scale": (n,), "part": (n, _SPIN_GT_COUNT, 3),
                "S": (n, _SPIN_GT_COUNT, 4), "openpose": (n, _OPENPOSE_COUNT, 3)}
    for key, shape in expected.items():
        if key in data and data[key].shape != shape:
            raise ValueError(f"{npz_path}: key {key!r} has shape {data[key].shape}, expected {shape}")
    has_3d = "S" in data

    report = BuildReport("h36m", split, out_path)
    # SPIN writes str arrays; older numpy/Python 2 conversions give bytes.
    imgnames = [x.decode("utf-8") if isinstance(x, bytes) else str(x) for x in data["imgname"]]
    groups: dict[tuple[str, str, int], dict[str, int]] = {}
    for row, name in enumerate(imgnames):
        m = _SPIN_IMGNAME.match(Path(name).name)
        if m is None:
            report.skip("", "", None, f"{npz_path}: row {row}: image name {name!r} does not "
                                      "follow S<n>_<Action>.<camera>_<frame>.jpg")
            continue
        subject, action, cam, frame = m.group(1), m.group(2), m.group(3), int(m.group(4)) - 1
        if cam in cameras:
            groups.setdefault((subject, action, frame), {})[cam] = row

    attrs = {"source": str(npz_path.resolve()), "every_nth": int(every_nth)}
    with BundleWriter(out_path, allow_empty=False, dataset="h36m", split=split, num_views=len(cameras),
                      keypoint_set="spin49", joints_3d_keypoint_set="spin49" if has_3d else None,
                      joints_3d_frame="view0_camera", joints_3d_root_relative=True,
                      image_storage=image_storage,
                      image_root=str(image_root.resolve()) if image_storage == "paths" else None,
                      attrs=attrs) as writer:
        for (subject, action, frame), rows in with_progress(sorted(groups.items()), progress,
                                                            "SPIN npz bundles"):
            if frame % every_nth:
                continue
            absent = [c for c in cameras if c not in rows]
            if absent:
                report.skip(subject, action, frame, f"views missing from {npz_path.name}: camera "
                            f"{', '.join(absent)}", camera=absent[0])
                continue
            idx = [rows[c] for c in cameras]
            part = data["part"][idx].astype(np.float64)
            openpose = data["openpose"][idx].astype(np.float64) if "openpose" in data else \
                np.zeros((len(cameras), _OPENPOSE_COUNT, 3))
            keypoints = np.concatenate([openpose, part], axis=1)
            values = [keypoints, data["center"][idx], data["scale"][idx]]
            if has_3d:
                values.append(data["S"][idx[0]])
            if not all(np.all(np.isfinite(v)) for v in values):
                report.skip(subject, action, frame, "non-finite keypoints, crop or joints in the npz")
                continue
            keypoints[..., 2] = np.clip(keypoints[..., 2], 0.0, 1.0)
            paths = [image_root / imgnames[i] for i in idx]
            lost = [c for c, p in zip(cameras, paths) if not p.is_file()]
            if lost:
                report.skip(subject, action, frame, "image not found: "
                            + ", ".join(str(p) for c, p in zip(cameras, paths) if c in lost), camera=lost[0])
                continue
            try:  # decoded completely: a cut or corrupt jpg is skipped and named
                sources = [read_source_image(p) for p in paths]
            except (ValueError, OSError) as e:
                report.skip(subject, action, frame, f"bad source image: {e}")
                continue
            sizes = [size for _, size in sources]
            bundle: dict[str, Any] = {
                "image_size": np.array(sizes, dtype=np.int32),
                "center": data["center"][idx],
                "scale": data["scale"][idx],
                "keypoints_2d": keypoints,
                "subject": subject,
                "sequence": action,
                "frame": frame,
                "camera_names": list(cameras),
            }
            if image_storage == "bytes":
                bundle["images"] = [data for data, _ in sources]
            else:
                bundle["image_paths"] = [imgnames[i] for i in idx]
            if has_3d:
                S = np.zeros((_OPENPOSE_COUNT + _SPIN_GT_COUNT, 4))
                S[_OPENPOSE_COUNT:] = data["S"][idx[0]]
                S[:, 3] = np.clip(S[:, 3], 0.0, 1.0)
                bundle["joints_3d"] = S
            writer.append(bundle)
            report.bundles.append((subject, action, frame))
    return report
