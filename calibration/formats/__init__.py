"""Calibration file formats: one loader and one saver for every format, detected from the file.

==================  ==============================================  ==========================
format              files                                           read from
==================  ==============================================  ==========================
``anipose``         ``*.toml`` (anipose, Pose2Sim, FreeMoCap)        :mod:`.anipose_toml`
``easymocap``       ``intri.yml`` + ``extri.yml`` (or their folder)  :mod:`.easymocap`
``qualisys``        ``*.qca.txt`` (XML)                              :mod:`.qualisys`
``h36m``            Human3.6M ``cameras.h5`` / ``cameras.json``      :mod:`.h36m`
``mpi_inf_3dhp``    MPI-INF-3DHP ``camera.calibration``              :mod:`.mpi_inf_3dhp`
==================  ==============================================  ==========================

World frame (:class:`~calibration.world_frame.WorldFrame`, e.g. Z-up with the origin on the
floor): a rig's extrinsics are always *in* its world frame, so every format stores the frame
itself, the floor at ``z = 0`` and all. Only anipose TOML and EasyMocap can also store its name
(:data:`FORMATS_WITH_WORLD_FRAME`). :func:`save_rig` to Qualisys, Human3.6M or MPI-INF-3DHP writes
the extrinsics unchanged (never silently re-oriented) and logs one line saying the name is not
kept (and, for a Y-up rig going to the Z-up Qualisys and Human3.6M worlds, how to turn it);
:func:`load_rig` takes ``world=`` to restore the name when reading such a file back.

Example:
    >>> rig = load_rig("calibration.toml")            # doctest: +SKIP
    >>> save_rig(rig, "easymocap_calib/")  # writes intri.yml + extri.yml  # doctest: +SKIP
"""
from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Any, Optional

import tomllib

from calibration.camera import Rig
from calibration.formats.anipose_toml import read_anipose_toml, write_anipose_toml
from calibration.formats.easymocap import read_easymocap, write_easymocap
from calibration.formats.h36m import read_h36m_cameras, read_h36m_rig, write_h36m_cameras
from calibration.formats.mpi_inf_3dhp import read_mpi_calibration, write_mpi_calibration
from calibration.formats.qualisys import read_qualisys, write_qualisys
from calibration.world_frame import WorldFrame
from mvspin.errors import CalibrationError

__all__ = ["FORMATS", "FORMATS_WITH_WORLD_FRAME", "CONVENTIONAL_UP", "detect_format", "format_for_output", "load_rig", "save_rig",
           "read_anipose_toml", "write_anipose_toml", "read_easymocap", "write_easymocap",
           "read_qualisys", "write_qualisys", "read_h36m_cameras", "read_h36m_rig", "write_h36m_cameras",
           "read_mpi_calibration", "write_mpi_calibration"]

FORMATS = ("anipose", "easymocap", "qualisys", "h36m", "mpi_inf_3dhp")
"""Names of the supported calibration formats."""

FORMATS_WITH_WORLD_FRAME = ("anipose", "easymocap")
"""Formats that record a rig's :class:`~calibration.world_frame.WorldFrame` (its up axis and origin)."""

CONVENTIONAL_UP = {"qualisys": "z", "h36m": "z"}
"""The up axis of the world these formats' own tools use (Qualisys Track Manager's global frame
and the Human3.6M motion capture are Z-up); MPI-INF-3DHP's world has no fixed convention here."""

log = logging.getLogger("calibration")

_SUFFIXES = ".toml (anipose), .yml/.yaml or a folder (easymocap), .qca.txt (qualisys), " \
            ".h5/.json (h36m), .calibration (mpi_inf_3dhp)"


def _check_format(fmt: str) -> str:
    if fmt not in FORMATS:
        raise CalibrationError(f"unknown calibration format {fmt!r}; known formats: {', '.join(FORMATS)}")
    return fmt


def detect_format(path: str | os.PathLike) -> str:
    """The format of an existing calibration file (or EasyMocap folder), from its content.

    Raises:
        FileNotFoundError: nothing at ``path``.
        CalibrationError: the content is none of :data:`FORMATS`.
    """
    path = Path(path)
    if path.is_dir():
        if (path / "intri.yml").is_file():
            return "easymocap"
        raise CalibrationError(f"{path}: a folder is read as an EasyMocap calibration, but it has no intri.yml")
    if not path.is_file():
        raise FileNotFoundError(f"{path}: calibration file not found")
    with open(path, "rb") as f:
        head = f.read(4096)
    if head.startswith(b"\x89HDF"):
        return "h36m"
    text = head.decode("utf-8", errors="replace").lstrip("\ufeff").lstrip()
    if text.startswith("%YAML") or path.name.startswith(("intri", "extri")):
        return "easymocap"
    if text.startswith("<"):
        return "qualisys"
    if text.lower().startswith("skeletool") or text.startswith("name "):
        return "mpi_inf_3dhp"
    if text.startswith("{"):
        return "h36m"
    try:
        tables = tomllib.loads(path.read_text(encoding="utf-8"))
    except (tomllib.TOMLDecodeError, UnicodeDecodeError):
        tables = None
    if tables and any(isinstance(v, dict) and "matrix" in v for v in tables.values()):
        return "anipose"
    raise CalibrationError(f"{path}: not a calibration file this package reads (formats: {', '.join(FORMATS)})")


