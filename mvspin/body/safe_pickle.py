"""Restricted unpickling of SMPL's model files and SMPLify's GMM prior.

The official SMPL ``.pkl`` files were written by Python 2 with chumpy installed: ``v_template``,
``shapedirs``, ``posedirs`` and ``J`` are ``chumpy.ch.Ch`` objects and ``J_regressor`` is a
``scipy.sparse.csc_matrix``. chumpy does not import on current numpy/Python, and a plain
``pickle.load`` would run whatever a file asks for. This module reads such files with an
unpickler that resolves only numpy's array reconstruction and *inert stand-ins* for chumpy and
scipy.sparse classes; the stand-ins are turned into plain numpy arrays afterwards. Any other
global (``os.system``, ``builtins.eval``, ...) is refused before it can be called.
"""
from __future__ import annotations

import codecs
import io
import pickle
from pathlib import Path
from typing import Any

import numpy as np

from mvspin.errors import UnsafePickleError

__all__ = ["UnsafePickleError", "load_restricted_pickle"]


class _Stub:
    """Inert stand-in for a chumpy or scipy.sparse object: it only records its pickled state."""

    _origin = "?"

    def __init__(self, *args: Any, **kwargs: Any) -> None:  # called by protocol-0/1 REDUCE paths
        self.__dict__["_args"] = args

    def __setstate__(self, state: Any) -> None:
        if isinstance(state, tuple) and len(state) == 2 and isinstance(state[1], dict):
            state = {**(state[0] or {}), **state[1]}  # (dict, slotstate) form
        if not isinstance(state, dict):
            raise UnsafePickleError(f"unexpected pickled state for {self._origin}: {type(state).__name__}")
        self.__dict__.update(state)


def _stub_class(module: str, name: str) -> type:
    return type(name, (_Stub,), {"_origin": f"{module}.{name}"})


def _reconstructor(cls: type, base: type, state: Any = None) -> Any:
    """Python 2's ``copy_reg._reconstructor``, allowed only for our stand-ins."""
    if not (isinstance(cls, type) and issubclass(cls, _Stub)):
        raise UnsafePickleError(f"refused to reconstruct {cls!r}")
    return cls.__new__(cls)


_multiarray = (np._core if hasattr(np, "_core") else np.core).multiarray  # numpy 2 renamed core
_NUMPY_GLOBALS = {
    ("multiarray", "_reconstruct"): _multiarray._reconstruct,
    ("multiarray", "scalar"): _multiarray.scalar,
    ("numpy", "ndarray"): np.ndarray,
    ("numpy", "dtype"): np.dtype,
}


class _RestrictedUnpickler(pickle.Unpickler):
    def __init__(self, file: io.BufferedIOBase, source: str, model_containers: bool) -> None:
        super().__init__(file, encoding="latin1")
        self._source = source
        self._model_containers = model_containers
        self._stubs: dict[tuple[str, str], type] = {}

    def find_class(self, module: str, name: str) -> Any:
        top = module.split(".")[0]
        if top == "numpy":
            key = ("numpy", name) if module == "numpy" else (module.split(".")[-1], name)
            if key in _NUMPY_GLOBALS:
                return _NUMPY_GLOBALS[key]
        elif top in ("copy_reg", "copyreg") and name == "_reconstructor":
            return _reconstructor
        elif top in ("__builtin__", "builtins") and name == "object":
            return object
        elif module == "_codecs" and name == "encode":
            return codecs.encode  # how Python 3 pickles bytes (array buffers) at protocol < 3
        elif self._model_containers and (
            top == "chumpy" or (top == "scipy" and name in ("csc_matrix", "csr_matrix", "coo_matrix"))
        ):
            return self._stubs.setdefault((module, name), _stub_class(module, name))
        allowed = "numpy arrays, chumpy and scipy.sparse containers" if self._model_containers else "numpy arrays"
        raise UnsafePickleError(
            f"{self._source}: refused to load global {module}.{name} (only {allowed} are allowed in this file)"
        )


def _to_plain(obj: Any, source: str) -> Any:
    """Replace stand-ins by numpy arrays, recursively through dicts, lists and tuples."""
    if isinstance(obj, _Stub):
        d = obj.__dict__
        if "data" in d and "indices" in d and "indptr" in d:  # scipy.sparse compressed matrix
            shape = d.get("_shape", d.get("shape"))
            fmt = obj._origin.rsplit(".", 1)[-1][:3]
            return _dense_from_compressed(d["data"], d["indices"], d["indptr"], shape, fmt)
        if "x" in d and isinstance(d["x"], np.ndarray):  # chumpy.Ch: its value is .x
            return np.asarray(d["x"])
        raise UnsafePickleError(
            f"{source}: cannot convert {obj._origin} (keys {sorted(d)[:8]}) to an array; "
            "re-export the file with numpy arrays"
        )
    if isinstance(obj, dict):
        return {k: _to_plain(v, source) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return type(obj)(_to_plain(v, source) for v in obj)
    return obj


def _dense_from_compressed(data: np.ndarray, indices: np.ndarray, indptr: np.ndarray,
                           shape: tuple[int, int], fmt: str) -> np.ndarray:
    out = np.zeros(tuple(int(s) for s in shape), dtype=np.asarray(data).dtype)
    counts = np.diff(indptr)
    major = np.repeat(np.arange(len(counts)), counts)
    if fmt == "csc":
        out[indices, major] = data
    else:
        out[major, indices] = data
    return out


def load_restricted_pickle(path: str | Path, model_containers: bool = True) -> Any:
    """Load a SMPL-style pickle without chumpy and without running code from the file.

    Args:
        path: a ``.pkl`` file (official SMPL model, SMPLify's ``gmm_08.pkl``, a 3DPW sequence, ...).
        model_containers: also accept chumpy and scipy.sparse objects (SMPL model files); with
            False only numpy arrays, numbers, strings and Python containers load.

    Returns:
        The unpickled object with chumpy arrays and sparse matrices replaced by dense numpy
        arrays.

    Raises:
        UnsafePickleError: the file references any other global (it may try to run code).
    """
    path = Path(path)
    with open(path, "rb") as f:
        obj = _RestrictedUnpickler(f, str(path), model_containers).load()
    return _to_plain(obj, str(path))
