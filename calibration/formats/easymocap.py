"""EasyMocap calibrations: the OpenCV FileStorage YAML pair ``intri.yml`` + ``extri.yml``.

``intri.yml``: ``names`` (camera names, in order), ``K_<cam>`` (3x3), ``dist_<cam>`` (1x5) and,
where known, ``H_<cam>`` / ``W_<cam>`` (image height / width). ``extri.yml``: ``names``,
``R_<cam>`` (3x1 Rodrigues, world->camera), ``Rot_<cam>`` (3x3, the same rotation) and ``T_<cam>``
(3x1, metres). ``x_cam = Rot @ x_world + T``. The reader prefers ``Rot`` and falls back to
``R``. A rig's world frame is saved as ``world_up`` / ``world_origin`` in ``extri.yml``
(EasyMocap ignores unknown keys).

The pair is named by its folder or by either file; the writer renames both files into place only
after both were written.
"""
from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Callable, Optional

import cv2
import numpy as np

from calibration.camera import Camera, Rig
from calibration.world_frame import WorldFrame
from mvspin.atomic import OutputGroup
from mvspin.errors import CalibrationError

__all__ = ["read_easymocap", "write_easymocap", "easymocap_paths"]

_NAME = re.compile(r"[A-Za-z0-9_\-]+")


def easymocap_paths(path: str | os.PathLike) -> tuple[Path, Path]:
    """``(intri.yml, extri.yml)`` for a folder or for either file of the pair."""
    path = Path(path)
    if path.is_dir() or not path.suffix:
        return path / "intri.yml", path / "extri.yml"
    name = path.name
    if name.startswith("intri"):
        return path, path.with_name("extri" + name[len("intri"):])
    if name.startswith("extri"):
        return path.with_name("intri" + name[len("extri"):]), path
    raise CalibrationError(f"{path}: an EasyMocap calibration is a folder or its intri.yml / extri.yml")


def _open(path: Path) -> cv2.FileStorage:
    if not path.is_file():
        raise FileNotFoundError(f"{path}: EasyMocap calibration file not found")
    try:
        fs = cv2.FileStorage(str(path), cv2.FILE_STORAGE_READ)
    except cv2.error as e:
        raise CalibrationError(f"{path}: not an OpenCV YAML file: {str(e).strip().splitlines()[-1]}") from None
    if not fs.isOpened():
        raise CalibrationError(f"{path}: not an OpenCV YAML file")
    return fs


def _names(fs: cv2.FileStorage, path: Path) -> list[str]:
    node = fs.getNode("names")
    if node.empty() or not node.isSeq() or node.size() == 0:
        raise CalibrationError(f"{path}: no 'names' list of cameras")
    names = []
    for i in range(node.size()):
        item = node.at(i)
        names.append(item.string() if item.isString() else str(int(item.real())))
    return names


def _matrix(fs: cv2.FileStorage, key: str, size: Optional[int], path: Path) -> np.ndarray:
    node = fs.getNode(key)
    if node.empty():
        raise CalibrationError(f"{path}: missing {key}")
    m = node.mat()
    if m is None or (size is not None and m.size != size):
        raise CalibrationError(f"{path}: {key} must be a matrix of {size} numbers")
    return np.asarray(m, dtype=np.float64).reshape(-1)


def _number(fs: cv2.FileStorage, key: str) -> Optional[float]:
    node = fs.getNode(key)
    return None if node.empty() else node.real()


