"""The multi-view bundle file: one HDF5 file per split holding N bundles of V views each.

A *bundle* is one moment seen by V cameras (V = 1 for single-view test sets). :data:`SCHEMA` is
the single source of truth for the fields; :class:`BundleWriter` appends bundles to a new file
(written under a temporary name and renamed when complete), :class:`BundleFile` reads them by
index, and :func:`validate_bundle_file` checks a file against the schema.

Layout (HDF5, h5py):

- Root attributes: ``format`` (``"mvspin-bundles"``), ``format_version`` (:data:`FORMAT_VERSION`),
  ``dataset``, ``split``, ``num_views`` (V), ``created_by``, ``created_at`` (ISO 8601 UTC), and
  ``image_root`` when images are stored as paths (relative paths resolve against the file's own
  folder). Builders add free-form string/number attributes (``source``, options).
- One dataset per field, first axis N (the bundle index), second axis V for per-view fields.
  ``keypoints_2d`` and ``joints_3d`` carry a ``keypoint_set`` attribute naming their set in
  :mod:`mvspin.body.keypoint_sets`; ``joints_3d`` also carries ``coordinate_frame`` and
  ``root_relative`` (see below).
- An optional group ``extra/`` may hold dataset-specific arrays; it is not validated.

Conventions: pixels in 2D (full-image coordinates, origin at the top-left pixel's centre as in
OpenCV), metres in 3D, OpenCV camera axes (x right, y down, z forward), world-to-camera
extrinsics ``x_cam = camera_R @ x_world + camera_t``, OpenCV lens distortion
``(k1, k2, p1, p2, k3)``, SMPL parameters in axis-angle with SMPL/AMASS names. The crop follows
SPIN: a square box of side ``scale * 200`` pixels centred on ``center``.

3D joints: ``joints_3d`` attribute ``coordinate_frame`` is ``"world"`` (the frame the stored
cameras map from; requires the camera fields) or ``"view0_camera"`` (the camera frame of view 0,
used when a dataset has no extrinsics, e.g. the MPI-INF-3DHP test set). ``root_relative`` is true
when the source only gives joints relative to the pelvis (translation unknown).

SMPL ground truth is in the world frame: moving it into a camera rotates ``global_orient`` by
``camera_R`` about the body's pelvis joint (which depends on ``betas``), not about the origin.
``image_size`` is required (every source knows it): crops and visibility need it even where
cameras are absent. ``frame`` is the 0-based frame index in the source sequence.

Chunking: every dataset is chunked along N in blocks of ``chunk_bundles`` bundles (default 16) so
reading one bundle touches one chunk per field; numeric fields are gzip-compressed (portable: any
HDF5 reader can open the file), encoded images are stored as-is (already compressed).
"""
from __future__ import annotations

import contextlib
import datetime
import os
import re
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterable, Iterator, Mapping, Optional, Sequence

import cv2
import h5py
import numpy as np

from mvspin._version import __version__
from mvspin.atomic import commit_temporary, temporary_path_for
from mvspin.body.keypoint_sets import KEYPOINT_SETS
from mvspin.errors import BundleFormatError, IncompleteWriteError, MvspinError
from mvspin.progress import Progress, no_progress, stage_progress

__all__ = [
    "FORMAT_NAME",
    "FORMAT_VERSION",
    "SCHEMA",
    "FIELD_GROUPS",
    "COORDINATE_FRAMES",
    "FieldSpec",
    "BundleFormatError",
    "BundleWriter",
    "validate_bundle_contents",
    "BundleFile",
    "validate_bundle_file",
    "decode_image",
]

FORMAT_NAME = "mvspin-bundles"
FORMAT_VERSION = 1

COORDINATE_FRAMES = ("world", "view0_camera")
"""Allowed values of the ``coordinate_frame`` attribute of ``joints_3d``."""

SMPL_GENDERS = ("neutral", "male", "female")


@dataclass(frozen=True)
class FieldSpec:
    """One field of the bundle format.

    Attributes:
        shape: symbolic shape: ``"N"`` bundles, ``"V"`` views, ``"K"`` 2D keypoints, ``"K3"`` 3D
            joints, or fixed integers.
        dtype: ``"float32"``, ``"float64"``, ``"int32"``, ``"int64"``, ``"bool"``, ``"str"``
            (UTF-8 variable length) or ``"bytes"`` (variable-length uint8: encoded image).
        required: whether every file must have it (fields of a group are all-or-none instead).
        group: fields that are present together (``"image"``: exactly one of its fields).
        description: meaning and units.
    """

    shape: tuple[str | int, ...]
    dtype: str
    required: bool
    group: Optional[str]
    description: str


