"""A fabricated SMPL-layout model written in the official file format (chumpy + scipy.sparse).

The arrays are random but have SMPL's shapes (6890 vertices, 24 joints, 10 betas, 207 pose blend
shapes): enough to exercise the chumpy-free loader, non-zero pose blend shapes in the fast path
and SPIN's regressor files, without any licensed file.
"""
from __future__ import annotations

import pickle
import sys
import types
from pathlib import Path

import numpy as np
import scipy.sparse

from mvspin.body.keypoint_sets import SMPL_PARENTS

N_VERTS = 6890


def make_arrays(seed: int = 0) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    v_template = rng.normal(scale=0.3, size=(N_VERTS, 3))
    joint_of_vertex = rng.integers(0, 24, size=N_VERTS)
    weights = np.zeros((N_VERTS, 24))
    weights[np.arange(N_VERTS), joint_of_vertex] = 0.7
    weights[np.arange(N_VERTS), np.array(SMPL_PARENTS)[joint_of_vertex].clip(0)] += 0.3
    j_reg = np.zeros((24, N_VERTS))
    for j in range(24):
        ids = rng.choice(N_VERTS, size=12, replace=False)
        j_reg[j, ids] = rng.uniform(0.5, 1.0, size=12)
    j_reg /= j_reg.sum(1, keepdims=True)
    faces = rng.integers(0, N_VERTS, size=(200, 3))
    kintree = np.stack([np.array(SMPL_PARENTS) % (2**32), np.arange(24)]).astype(np.int64)
    return {
        "v_template": v_template,
        "shapedirs": rng.normal(scale=0.01, size=(N_VERTS, 3, 10)),
        "posedirs": rng.normal(scale=0.01, size=(N_VERTS, 3, 207)),
        "J_regressor": j_reg,
        "weights": weights,
        "kintree_table": kintree,
        "f": faces.astype(np.uint32),
        "bs_style": "lbs",
        "bs_type": "lrotmin",
    }


def write_official_pkl(path: Path, arrays: dict, protocol: int = 2) -> None:
    """Pickle ``arrays`` the way SMPL's files are: chumpy ``Ch`` objects and a csc J_regressor.

    A throwaway module named ``chumpy.ch`` provides the class while pickling and is removed
    afterwards, so loading happens with no chumpy importable.
    """
    chumpy = types.ModuleType("chumpy")
    ch_mod = types.ModuleType("chumpy.ch")

    class Ch:  # same class path as chumpy's; its pickled state holds the array as 'x'
        def __init__(self, x):
            self.x = x

    Ch.__module__ = "chumpy.ch"
    Ch.__qualname__ = "Ch"
    ch_mod.Ch = Ch
    chumpy.ch = ch_mod
    sys.modules["chumpy"], sys.modules["chumpy.ch"] = chumpy, ch_mod
    try:
        obj = dict(arrays)
        for key in ("v_template", "shapedirs", "posedirs"):
            obj[key] = Ch(np.asarray(arrays[key]))
        obj["J_regressor"] = scipy.sparse.csc_matrix(arrays["J_regressor"])
        with open(path, "wb") as f:
            pickle.dump(obj, f, protocol=protocol)
    finally:
        del sys.modules["chumpy"], sys.modules["chumpy.ch"]


def write_smpl_dir(root: Path, seed: int = 0, spin_files: bool = True) -> dict[str, np.ndarray]:
    """A SMPL directory: SMPL_NEUTRAL.pkl and, optionally, SPIN's regressor files."""
    root.mkdir(parents=True, exist_ok=True)
    arrays = make_arrays(seed)
    write_official_pkl(root / "SMPL_NEUTRAL.pkl", arrays)
    if spin_files:
        rng = np.random.default_rng(seed + 1)
        for name, rows in (("J_regressor_extra.npy", 9), ("J_regressor_h36m.npy", 17)):
            reg = np.zeros((rows, N_VERTS))
            for r in range(rows):
                ids = rng.choice(N_VERTS, size=20, replace=False)
                reg[r, ids] = rng.uniform(size=20)
            np.save(root / name, reg / reg.sum(1, keepdims=True))
        six_d = np.tile(np.array([1.0, 0.0, 0.0, 1.0, 0.0, 0.0]), 24)  # identity rotations
        np.savez(root / "smpl_mean_params.npz", pose=six_d, shape=np.zeros(10), cam=np.array([0.9, 0.0, 0.0]))
    return arrays
