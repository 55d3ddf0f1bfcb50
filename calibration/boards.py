"""Calibration boards: description files, aniposelib board objects and printable images.

A board description file (YAML or TOML) names the board the way it is printed::

    type: charuco          # or checkerboard (best with one odd and one even side, e.g. 7 x 6)
    squares_x: 7           # squares along the board's width
    squares_y: 5           # squares along its height
    square_length: 0.08    # side of one square, in `unit`
    marker_length: 0.06    # ChArUco only: side of one ArUco marker
    marker_bits: 4         # ChArUco only: 4x4 markers ...
    dictionary_size: 50    # ... from the 50-marker dictionary (OpenCV DICT_4X4_50)
    unit: m                # m (default), cm or mm; the calibrated rig is in metres

anipose's ``config.toml`` ``[calibration]`` table (``board_type``, ``board_size``,
``board_square_side_length``, ``board_marker_length``, ``board_marker_bits``,
``board_marker_dict_number``; lengths in millimetres as anipose documents) is read too.
ChArUco boards use OpenCV's current layout (4.6 and later); the older layout with an even number
of rows is not detected by this OpenCV.
"""
from __future__ import annotations

import os
import struct
import zlib
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Mapping, Optional

import cv2
import numpy as np
import tomllib
import yaml

from mvspin.atomic import write_bytes_atomic
from mvspin.errors import CalibrationError

__all__ = ["BoardDescription", "BOARD_TYPES", "load_board", "save_board", "render_board", "write_board_png"]

BOARD_TYPES = ("charuco", "checkerboard")
_MARKER_BITS = (4, 5, 6, 7)
_DICTIONARY_SIZES = (50, 100, 250, 1000)
_UNITS = {"m": 1.0, "cm": 0.01, "mm": 0.001}


@dataclass(frozen=True)
class BoardDescription:
    """A printed calibration board.

    Attributes:
        type: ``"charuco"`` or ``"checkerboard"``.
        squares_x, squares_y: squares along the width and the height (inner corners:
            ``(squares_x - 1) * (squares_y - 1)``).
        square_length: side of a square in metres (the calibrated rig's unit).
        marker_length: ChArUco marker side in metres (smaller than ``square_length``).
        marker_bits: ChArUco marker grid (4 means OpenCV's ``DICT_4X4_*``).
        dictionary_size: ChArUco dictionary size (50 means ``DICT_*_50``).

    Example:
        >>> board = BoardDescription("charuco", 7, 5, square_length=0.08, marker_length=0.06)
        >>> board.inner_corners
        24
    """

    type: str
    squares_x: int
    squares_y: int
    square_length: float
    marker_length: Optional[float] = None
    marker_bits: int = 4
    dictionary_size: int = 50

    def __post_init__(self) -> None:
        if self.type not in BOARD_TYPES:
            raise CalibrationError(f"board type must be one of {', '.join(BOARD_TYPES)}, got {self.type!r}")
        if min(self.squares_x, self.squares_y) < 3:
            raise CalibrationError(f"a board needs at least 3 x 3 squares, got {self.squares_x} x {self.squares_y}")
        if not self.square_length > 0:
            raise CalibrationError(f"square_length must be positive, got {self.square_length}")
        if self.square_length > 1.0:
            raise CalibrationError(f"square_length {self.square_length} m is larger than a metre: is the file in "
                                   "millimetres? (set unit: mm)")
        if self.type == "charuco":
            if self.marker_length is None or not 0 < self.marker_length < self.square_length:
                raise CalibrationError(f"a ChArUco board needs 0 < marker_length < square_length "
                                       f"({self.square_length}), got {self.marker_length}")
            if self.marker_bits not in _MARKER_BITS or self.dictionary_size not in _DICTIONARY_SIZES:
                raise CalibrationError(f"ArUco dictionary must be marker_bits in {_MARKER_BITS} and dictionary_size "
                                       f"in {_DICTIONARY_SIZES}, got {self.marker_bits}, {self.dictionary_size}")
            needed = self.squares_x * self.squares_y // 2
            if needed > self.dictionary_size:
                raise CalibrationError(f"a {self.squares_x} x {self.squares_y} ChArUco board has {needed} markers, "
                                       f"more than the dictionary's {self.dictionary_size}")

    @property
    def inner_corners(self) -> int:
        """Number of inner chessboard corners (the points calibration detects)."""
        return (self.squares_x - 1) * (self.squares_y - 1)

    def object_points(self) -> np.ndarray:
        """``(inner_corners, 3)`` inner corner positions in the board frame (metres; OpenCV's
        ChArUco frame: origin at the top-left outer corner, x along the width, y down the
        printed image, z = 0 on the board), in corner id order (row by row)."""
        cols, rows = self.squares_x - 1, self.squares_y - 1
        yy, xx = np.mgrid[1:rows + 1, 1:cols + 1]
        return np.column_stack([xx.ravel(), yy.ravel(), np.zeros(xx.size)]) * self.square_length

    def to_aniposelib(self) -> Any:
        """The matching ``aniposelib.boards`` object (``CharucoBoard`` or ``Checkerboard``)."""
        from aniposelib.boards import CharucoBoard, Checkerboard

        if self.type == "charuco":
            return CharucoBoard(self.squares_x, self.squares_y, square_length=self.square_length,
                                marker_length=self.marker_length, marker_bits=self.marker_bits,
                                dict_size=self.dictionary_size)
        # aniposelib's Checkerboard counts inner corners (OpenCV's pattern size).
        return Checkerboard(self.squares_x - 1, self.squares_y - 1, square_length=self.square_length)


