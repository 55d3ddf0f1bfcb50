"""Qualisys calibrations: the ``.qca.txt`` XML export (what Pose2Sim imports).

Layout (``<calibration><cameras><camera serial=... > ... </camera></cameras></calibration>``),
per camera:

- ``<fov_video left top right bottom>``: the video image; size = ``right - left + 1`` by
  ``bottom - top + 1``;
- ``<intrinsic focalLengthU focalLengthV centerPointU centerPointV radialDistortion1..3
  tangentalDistortion1..2 ...>``: focal lengths and principal point in 1/64 pixel of the sensor
  (divide by 64; subtract the fov's ``left`` / ``top`` from the centre);
- ``<transform x y z r11 .. r33>``: the camera's pose in the world, millimetres.

With ``Rq`` the matrix ``r11..r33`` read row by row and ``c`` the position in metres, the OpenCV
world-to-camera rotation is ``diag(1, -1, -1) @ Rq`` and the translation ``-R @ c`` (Qualisys
cameras look along -z with y up). Cameras are named by serial number, in file order; world
units become metres.
"""
from __future__ import annotations

import os
import xml.etree.ElementTree as ET
from pathlib import Path

import numpy as np

from calibration.camera import Camera, Rig
from mvspin.atomic import write_bytes_atomic
from mvspin.errors import CalibrationError

__all__ = ["read_qualisys", "write_qualisys"]

_SUBPIXEL = 64.0  # intrinsic values are stored in 1/64 pixel
_FLIP = np.diag([1.0, -1.0, -1.0])  # Qualisys camera axes (looks along -z, y up) -> OpenCV's
_ROT_KEYS = tuple(f"r{i}{j}" for i in (1, 2, 3) for j in (1, 2, 3))


def _num(v: float) -> str:
    return repr(float(v))


def _floats(element: ET.Element, keys: tuple[str, ...], where: str, default: dict[str, float] | None = None) -> list[float]:
    out = []
    for k in keys:
        v = element.get(k)
        if v is None and default is not None and k in default:
            out.append(default[k])
            continue
        if v is None:
            raise CalibrationError(f"{where}: <{element.tag}> has no {k!r}")
        try:
            out.append(float(v))
        except ValueError:
            raise CalibrationError(f"{where}: <{element.tag}> {k}={v!r} is not a number") from None
    return out


def read_qualisys(path: str | os.PathLike) -> Rig:
    """Read a Qualisys ``.qca.txt`` calibration; cameras named by serial, in file order, metres.

    Raises:
        FileNotFoundError: no such file.
        CalibrationError: not XML, no cameras, or a camera lacks an element or value (names the
            file, the camera serial and the element).
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: calibration file not found")
    try:
        root = ET.fromstring(path.read_bytes())
    except ET.ParseError as e:
        raise CalibrationError(f"{path}: not a valid Qualisys XML file: {e}") from None
    elements = root.findall("./cameras/camera")
    if not elements:
        raise CalibrationError(f"{path}: no <cameras><camera> elements")
    cameras = []
    for i, el in enumerate(elements):
        name = el.get("serial") or f"camera_{i}"
        where = f"{path}: camera {name}"
        parts = {tag: el.find(tag) for tag in ("fov_video", "intrinsic", "transform")}
        missing = [tag for tag, e in parts.items() if e is None]
        if missing:
            raise CalibrationError(f"{where}: missing <{'>, <'.join(missing)}>")
        left, top, right, bottom = _floats(parts["fov_video"], ("left", "top", "right", "bottom"), where)
        fu, fv, cu, cv = _floats(parts["intrinsic"], ("focalLengthU", "focalLengthV", "centerPointU", "centerPointV"), where)
        k1, k2, k3, p1, p2 = _floats(parts["intrinsic"], ("radialDistortion1", "radialDistortion2", "radialDistortion3",
                                                          "tangentalDistortion1", "tangentalDistortion2"),
                                     where, default={"radialDistortion3": 0.0})
        x, y, z, *r = _floats(parts["transform"], ("x", "y", "z") + _ROT_KEYS, where)
        K = np.array([[fu / _SUBPIXEL, 0.0, cu / _SUBPIXEL - left],
                      [0.0, fv / _SUBPIXEL, cv / _SUBPIXEL - top], [0.0, 0.0, 1.0]])
        R = _FLIP @ np.array(r).reshape(3, 3)
        centre = np.array([x, y, z]) / 1000.0
        try:
            cameras.append(Camera(K=K, R=R, t=-R @ centre, dist=np.array([k1, k2, p1, p2, k3]),
                                  image_size=(int(round(right - left + 1)), int(round(bottom - top + 1))), name=name))
        except ValueError as e:
            raise CalibrationError(f"{where}: {e}") from None
    try:
        return Rig(cameras)
    except ValueError as e:
        raise CalibrationError(f"{path}: {e}") from None


def write_qualisys(rig: Rig, path: str | os.PathLike) -> Path:
    """Write ``rig`` (metres) as a Qualisys ``.qca.txt`` XML file (atomically); returns ``path``.

    The video field of view starts at (0, 0); camera names become serials. Cameras need at
    most 5 distortion coefficients (k1 k2 p1 p2 k3) and zero skew.
    """
    root = ET.Element("calibration", {"source": "mvspin calibration"})
    cams_el = ET.SubElement(root, "cameras")
    for c in rig:
        if c.dist.size > 5 and np.any(c.dist[5:] != 0):
            raise CalibrationError(f"{path}: camera {c.name!r} has rational distortion (k4..k6), "
                                   "which a Qualisys file cannot hold")
        if c.K[0, 1] != 0:
            raise CalibrationError(f"{path}: camera {c.name!r} has skew, which a Qualisys file cannot hold")
        d = np.zeros(5)
        d[: min(5, c.dist.size)] = c.dist[:5]
        k1, k2, p1, p2, k3 = d
        w, h = c.image_size
        el = ET.SubElement(cams_el, "camera", {"active": "1", "serial": c.name, "model": "none", "viewrotation": "0"})
        ET.SubElement(el, "fov_video", {"left": "0", "top": "0", "right": str(w - 1), "bottom": str(h - 1)})
        rq = _FLIP @ c.R
        centre_mm = c.center * 1000.0
        transform = {"x": _num(centre_mm[0]), "y": _num(centre_mm[1]), "z": _num(centre_mm[2])}
        transform.update({k: repr(float(v)) for k, v in zip(_ROT_KEYS, rq.reshape(-1))})
        ET.SubElement(el, "transform", transform)
        ET.SubElement(el, "intrinsic", {
            "focalLengthU": _num(c.K[0, 0] * _SUBPIXEL), "focalLengthV": _num(c.K[1, 1] * _SUBPIXEL),
            "centerPointU": _num(c.K[0, 2] * _SUBPIXEL), "centerPointV": _num(c.K[1, 2] * _SUBPIXEL),
            "skew": "0", "radialDistortion1": _num(k1), "radialDistortion2": _num(k2),
            "radialDistortion3": _num(k3), "tangentalDistortion1": _num(p1), "tangentalDistortion2": _num(p2)})
    ET.indent(root)
    text = '<?xml version="1.0" encoding="UTF-8" standalone="no" ?>\n' + ET.tostring(root, encoding="unicode") + "\n"
    return write_bytes_atomic(path, text.encode("utf-8"))
