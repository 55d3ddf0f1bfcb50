"""Finding and reading body-model files: the bundled free model and users' SMPL directories."""
from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from mvspin.body.safe_pickle import load_restricted_pickle
from mvspin.errors import BodyModelFilesError, MvspinError

__all__ = [
    "ASSETS_DIR",
    "FREE_MODEL_FILES",
    "BodyModelFilesError",
    "SmplFiles",
    "find_smpl_files",
    "load_model_arrays",
    "load_mean_params",
    "SMPL_DIR_ENV",
]

ASSETS_DIR = Path(__file__).resolve().parent / "assets"
FREE_MODEL_FILES = {"full": "free_smpl_notoes.npz", "low": "free_smpl_collapse10pc.npz"}
FREE_MEAN_PARAMS = "free_mean_params.npz"
SMPL_DIR_ENV = "MVSPIN_SMPL_DIR"

SMPL_URL = "https://smpl.is.tue.mpg.de (free registration)"
SPIN_DATA_URL = "SPIN's fetch_data.sh (http://visiondata.cis.upenn.edu/spin/data.tar.gz)"

# Names under which the SMPL website and SPIN ship each model, in order of preference.
_SMPL_NAMES = {
    "neutral": ("SMPL_NEUTRAL.pkl", "SMPL_NEUTRAL.npz", "basicmodel_neutral_lbs_10_207_0_v1.1.0.pkl",
                "basicModel_neutral_lbs_10_207_0_v1.0.0.pkl"),
    "male": ("SMPL_MALE.pkl", "SMPL_MALE.npz", "basicmodel_m_lbs_10_207_0_v1.1.0.pkl",
             "basicModel_m_lbs_10_207_0_v1.0.0.pkl"),
    "female": ("SMPL_FEMALE.pkl", "SMPL_FEMALE.npz", "basicmodel_f_lbs_10_207_0_v1.1.0.pkl",
               "basicModel_f_lbs_10_207_0_v1.0.0.pkl"),
}
_SPIN_FILES = ("J_regressor_extra.npy", "J_regressor_h36m.npy", "smpl_mean_params.npz", "gmm_08.pkl")
_REQUIRED_KEYS = ("v_template", "shapedirs", "J_regressor", "weights", "kintree_table", "f")


@dataclass(frozen=True)
class SmplFiles:
    """The files found in a user's SMPL directory.

    Attributes:
        model: the SMPL model file (``.pkl`` or ``.npz``) for the requested gender.
        extras: SPIN's optional data files that were found, by file name.
    """

    model: Path
    extras: dict[str, Path] = field(default_factory=dict)


def find_smpl_files(smpl_dir: str | Path, gender: str = "neutral") -> SmplFiles:
    """Locate SMPL's model file and SPIN's data files in ``smpl_dir``.

    The model may sit in ``smpl_dir`` or in ``smpl_dir/smpl`` (SPIN's ``data/smpl`` layout); SPIN's
    files (``J_regressor_extra.npy``, ``J_regressor_h36m.npy``, ``smpl_mean_params.npz``,
    ``gmm_08.pkl``) in ``smpl_dir``, its parent, or ``smpl_dir/..``-style SPIN ``data/``.

    Raises:
        BodyModelFilesError: no model file for ``gender``; the message names the expected file
            and where to get it.
        ValueError: unknown gender.
    """
    if gender not in _SMPL_NAMES:
        raise ValueError(f"gender must be one of {', '.join(_SMPL_NAMES)}, got {gender!r}")
    root = Path(smpl_dir).expanduser()
    if not root.is_dir():
        raise BodyModelFilesError(f"SMPL directory {root} does not exist (get SMPL from {SMPL_URL})")
    model = next((d / n for d in (root, root / "smpl") for n in _SMPL_NAMES[gender] if (d / n).is_file()),
                 None)
    if model is None:
        raise BodyModelFilesError(
            f"{root} has no {_SMPL_NAMES[gender][0]} (or {', '.join(_SMPL_NAMES[gender][1:])}); "
            f"get the SMPL model files from {SMPL_URL}"
        )
    extras: dict[str, Path] = {}
    for d in (root, root.parent, root / "data"):
        for n in _SPIN_FILES:
            if n not in extras and (d / n).is_file():
                extras[n] = d / n
    return SmplFiles(model=model, extras=extras)


def load_model_arrays(path: str | Path) -> dict[str, Any]:
    """Read a SMPL-layout model file into plain numpy arrays.

    ``.pkl`` files (official SMPL, chumpy inside) go through the restricted unpickler; ``.npz``
    files are read with ``allow_pickle=False``. A missing ``posedirs`` (the free model ships none:
    its pose blend shapes are zero) is filled with zeros.

    Raises:
        BodyModelFilesError: the file lacks one of the required arrays (named in the message).
    """
    path = Path(path)
    try:
        if path.suffix == ".npz":
            with np.load(path, allow_pickle=False) as z:
                arrays: dict[str, Any] = {k: z[k] for k in z.files}
        else:
            loaded = load_restricted_pickle(path)
            if not isinstance(loaded, dict):
                raise BodyModelFilesError(f"{path} does not hold a dict of model arrays")
            arrays = dict(loaded)
    except (MvspinError, FileNotFoundError, PermissionError, IsADirectoryError):
        raise
    except Exception as err:  # truncated, not a pickle/npz, an object array in an npz, ...
        raise BodyModelFilesError(f"{path} is not a readable SMPL model file "
                                  f"({type(err).__name__}: {str(err).splitlines()[0] if str(err) else ''})") from None
    missing = [k for k in _REQUIRED_KEYS if k not in arrays]
    if missing:
        raise BodyModelFilesError(f"{path} is incomplete: missing {', '.join(missing)}")
    n_verts = np.asarray(arrays["v_template"]).shape[0] if np.ndim(arrays["v_template"]) else 0
    if "posedirs" not in arrays:
        arrays["posedirs"] = np.zeros((n_verts, 3, 207), dtype=np.float32)
    check_model_arrays(path, arrays)
    kintree = np.asarray(arrays["kintree_table"]).astype(np.int64)
    kintree[0, 0] = -1  # SMPL stores the root's parent as 2**32 - 1
    arrays["kintree_table"] = kintree
    return arrays


