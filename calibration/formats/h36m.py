"""Human3.6M camera parameter files: one rig of four cameras per subject.

Two layouts, both read and written:

- ``cameras.h5`` as distributed with Martinez et al.'s 3d-pose-baseline: groups
  ``subject<n>/camera<m>`` (m = 1..4) with datasets ``R`` (3x3, stored transposed: the
  world-to-camera rotation is ``R.T``), ``T`` (3x1, camera centre in the world, mm), ``f`` (2x1),
  ``c`` (2x1), ``k`` (3x1 radial), ``p`` (2x1 tangential) and ``Name`` (the camera id as
  character codes; when absent, camera m is the m-th of :data:`H36M_CAMERA_IDS`);
- a JSON file: ``{"S1": {"54138969": {"R": [[...], [...], [...]], "T": [x, y, z], "f": [fx, fy],
  "c": [cx, cy], "k": [k1, k2, k3], "p": [p1, p2]}, ...}, ...}`` where ``R`` is the
  world-to-camera rotation (``x_cam = R (x_world - T)``) and ``T`` the camera centre in mm;
  an optional ``"size": [w, h]``.

Converted to :class:`~calibration.camera.Camera`: ``R``, ``t = -R T / 1000`` (metres),
``K = [[fx, 0, cx], [0, fy, cy], [0, 0, 1]]``, OpenCV distortion ``(k1, k2, p1, p2, k3)``.
Human3.6M's own projection code applies the tangential terms in a slightly different form than
OpenCV (sub-pixel differences for its small ``p``); cameras here use the OpenCV model. Image
sizes of the four dataset cameras are the dataset's video sizes (:data:`H36M_IMAGE_SIZES`).
"""
from __future__ import annotations

import json
import os
import re
from pathlib import Path
from typing import Any, Mapping, Optional

import h5py
import numpy as np

from calibration.camera import Camera, Rig
from mvspin.atomic import atomic_path, write_bytes_atomic
from mvspin.errors import CalibrationError

__all__ = ["H36M_CAMERA_IDS", "H36M_IMAGE_SIZES", "read_h36m_cameras", "read_h36m_rig", "write_h36m_cameras"]

H36M_CAMERA_IDS: tuple[str, ...] = ("54138969", "55011271", "58860488", "60457274")
"""The four Human3.6M cameras, in the dataset's order (camera1..camera4)."""

H36M_IMAGE_SIZES: dict[str, tuple[int, int]] = {
    "54138969": (1000, 1002), "55011271": (1000, 1000), "58860488": (1000, 1000), "60457274": (1000, 1002)}
"""(width, height) of each camera's videos in the dataset."""

_KEYS = {"R": 9, "T": 3, "f": 2, "c": 2, "k": 3, "p": 2}


def _camera(name: str, values: Mapping[str, Any], where: str, size: Optional[tuple[int, int]] = None) -> Camera:
    flat = {}
    for key, n in _KEYS.items():
        try:
            a = np.asarray(values[key], dtype=np.float64).reshape(-1)
        except (TypeError, ValueError):
            raise CalibrationError(f"{where}/{key}: not an array of numbers") from None
        if a.size != n:
            raise CalibrationError(f"{where}/{key}: expected {n} numbers, got {a.size}")
        if not np.all(np.isfinite(a)):
            raise CalibrationError(f"{where}/{key}: non-finite values")
        flat[key] = a
    R = flat["R"].reshape(3, 3)
    if not np.allclose(R @ R.T, np.eye(3), atol=1e-4) or np.linalg.det(R) < 0:
        raise CalibrationError(f"{where}/R: not a rotation matrix")
    (fx, fy), (cx, cy) = flat["f"], flat["c"]
    (k1, k2, k3), (p1, p2) = flat["k"], flat["p"]
    K = np.array([[fx, 0.0, cx], [0.0, fy, cy], [0.0, 0.0, 1.0]])
    t = -R @ flat["T"] / 1000.0  # camera centre (mm, world) -> world-to-camera translation (m)
    try:
        return Camera(K=K, R=R, t=t, dist=np.array([k1, k2, p1, p2, k3]),
                      image_size=size or H36M_IMAGE_SIZES.get(name, (0, 0)), name=name)
    except ValueError as e:
        raise CalibrationError(f"{where}: {e}") from None


def _read_json(path: Path) -> dict[str, Rig]:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise CalibrationError(f"{path}: not valid JSON: {e}") from None
    if not isinstance(data, dict) or not data:
        raise CalibrationError(f"{path}: expected an object {{subject: {{camera id: parameters}}}}")
    out = {}
    for subject, cams in data.items():
        if not isinstance(cams, dict) or not cams:
            raise CalibrationError(f"{path}: entry {subject!r} is not an object of cameras")
        cameras = []
        for name, p in cams.items():
            where = f"{path}: {subject}/{name}"
            if not isinstance(p, dict):
                raise CalibrationError(f"{where}: not an object of parameters")
            missing = [k for k in _KEYS if k not in p]
            if missing:
                raise CalibrationError(f"{where}: missing {', '.join(missing)}")
            size = tuple(int(s) for s in p["size"]) if "size" in p else None
            cameras.append(_camera(str(name), p, where, size))  # type: ignore[arg-type]
        out[str(subject)] = Rig(cameras)
    return out


