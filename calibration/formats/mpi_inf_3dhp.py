"""MPI-INF-3DHP ``camera.calibration`` files ("Skeletool Camera Calibration File V1.0").

Per camera, one line each: ``name``, ``sensor`` (w h, mm), ``size`` (w h, pixels), ``animated``,
``intrinsic`` (16 numbers, 4x4 row-major; K is its top-left 3x3), ``extrinsic`` (16 numbers, 4x4
row-major world-to-camera, mm), ``radial`` (the dataset's files carry 0; other values are
refused). Cameras in file order, world units become metres.
"""
from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from calibration.camera import Camera, Rig
from mvspin.atomic import write_bytes_atomic
from mvspin.errors import CalibrationError

__all__ = ["read_mpi_calibration", "write_mpi_calibration", "MPI_HEADER"]

MPI_HEADER = "Skeletool Camera Calibration File V1.0"


def read_mpi_calibration(path: str | os.PathLike) -> Rig:
    """Parse an MPI-INF-3DHP ``camera.calibration`` file.

    Raises:
        FileNotFoundError: the file does not exist.
        CalibrationError: a line or a camera entry is malformed (names the file, camera and key).
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: calibration file not found")
    entries: list[dict[str, list[str]]] = []
    for lineno, line in enumerate(path.read_text(encoding="utf-8", errors="replace").splitlines(), 1):
        parts = line.split()
        if not parts or parts[0].lower().startswith("skeletool"):
            continue
        key, values = parts[0], parts[1:]
        if key == "name":
            entries.append({"name": values})
        elif not entries:
            raise CalibrationError(f"{path}:{lineno}: {key!r} before the first 'name' line")
        else:
            entries[-1][key] = values
    cameras = []
    for entry in entries:
        name = " ".join(entry["name"])
        where = f"{path}: camera {name!r}"
        try:
            size = [int(float(v)) for v in entry["size"]]
            intrinsic = np.array([float(v) for v in entry["intrinsic"]])
            extrinsic = np.array([float(v) for v in entry["extrinsic"]])
        except KeyError as e:
            raise CalibrationError(f"{where}: missing {e.args[0]!r}") from None
        except ValueError as e:
            raise CalibrationError(f"{where}: non-numeric value: {e}") from None
        if len(size) != 2 or intrinsic.size != 16 or extrinsic.size != 16:
            raise CalibrationError(f"{where}: expected size (2), intrinsic (16), extrinsic (16) numbers, got "
                                   f"{len(size)}, {intrinsic.size}, {extrinsic.size}")
        E = extrinsic.reshape(4, 4)
        R = E[:3, :3]
        if not np.allclose(R @ R.T, np.eye(3), atol=1e-4) or np.linalg.det(R) < 0:
            raise CalibrationError(f"{where}: extrinsic rotation is not a rotation matrix")
        radial = [float(v) for v in entry.get("radial", ["0"])]
        if any(radial):
            raise CalibrationError(f"{where}: radial distortion {radial} is not supported (the dataset's "
                                   "files carry 0)")
        try:
            cameras.append(Camera(K=intrinsic.reshape(4, 4)[:3, :3].copy(), R=R.copy(), t=E[:3, 3] / 1000.0,
                                  dist=np.zeros(5), image_size=(size[0], size[1]), name=name))
        except ValueError as e:
            raise CalibrationError(f"{where}: {e}") from None
    if not cameras:
        raise CalibrationError(f"{path}: no cameras found")
    try:
        return Rig(cameras)
    except ValueError as e:
        raise CalibrationError(f"{path}: {e}") from None


def write_mpi_calibration(rig: Rig, path: str | os.PathLike) -> Path:
    """Write ``rig`` (metres) as a ``camera.calibration`` file (atomically); returns ``path``.

    The format has no lens distortion: cameras with non-zero distortion are refused. The sensor
    size is unknown here and written as ``0 0``.
    """
    lines = [MPI_HEADER]
    for c in rig:
        if np.any(c.dist != 0):
            raise CalibrationError(f"{path}: camera {c.name!r} has lens distortion, which a "
                                   "camera.calibration file cannot hold")
        if " ".join(c.name.split()) != c.name or not c.name:
            raise CalibrationError(f"{path}: camera name {c.name!r} would not read back (empty, or "
                                   "leading, trailing, repeated or non-space whitespace)")
        intrinsic = np.eye(4)
        intrinsic[:3, :3] = c.K
        extrinsic = np.eye(4)
        extrinsic[:3, :3], extrinsic[:3, 3] = c.R, c.t * 1000.0
        numbers = lambda a: " ".join(repr(float(x)) for x in a.reshape(-1))  # noqa: E731
        lines += [f"name          {c.name}", "  sensor      0 0",
                  f"  size        {c.image_size[0]} {c.image_size[1]}", "  animated    0",
                  f"  intrinsic   {numbers(intrinsic)}", f"  extrinsic   {numbers(extrinsic)}", "  radial      0"]
    return write_bytes_atomic(path, ("\n".join(lines) + "\n").encode("utf-8"))