SCHEMA: dict[str, FieldSpec] = {
    # images: exactly one of the two
    "images": FieldSpec(("N", "V"), "bytes", False, "image",
                        "encoded image file bytes (JPEG or PNG) of each view"),
    "image_paths": FieldSpec(("N", "V"), "str", False, "image",
                             "image path of each view, relative to the file attribute image_root"),
    "image_size": FieldSpec(("N", "V", 2), "int32", True, None, "image (width, height), pixels"),
    # crops (SPIN convention)
    "center": FieldSpec(("N", "V", 2), "float32", True, None, "crop centre (x, y), full-image pixels"),
    "scale": FieldSpec(("N", "V"), "float32", True, None, "crop side / 200 pixels"),
    # keypoints
    "keypoints_2d": FieldSpec(("N", "V", "K", 3), "float32", True, None,
                              "(x, y, confidence) in full-image pixels; attribute keypoint_set"),
    "joints_3d": FieldSpec(("N", "K3", 4), "float32", False, None,
                           "(x, y, z, confidence), metres; attributes keypoint_set, "
                           "coordinate_frame, root_relative"),
    # cameras
    "camera_K": FieldSpec(("N", "V", 3, 3), "float64", False, "camera", "intrinsics, pixels"),
    "camera_dist": FieldSpec(("N", "V", 5), "float64", False, "camera",
                             "OpenCV distortion (k1, k2, p1, p2, k3)"),
    "camera_R": FieldSpec(("N", "V", 3, 3), "float64", False, "camera", "world-to-camera rotation"),
    "camera_t": FieldSpec(("N", "V", 3), "float64", False, "camera",
                          "world-to-camera translation, metres"),
    # SMPL ground truth (world frame)
    "smpl_global_orient": FieldSpec(("N", 3), "float32", False, "smpl",
                                    "root orientation in the world frame, axis-angle"),
    "smpl_body_pose": FieldSpec(("N", 69), "float32", False, "smpl", "23 joint rotations, axis-angle"),
    "smpl_betas": FieldSpec(("N", 10), "float32", False, "smpl", "shape coefficients"),
    "smpl_transl": FieldSpec(("N", 3), "float32", False, "smpl", "SMPL translation in the world, metres"),
    "smpl_gender": FieldSpec(("N",), "str", False, "smpl", "'neutral', 'male' or 'female'"),
    "has_smpl": FieldSpec(("N",), "bool", False, "smpl", "whether the SMPL fields hold ground truth"),
    # ids
    "subject": FieldSpec(("N",), "str", True, None, "subject id"),
    "sequence": FieldSpec(("N",), "str", True, None, "sequence id"),
    "frame": FieldSpec(("N",), "int64", True, None, "0-based frame index in the source sequence"),
    "camera_names": FieldSpec(("N", "V"), "str", True, None, "camera id of each view"),
}
"""Every field of the format: name -> :class:`FieldSpec`."""

FIELD_GROUPS: dict[str, tuple[str, ...]] = {}
for _name, _spec in SCHEMA.items():
    if _spec.group is not None:
        FIELD_GROUPS.setdefault(_spec.group, ())
        FIELD_GROUPS[_spec.group] += (_name,)
del _name, _spec
"""Groups of fields present together: ``image`` (exactly one), ``camera``, ``smpl`` (all or none)."""

EXTRA_GROUP = "extra"
_NUMERIC = {"float32": np.float32, "float64": np.float64, "int32": np.int32, "int64": np.int64}
_STR_DTYPE = h5py.string_dtype("utf-8")
_BYTES_DTYPE = h5py.vlen_dtype(np.uint8)
# Tolerance for accepting a stored rotation: text calibrations carry ~7 significant digits.
_ROTATION_TOL = 1e-4


def _err(path: Any, field: Optional[str], message: str) -> BundleFormatError:
    where = f"{path}: field '{field}'" if field else f"{path}"
    return BundleFormatError(f"{where}: {message}")


def _dtype_ok(dset: h5py.Dataset, kind: str) -> bool:
    if kind in _NUMERIC:
        return dset.dtype == np.dtype(_NUMERIC[kind])
    if kind == "bool":
        return dset.dtype == np.dtype(bool)
    if kind == "str":
        return h5py.check_string_dtype(dset.dtype) is not None
    if kind == "bytes":
        base = h5py.check_vlen_dtype(dset.dtype)
        return base is not None and base == np.dtype(np.uint8)
    raise AssertionError(kind)


def _attr_str(obj: h5py.HLObject, name: str) -> Optional[str]:
    if name not in obj.attrs:
        return None
    value = obj.attrs[name]
    if isinstance(value, bytes):
        return value.decode("utf-8", "replace")
    return str(value)