def read_easymocap(path: str | os.PathLike) -> Rig:
    """Read an EasyMocap ``intri.yml`` / ``extri.yml`` pair; cameras in ``names`` order.

    Raises:
        FileNotFoundError: a file of the pair is missing.
        CalibrationError: a key is missing or malformed (names the file and key), or the two
            files list different cameras.
    """
    intri_path, extri_path = easymocap_paths(path)
    intri, extri = _open(intri_path), _open(extri_path)
    names = _names(intri, intri_path)
    extri_names = _names(extri, extri_path)
    if sorted(names) != sorted(extri_names):
        raise CalibrationError(f"{intri_path} lists cameras {names} but {extri_path} lists {extri_names}")
    cameras = []
    for name in names:
        K = _matrix(intri, f"K_{name}", 9, intri_path).reshape(3, 3)
        dist = _matrix(intri, f"dist_{name}", None, intri_path)
        if not extri.getNode(f"Rot_{name}").empty():
            R = _matrix(extri, f"Rot_{name}", 9, extri_path).reshape(3, 3)
        else:
            R = cv2.Rodrigues(_matrix(extri, f"R_{name}", 3, extri_path).reshape(3, 1))[0]
        t = _matrix(extri, f"T_{name}", 3, extri_path)
        w, h = _number(intri, f"W_{name}"), _number(intri, f"H_{name}")
        size = (int(w), int(h)) if w is not None and h is not None else (0, 0)
        try:
            cameras.append(Camera(K=K, R=R, t=t, dist=dist, image_size=size, name=name))
        except ValueError as e:
            raise CalibrationError(f"{intri_path}: {e}") from None
    up = extri.getNode("world_up")
    world = None
    if not up.empty():
        origin = extri.getNode("world_origin")
        world = WorldFrame(up=up.string(), origin=origin.string() if not origin.empty() else "floor")
    return Rig(cameras, world=world)


def _yaml_matrix(key: str, a: np.ndarray) -> list[str]:
    rows, cols = a.shape
    data = ", ".join(repr(float(x)) for x in a.reshape(-1))
    return [f"{key}: !!opencv-matrix", f"  rows: {rows}", f"  cols: {cols}", "  dt: d", f"  data: [{data}]"]


def _reads_back(data: bytes) -> Callable[[Path], bool]:
    """A re-read check: the file holds exactly ``data``."""
    return lambda tmp: tmp.read_bytes() == data


def write_easymocap(rig: Rig, path: str | os.PathLike) -> tuple[Path, Path]:
    """Write ``rig`` as ``intri.yml`` + ``extri.yml`` (a folder, or either file of the pair);
    returns both paths. The files use OpenCV's ``%YAML:1.0`` layout, which every OpenCV reads.

    Raises:
        CalibrationError: a camera name cannot be a YAML key suffix (letters, digits, ``_``, ``-``).
    """
    intri_path, extri_path = easymocap_paths(path)
    bad = [n for n in rig.names if not _NAME.fullmatch(n)]
    if bad:
        raise CalibrationError(f"{intri_path}: EasyMocap keys are K_<name>; camera names {bad} have other "
                               "characters than letters, digits, '_' and '-'")
    head = ["%YAML:1.0", "---", "names:"] + [f'  - "{n}"' for n in rig.names]
    intri, extri = list(head), list(head)
    for c in rig:
        dist = np.zeros(5) if c.dist.size == 0 else c.dist
        intri += _yaml_matrix(f"K_{c.name}", c.K) + _yaml_matrix(f"dist_{c.name}", dist.reshape(1, -1))
        if min(c.image_size) > 0:
            intri += [f"W_{c.name}: {c.image_size[0]}", f"H_{c.name}: {c.image_size[1]}"]
        rvec = cv2.Rodrigues(c.R)[0]
        extri += (_yaml_matrix(f"R_{c.name}", rvec) + _yaml_matrix(f"Rot_{c.name}", c.R)
                  + _yaml_matrix(f"T_{c.name}", c.t.reshape(3, 1)))
    if rig.world is not None:
        extri += [f'world_up: "{rig.world.up}"', f'world_origin: "{rig.world.origin}"']
    texts = [("\n".join(lines) + "\n").encode("utf-8") for lines in (intri, extri)]
    # the pair appears together (each re-read before either is renamed) or not at all
    with OutputGroup() as group:
        for final, data in zip((intri_path, extri_path), texts):
            group.path(final, verify=_reads_back(data)).write_bytes(data)
    return intri_path, extri_path