def _read_h5(path: Path) -> dict[str, Rig]:
    try:
        f = h5py.File(path, "r")
    except OSError as e:
        raise CalibrationError(f"{path}: not a readable HDF5 camera file: {e}") from None
    out = {}
    with f:
        for group_name, group in f.items():
            m = re.fullmatch(r"subject(\d+)", group_name)
            if not m or not isinstance(group, h5py.Group):
                continue
            cameras = []
            numbered = sorted((int(cm.group(1)), cam_name) for cam_name in group
                              if (cm := re.fullmatch(r"camera(\d+)", cam_name)))
            for number, cam_name in numbered:
                cam = group[cam_name]
                if not isinstance(cam, h5py.Group):
                    continue
                where = f"{path}: {group_name}/{cam_name}"
                missing = [k for k in _KEYS if k not in cam]
                if missing:
                    raise CalibrationError(f"{where}: missing {', '.join(missing)}")
                if "Name" in cam:
                    name = "".join(chr(int(c)) for c in np.asarray(cam["Name"]).reshape(-1))
                elif 1 <= number <= len(H36M_CAMERA_IDS):
                    name = H36M_CAMERA_IDS[number - 1]
                else:
                    raise CalibrationError(f"{where}: no 'Name' and camera number outside 1..4")
                values = {k: cam[k][()] for k in _KEYS}
                # The file stores R transposed (MATLAB column order): world-to-camera is R.T.
                values["R"] = np.asarray(values["R"], dtype=np.float64).reshape(3, 3).T
                cameras.append(_camera(name, values, where))
            if cameras:
                out[f"S{int(m.group(1))}"] = Rig(cameras)
    if not out:
        raise CalibrationError(f"{path}: no 'subject<n>/camera<m>' groups found")
    return out


def read_h36m_cameras(path: str | os.PathLike) -> dict[str, Rig]:
    """Read a Human3.6M camera file (``.h5`` or ``.json``, see the module docstring).

    Returns:
        ``{subject: Rig}`` with subjects named ``"S1"``, ``"S5"``, ...; world units metres.

    Raises:
        FileNotFoundError: the file does not exist.
        CalibrationError: the file follows neither layout (names the file and the entry).
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: Human3.6M camera file not found")
    with open(path, "rb") as f:
        is_json = f.read(1).lstrip()[:1] == b"{" or path.suffix.lower() == ".json"
    return _read_json(path) if is_json else _read_h5(path)


def read_h36m_rig(path: str | os.PathLike, subject: Optional[str] = None) -> Rig:
    """One subject's rig from a Human3.6M camera file; ``subject`` may be omitted when the file
    holds only one.

    Raises:
        CalibrationError: ``subject`` is missing from the file, or omitted with several present.
    """
    rigs = read_h36m_cameras(path)
    if subject is None:
        if len(rigs) != 1:
            raise CalibrationError(f"{path}: holds the cameras of subjects {', '.join(rigs)}; choose one (subject=...)")
        return next(iter(rigs.values()))
    if subject not in rigs:
        raise CalibrationError(f"{path}: no cameras for subject {subject!r}; the file has {', '.join(rigs)}")
    return rigs[subject]


def _parameters(c: Camera, where: str) -> dict[str, Any]:
    if c.K[0, 1] != 0 or (c.dist.size > 5 and np.any(c.dist[5:] != 0)):
        raise CalibrationError(f"{where}: camera {c.name!r} has skew or rational distortion, which "
                               "a Human3.6M camera file cannot hold")
    d = np.zeros(5)
    d[: min(5, c.dist.size)] = c.dist[:5]
    return {"R": c.R, "T": c.center * 1000.0, "f": c.K[[0, 1], [0, 1]], "c": c.K[:2, 2],
            "k": d[[0, 1, 4]], "p": d[[2, 3]], "size": list(c.image_size)}


def write_h36m_cameras(rigs: Mapping[str, Rig], path: str | os.PathLike) -> Path:
    """Write ``{subject: Rig}`` as a Human3.6M camera file (atomically): 3d-pose-baseline HDF5
    for ``.h5``, the JSON layout otherwise. Returns ``path``."""
    path = Path(path)
    for subject in rigs:
        if path.suffix.lower() in (".h5", ".hdf5") and not re.fullmatch(r"S\d+", subject):
            raise CalibrationError(f"{path}: HDF5 camera files name subjects S<n>, got {subject!r}")
    params = {s: [_parameters(c, str(path)) for c in rig] for s, rig in rigs.items()}
    if path.suffix.lower() not in (".h5", ".hdf5"):
        data = {s: {c.name: {k: np.asarray(v).tolist() for k, v in p.items()} for c, p in zip(rigs[s], ps)}
                for s, ps in params.items()}
        return write_bytes_atomic(path, json.dumps(data, indent=1).encode("utf-8"))
    def reads_back(tmp: Path) -> bool:  # every camera group is there (a truncated HDF5 does not open)
        with h5py.File(tmp, "r") as f:
            return all(f"subject{int(s[1:])}/camera{m}/Name" in f for s, rig in rigs.items() for m in range(1, len(rig) + 1))

    with atomic_path(path, verify=reads_back) as tmp:
        with h5py.File(tmp, "w") as f:
            for s, ps in params.items():
                for m, (c, p) in enumerate(zip(rigs[s], ps), 1):
                    g = f.create_group(f"subject{int(s[1:])}/camera{m}")
                    g["R"] = p["R"].T  # stored transposed, as the dataset's file does
                    g["T"] = p["T"].reshape(3, 1)
                    for k in ("f", "c", "k", "p"):
                        g[k] = np.asarray(p[k]).reshape(-1, 1)
                    g["Name"] = np.frombuffer(c.name.encode(), dtype=np.uint8)
    return path