def _from_mapping(data: Mapping[str, Any], where: str) -> BoardDescription:
    if isinstance(data.get("calibration"), Mapping) and "board_type" in data["calibration"]:
        c = data["calibration"]  # anipose config.toml
        try:
            sx, sy = (int(v) for v in c["board_size"])
            scale = 0.001  # anipose documents board lengths in millimetres
            kind = str(c["board_type"]).lower()
            return BoardDescription(
                type="checkerboard" if kind.startswith("checker") else kind, squares_x=sx, squares_y=sy,
                square_length=float(c["board_square_side_length"]) * scale,
                marker_length=float(c["board_marker_length"]) * scale if "board_marker_length" in c else None,
                marker_bits=int(c.get("board_marker_bits", 4)), dictionary_size=int(c.get("board_marker_dict_number", 50)))
        except KeyError as e:
            raise CalibrationError(f"{where}: [calibration] misses {e.args[0]}") from None
        except (TypeError, ValueError) as e:
            if isinstance(e, CalibrationError):
                raise CalibrationError(f"{where}: {e}") from None
            raise CalibrationError(f"{where}: malformed [calibration] board entries: {e}") from None
    known = {"type", "squares_x", "squares_y", "square_length", "marker_length", "marker_bits", "dictionary_size", "unit"}
    unknown = sorted(set(data) - known)
    if unknown:
        raise CalibrationError(f"{where}: unknown board keys {', '.join(unknown)} (known: {', '.join(sorted(known))})")
    missing = [k for k in ("type", "squares_x", "squares_y", "square_length") if k not in data]
    if missing:
        raise CalibrationError(f"{where}: missing {', '.join(missing)}")
    unit = str(data.get("unit", "m"))
    if unit not in _UNITS:
        raise CalibrationError(f"{where}: unit must be one of {', '.join(_UNITS)}, got {unit!r}")
    scale = _UNITS[unit]
    try:
        return BoardDescription(
            type=str(data["type"]), squares_x=int(data["squares_x"]), squares_y=int(data["squares_y"]),
            square_length=float(data["square_length"]) * scale,
            marker_length=float(data["marker_length"]) * scale if data.get("marker_length") is not None else None,
            marker_bits=int(data.get("marker_bits", 4)), dictionary_size=int(data.get("dictionary_size", 50)))
    except CalibrationError as e:
        raise CalibrationError(f"{where}: {e}") from None
    except (TypeError, ValueError) as e:
        raise CalibrationError(f"{where}: malformed board entry: {e}") from None