def _validate_open(f: h5py.File, path: Any) -> dict[str, Any]:
    """Check an open file against the schema; return its layout summary."""
    fmt = _attr_str(f, "format")
    if fmt != FORMAT_NAME:
        raise _err(path, None, f"not an mvspin bundle file (attribute 'format' is {fmt!r}, "
                               f"expected {FORMAT_NAME!r})")
    if "format_version" not in f.attrs:
        raise _err(path, None, "missing attribute 'format_version'")
    try:
        version = int(f.attrs["format_version"])
    except (TypeError, ValueError):
        raise _err(path, None, f"attribute 'format_version' is not an integer: "
                               f"{f.attrs['format_version']!r}") from None
    if version != FORMAT_VERSION:
        raise _err(path, None, f"format_version {version} is not supported; this mvspin "
                               f"({__version__}) reads version {FORMAT_VERSION}")
    for attr in ("dataset", "split"):
        if _attr_str(f, attr) is None:
            raise _err(path, None, f"missing attribute {attr!r}")
    if "num_views" not in f.attrs:
        raise _err(path, None, "missing attribute 'num_views'")
    num_views = int(f.attrs["num_views"])
    if num_views < 1:
        raise _err(path, None, f"attribute 'num_views' must be >= 1, got {num_views}")

    present = set()
    for name, obj in f.items():
        if name == EXTRA_GROUP and isinstance(obj, h5py.Group):
            continue
        if name not in SCHEMA:
            raise _err(path, name, f"unknown field; the format has {', '.join(SCHEMA)} "
                                   f"(dataset-specific arrays go under '{EXTRA_GROUP}/')")
        if not isinstance(obj, h5py.Dataset):
            raise _err(path, name, "is a group, expected a dataset")
        present.add(name)

    for name, spec in SCHEMA.items():
        if spec.required and name not in present:
            raise _err(path, name, "required field is missing")
    image_fields = [n for n in FIELD_GROUPS["image"] if n in present]
    if len(image_fields) != 1:
        raise _err(path, "images", "exactly one of 'images' (encoded bytes) and 'image_paths' "
                                   f"must be present, found {image_fields or 'neither'}")
    for group in ("camera", "smpl"):
        have = [n for n in FIELD_GROUPS[group] if n in present]
        if have and len(have) != len(FIELD_GROUPS[group]):
            missing = [n for n in FIELD_GROUPS[group] if n not in present]
            raise _err(path, missing[0], f"{group} fields are all-or-none: have {have}, "
                                         f"missing {missing}")

    sizes: dict[str, int] = {"V": num_views}
    sets: dict[str, str] = {}
    for name, kp_symbol in (("keypoints_2d", "K"), ("joints_3d", "K3")):
        if name not in present:
            continue
        set_name = _attr_str(f[name], "keypoint_set")
        if set_name is None:
            raise _err(path, name, "missing attribute 'keypoint_set'")
        if set_name not in KEYPOINT_SETS:
            raise _err(path, name, f"unknown keypoint_set {set_name!r}; known sets: "
                                   f"{', '.join(KEYPOINT_SETS)}")
        sizes[kp_symbol] = len(KEYPOINT_SETS[set_name])
        sets[name] = set_name

    for name in sorted(present, key=list(SCHEMA).index):
        spec, dset = SCHEMA[name], f[name]
        if dset.ndim != len(spec.shape):
            raise _err(path, name, f"expected shape {_pattern(spec.shape)}, got {dset.shape}")
        for axis, (symbol, actual) in enumerate(zip(spec.shape, dset.shape)):
            if isinstance(symbol, int):
                expected = symbol
            elif symbol in sizes:
                expected = sizes[symbol]
            else:
                sizes[symbol] = expected = actual
            if actual != expected:
                what = {"N": "bundles (N)", "V": "views (V, attribute num_views)",
                        "K": f"keypoints of set {sets.get('keypoints_2d')!r}",
                        "K3": f"joints of set {sets.get('joints_3d')!r}"}.get(str(symbol), "entries")
                raise _err(path, name, f"expected shape {_pattern(spec.shape)}, got {dset.shape}: "
                                       f"axis {axis} has {actual} {what}, expected {expected}")
        if not _dtype_ok(dset, spec.dtype):
            raise _err(path, name, f"expected dtype {spec.dtype}, got {dset.dtype}")

    joints_frame = None
    root_relative = False
    if "joints_3d" in present:
        joints_frame = _attr_str(f["joints_3d"], "coordinate_frame")
        if joints_frame not in COORDINATE_FRAMES:
            raise _err(path, "joints_3d", f"attribute 'coordinate_frame' is {joints_frame!r}, "
                                          f"expected one of {COORDINATE_FRAMES}")
        if joints_frame == "world" and "camera_R" not in present:
            raise _err(path, "joints_3d", "coordinate_frame 'world' needs the camera fields "
                                          f"{FIELD_GROUPS['camera']} to define the world")
        root_relative = bool(f["joints_3d"].attrs.get("root_relative", False))

    image_root = _attr_str(f, "image_root")
    if image_fields[0] == "image_paths" and image_root is None:
        raise _err(path, "image_paths", "file attribute 'image_root' is missing")

    return {
        "num_bundles": sizes.get("N", 0),
        "num_views": num_views,
        "fields": tuple(n for n in SCHEMA if n in present),
        "keypoint_set": sets["keypoints_2d"],
        "joints_3d_keypoint_set": sets.get("joints_3d"),
        "joints_3d_frame": joints_frame,
        "joints_3d_root_relative": root_relative,
        "image_field": image_fields[0],
        "image_root": image_root,
        "attrs": {k: (v.decode("utf-8", "replace") if isinstance(v, bytes) else
                      v.item() if isinstance(v, np.generic) else v) for k, v in f.attrs.items()},
    }


def _pattern(shape: Sequence[str | int]) -> str:
    return "(" + ", ".join(str(s) for s in shape) + ")"


def _open_h5(path: Path) -> h5py.File:
    try:
        return h5py.File(path, "r")
    except FileNotFoundError:
        raise FileNotFoundError(f"{path}: bundle file does not exist") from None
    except OSError as e:
        # h5py's message for truncated files is e.g. "truncated file: eof = ..."; keep it.
        raise _err(path, None, f"not a readable HDF5 file (truncated or corrupt?): {e}") from None


def validate_bundle_file(path: str | os.PathLike, *, check_values: bool = False) -> dict[str, Any]:
    """Check a bundle file against :data:`SCHEMA`.

    Args:
        path: the ``.h5`` file.
        check_values: also read every numeric field and check it is finite, that confidences are
            in [0, 1], scales and image sizes positive and rotations orthonormal (reads the whole
            file; the structural check only reads metadata).

    Returns:
        layout summary: ``num_bundles``, ``num_views``, ``fields``, ``keypoint_set``,
        ``joints_3d_keypoint_set``, ``joints_3d_frame``, ``image_field``, ``image_root``,
        ``attrs``.

    Raises:
        BundleFormatError: naming the file and the offending field.
        FileNotFoundError: the file does not exist.
    """
    path = Path(path)
    with _open_h5(path) as f:
        try:
            info = _validate_open(f, path)
            if check_values:
                for name in info["fields"]:
                    spec = SCHEMA[name]
                    if spec.dtype in _NUMERIC:
                        values = f[name][()]
                        for i in range(len(values)):
                            _check_values(name, values[i], path, i)
        except (OSError, RuntimeError, KeyError) as e:  # corrupt object headers or chunks
            raise _err(path, None, f"cannot read file structure: {e}") from None
    return info


