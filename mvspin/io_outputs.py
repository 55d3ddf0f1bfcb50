"""Writers for the files mvspin hands to users: SMPL parameters, meshes, overlays and videos.

Every writer goes through a temporary file in the destination folder, checks that the complete
file reached the disk (``fsync``, size, and a re-read: :mod:`mvspin.atomic`) and renames it, so
an interrupted run or a full disk never leaves a half-written file under the final name (and an
existing file is replaced only by a complete one). Commands that produce bodies (``infer``, ``demo``)
share these writers so their outputs look the same.

Parameter files (``.npz``) use SMPL's parameter names, plus the keys and layout of AMASS's SMPL+H
files (https://amass.is.tue.mpg.de) so AMASS loaders (its notebooks, fairmotion) and the Meshcapade
SMPL Blender add-on (https://github.com/Meshcapade/SMPL_blender_addon) read them with their
defaults:

======================  ============  ==============================================================
key                     shape         meaning
======================  ============  ==============================================================
``global_orient``       (T, 3)        root rotation, axis-angle (radians)
``body_pose``           (T, 69)       23 joint rotations, axis-angle, SMPL joint order
``betas``               (10,)/(T, 10) shape coefficients of ``model`` (one per sequence or per frame)
``transl``              (T, 3)        translation added to every vertex, metres
``model``               ()            str: the body model the parameters belong to (``free-notoes``)
``betas_model``         ()            str: the model ``betas`` belong to, and what they mean elsewhere
``fps``                 ()            float: frames per second; 0 for still images and view sets
``poses``               (T, 156)      AMASS SMPL+H: ``[global_orient | body_pose[:, :63] | 90 zeros]``
                                      (SMPL joints 0-21, then both hands' 15 finger joints, at rest)
``trans``               (T, 3)        = ``transl``, under the name AMASS and the SMPL Blender add-on read
``gender``              ()            str: ``neutral``, ``male`` or ``female`` (AMASS, Blender add-on)
``mocap_framerate``     ()            float: = ``fps`` (AMASS SMPL+H name; fairmotion reads only this)
``mocap_frame_rate``    ()            float: = ``fps`` (AMASS SMPL-X name; the Blender add-on reads it)
``dmpls``               (T, 8)        zeros: AMASS's soft-tissue coefficients (its notebook reads them)
======================  ============  ==============================================================

SMPL's two hand joints (22, 23: the rotations at the end of ``body_pose``) have no place in SMPL+H's
layout, whose hands are its finger joints; they move no joint, only the hand's vertices, so every
joint an AMASS loader computes from ``poses`` equals the one SMPL computes from ``body_pose``.
Betas are coefficients of one model's shape space: the free model's (``free-*``) describe another
body in real SMPL or SMPL+H, so a tool that builds its own SMPL from this file gets the pose and
the motion right but not the person's shape.

Writers may add more arrays (camera intrinsics ``K``, ``image_size``, crop boxes, ...); each
command documents its extra keys. ``T`` is the frame axis of a sequence (1 for one image) or the
view axis of a multi-view file.
"""
from __future__ import annotations

import logging
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from types import TracebackType
from typing import Any

import cv2
import numpy as np

from mvspin.atomic import atomic_path, commit_temporary, temporary_path_for, write_bytes_atomic

__all__ = [
    "AMASS_NPZ_KEYS",
    "SMPL_NPZ_KEYS",
    "Z_UP_TO_Y_UP",
    "betas_meaning",
    "write_animated_gltf",
    "VideoWriter",
    "check_output_folder",
    "json_ready",
    "overlay_image",
    "read_smpl_npz",
    "side_view_image",
    "write_image",
    "write_json",
    "write_mesh",
    "write_prediction_npz",
    "write_smpl_npz",
    "vertex_normals",
    "write_bvh",
    "write_trc",
    "pose2sim_marker_name",
]

SMPL_NPZ_KEYS: tuple[str, ...] = ("global_orient", "body_pose", "betas", "transl", "poses", "model", "fps")
AMASS_NPZ_KEYS: tuple[str, ...] = ("trans", "gender", "mocap_framerate", "mocap_frame_rate", "dmpls", "betas_model")
"""Keys written for AMASS tools and the Meshcapade SMPL Blender add-on (see the module docstring)."""
_MESH_SUFFIXES = (".obj", ".ply")
_IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg")
# Codec per video container that OpenCV's bundled FFmpeg writes without extra libraries (.mp4:
# the fallback when PyAV, which writes H.264, is not installed).
_VIDEO_CODECS = {".mp4": "mp4v", ".avi": "MJPG"}
# Colour of the mesh in overlays and side views (RGB in [0, 1]): a light blue that stands out on
# skin and clothing, as in SPIN's and 4D-Humans' demos.
MESH_COLOR: tuple[float, float, float] = (0.65, 0.74, 0.86)


def _as_rows(value: Any, width: int, name: str, path: Path) -> np.ndarray:
    array = np.asarray(value, dtype=np.float64)
    if array.ndim == 1 and array.shape[0] == width:
        array = array[None]
    if array.ndim != 2 or array.shape[1] != width:
        raise ValueError(f"{path}: {name} must have shape (T, {width}), got {array.shape}")
    if not np.isfinite(array).all():
        raise ValueError(f"{path}: {name} contains NaN or infinite values")
    return array


def betas_meaning(model: str) -> str:
    """What a file's ``betas`` are, in words (its ``betas_model`` key)."""
    if model.startswith("free"):
        return (f"{model}: mvspin's free body model; these betas shape that model only and describe a "
                "different body in SMPL or SMPL+H (use the joints, the .glb or the meshes for the shape)")
    return f"{model}: the betas of this model"