def load_board(path: str | os.PathLike) -> BoardDescription:
    """Read a board description (YAML, or TOML by the ``.toml`` suffix; see the module docstring).

    Raises:
        FileNotFoundError: no such file.
        CalibrationError: unreadable or invalid description (names the file and the key).
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: board description not found")
    text = path.read_text(encoding="utf-8")
    try:
        data = tomllib.loads(text) if path.suffix.lower() == ".toml" else yaml.safe_load(text)
    except (tomllib.TOMLDecodeError, yaml.YAMLError) as e:
        raise CalibrationError(f"{path}: not a valid board description: {str(e).splitlines()[0]}") from None
    if not isinstance(data, Mapping):
        raise CalibrationError(f"{path}: a board description is a mapping of keys (type, squares_x, ...)")
    return _from_mapping(data, str(path))


def save_board(board: BoardDescription, path: str | os.PathLike) -> Path:
    """Write ``board`` as YAML (or TOML for ``.toml``), lengths in metres; returns ``path``."""
    data = {k: v for k, v in asdict(board).items() if v is not None}
    if board.type == "checkerboard":
        for k in ("marker_length", "marker_bits", "dictionary_size"):
            data.pop(k, None)
    data["unit"] = "m"
    if Path(path).suffix.lower() == ".toml":
        text = "".join(f'{k} = {v!r}\n' if not isinstance(v, str) else f'{k} = "{v}"\n' for k, v in data.items())
    else:
        text = yaml.safe_dump(data, sort_keys=False)
    return write_bytes_atomic(path, text.encode("utf-8"))


def render_board(board: BoardDescription, pixels_per_square: int = 100, margin_px: Optional[int] = None) -> np.ndarray:
    """The board as a grayscale image ``(H, W)`` uint8, black squares on white, with a white margin.

    Board point ``(x, y)`` (metres, OpenCV's board frame: origin at the top-left outer corner,
    y down the image) lies at pixel ``(x, y) * pixels_per_square / square_length + margin - 0.5``
    (pixel-centre convention).
    """
    if pixels_per_square < 8:
        raise CalibrationError(f"pixels_per_square must be at least 8, got {pixels_per_square}")
    margin = pixels_per_square // 2 if margin_px is None else int(margin_px)
    width, height = board.squares_x * pixels_per_square + 2 * margin, board.squares_y * pixels_per_square + 2 * margin
    if board.type == "charuco":
        return board.to_aniposelib().board.generateImage((width, height), marginSize=margin)
    image = np.full((height, width), 255, dtype=np.uint8)
    for row in range(board.squares_y):
        for col in range(board.squares_x):
            if (row + col) % 2 == 0:  # top-left square black, as OpenCV draws chessboards
                y0, x0 = margin + row * pixels_per_square, margin + col * pixels_per_square
                image[y0:y0 + pixels_per_square, x0:x0 + pixels_per_square] = 0
    return image


def _png_with_dpi(png: bytes, dpi: float) -> bytes:
    """Insert a ``pHYs`` chunk (pixels per metre) after IHDR so viewers print at the true size."""
    ppm = int(round(dpi / 0.0254))
    body = b"pHYs" + struct.pack(">IIB", ppm, ppm, 1)
    chunk = struct.pack(">I", 9) + body + struct.pack(">I", zlib.crc32(body) & 0xFFFFFFFF)
    end_of_ihdr = 8 + 4 + 4 + 13 + 4
    return png[:end_of_ihdr] + chunk + png[end_of_ihdr:]


def write_board_png(board: BoardDescription, path: str | os.PathLike, dpi: float = 300.0) -> tuple[Path, tuple[float, float]]:
    """Write a printable PNG of ``board`` at ``dpi`` (the file records it, so printing at 100 %
    gives squares of exactly ``square_length``). Returns ``(path, (width_m, height_m))`` of the
    printed page including the margin."""
    if not dpi > 0:
        raise CalibrationError(f"dpi must be positive, got {dpi}")
    px = int(round(board.square_length / 0.0254 * dpi))
    image = render_board(board, pixels_per_square=px)
    ok, png = cv2.imencode(".png", image)
    if not ok:
        raise CalibrationError(f"{path}: could not encode the board image")
    data = _png_with_dpi(png.tobytes(), dpi)
    write_bytes_atomic(path, data)
    h, w = image.shape
    return Path(path), (w / dpi * 0.0254, h / dpi * 0.0254)