def _check_values(name: str, value: np.ndarray, path: Any, index: int) -> None:
    """Per-bundle value checks shared by the writer and the deep validation."""
    where = f"bundle {index}"
    if value.dtype.kind == "f" and not np.all(np.isfinite(value)):
        raise _err(path, name, f"{where}: non-finite values")
    if name in ("keypoints_2d", "joints_3d"):
        conf = value[..., -1]
        if np.any(conf < 0) or np.any(conf > 1):
            raise _err(path, name, f"{where}: confidences must lie in [0, 1]")
    elif name in ("scale", "image_size"):
        if np.any(value <= 0):
            raise _err(path, name, f"{where}: values must be positive, got {value.tolist()}")
    elif name == "camera_R":
        eye = np.eye(3)
        for v, R in enumerate(value.reshape(-1, 3, 3)):
            if not np.allclose(R @ R.T, eye, atol=_ROTATION_TOL) or np.linalg.det(R) < 0:
                raise _err(path, name, f"{where}, view {v}: not a rotation matrix (orthonormal, "
                                       "det +1)")


class BundleWriter:
    """Write a new bundle file incrementally; the file appears only when complete.

    Use as a context manager. Bundles are buffered and written ``chunk_bundles`` at a time to a
    temporary file beside ``path``; on a clean exit the file is validated and renamed to
    ``path`` (an existing file is replaced); on an exception the temporary file is deleted and
    ``path`` is left untouched.

    Args:
        path: output ``.h5`` file.
        dataset: dataset name stored as attribute (``"h36m"``, ``"synthetic"``, ...).
        split: split name (``"train"``, ``"test"``, ...).
        num_views: V.
        keypoint_set: name of the 2D keypoint set (:mod:`mvspin.body.keypoint_sets`).
        joints_3d_keypoint_set: name of the 3D joint set, or None when no 3D joints are stored.
        joints_3d_frame: ``"world"`` or ``"view0_camera"`` (see module docstring).
        joints_3d_root_relative: the 3D joints are relative to the pelvis (no translation).
        cameras: whether bundles carry the camera fields.
        smpl: whether bundles carry the SMPL fields.
        image_storage: ``"bytes"`` (field ``images``) or ``"paths"`` (field ``image_paths``).
        image_root: with ``"paths"``: the folder paths are relative to, absolute or relative to
            the output file's folder.
        attrs: extra file attributes (str, int, float or bool values).
        chunk_bundles: bundles per HDF5 chunk along N.
        compression: HDF5 filter for numeric fields (``"gzip"``, ``"lzf"`` or None).
        allow_empty: with False, closing after no bundle writes nothing (an existing ``path``
            stays as it was) and sets :attr:`written` to False (dataset builders: a build that
            yields nothing must not replace a good file with an empty one).

    Each appended bundle is a mapping from field name to the value of that field for one bundle
    (the field's shape without the leading N): e.g. ``center`` of shape ``(V, 2)``, ``images`` a
    sequence of V encoded images (bytes or uint8 arrays), ``subject`` a str, ``frame`` an int.

    Example:
        >>> with BundleWriter("train.h5", dataset="demo", split="train", num_views=2,
        ...                   keypoint_set="coco17") as w:  # doctest: +SKIP
        ...     w.append(bundle)
    """

    def __init__(
        self,
        path: str | os.PathLike,
        *,
        dataset: str,
        split: str,
        num_views: int,
        keypoint_set: str,
        joints_3d_keypoint_set: Optional[str] = None,
        joints_3d_frame: str = "world",
        joints_3d_root_relative: bool = False,
        cameras: bool = False,
        smpl: bool = False,
        image_storage: str = "bytes",
        image_root: Optional[str | os.PathLike] = None,
        attrs: Optional[Mapping[str, Any]] = None,
        chunk_bundles: int = 16,
        compression: Optional[str] = "gzip",
        allow_empty: bool = True,
    ) -> None:
        self.path = Path(path)
        self._allow_empty = bool(allow_empty)
        self.written = False
        """Whether :meth:`close` put a file at ``path``."""
        if num_views < 1:
            raise ValueError(f"BundleWriter: num_views must be >= 1, got {num_views}")
        for field, name in (("keypoints_2d", keypoint_set), ("joints_3d", joints_3d_keypoint_set)):
            if name is not None and name not in KEYPOINT_SETS:
                raise _err(self.path, field, f"unknown keypoint_set {name!r}; known sets: "
                                             f"{', '.join(KEYPOINT_SETS)}")
        if image_storage not in ("bytes", "paths"):
            raise ValueError(f"BundleWriter: image_storage must be 'bytes' or 'paths', got {image_storage!r}")
        if image_storage == "paths" and image_root is None:
            raise ValueError("BundleWriter: image_storage='paths' needs image_root")
        if joints_3d_keypoint_set is not None:
            if joints_3d_frame not in COORDINATE_FRAMES:
                raise ValueError(f"BundleWriter: joints_3d_frame must be one of {COORDINATE_FRAMES}, "
                                 f"got {joints_3d_frame!r}")
            if joints_3d_frame == "world" and not cameras:
                raise ValueError("BundleWriter: joints_3d_frame='world' needs cameras=True (the "
                                 "cameras define the world frame); use 'view0_camera'")
        if chunk_bundles < 1:
            raise ValueError(f"BundleWriter: chunk_bundles must be >= 1, got {chunk_bundles}")

        self.num_views = int(num_views)
        self._sizes = {"V": self.num_views, "K": len(KEYPOINT_SETS[keypoint_set])}
        fields = [n for n, s in SCHEMA.items() if s.required]
        fields.append("images" if image_storage == "bytes" else "image_paths")
        if joints_3d_keypoint_set is not None:
            fields.append("joints_3d")
            self._sizes["K3"] = len(KEYPOINT_SETS[joints_3d_keypoint_set])
        if cameras:
            fields += FIELD_GROUPS["camera"]
        if smpl:
            fields += FIELD_GROUPS["smpl"]
        self.fields: tuple[str, ...] = tuple(n for n in SCHEMA if n in fields)
        self._chunk = int(chunk_bundles)
        self._compression = compression
        self._buffer: dict[str, list] = {n: [] for n in self.fields}
        self._count = 0
        self._closed = False

        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._tmp = temporary_path_for(self.path)
        try:
            self._file = h5py.File(self._tmp, "w")
        except BaseException:
            self._tmp.unlink(missing_ok=True)
            raise
        try:
            self._create(dataset, split, keypoint_set, joints_3d_keypoint_set, joints_3d_frame,
                         joints_3d_root_relative, image_root, attrs or {})
        except BaseException:
            self.abort()
            raise

    # -- setup -----------------------------------------------------------------------------
    def _create(self, dataset: str, split: str, keypoint_set: str, joints_set: Optional[str],
                joints_frame: str, root_relative: bool, image_root: Optional[str | os.PathLike],
                attrs: Mapping[str, Any]) -> None:
        f = self._file
        for key, value in attrs.items():
            f.attrs[key] = value
        f.attrs["format"] = FORMAT_NAME
        f.attrs["format_version"] = FORMAT_VERSION
        f.attrs["dataset"] = dataset
        f.attrs["split"] = split
        f.attrs["num_views"] = self.num_views
        f.attrs["created_by"] = f"mvspin {__version__}"
        f.attrs["created_at"] = datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds")
        if image_root is not None:
            f.attrs["image_root"] = str(image_root)
        for name in self.fields:
            spec = SCHEMA[name]
            tail = tuple(self._sizes[s] if isinstance(s, str) else s for s in spec.shape[1:])
            if spec.dtype == "str":
                dtype, compression = _STR_DTYPE, None
            elif spec.dtype == "bytes":
                dtype, compression = _BYTES_DTYPE, None  # images are already compressed
            elif spec.dtype == "bool":
                dtype, compression = np.dtype(bool), self._compression
            else:
                dtype, compression = np.dtype(_NUMERIC[spec.dtype]), self._compression
            kwargs: dict[str, Any] = {}
            if compression is not None:
                kwargs["compression"] = compression
                kwargs["shuffle"] = True
            dset = f.create_dataset(name, shape=(0,) + tail, maxshape=(None,) + tail,
                                    chunks=(self._chunk,) + tail, dtype=dtype, **kwargs)
            dset.attrs["description"] = spec.description
        f["keypoints_2d"].attrs["keypoint_set"] = keypoint_set
        if joints_set is not None:
            f["joints_3d"].attrs["keypoint_set"] = joints_set
            f["joints_3d"].attrs["coordinate_frame"] = joints_frame
            f["joints_3d"].attrs["root_relative"] = bool(root_relative)

    # -- appending -------------------------------------------------------------------------
    @property
    def num_bundles(self) -> int:
        """Bundles appended so far."""
        return self._count

    def append(self, bundle: Mapping[str, Any]) -> int:
        """Append one bundle; returns its index.

        Raises:
            BundleFormatError: a field is missing, unexpected, of the wrong shape, or holds
                non-finite values, confidences outside [0, 1], non-positive scales/sizes or a
                non-rotation ``camera_R`` (message names the output file, field and bundle).
        """
        if self._closed:
            raise RuntimeError(f"{self.path}: BundleWriter is closed")
        index = self._count
        missing = [n for n in self.fields if n not in bundle]
        if missing:
            raise _err(self.path, missing[0], f"bundle {index}: missing (this file stores "
                                              f"{', '.join(self.fields)})")
        unexpected = [n for n in bundle if n not in self.fields]
        if unexpected:
            raise _err(self.path, unexpected[0], f"bundle {index}: not stored in this file "
                                                 "(declare cameras/smpl/joints_3d in BundleWriter)")
        row = {name: self._convert(name, bundle[name], index) for name in self.fields}
        for name, value in row.items():
            self._buffer[name].append(value)
        self._count += 1
        if len(self._buffer[self.fields[0]]) >= self._chunk:
            self._flush()
        return index

    def _write_error(self, err: OSError) -> IncompleteWriteError:
        """An HDF5 write failure (typically a full disk) as an error naming the file being made,
        not its temporary (h5py's message names the temporary and buries the cause)."""
        text = str(err)
        cause = re.search(r"error message = '([^']+)'", text)
        reason = cause.group(1) if cause else (err.strerror or (text.splitlines()[0] if text else type(err).__name__))
        return IncompleteWriteError(f"{self.path}: could not be written ({reason}); nothing was left under that name")

    def _convert(self, name: str, value: Any, index: int) -> Any:
        spec = SCHEMA[name]
        shape = tuple(self._sizes[s] if isinstance(s, str) else s for s in spec.shape[1:])
        where = f"bundle {index}"
        if spec.dtype == "bytes":
            items = list(value) if not isinstance(value, (bytes, bytearray)) else [value]
            if len(items) != self.num_views:
                raise _err(self.path, name, f"{where}: expected {self.num_views} encoded images, "
                                            f"got {len(items)}")
            out = np.empty(self.num_views, dtype=object)
            for v, item in enumerate(items):
                arr = np.frombuffer(bytes(item), dtype=np.uint8) if isinstance(item, (bytes, bytearray)) \
                    else np.ascontiguousarray(item, dtype=np.uint8).reshape(-1)
                if arr.size == 0:
                    raise _err(self.path, name, f"{where}, view {v}: empty image")
                out[v] = arr
            return out
        if spec.dtype == "str":
            arr = np.asarray(value, dtype=object)
            if arr.shape != shape:
                raise _err(self.path, name, f"{where}: expected shape {shape}, got {arr.shape}")
            for item in arr.reshape(-1):
                if not isinstance(item, str):
                    raise _err(self.path, name, f"{where}: expected str, got {type(item).__name__}")
            if name == "smpl_gender" and arr.item() not in SMPL_GENDERS:
                raise _err(self.path, name, f"{where}: {arr.item()!r} is not one of {SMPL_GENDERS}")
            return arr.item() if arr.shape == () else arr
        dtype = np.dtype(bool) if spec.dtype == "bool" else np.dtype(_NUMERIC[spec.dtype])
        arr = np.asarray(value)
        if arr.shape != shape:
            raise _err(self.path, name, f"{where}: expected shape {shape} "
                                        f"(field shape {_pattern(spec.shape)}), got {arr.shape}")
        if spec.dtype != "bool" and arr.dtype.kind not in "biuf":
            raise _err(self.path, name, f"{where}: expected numbers, got dtype {arr.dtype}")
        _check_values(name, arr.astype(np.float64) if arr.dtype.kind == "f" else arr, self.path, index)
        return arr.astype(dtype)

    def _flush(self) -> None:
        try:
            self._write_buffer()
        except MvspinError:
            raise
        except OSError as err:
            raise self._write_error(err) from err

    def _write_buffer(self) -> None:
        rows = len(self._buffer[self.fields[0]])
        if rows == 0:
            return
        start = self._count - rows
        self._check_space(rows)
        for name in self.fields:
            dset = self._file[name]
            dset.resize(start + rows, axis=0)
            values = self._buffer[name]
            if SCHEMA[name].dtype in ("str", "bytes"):
                block = np.empty((rows,) + dset.shape[1:], dtype=object)
                for i, v in enumerate(values):
                    block[i] = v
            else:
                block = np.stack(values)
            dset[start:start + rows] = block
            values.clear()

    def _check_space(self, rows: int) -> None:
        """HDF5 crashes the process (segmentation fault) when the disk fills during a write:
        refuse a flush that may not fit, naming the file, while an exception is still possible."""
        import shutil

        from mvspin.errors import IncompleteWriteError

        need = 0
        for name in self.fields:
            for v in self._buffer[name]:
                if isinstance(v, np.ndarray) and v.dtype == object:
                    need += sum(np.asarray(x).nbytes for x in v.reshape(-1))
                else:
                    need += np.asarray(v).nbytes if not isinstance(v, str) else len(v)
        # chunk and metadata overhead, compression that does not pay off: twice the data plus 1 MiB
        free = shutil.disk_usage(self._tmp.parent).free
        if free < 2 * need + (1 << 20):
            raise IncompleteWriteError(f"{self.path}: the disk is full ({free} bytes free, {rows} bundles of "
                                       f"about {need} bytes to write); nothing was written")

    # -- finishing -------------------------------------------------------------------------
    def close(self) -> Path:
        """Flush, validate, and move the file into place; returns the final path."""
        if self._closed:
            return self.path
        if self._count == 0 and not self._allow_empty:
            self.abort()
            return self.path
        try:
            self._flush()
            try:
                self._file.close()
            except OSError as err:  # the last buffered blocks reach the disk here
                raise self._write_error(err) from err
            validate_bundle_file(self._tmp)  # re-reads every field's layout
            commit_temporary(self._tmp, self.path)  # fsync and size check, then the rename
        except BaseException:
            self.abort()
            raise
        self._closed = True
        self.written = True
        return self.path

    def abort(self) -> None:
        """Discard everything written; ``path`` is left as it was."""
        self._closed = True
        try:
            if self._file.id.valid:
                self._file.close()
        finally:
            try:
                os.unlink(self._tmp)
            except FileNotFoundError:
                pass

    def __enter__(self) -> "BundleWriter":
        return self

    def __exit__(self, exc_type: Any, exc: Any, tb: Any) -> None:
        if exc_type is None:
            self.close()
        else:
            self.abort()


