"""anipose / aniposelib TOML calibration files (also Pose2Sim's and FreeMoCap's ``Calib*.toml``).

One table per camera (``[cam_0]``, ``[cam_01]``, ``[int_cam1_img]`` ... any name but
``metadata``) with ``name``, ``size = [w, h]``, ``matrix`` (3x3), ``distortions`` (4, 5 or 8
OpenCV coefficients; ``fisheye = true`` marks a fisheye model, which this package does not
model), ``rotation`` (Rodrigues vector, world->camera) and ``translation`` (world->camera, in
the calibration's units), plus a free ``[metadata]`` table.

Camera order is the order of the tables in the file (aniposelib's own loader sorts the table
names as strings, so ``cam_10`` comes before ``cam_2``; this reader does not). The writer pads
table numbers (``cam_00`` .. ``cam_11``) so aniposelib reads the same order back. A rig's
:class:`~calibration.world_frame.WorldFrame` is saved as ``metadata.world_up`` /
``metadata.world_origin``.
"""
from __future__ import annotations

import math
import os
from pathlib import Path
from typing import Any, Mapping, Optional

import cv2
import numpy as np
import tomllib

from calibration.camera import Camera, Rig
from calibration.world_frame import WorldFrame
from mvspin.atomic import write_bytes_atomic
from mvspin.errors import CalibrationError

__all__ = ["read_anipose_toml", "write_anipose_toml", "rig_from_dicts", "camera_to_dict"]

_KEYS = ("matrix", "distortions", "rotation", "translation")


def _array(table: Mapping[str, Any], key: str, shape: tuple[int, ...], where: str) -> np.ndarray:
    try:
        a = np.asarray(table[key], dtype=np.float64)
    except (TypeError, ValueError):
        raise CalibrationError(f"{where}: {key} is not an array of numbers") from None
    if a.size != math.prod(shape):
        raise CalibrationError(f"{where}: {key} must have {math.prod(shape)} numbers, got {a.size}")
    return a.reshape(shape)


def _camera_from_dict(table: Mapping[str, Any], key: str, where: str) -> Camera:
    missing = [k for k in _KEYS if k not in table]
    if missing:
        raise CalibrationError(f"{where}: table [{key}] misses {', '.join(missing)}")
    if table.get("fisheye", False):
        raise CalibrationError(f"{where}: camera [{key}] is a fisheye camera; only the OpenCV "
                               "pinhole model (k1 k2 p1 p2 k3) is supported")
    K = _array(table, "matrix", (3, 3), f"{where} [{key}]")
    dist = np.asarray(table["distortions"], dtype=np.float64).reshape(-1)
    rvec = _array(table, "rotation", (3,), f"{where} [{key}]")
    t = _array(table, "translation", (3,), f"{where} [{key}]")
    size = table.get("size", (0, 0))
    try:
        w, h = (int(round(float(s))) for s in size)
    except (TypeError, ValueError):
        raise CalibrationError(f"{where} [{key}]: size must be [width, height], got {size!r}") from None
    R = cv2.Rodrigues(rvec.reshape(3, 1))[0]
    try:
        return Camera(K=K, R=R, t=t, dist=dist, image_size=(w, h), name=str(table.get("name", key)))
    except ValueError as e:
        raise CalibrationError(f"{where} [{key}]: {e}") from None


def rig_from_dicts(tables: Mapping[str, Any], where: str = "calibration") -> Rig:
    """A rig from parsed TOML tables ``{table name: camera table, "metadata": {...}}``, in the
    mapping's order."""
    cameras = [_camera_from_dict(v, k, where) for k, v in tables.items()
               if k != "metadata" and isinstance(v, Mapping)]
    if not cameras:
        raise CalibrationError(f"{where}: no camera tables (tables with {', '.join(_KEYS)})")
    meta = tables.get("metadata", {})
    world = None
    if isinstance(meta, Mapping) and "world_up" in meta:
        world = WorldFrame(up=str(meta["world_up"]), origin=str(meta.get("world_origin", "floor")))
    try:
        return Rig(cameras, world=world)
    except ValueError as e:
        raise CalibrationError(f"{where}: {e}") from None


def read_anipose_toml(path: str | os.PathLike) -> Rig:
    """Read an anipose-style TOML calibration; cameras in file order.

    Raises:
        FileNotFoundError: no such file.
        CalibrationError: not TOML, or a camera table is incomplete or invalid (names the table).
    """
    path = Path(path)
    try:
        tables = tomllib.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise FileNotFoundError(f"{path}: calibration file not found") from None
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as e:
        raise CalibrationError(f"{path}: not a valid TOML file: {e}") from None
    return rig_from_dicts(tables, str(path))


def camera_to_dict(camera: Camera) -> dict[str, Any]:
    """One camera as aniposelib's table: ``name``, ``size``, ``matrix``, ``distortions``,
    ``rotation`` (Rodrigues), ``translation``."""
    dist = camera.dist if camera.dist.size else np.zeros(5)
    return {
        "name": camera.name,
        "size": [int(camera.image_size[0]), int(camera.image_size[1])],
        "matrix": camera.K.tolist(),
        "distortions": dist.tolist(),
        "rotation": cv2.Rodrigues(camera.R)[0].reshape(3).tolist(),
        "translation": camera.t.tolist(),
    }


def _toml_value(v: Any) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, (int, np.integer)):
        return str(int(v))
    if isinstance(v, (float, np.floating)):
        f = float(v)
        if not math.isfinite(f):
            raise CalibrationError(f"cannot write the non-finite number {f} to TOML")
        return repr(f)
    if isinstance(v, str):
        return '"' + v.replace("\\", "\\\\").replace('"', '\\"') + '"'
    if isinstance(v, (list, tuple)):
        return "[" + ", ".join(_toml_value(x) for x in v) + "]"
    raise CalibrationError(f"cannot write a {type(v).__name__} to TOML")


def _toml_key(k: str) -> str:
    return k if k and all(ch.isalnum() or ch in "_-" for ch in k) else _toml_value(k)


def dumps_toml(tables: Mapping[str, Mapping[str, Any]]) -> str:
    """TOML text of ``{table: {key: value}}`` with scalar, string and (nested) list values."""
    lines: list[str] = []
    for name, table in tables.items():
        lines.append(f"[{_toml_key(name)}]")
        lines += [f"{_toml_key(k)} = {_toml_value(v)}" for k, v in table.items()]
        lines.append("")
    return "\n".join(lines)


def write_anipose_toml(rig: Rig, path: str | os.PathLike, metadata: Optional[Mapping[str, Any]] = None) -> Path:
    """Write ``rig`` as an anipose TOML file (atomically); returns ``path``.

    Args:
        metadata: extra ``[metadata]`` entries (strings, numbers, lists); the rig's world frame
            is added as ``world_up`` / ``world_origin``.
    """
    width = len(str(len(rig) - 1))  # cam_00 .. cam_11: string order = camera order
    tables: dict[str, Mapping[str, Any]] = {f"cam_{i:0{width}d}": camera_to_dict(c) for i, c in enumerate(rig)}
    meta = dict(metadata or {})
    if rig.world is not None:
        meta.update(world_up=rig.world.up, world_origin=rig.world.origin)
    tables["metadata"] = meta
    return write_bytes_atomic(path, dumps_toml(tables).encode("utf-8"))