def write_smpl_npz(path: str | os.PathLike[str], *, global_orient: Any, body_pose: Any, betas: Any,
                   transl: Any, model: str, fps: float = 0.0, gender: str = "neutral",
                   extra: Mapping[str, Any] | None = None) -> Path:
    """Write SMPL parameters as an ``.npz`` with mvspin's and AMASS's SMPL+H keys (atomically;
    the module docstring lists them); returns the path.

    Args:
        path: destination ``.npz``.
        global_orient: (T, 3) axis-angle (a single (3,) row is taken as T = 1).
        body_pose: (T, 69) axis-angle.
        betas: (10,) shared or (T, 10) per row.
        transl: (T, 3) metres.
        model: name of the body model (``BodyModel.name``).
        fps: frames per second of a sequence; 0 for still images and view sets.
        gender: ``neutral``, ``male`` or ``female`` (the free model is ``neutral``).
        extra: further arrays to store (must not reuse the standard key names).

    Raises:
        ValueError: inconsistent row counts, wrong widths, non-finite values or a reserved
            key in ``extra`` (the message names the file and the key).
    """
    path = Path(path)
    if path.suffix != ".npz":
        raise ValueError(f"{path}: SMPL parameter files must end in .npz")
    root = _as_rows(global_orient, 3, "global_orient", path)
    pose = _as_rows(body_pose, 69, "body_pose", path)
    trans = _as_rows(transl, 3, "transl", path)
    shape = np.asarray(betas, dtype=np.float64)
    if shape.ndim not in (1, 2) or not np.isfinite(shape).all():
        raise ValueError(f"{path}: betas must be finite, of shape (B,) or (T, B); got {shape.shape}")
    rows = {len(root), len(pose), len(trans)} | ({len(shape)} if shape.ndim == 2 else set())
    if len(rows) != 1:
        raise ValueError(f"{path}: row counts differ: global_orient {len(root)}, body_pose {len(pose)}, "
                         f"transl {len(trans)}" + (f", betas {len(shape)}" if shape.ndim == 2 else ""))
    if not (np.isfinite(fps) and fps >= 0):
        raise ValueError(f"{path}: fps must be a finite number >= 0, got {fps!r}")
    extra = dict(extra or {})
    if gender not in ("neutral", "male", "female"):
        raise ValueError(f"{path}: gender must be neutral, male or female, got {gender!r}")
    reserved = sorted(set(extra) & (set(SMPL_NPZ_KEYS) | set(AMASS_NPZ_KEYS)))
    if reserved:
        raise ValueError(f"{path}: extra arrays may not reuse the standard keys {reserved}")
    hands = np.zeros((len(root), 90))  # SMPL+H's 2 x 15 finger joints, at rest
    arrays: dict[str, Any] = {
        "global_orient": root.astype(np.float32), "body_pose": pose.astype(np.float32),
        "betas": shape.astype(np.float32), "transl": trans.astype(np.float32),
        "poses": np.concatenate([root, pose[:, :63], hands], axis=1).astype(np.float32),
        "model": np.array(str(model)), "betas_model": np.array(betas_meaning(str(model))), "fps": np.array(float(fps)),
        "trans": trans.astype(np.float32), "gender": np.array(gender), "mocap_framerate": np.array(float(fps)),
        "mocap_frame_rate": np.array(float(fps)), "dmpls": np.zeros((len(root), 8), np.float32),
        **{k: np.asarray(v) for k, v in extra.items()},
    }
    def reads_back(tmp: Path) -> bool:  # a cut zip has no central directory: np.load fails
        with np.load(tmp, allow_pickle=False) as data:
            return sorted(data.files) == sorted(arrays)

    with atomic_path(path, verify=reads_back) as tmp:
        with open(tmp, "wb") as handle:
            np.savez(handle, **arrays)  # a file object: np.savez would append ".npz" to a name
    return path