def decode_image(data: np.ndarray | bytes, source: str = "image") -> np.ndarray:
    """Decode encoded image bytes to an RGB ``uint8`` array of shape ``(H, W, 3)``.

    Raises:
        ValueError: naming ``source`` when the bytes are not a decodable image.
    """
    if isinstance(data, (bytes, bytearray)):
        buf = np.frombuffer(data, dtype=np.uint8)
    else:
        buf = np.asarray(data, dtype=np.uint8)
    if buf.size >= 2 and buf[0] == 0xFF and buf[1] == 0xD8:
        # libjpeg decodes a cut JPEG without an error (grey below the cut): require the end
        # marker after the last scan (0xFF is byte-stuffed inside scans, so EOI is unambiguous).
        raw = buf.tobytes()
        if raw.rfind(b"\xff\xd9") < raw.rfind(b"\xff\xda"):
            raise ValueError(f"{source}: truncated JPEG ({buf.size} bytes, no end-of-image marker)")
    image = cv2.imdecode(buf, cv2.IMREAD_COLOR) if buf.size else None
    if image is None:
        raise ValueError(f"{source}: not a decodable image ({buf.size} bytes)")
    return cv2.cvtColor(image, cv2.COLOR_BGR2RGB)


# libjpeg's warnings about the data (its other messages are errors that fail the decode)
_DECODER_WARNINGS = ("Corrupt JPEG data", "Premature end of JPEG", "Invalid JPEG", "Bogus")