def check_model_arrays(path: str | Path, arrays: dict[str, Any]) -> None:
    """Check that a model file's arrays fit together (SMPL's layout: N vertices, 24 joints).

    ``v_template (N, 3)``, ``shapedirs (N, 3, B)``, ``posedirs (N, 3, 207)`` (or ``(3N, 207)``),
    ``J_regressor (24, N)``, ``weights (N, 24)``, ``kintree_table (2, 24)``, ``f (F, 3)`` with
    vertex ids below N, all finite.

    Raises:
        BodyModelFilesError: naming the file, the array, its shape and what it must be.
    """
    def shape_of(key: str) -> tuple[int, ...]:
        value = arrays[key]
        try:
            return tuple(int(d) for d in np.shape(value))
        except Exception:
            raise BodyModelFilesError(f"{path}: {key} is not an array ({type(value).__name__})") from None

    def bad(key: str, expected: str) -> BodyModelFilesError:
        return BodyModelFilesError(f"{path}: {key} has shape {shape_of(key)}, expected {expected} "
                                   "(the model file's arrays do not fit together)")

    v = shape_of("v_template")
    if len(v) != 2 or v[1] != 3 or v[0] < 1:
        raise bad("v_template", "(N, 3)")
    n = v[0]
    joints = 24
    kt = shape_of("kintree_table")
    if kt != (2, joints):
        raise bad("kintree_table", f"(2, {joints})")
    sd = shape_of("shapedirs")
    if len(sd) != 3 or sd[:2] != (n, 3) or sd[2] < 1:
        raise bad("shapedirs", f"({n}, 3, B) with N = {n} vertices from v_template")
    pd = shape_of("posedirs")
    if pd not in ((n, 3, 9 * (joints - 1)), (3 * n, 9 * (joints - 1))):
        raise bad("posedirs", f"({n}, 3, {9 * (joints - 1)})")
    if shape_of("J_regressor") != (joints, n):
        raise bad("J_regressor", f"({joints}, {n})")
    if shape_of("weights") != (n, joints):
        raise bad("weights", f"({n}, {joints})")
    f = shape_of("f")
    if len(f) != 2 or f[1] != 3 or f[0] < 1:
        raise bad("f", "(F, 3)")
    faces = np.asarray(arrays["f"])
    if not np.issubdtype(faces.dtype, np.integer) or faces.min() < 0 or faces.max() >= n:
        raise BodyModelFilesError(f"{path}: f holds vertex ids from {faces.min()} to {faces.max()}, but "
                                  f"v_template has {n} vertices")
    for key in ("v_template", "shapedirs", "posedirs", "J_regressor", "weights"):
        try:
            values = np.asarray(arrays[key], dtype=np.float64)
        except (TypeError, ValueError):
            raise BodyModelFilesError(f"{path}: {key} is not numeric") from None
        if not np.isfinite(values).all():
            raise BodyModelFilesError(f"{path}: {key} contains NaN or infinite values")


def load_mean_params(path: str | Path) -> dict[str, np.ndarray]:
    """Read a SPIN-layout mean-parameter file: ``pose (144,)`` 6D, ``shape (10,)``, ``cam (3,)``."""
    import zipfile

    path = Path(path)
    try:
        with open(path, "rb") as f:
            if f.read(4) != b"PK\x03\x04":  # np.load would try (and refuse) it as a pickle
                raise BodyModelFilesError(f"{path}: not a mean-parameter .npz (pose, shape, cam): not a zip archive")
        with np.load(path, allow_pickle=False) as z:
            out = {}
            for key, size in (("pose", 144), ("shape", 10), ("cam", 3)):
                if key not in z.files:
                    raise BodyModelFilesError(f"{path} is incomplete: missing {key}")
                value = np.asarray(z[key], dtype=np.float32).reshape(-1)
                if value.size != size:
                    raise BodyModelFilesError(f"{path}: {key} has {value.size} values, expected {size}")
                if not np.isfinite(value).all():
                    raise BodyModelFilesError(f"{path}: {key} holds NaN or infinite values")
                out[key] = value
    except (OSError, ValueError, EOFError, zipfile.BadZipFile) as err:
        if isinstance(err, BodyModelFilesError):
            raise
        raise BodyModelFilesError(f"{path}: not a readable mean-parameter .npz (pose, shape, cam): "
                                  f"{str(err).splitlines()[0] if str(err) else type(err).__name__}") from None
    return out


def asset_metadata(npz: dict[str, Any]) -> dict[str, Any]:
    """The JSON metadata stored in a free-model asset (empty if absent)."""
    meta = npz.get("metadata")
    return json.loads(str(meta)) if meta is not None else {}


def default_smpl_dir() -> Path | None:
    """The SMPL directory named by ``$MVSPIN_SMPL_DIR``, if set."""
    value = os.environ.get(SMPL_DIR_ENV)
    return Path(value) if value else None