def load_rig(path: str | os.PathLike, format: Optional[str] = None, subject: Optional[str] = None,
             world: Optional[WorldFrame] = None) -> Rig:
    """Read a rig from a calibration file in any supported format (detected when ``format`` is None).

    Args:
        path: the file (an EasyMocap calibration: its folder or either ``.yml``).
        format: one of :data:`FORMATS`, to skip detection.
        subject: Human3.6M files hold one rig per subject: which one (may be omitted when the
            file holds one subject).
        world: the world frame the file's extrinsics are in, for a file that cannot record it
            (e.g. a Qualisys file known to be Z-up with the origin on the floor); the rig gets
            this label. A file that records its frame must agree.

    Returns:
        The :class:`Rig`, cameras in the file's order, world units as the format defines them
        (metres for Qualisys, Human3.6M and MPI-INF-3DHP, which store millimetres).

    Raises:
        FileNotFoundError: no such file.
        CalibrationError: unreadable, unknown format, invalid content, or a ``world`` that
            contradicts the frame the file records (one line naming the file).
    """
    fmt = _check_format(format) if format is not None else detect_format(path)
    if subject is not None and fmt != "h36m":
        raise CalibrationError(f"{path}: subject={subject!r} applies to Human3.6M camera files only (this is {fmt})")
    if fmt == "anipose":
        rig = read_anipose_toml(path)
    elif fmt == "easymocap":
        rig = read_easymocap(path)
    elif fmt == "qualisys":
        rig = read_qualisys(path)
    elif fmt == "h36m":
        rig = read_h36m_rig(path, subject)
    else:
        rig = read_mpi_calibration(path)
    if world is None:
        return rig
    if rig.world is not None and rig.world != world:
        raise CalibrationError(f"{path}: the file records a {rig.world.up}-up world (origin: {rig.world.origin}), "
                               f"not the {world.up}-up world (origin: {world.origin}) given")
    return Rig(rig.cameras, world=world)


def format_for_output(path: str | os.PathLike) -> str:
    """The format :func:`save_rig` writes to ``path``, from its name.

    Raises:
        CalibrationError: the name has none of the known suffixes.
    """
    p = Path(path)
    name = p.name.lower()
    if name.endswith(".toml"):
        return "anipose"
    if name.endswith((".yml", ".yaml")) or (p.is_dir() or not p.suffix):
        return "easymocap"
    if name.endswith((".qca.txt", ".qca")):
        return "qualisys"
    if name.endswith((".h5", ".hdf5", ".json")):
        return "h36m"
    if name.endswith(".calibration"):
        return "mpi_inf_3dhp"
    raise CalibrationError(f"{path}: cannot tell the calibration format from the name; use {_SUFFIXES} "
                           "or pass format=...")


def save_rig(rig: Rig, path: str | os.PathLike, format: Optional[str] = None, subject: str = "S1",
             metadata: Optional[dict[str, Any]] = None) -> Path:
    """Write ``rig`` in a supported format (from the name when ``format`` is None), atomically.

    Args:
        rig: the cameras (world units as the format expects: metres, converted to millimetres for
            Qualisys, Human3.6M and MPI-INF-3DHP).
        path: the output file (EasyMocap: a folder or its ``intri.yml``).
        format: one of :data:`FORMATS`.
        subject: Human3.6M files only: the subject the rig is stored under.
        metadata: anipose TOML only: extra ``[metadata]`` entries.

    Returns:
        The path written (EasyMocap: ``intri.yml``; ``extri.yml`` lies beside it).

    Raises:
        CalibrationError: unknown format, or a camera the format cannot hold.

    The extrinsics are written as they are, in the rig's world frame. Formats outside
    :data:`FORMATS_WITH_WORLD_FRAME` cannot record that frame's name (``rig.world``): for an
    aligned rig a log line says so (``load_rig(..., world=rig.world)`` restores it), and notes
    when the rig's up axis is not the format's conventional one (:data:`CONVENTIONAL_UP`).
    """
    fmt = _check_format(format) if format is not None else format_for_output(path)
    if rig.world is not None and fmt not in FORMATS_WITH_WORLD_FRAME:
        _log_unrecorded_world(rig.world, path, fmt)
    if fmt == "anipose":
        return write_anipose_toml(rig, path, metadata)
    if fmt == "easymocap":
        return write_easymocap(rig, path)[0]
    if fmt == "qualisys":
        return write_qualisys(rig, path)
    if fmt == "h36m":
        return write_h36m_cameras({subject: rig}, path)
    return write_mpi_calibration(rig, path)


def _log_unrecorded_world(world: WorldFrame, path: str | os.PathLike, fmt: str) -> None:
    log.info("%s: the extrinsics are written in the rig's %s-up world (origin: %s), but a %s file cannot "
             "record that choice: read it back with load_rig(..., world=WorldFrame(up=%r, origin=%r))",
             path, world.up, world.origin, fmt, world.up, world.origin)
    expected = CONVENTIONAL_UP.get(fmt)
    if expected is not None and expected != world.up:
        log.warning("%s: %s tools expect a %s-up world and this rig is %s-up; convert it first with "
                    "calibration.set_up_axis(rig, %r) if they are to read it", path, fmt, expected, world.up, expected)