@contextlib.contextmanager
def _decoder_warnings() -> Iterator[Callable[[], str]]:
    """Capture what the image decoder (libjpeg inside OpenCV) prints to the process's
    standard error during the block: they report corrupt data there, not as errors. Yields a
    function returning the first such warning line ("" when there is none)."""
    captured = ""
    try:
        sys.stderr.flush()
        saved = os.dup(2)
    except (OSError, ValueError, AttributeError):  # no file descriptor 2 (embedded interpreters)
        yield lambda: ""
        return
    with tempfile.TemporaryFile() as tmp:
        os.dup2(tmp.fileno(), 2)
        try:
            yield lambda: captured
        finally:
            os.dup2(saved, 2)
            os.close(saved)
            tmp.seek(0)
            text = tmp.read().decode("utf-8", "replace")
            lines = [line.strip() for line in text.splitlines() if line.strip()]
            others = [line for line in lines if not line.startswith(_DECODER_WARNINGS)]
            if others:  # not the decoder's: show them as they would have been
                sys.stderr.write("\n".join(others) + "\n")
            captured = next((line for line in lines if line.startswith(_DECODER_WARNINGS)), "")


def validate_bundle_contents(path: str | os.PathLike, *, image_root: Optional[str | os.PathLike] = None,
                             progress: Progress = no_progress) -> int:
    """Read a bundle file the way training does, completely: every field of every bundle, every
    image decoded (embedded bytes or the file each path names, a decoder's corrupt-data warning
    taken as an error) and compared with its
    ``image_size``, plus the value checks of ``validate_bundle_file(check_values=True)``.

    A file this accepts is one :class:`BundleFile` readers (the training dataset) can read.
    ``progress`` is told ``("validating <name>", done, bundles)`` after each bundle.

    Returns:
        the number of bundles checked.

    Raises:
        BundleFormatError: naming the file, the field, the bundle and view.
        FileNotFoundError: a referenced image file is missing (named).
    """
    path = Path(path)
    validate_bundle_file(path, check_values=True)
    with BundleFile(path, image_root=image_root) as bundles:
        update = stage_progress(progress, f"validating {path.name}", len(bundles))
        for i in range(len(bundles)):
            try:
                record = bundles.read_bundle(i)
            except (OSError, ValueError, KeyError, UnicodeDecodeError) as e:
                raise _err(path, None, f"bundle {i}: cannot read: {e}") from None
            field = "images" if bundles.image_storage == "bytes" else "image_paths"
            images = []
            for v in range(bundles.num_views):
                try:
                    with _decoder_warnings() as warnings:
                        images.append(bundles.load_images(i, [v])[0])
                except FileNotFoundError:
                    raise
                except BundleFormatError:
                    raise
                except (OSError, ValueError) as e:
                    raise _err(path, field, f"bundle {i}: {e}") from None
                if warnings():  # libjpeg decodes garbled data with a warning only: the picture is wrong
                    where = bundles.image_path(i, v) if field == "image_paths" else "embedded"
                    raise _err(path, field, f"bundle {i} view {v}: corrupt image data ({where}): {warnings()}")
            for v, image in enumerate(images):
                w, h = (int(x) for x in record["image_size"][v])
                if image.shape[:2] != (h, w):
                    raise _err(path, "image_size", f"bundle {i} view {v}: image is {image.shape[1]}x"
                                                   f"{image.shape[0]}, image_size says {w}x{h}")
            update(i + 1)
    return len(bundles)