def read_smpl_npz(path: str | os.PathLike[str]) -> dict[str, np.ndarray]:
    """Read a parameter file written by :func:`write_smpl_npz` (plain arrays, no pickles).

    Raises:
        FileNotFoundError: no such file. ValueError: not an npz, or a standard key is missing.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: parameter file not found")
    try:
        with np.load(path, allow_pickle=False) as data:
            arrays = {k: data[k] for k in data.files}
    except (OSError, ValueError) as err:
        raise ValueError(f"{path}: not a readable .npz file ({err})") from None
    missing = [k for k in SMPL_NPZ_KEYS if k not in arrays]
    if missing:
        raise ValueError(f"{path}: not an SMPL parameter file, missing keys {missing}")
    return arrays


def write_mesh(path: str | os.PathLike[str], vertices: np.ndarray, faces: np.ndarray) -> Path:
    """Write a triangle mesh as ``.obj`` or ``.ply`` (open3d, by suffix), atomically."""
    import open3d as o3d

    path = Path(path)
    if path.suffix.lower() not in _MESH_SUFFIXES:
        raise ValueError(f"{path}: mesh files must end in {' or '.join(_MESH_SUFFIXES)}")
    vertices = np.asarray(vertices, dtype=np.float64)
    faces = np.asarray(faces)
    if vertices.ndim != 2 or vertices.shape[1] != 3 or faces.ndim != 2 or faces.shape[1] != 3:
        raise ValueError(f"{path}: expected vertices (N, 3) and faces (F, 3), got {vertices.shape} "
                         f"and {faces.shape}")
    if not np.isfinite(vertices).all():
        raise ValueError(f"{path}: vertices contain NaN or infinite values")
    mesh = o3d.geometry.TriangleMesh(o3d.utility.Vector3dVector(vertices),
                                     o3d.utility.Vector3iVector(faces.astype(np.int32)))
    from mvspin.rendering import quiet_native_output

    def reads_back(tmp: Path) -> bool:
        # open3d reports success after a short write (full disk): count what is in the file.
        with quiet_native_output():  # a cut file makes its reader print a line per element
            back = o3d.io.read_triangle_mesh(str(tmp))
        return len(back.vertices) == len(vertices) and len(back.triangles) == len(faces)

    with atomic_path(path, verify=reads_back) as tmp, quiet_native_output():
        # On a full disk open3d's PLY writer prints one line per element it failed to write.
        ok = o3d.io.write_triangle_mesh(str(tmp), mesh, write_ascii=path.suffix.lower() == ".obj",
                                        write_vertex_normals=False, write_vertex_colors=False,
                                        write_triangle_uvs=False)
        if not ok:
            raise OSError(f"{path}: open3d could not write the mesh")
        # open3d writes a material file beside .obj meshes only when they carry textures.
    return path


def write_image(path: str | os.PathLike[str], image_rgb: np.ndarray) -> Path:
    """Write an (H, W, 3) uint8 RGB image as PNG or JPEG (by suffix), atomically."""
    path = Path(path)
    if path.suffix.lower() not in _IMAGE_SUFFIXES:
        raise ValueError(f"{path}: images must end in {', '.join(_IMAGE_SUFFIXES)}")
    image_rgb = np.asarray(image_rgb)
    if image_rgb.ndim != 3 or image_rgb.shape[2] != 3 or image_rgb.dtype != np.uint8:
        raise ValueError(f"{path}: expected an (H, W, 3) uint8 RGB image, got {image_rgb.shape} "
                         f"{image_rgb.dtype}")
    ok, encoded = cv2.imencode(path.suffix.lower(), cv2.cvtColor(image_rgb, cv2.COLOR_RGB2BGR))
    if not ok:
        raise OSError(f"{path}: OpenCV could not encode the image")
    return write_bytes_atomic(path, encoded.tobytes())


def overlay_image(image_rgb: np.ndarray, meshes: Sequence[tuple[np.ndarray, np.ndarray]],
                  faces: np.ndarray, alpha: float = 0.85) -> np.ndarray:
    """Render meshes over an image, each through its own full-image camera.

    Args:
        image_rgb: (H, W, 3) uint8 RGB image.
        meshes: ``(vertices (N, 3) in the camera frame, K (3, 3))`` per person. People are
            painted in the given order (later ones on top); callers sort by depth.
        faces: (F, 3) triangles shared by all meshes.
        alpha: opacity of the mesh over the image.

    Returns:
        (H, W, 3) uint8 RGB image: the mesh exactly where its triangles project
        (:func:`mvspin.rendering.render_mesh` uses the exact pinhole ``K``).
    """
    from mvspin.rendering import overlay, render_mesh

    height, width = image_rgb.shape[:2]
    out = np.asarray(image_rgb)
    for vertices, K in meshes:
        render = render_mesh(vertices, faces, K, width, height, color=MESH_COLOR)
        out = overlay(out, render, alpha=alpha)
    return out


def side_view_image(vertices: np.ndarray, faces: np.ndarray, K: np.ndarray, width: int, height: int,
                    angle_deg: float = 90.0,
                    background: Sequence[float] = (1.0, 1.0, 1.0)) -> np.ndarray:
    """The mesh turned by ``angle_deg`` about the camera's vertical axis through its centre.

    The body stays at its depth and is seen through the same camera ``K``, so the side view
    has the overlay's scale and shows the depth the network gave each limb.

    Args:
        vertices: (N, 3) mesh in the camera frame (OpenCV axes, metres).
        faces: (F, 3) triangles.
        K: (3, 3) camera intrinsics used for the overlay.
        width, height: output size in pixels.
        angle_deg: rotation about the camera's y axis (positive: the body's right side comes
            into view for a person facing the camera).
        background: RGB in [0, 1].

    Returns:
        (height, width, 3) uint8 RGB image.
    """
    from mvspin.rendering import render_mesh

    vertices = np.asarray(vertices, dtype=np.float64)
    centre = 0.5 * (vertices.min(axis=0) + vertices.max(axis=0))
    a = np.deg2rad(angle_deg)
    turn = np.array([[np.cos(a), 0.0, np.sin(a)], [0.0, 1.0, 0.0], [-np.sin(a), 0.0, np.cos(a)]])
    turned = (vertices - centre) @ turn.T + centre
    return render_mesh(turned, faces, K, width, height, color=MESH_COLOR, background=background).color


_H264_FALLBACK_LOGGED = False


def _h264_module() -> Any:
    """PyAV when installed (``mvspin[video]``), else None after one log line about the fallback."""
    global _H264_FALLBACK_LOGGED
    from mvspin.errors import MissingExtraError, import_optional

    try:
        return import_optional("av", extra="video", purpose="H.264 videos")
    except MissingExtraError as err:
        if not _H264_FALLBACK_LOGGED:
            _H264_FALLBACK_LOGGED = True
            logging.getLogger("mvspin").warning("videos are written as MPEG-4 Part 2 (mp4v), which browsers do not "
                                                "play: %s", err)
        return None


class VideoWriter:
    """Write RGB frames to an ``.mp4`` (H.264, ``yuv420p``, through PyAV from ``mvspin[video]``;
    without it OpenCV's ``mp4v``, MPEG-4 Part 2, with one log line) or ``.avi`` (MJPG).

    H.264 in ``yuv420p`` plays in browsers, report pages and every player; it needs even frame
    sizes, so an odd width or height is padded by one repeated edge pixel. The file is written
    under a temporary name and renamed on a clean :meth:`close`; after an exception inside a
    ``with`` block it is deleted, so a partial video never takes the final name. The frame size
    is fixed by the first frame. :attr:`codec` says what was written (``h264``, ``mp4v``,
    ``MJPG``).

    Example:
        >>> with VideoWriter("out.mp4", fps=25) as video:  # doctest: +SKIP
        ...     video.write(frame_rgb)
    """

    def __init__(self, path: str | os.PathLike[str], fps: float, *, h264: bool = True) -> None:
        self.path = Path(path)
        if self.path.suffix.lower() not in _VIDEO_CODECS:
            raise ValueError(f"{self.path}: videos must end in {' or '.join(_VIDEO_CODECS)}")
        if not (np.isfinite(fps) and fps > 0):
            raise ValueError(f"{self.path}: fps must be positive, got {fps!r}")
        self.fps = float(fps)
        self.frames = 0
        self._tmp: Path | None = None
        self._writer: Any = None
        self._stream: Any = None
        self._size: tuple[int, int] | None = None
        self._av = _h264_module() if h264 and self.path.suffix.lower() == ".mp4" else None
        self.codec = "h264" if self._av is not None else _VIDEO_CODECS[self.path.suffix.lower()]

    def _open(self, size: tuple[int, int]) -> None:
        self._tmp = temporary_path_for(self.path)
        if self._av is not None:
            from fractions import Fraction

            self._writer = self._av.open(str(self._tmp), "w", format="mp4")
            self._stream = self._writer.add_stream("libx264", rate=Fraction(self.fps).limit_denominator(10000))
            self._stream.width, self._stream.height = size[0] + size[0] % 2, size[1] + size[1] % 2
            self._stream.pix_fmt = "yuv420p"
            self._stream.options = {"crf": "18"}  # visually lossless overlays
        else:
            fourcc = cv2.VideoWriter.fourcc(*self.codec)
            self._writer = cv2.VideoWriter(str(self._tmp), fourcc, self.fps, size)
            if not self._writer.isOpened():
                self.abort()
                raise OSError(f"{self.path}: OpenCV cannot open a video writer for this format")
        self._size = size

    def write(self, frame_rgb: np.ndarray) -> None:
        """Append one (H, W, 3) uint8 RGB frame."""
        frame_rgb = np.asarray(frame_rgb)
        if frame_rgb.ndim != 3 or frame_rgb.shape[2] != 3 or frame_rgb.dtype != np.uint8:
            raise ValueError(f"{self.path}: frames must be (H, W, 3) uint8 RGB, got {frame_rgb.shape} "
                             f"{frame_rgb.dtype}")
        size = (frame_rgb.shape[1], frame_rgb.shape[0])
        if self._writer is None:
            self._open(size)
        elif size != self._size:
            raise ValueError(f"{self.path}: frame {self.frames} is {size[0]}x{size[1]}, the video is "
                             f"{self._size[0]}x{self._size[1]}")
        if self._stream is not None:
            even = np.pad(frame_rgb, ((0, size[1] % 2), (0, size[0] % 2), (0, 0)), mode="edge")
            frame = self._av.VideoFrame.from_ndarray(np.ascontiguousarray(even), format="rgb24")
            for packet in self._stream.encode(frame):
                self._writer.mux(packet)
        else:
            self._writer.write(cv2.cvtColor(frame_rgb, cv2.COLOR_RGB2BGR))
        self.frames += 1

    def _finish(self) -> None:
        if self._stream is not None:
            for packet in self._stream.encode():  # flush the encoder's delayed frames
                self._writer.mux(packet)
            self._writer.close()
        else:
            self._writer.release()
        self._writer = self._stream = None

    def close(self) -> Path:
        """Finish the file and give it its final name; returns the path."""
        if self._writer is None or self._tmp is None:
            raise ValueError(f"{self.path}: no frames were written")
        self._finish()
        frames = self.frames

        def reads_back(tmp: Path) -> bool:
            # A writer reports success after a short write too, and the container's header may
            # still announce every frame: count the frames that can actually be read.
            video = cv2.VideoCapture(str(tmp))
            try:
                count = 0
                while video.isOpened() and video.grab():
                    count += 1
                return count == frames
            finally:
                video.release()

        commit_temporary(self._tmp, self.path, verify=reads_back)
        self._tmp = None
        return self.path

    def abort(self) -> None:
        """Drop the partial file."""
        if self._writer is not None:
            try:
                self._finish()
            except Exception:  # a failing disk: the file is dropped below anyway
                pass
            self._writer = self._stream = None
        if self._tmp is not None:
            self._tmp.unlink(missing_ok=True)
            self._tmp = None

    def __enter__(self) -> VideoWriter:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        if exc_type is None and self._writer is not None:
            self.close()
        else:
            self.abort()


# --- predictions and reports ----------------------------------------------------------------------


def json_ready(value: Any) -> Any:
    """``value`` with numpy scalars/arrays as Python numbers/lists, paths as strings, and every
    NaN or infinity as ``None`` (standard JSON has no ``NaN``/``Infinity``)."""
    if isinstance(value, Mapping):
        return {str(k): json_ready(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [json_ready(v) for v in value]
    if isinstance(value, np.ndarray):
        return json_ready(value.tolist())
    if isinstance(value, np.generic):
        return json_ready(value.item())
    if isinstance(value, float):
        return value if np.isfinite(value) else None
    if isinstance(value, os.PathLike):
        return os.fspath(value)
    return value


def write_json(path: str | os.PathLike[str], data: Any) -> Path:
    """Write ``data`` as standard JSON (indented; NaN and infinities become ``null``), atomically.

    Example:
        >>> import json, tempfile
        >>> path = write_json(Path(tempfile.mkdtemp()) / "m.json", {"error": float("inf"), "n": np.int64(3)})
        >>> json.loads(path.read_text())
        {'error': None, 'n': 3}
    """
    import json

    text = json.dumps(json_ready(data), indent=2, allow_nan=False) + "\n"
    return write_bytes_atomic(path, text.encode())


def write_prediction_npz(path: str | os.PathLike[str], prediction: Any, *, model: str, image_size: Any,
                         source: Any, checkpoint: str, fps: float = 0.0, betas: Any = None,
                         reprojection_error: Any = None, extra: Mapping[str, Any] | None = None) -> Path:
    """Write regressor predictions (one row per person, frame or view) as an SMPL ``.npz``.

    Besides the AMASS keys of :func:`write_smpl_npz` the file holds the camera of the original
    image, so posing the body with the file's parameters and projecting with ``K`` lands on the
    network's keypoints in the image: ``K (T, 3, 3)`` (focal ``5000 * box / 224`` px, principal
    point at the box centre), ``image_size`` (``[W, H]`` or ``(T, 2)``), the crop ``center
    (T, 2)`` / ``scale (T,)``, the network's crop camera ``cam_crop (T, 3)``, ``source``,
    ``checkpoint``, ``refined`` and, when refined, ``reprojection_error_px (T,)``.

    Args:
        prediction: a :class:`mvspin.regressor.predictor.Prediction` (T rows).
        betas: shape to store instead of the prediction's: ``(10,)`` for one body seen in T
            views; default: the first row's for one row, else one row per row.
        reprojection_error: (T,) pixels after refinement, or None (not refined).
        extra: further arrays.
    """
    rows = len(prediction)
    if betas is None:
        betas = prediction.betas[0] if rows == 1 else prediction.betas
    arrays: dict[str, Any] = {
        "K": prediction.K.numpy(), "image_size": np.asarray(image_size), "center": prediction.center.numpy(),
        "scale": prediction.scale.numpy(), "cam_crop": prediction.cam_crop.numpy(), "source": np.asarray(source),
        "checkpoint": np.array(str(checkpoint)), "refined": np.array(reprojection_error is not None),
    }
    if reprojection_error is not None:
        arrays["reprojection_error_px"] = np.asarray(reprojection_error, dtype=np.float64)
    arrays.update(extra or {})
    return write_smpl_npz(path, global_orient=prediction.global_orient.numpy(), body_pose=prediction.body_pose.numpy(),
                          betas=np.asarray(betas), transl=prediction.transl.numpy(), model=model, fps=fps, extra=arrays)


def check_output_folder(folder: str | os.PathLike[str], files: Sequence[str | os.PathLike[str]] = (),
                        what: str = "--out") -> Path:
    """Check, before any expensive work, that ``folder`` can receive the outputs ``files``.

    The folder is checked (and created) by :func:`mvspin.atomic.check_output_location`; then no
    planned file may be an existing directory, nor have a file where one of its folders goes.

    Raises:
        OutputLocationError: naming ``what``, the folder and the path in the way.
    """
    from mvspin.atomic import check_output_location, location_error

    folder = Path(check_output_location(folder, kind="folder", what=what))
    for file in map(Path, files):
        if file.is_dir():
            raise location_error(f"{what} {folder}: a directory is in the way of the output file {file}", what)
        for parent in file.parents:
            if parent == folder:
                break
            if parent.exists() and not parent.is_dir():
                raise location_error(f"{what} {folder}: the file {parent} is in the way of an output folder", what)
    return folder


# --- animated glTF ---------------------------------------------------------------------------


def _quaternions_xyzw(rotations: np.ndarray) -> np.ndarray:
    """Rotation matrices ``(..., 3, 3)`` to unit quaternions ``(..., 4)`` (x, y, z, w), w >= 0
    (glTF's order; :func:`mvspin.geometry.matrix_to_quaternion` in float64)."""
    import torch  # here, not at the top: only writing a .glb needs torch and kornia from this module

    from mvspin.geometry import matrix_to_quaternion

    q = matrix_to_quaternion(torch.from_numpy(np.asarray(rotations, dtype=np.float64))).numpy()
    return np.concatenate([q[..., 1:], q[..., :1]], -1)


def vertex_normals(vertices: np.ndarray, faces: np.ndarray) -> np.ndarray:
    """Unit vertex normals ``(N, 3)``: the area-weighted sum of the adjacent faces' normals.

    A vertex on no face (or only on degenerate ones) gets ``(0, 1, 0)`` so that every normal is
    a unit vector (glTF requires it of ``NORMAL``).
    """
    v = np.asarray(vertices, dtype=np.float64)
    f = np.asarray(faces, dtype=np.int64)
    face_n = np.cross(v[f[:, 1]] - v[f[:, 0]], v[f[:, 2]] - v[f[:, 0]])  # length = 2 x area
    normals = np.zeros_like(v)
    for corner in range(3):
        np.add.at(normals, f[:, corner], face_n)
    length = np.linalg.norm(normals, axis=1, keepdims=True)
    return np.where(length > 1e-12, normals / np.maximum(length, 1e-12), np.array([0.0, 1.0, 0.0]))


# Turns a Z-up world (calibration rigs, Blender) into glTF's Y-up one: x stays, z becomes y.
Z_UP_TO_Y_UP: np.ndarray = np.array([[1.0, 0.0, 0.0], [0.0, 0.0, 1.0], [0.0, -1.0, 0.0]])


def write_animated_gltf(path: str | os.PathLike[str], *, rest_vertices: np.ndarray, faces: np.ndarray,
                        skin_weights: np.ndarray, parents: Sequence[int], rest_joints: np.ndarray,
                        joint_rotations: np.ndarray, root_translation: np.ndarray, fps: float,
                        joint_names: Sequence[str] | None = None,
                        world_rotation: np.ndarray | None = None,
                        extras: Mapping[str, Any] | None = None) -> Path:
    """Write a skinned, animated body as binary glTF 2.0 (``.glb``, atomically).

    The mesh (with rest-pose vertex normals) is skinned to one glTF node per joint (the
    skeleton's rest pose is the body's T-pose, so each inverse bind matrix is a translation by
    ``-rest_joint``), and one animation clip holds every joint's rotation and the root's
    translation per frame (linear sampling). Pose-dependent blend shapes are not representable in
    glTF skinning and are left out. The file passes the Khronos glTF validator with no errors and
    no warnings: the skinned mesh and the root joint are the scene's root nodes, joint indices are
    0 wherever their weight is 0, and every buffer view is used.

    ``world_rotation`` is folded into the root joint's keys (its rotation and translation per
    frame), not put on a parent node: with no animation applied (the rest pose) the body stands
    upright in glTF's Y-up frame as the body model defines it, and the animation places it in the
    rotated world. The frame rate, the frame count and ``world_rotation`` are stored in the
    animation's and the asset's ``extras`` (``fps``, ``frames``, ``world_rotation``), which
    Blender imports as custom properties.

    Args:
        path: destination ``.glb``.
        rest_vertices: ``(N, 3)`` shaped rest-pose vertices, metres.
        faces: ``(F, 3)`` triangle vertex indices.
        skin_weights: ``(N, J)`` linear-blend-skinning weights (the 4 largest per vertex are kept
            and renormalised, as glTF's ``JOINTS_0``/``WEIGHTS_0`` hold 4).
        parents: ``(J,)`` parent of each joint, -1 for the root (which must be joint 0).
        rest_joints: ``(J, 3)`` rest-pose joint positions, metres.
        joint_rotations: ``(T, J, 3, 3)`` each joint's rotation relative to its parent (joint 0:
            the body's global orientation).
        root_translation: ``(T, 3)`` world position of the root joint, metres (SMPL: rest pelvis
            + ``transl``).
        fps: frames per second of the clip.
        joint_names: node names (default ``joint_<j>``).
        world_rotation: optional ``(3, 3)`` rotation from the data's world to the file's, e.g.
            :data:`Z_UP_TO_Y_UP` for a Z-up rig world.
        extras: further JSON-ready values for the asset's ``extras`` (e.g. the body model's name).

    Raises:
        ValueError: inconsistent shapes or non-finite values (the message names the file).
    """
    import pygltflib as gl

    path = Path(path)
    if path.suffix != ".glb":
        raise ValueError(f"{path}: animated glTF files must end in .glb")
    verts = np.asarray(rest_vertices, dtype=np.float32)
    tris = np.asarray(faces, dtype=np.uint32)
    weights = np.asarray(skin_weights, dtype=np.float64)
    joints = np.asarray(rest_joints, dtype=np.float64)
    rots = np.asarray(joint_rotations, dtype=np.float64)
    root = np.asarray(root_translation, dtype=np.float64)
    n_j = len(parents)
    t = rots.shape[0] if rots.ndim == 4 else 0
    if (verts.ndim != 2 or verts.shape[1] != 3 or tris.ndim != 2 or tris.shape[1] != 3
            or weights.shape != (len(verts), n_j) or joints.shape != (n_j, 3)
            or rots.shape != (t, n_j, 3, 3) or root.shape != (t, 3) or t == 0 or parents[0] != -1):
        raise ValueError(f"{path}: inconsistent glTF inputs: vertices {verts.shape}, faces {tris.shape}, skin "
                         f"weights {weights.shape}, {n_j} joints (root first), rest joints {joints.shape}, "
                         f"rotations {rots.shape} (T, J, 3, 3), root translation {root.shape} (T, 3), T >= 1")
    world = np.eye(3) if world_rotation is None else np.asarray(world_rotation, dtype=np.float64)
    if not all(np.isfinite(a).all() for a in (verts, weights, joints, rots, root, world)) or not fps > 0:
        raise ValueError(f"{path}: glTF inputs must be finite and fps positive")
    if world.shape != (3, 3) or not np.allclose(world @ world.T, np.eye(3), atol=1e-6) or np.linalg.det(world) < 0:
        raise ValueError(f"{path}: world_rotation must be a (3, 3) rotation matrix, got {world.tolist()}")
    names = list(joint_names) if joint_names is not None else [f"joint_{j}" for j in range(n_j)]

    top = np.argsort(-weights, axis=1, kind="stable")[:, :4]
    top_w = np.take_along_axis(weights, top, 1).clip(0, None)
    top_w = (top_w / np.maximum(top_w.sum(1, keepdims=True), 1e-12)).astype(np.float32)
    # A zero weight's joint index must be 0 (the validator's ACCESSOR_JOINTS_USED_ZERO_WEIGHT).
    top = np.where(top_w > 0, top, 0)
    normals = vertex_normals(verts, tris).astype(np.float32)
    offsets = joints.copy()
    for j in range(1, n_j):
        offsets[j] = joints[j] - joints[parents[j]]
    inverse_bind = np.tile(np.eye(4, dtype=np.float32), (n_j, 1, 1))
    inverse_bind[:, :3, 3] = -joints
    times = (np.arange(t) / float(fps)).astype(np.float32)
    rots = rots.copy()
    rots[:, 0] = world @ rots[:, 0]  # the world turn on the root's keys, not on a parent node
    quats = _quaternions_xyzw(rots).astype(np.float32)  # (T, J, 4)
    root_keys = (root @ world.T).astype(np.float32)

    blobs: list[bytes] = []
    views: list[gl.BufferView] = []
    accessors: list[gl.Accessor] = []

    def add(array: np.ndarray, kind: str, component: int, target: int | None = None, bounds: bool = False) -> int:
        data = np.ascontiguousarray(array).tobytes()
        offset = sum(len(b) for b in blobs)
        blobs.append(data + b"\0" * (-len(data) % 4))
        views.append(gl.BufferView(buffer=0, byteOffset=offset, byteLength=len(data), target=target))
        flat = array.reshape(len(array), -1)
        acc = gl.Accessor(bufferView=len(views) - 1, componentType=component, count=len(array), type=kind,
                          min=flat.min(0).tolist() if bounds else None, max=flat.max(0).tolist() if bounds else None)
        accessors.append(acc)
        return len(accessors) - 1

    pos = add(verts, gl.VEC3, gl.FLOAT, gl.ARRAY_BUFFER, bounds=True)
    nrm = add(normals, gl.VEC3, gl.FLOAT, gl.ARRAY_BUFFER)
    jnt = add(top.astype(np.uint16), gl.VEC4, gl.UNSIGNED_SHORT, gl.ARRAY_BUFFER)
    wts = add(top_w, gl.VEC4, gl.FLOAT, gl.ARRAY_BUFFER)
    idx = add(tris.reshape(-1), gl.SCALAR, gl.UNSIGNED_INT, gl.ELEMENT_ARRAY_BUFFER)
    ibm = add(inverse_bind.transpose(0, 2, 1).reshape(n_j, 16), gl.MAT4, gl.FLOAT)  # glTF is column-major
    time_acc = add(times, gl.SCALAR, gl.FLOAT, bounds=True)
    rot_acc = [add(quats[:, j], gl.VEC4, gl.FLOAT) for j in range(n_j)]
    root_acc = add(root_keys, gl.VEC3, gl.FLOAT)  # the root node's offset is its position

    nodes = [gl.Node(name=names[j], translation=offsets[j].tolist(),
                     children=[c for c in range(n_j) if parents[c] == j] or None) for j in range(n_j)]
    mesh_node = len(nodes)
    nodes.append(gl.Node(name="body", mesh=0, skin=0))
    samplers = [gl.AnimationSampler(input=time_acc, output=a, interpolation="LINEAR") for a in rot_acc]
    samplers.append(gl.AnimationSampler(input=time_acc, output=root_acc, interpolation="LINEAR"))
    channels = [gl.AnimationChannel(sampler=j, target=gl.AnimationChannelTarget(node=j, path="rotation"))
                for j in range(n_j)]
    channels.append(gl.AnimationChannel(sampler=n_j, target=gl.AnimationChannelTarget(node=0, path="translation")))
    timing = {"fps": float(fps), "frames": int(t), "world_rotation": world.tolist()}
    binary = b"".join(blobs)
    doc = gl.GLTF2(
        asset=gl.Asset(generator="mvspin", version="2.0", extras={**timing, **json_ready(dict(extras or {}))}),
        scene=0, scenes=[gl.Scene(nodes=[0, mesh_node])], nodes=nodes,
        meshes=[gl.Mesh(name="body", primitives=[gl.Primitive(
            attributes=gl.Attributes(POSITION=pos, NORMAL=nrm, JOINTS_0=jnt, WEIGHTS_0=wts), indices=idx)])],
        skins=[gl.Skin(name="skeleton", joints=list(range(n_j)), inverseBindMatrices=ibm, skeleton=0)],
        animations=[gl.Animation(name="motion", samplers=samplers, channels=channels, extras=timing)],
        accessors=accessors, bufferViews=views, buffers=[gl.Buffer(byteLength=len(binary))],
    )
    doc.set_binary_blob(binary)
    write_bytes_atomic(path, b"".join(doc.save_to_bytes()))
    return path


# --- BVH and TRC ---------------------------------------------------------------------------------

# BVH's rotation channels, in the order their rotations apply (R = Rz @ Rx @ Ry): the order of
# CMU's and most motion-capture files, which every importer reads.
_BVH_ROTATION_ORDER = "ZXY"


def _euler_degrees(rotations: np.ndarray, order: str) -> np.ndarray:
    """Intrinsic Euler angles ``(..., 3)`` in degrees, in ``order``, unwrapped along axis 0 so
    consecutive frames never jump by 360 degrees."""
    from scipy.spatial.transform import Rotation

    m = np.asarray(rotations, dtype=np.float64)
    angles = Rotation.from_matrix(m.reshape(-1, 3, 3)).as_euler(order.upper(), degrees=True)
    angles = angles.reshape(*m.shape[:-2], 3)
    return np.unwrap(angles, axis=0, period=360.0) if angles.ndim > 1 else angles


def write_bvh(path: str | os.PathLike[str], *, parents: Sequence[int], rest_joints: np.ndarray,
              joint_rotations: np.ndarray, root_translation: np.ndarray, fps: float,
              joint_names: Sequence[str], world_rotation: np.ndarray | None = None,
              scale: float = 100.0) -> Path:
    """Write a skeleton's motion as BVH (atomically): the hierarchy from the rest joints, one
    line of channels per frame.

    The skeleton's offsets are the rest pose's bones (``rest_joint - rest_parent``), so a reader
    that applies each frame's rotations along them poses the joints where the body model does.
    The root has 6 channels (``Xposition Yposition Zposition Zrotation Xrotation Yrotation``: its
    world position, its OFFSET is zero), every other joint 3 rotations in the same order, in
    degrees; each leaf joint ends in an ``End Site`` half its bone's length further on.

    Args:
        path: destination ``.bvh``.
        parents: ``(J,)`` parent of each joint (-1 for the root, joint 0; parents before children).
        rest_joints: ``(J, 3)`` rest-pose joint positions, metres.
        joint_rotations: ``(T, J, 3, 3)`` rotations relative to the parent (joint 0: global).
        root_translation: ``(T, 3)`` world position of the root joint, metres.
        fps: frames per second (``Frame Time`` is ``1 / fps``).
        joint_names: ``(J,)`` names (no spaces).
        world_rotation: optional ``(3, 3)`` rotation folded into the root's keys (e.g.
            :data:`Z_UP_TO_Y_UP`: BVH readers expect Y-up).
        scale: file units per metre (100: centimetres, as most BVH files; Blender's importer
            then needs a scale of 0.01).

    Raises:
        ValueError: inconsistent shapes, non-finite values or names with spaces.
    """
    path = Path(path)
    joints = np.asarray(rest_joints, dtype=np.float64)
    rots = np.asarray(joint_rotations, dtype=np.float64)
    root = np.asarray(root_translation, dtype=np.float64)
    n_j = len(parents)
    t = rots.shape[0] if rots.ndim == 4 else 0
    if (joints.shape != (n_j, 3) or rots.shape != (t, n_j, 3, 3) or root.shape != (t, 3) or t == 0
            or parents[0] != -1 or any(not 0 <= parents[j] < j for j in range(1, n_j)) or len(joint_names) != n_j):
        raise ValueError(f"{path}: inconsistent BVH inputs: {n_j} joints (root first, parents before children), "
                         f"{len(joint_names)} names, rest joints {joints.shape}, rotations {rots.shape}, root "
                         f"translation {root.shape}, T >= 1")
    if any(not n or any(c.isspace() for c in n) for n in joint_names):
        raise ValueError(f"{path}: BVH joint names must be non-empty without spaces")
    world = np.eye(3) if world_rotation is None else np.asarray(world_rotation, dtype=np.float64)
    if not all(np.isfinite(a).all() for a in (joints, rots, root, world)) or not fps > 0 or not scale > 0:
        raise ValueError(f"{path}: BVH inputs must be finite, fps and scale positive")
    rots = rots.copy()
    rots[:, 0] = world @ rots[:, 0]
    position = root @ world.T * scale
    angles = _euler_degrees(rots, _BVH_ROTATION_ORDER)  # (T, J, 3) as (z, x, y)
    children: dict[int, list[int]] = {j: [c for c in range(n_j) if parents[c] == j] for j in range(n_j)}
    rotation_channels = " ".join(f"{axis}rotation" for axis in _BVH_ROTATION_ORDER)
    lines = ["HIERARCHY"]
    order: list[int] = []

    def fmt(v: np.ndarray) -> str:
        return " ".join(f"{x:.6f}" for x in v)

    def emit(j: int, depth: int) -> None:
        pad = "\t" * depth
        order.append(j)
        offset = np.zeros(3) if j == 0 else (joints[j] - joints[parents[j]]) * scale
        lines.append(f"{pad}{'ROOT' if j == 0 else 'JOINT'} {joint_names[j]}")
        lines.append(pad + "{")
        lines.append(f"{pad}\tOFFSET {fmt(offset)}")
        channels = ("6 Xposition Yposition Zposition " if j == 0 else "3 ") + rotation_channels
        lines.append(f"{pad}\tCHANNELS {channels}")
        for c in children[j]:
            emit(c, depth + 1)
        if not children[j]:
            lines.extend([f"{pad}\tEnd Site", pad + "\t{", f"{pad}\t\tOFFSET {fmt(0.5 * offset)}", pad + "\t}"])
        lines.append(pad + "}")

    emit(0, 0)
    lines += ["MOTION", f"Frames: {t}", f"Frame Time: {1.0 / fps:.8f}"]
    for f in range(t):
        values = [position[f]] + [angles[f, j] for j in order]
        lines.append(" ".join(f"{x:.6f}" for x in np.concatenate(values)))
    return write_bytes_atomic(path, ("\n".join(lines) + "\n").encode())


def pose2sim_marker_name(name: str) -> str:
    """A keypoint name in Pose2Sim's/OpenSim's spelling: ``right_big_toe`` -> ``RBigToe``,
    ``left_hip`` -> ``LHip``, ``mid_hip`` -> ``MidHip``, ``nose`` -> ``Nose``."""
    parts = name.split("_")
    side = {"right": "R", "left": "L"}.get(parts[0])
    rest = parts[1:] if side else parts
    return (side or "") + "".join(p[:1].upper() + p[1:] for p in rest)


def write_trc(path: str | os.PathLike[str], markers: np.ndarray, names: Sequence[str], fps: float, *,
              frame_numbers: Sequence[int] | np.ndarray | None = None, world_rotation: np.ndarray | None = None,
              units: str = "mm", name: str | None = None) -> Path:
    """Write 3D markers as an OpenSim / Pose2Sim TRC file (tab-separated, atomically).

    Layout: line 1 ``PathFileType 4 (X/Y/Z) <file name>``; line 2 the header names
    ``DataRate CameraRate NumFrames NumMarkers Units OrigDataRate OrigDataStartFrame
    OrigNumFrames``; line 3 their values; line 4 ``Frame# Time`` and each marker's name over its
    three columns; line 5 ``X1 Y1 Z1 X2 ...``; then one row per frame (no blank line, as Pose2Sim writes) (``Frame#`` from 1, ``Time``
    = frame number / fps). A missing marker (NaN) is left empty, which OpenSim reads as missing.

    Args:
        path: destination ``.trc``.
        markers: ``(T, M, 3)`` world positions, metres (NaN: missing).
        names: ``(M,)`` marker names (no tabs).
        fps: frames per second.
        frame_numbers: ``(T,)`` the frames' numbers in the recording (default 0..T-1): ``Time``.
        world_rotation: optional ``(3, 3)`` rotation applied to every marker (OpenSim is Y-up:
            :data:`Z_UP_TO_Y_UP` for a Z-up rig).
        units: ``mm`` or ``m``.
        name: the file name line 1 gives (default: ``path``'s; a temporary path passes the final one).

    Raises:
        ValueError: inconsistent shapes, a bad unit, or infinite values.
    """
    path = Path(path)
    points = np.asarray(markers, dtype=np.float64)
    if points.ndim != 3 or points.shape[2] != 3 or points.shape[1] != len(names) or len(points) == 0:
        raise ValueError(f"{path}: markers must be (T >= 1, {len(names)}, 3), got {points.shape}")
    if units not in ("mm", "m") or not fps > 0 or np.isinf(points).any():
        raise ValueError(f"{path}: units must be mm or m, fps positive and markers finite or NaN")
    if any(not n or "\t" in n for n in names) or len(set(names)) != len(names):
        raise ValueError(f"{path}: marker names must be unique, non-empty, without tabs")
    frames = np.arange(len(points)) if frame_numbers is None else np.asarray(frame_numbers)
    if frames.shape != (len(points),):
        raise ValueError(f"{path}: {len(frames)} frame numbers for {len(points)} frames")
    world = np.eye(3) if world_rotation is None else np.asarray(world_rotation, dtype=np.float64)
    points = points @ world.T * (1000.0 if units == "mm" else 1.0)
    t, m = points.shape[:2]
    rate = f"{fps:g}"
    lines = [f"PathFileType\t4\t(X/Y/Z)\t{name or path.name}",
             "DataRate\tCameraRate\tNumFrames\tNumMarkers\tUnits\tOrigDataRate\tOrigDataStartFrame\tOrigNumFrames",
             f"{rate}\t{rate}\t{t}\t{m}\t{units}\t{rate}\t{int(frames[0]) + 1}\t{t}",
             "Frame#\tTime\t" + "\t".join(f"{n}\t\t" for n in names).rstrip("\t"),
             "\t\t" + "\t".join(f"X{i + 1}\tY{i + 1}\tZ{i + 1}" for i in range(m))]
    for i in range(t):
        cells = [str(i + 1), f"{frames[i] / fps:.6f}"]
        cells += ["" if not np.isfinite(v) else f"{v:.5f}" for v in points[i].reshape(-1)]
        lines.append("\t".join(cells))
    return write_bytes_atomic(path, ("\n".join(lines) + "\n").encode())