class BundleFile:
    """Random access to the bundles of a file written by :class:`BundleWriter`.

    The file is validated when the object is created, then closed; the HDF5 handle is opened
    lazily on first read in each process, so the object can be handed to DataLoader workers
    (pickling carries only the path and metadata, never an open handle).

    Args:
        path: the ``.h5`` bundle file.
        image_root: overrides the file's ``image_root`` attribute for ``image_paths`` files.

    Attributes:
        path, num_views, fields, keypoint_set (2D), joints_3d_keypoint_set (or None),
        joints_3d_frame (or None), image_storage (``"bytes"`` or ``"paths"``), attrs (file
        attributes), has_cameras, has_smpl.

    Example:
        >>> bundles = BundleFile("h36m_train.h5")  # doctest: +SKIP
        >>> b = bundles[0]; b["keypoints_2d"].shape  # (V, K, 3)  # doctest: +SKIP
        >>> rgb = bundles.load_images(0)  # V arrays of shape (H, W, 3)  # doctest: +SKIP
    """

    def __init__(self, path: str | os.PathLike, *, image_root: Optional[str | os.PathLike] = None) -> None:
        self.path = Path(path)
        info = validate_bundle_file(self.path)
        self._len: int = info["num_bundles"]
        self.num_views: int = info["num_views"]
        self.fields: tuple[str, ...] = info["fields"]
        self.keypoint_set: str = info["keypoint_set"]
        self.joints_3d_keypoint_set: Optional[str] = info["joints_3d_keypoint_set"]
        self.joints_3d_frame: Optional[str] = info["joints_3d_frame"]
        self.joints_3d_root_relative: bool = info["joints_3d_root_relative"]
        self.image_storage: str = "bytes" if info["image_field"] == "images" else "paths"
        self.attrs: dict[str, Any] = info["attrs"]
        self.has_cameras = "camera_R" in self.fields
        self.has_smpl = "has_smpl" in self.fields
        root = image_root if image_root is not None else info["image_root"]
        self.image_root: Optional[Path] = None
        if root is not None:
            root = Path(root)
            self.image_root = root if root.is_absolute() else self.path.parent / root
        self._h5: Optional[h5py.File] = None
        self._pid: Optional[int] = None
        self._dsets: dict[str, Any] = {}  # name lookups in h5py cost ~0.1 ms: cache per process

    def __len__(self) -> int:
        return self._len

    def __repr__(self) -> str:
        return (f"BundleFile({str(self.path)!r}: {self._len} bundles x {self.num_views} views, "
                f"dataset={self.attrs.get('dataset')!r}, split={self.attrs.get('split')!r})")

    # -- handle management -----------------------------------------------------------------
    def _handle(self) -> h5py.File:
        if self._h5 is None or self._pid != os.getpid():
            # A handle inherited through fork() belongs to the parent; open our own.
            self._h5 = _open_h5(self.path)
            self._pid = os.getpid()
            self._dsets = {}
        return self._h5

    def _dataset(self, name: str) -> Any:
        h5 = self._handle()
        dset = self._dsets.get(name)
        if dset is None:
            dset = h5[name].asstr() if SCHEMA[name].dtype == "str" else h5[name]
            self._dsets[name] = dset
        return dset

    def close(self) -> None:
        """Close this process's handle (reads reopen it)."""
        if self._h5 is not None and self._pid == os.getpid():
            self._h5.close()
        self._h5 = None
        self._pid = None
        self._dsets = {}

    def __enter__(self) -> "BundleFile":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    def __getstate__(self) -> dict[str, Any]:
        state = self.__dict__.copy()
        state["_h5"] = None
        state["_pid"] = None
        state["_dsets"] = {}
        return state

    # -- reading ---------------------------------------------------------------------------
    def _index(self, index: int) -> int:
        i = int(index)
        if i < 0:
            i += self._len
        if not 0 <= i < self._len:
            raise IndexError(f"{self.path}: bundle index {index} out of range for {self._len} bundles")
        return i

    def _read(self, name: str, index: Any) -> Any:
        try:
            return self._dataset(name)[index]
        except OSError as e:
            raise _err(self.path, name, f"cannot read bundle {index}: {e}") from None

    def read_bundle(self, index: int, fields: Optional[Iterable[str]] = None) -> dict[str, Any]:
        """Read one bundle.

        Args:
            index: bundle index (negative counts from the end).
            fields: subset of fields to read (default: all stored fields).

        Returns:
            dict field -> value with the N axis removed: numeric arrays (``keypoints_2d``
            ``(V, K, 3)``, ``center`` ``(V, 2)``, ...), ``images`` a list of V encoded uint8
            arrays (decode with :meth:`load_images`), ``image_paths`` and ``camera_names`` str
            arrays ``(V,)``, ``subject``/``sequence``/``smpl_gender`` str, ``frame`` int,
            ``has_smpl`` bool.
        """
        i = self._index(index)
        names = self.fields if fields is None else tuple(fields)
        out: dict[str, Any] = {}
        for name in names:
            if name not in self.fields:
                raise KeyError(f"{self.path}: field {name!r} is not stored; stored: {', '.join(self.fields)}")
            value = self._read(name, i)
            kind = SCHEMA[name].dtype
            if kind == "bytes":
                value = [np.asarray(v, dtype=np.uint8) for v in value]
            elif kind == "str":
                value = str(value) if SCHEMA[name].shape == ("N",) else np.asarray(value, dtype=str)
            elif name == "frame":
                value = int(value)
            elif name == "has_smpl":
                value = bool(value)
            out[name] = value
        return out

    __getitem__ = read_bundle

    def read_field(self, name: str) -> np.ndarray:
        """The whole field for all bundles (e.g. ids for a sampler); shape per :data:`SCHEMA`."""
        if name not in self.fields:
            raise KeyError(f"{self.path}: field {name!r} is not stored; stored: {', '.join(self.fields)}")
        value = self._read(name, slice(None))
        if SCHEMA[name].dtype == "str":
            return np.asarray(value, dtype=str)
        return np.asarray(value)

    def image_path(self, index: int, view: int) -> Path:
        """Absolute path of a view's image (``image_paths`` files only)."""
        if self.image_storage != "paths":
            raise ValueError(f"{self.path}: images are embedded as bytes, not stored as paths")
        rel = self._read("image_paths", (self._index(index), view))
        return Path(self.image_root) / rel

    def load_images(self, index: int, views: Optional[Sequence[int]] = None) -> list[np.ndarray]:
        """Decode the images of a bundle: a list of RGB ``uint8`` arrays ``(H, W, 3)``.

        Raises:
            BundleFormatError: an embedded image does not decode.
            FileNotFoundError / ValueError: a referenced image file is missing or unreadable.
        """
        i = self._index(index)
        views = range(self.num_views) if views is None else views
        images = []
        if self.image_storage == "bytes":
            encoded = self._read("images", i)
            for v in views:
                try:
                    images.append(decode_image(encoded[v], f"bundle {i} view {v}"))
                except ValueError as e:
                    raise _err(self.path, "images", str(e)) from None
        else:
            for v in views:
                p = self.image_path(i, v)
                if not p.is_file():
                    raise FileNotFoundError(f"{self.path}: image of bundle {i} view {v} not found: {p}")
                images.append(decode_image(np.fromfile(p, dtype=np.uint8), str(p)))
        return images
