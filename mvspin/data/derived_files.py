"""Bundle files derived from another: the same bundles with some supervision taken away.

Used to build training sets that have what a real dataset has and no more: Human3.6M and
MPI-INF-3DHP give 2D keypoints and 3D joints but no SMPL parameters (``drop_smpl``); in-the-wild
sets give 3D joints for only some images or none (``joints_3d_share``: the other bundles keep
their 3D joints with confidence 0, which every loss reads as "no 3D ground truth").
"""
from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Optional

import numpy as np

from mvspin.data.bundle_format import FIELD_GROUPS, BundleFile, BundleWriter

__all__ = ["derive_bundle_file"]


def derive_bundle_file(source: str | os.PathLike, out: str | os.PathLike, *, drop_smpl: bool = False,
                       joints_3d_share: float = 1.0, seed: int = 0, split: Optional[str] = None) -> Path:
    """Copy a bundle file, optionally without SMPL ground truth and with 3D joints for a share only.

    Args:
        source: the bundle file to copy.
        out: the new file (written under a temporary name, renamed when complete).
        drop_smpl: leave out every ``smpl_*`` field and ``has_smpl``.
        joints_3d_share: share of bundles (chosen at random with ``seed``) that keep their 3D
            joints' confidences; the rest get confidence 0. 1 keeps all.
        seed: seed of that choice.
        split: split name of the new file (default: the source's).

    Returns:
        the path of the new file. Its attributes record the source and the options.

    Raises:
        ValueError: ``joints_3d_share`` outside [0, 1], or below 1 for a file without 3D joints.
    """
    if not 0.0 <= joints_3d_share <= 1.0:
        raise ValueError(f"joints_3d_share must be in [0, 1], got {joints_3d_share}")
    src = BundleFile(source)
    has_3d = src.joints_3d_keypoint_set is not None
    if joints_3d_share < 1.0 and not has_3d:
        raise ValueError(f"{src.path}: has no 3D joints to withhold")
    n = len(src)
    keep_3d = np.zeros(n, dtype=bool)
    keep_3d[np.random.default_rng(seed).permutation(n)[:int(round(joints_3d_share * n))]] = True
    smpl = src.has_smpl and not drop_smpl
    fields = [f for f in src.fields if smpl or f not in FIELD_GROUPS["smpl"]]
    reserved = {"format", "format_version", "dataset", "split", "num_views", "created_by", "created_at",
                "image_root"}
    attrs = {k: v for k, v in src.attrs.items() if k not in reserved}
    attrs.update(derived_from=str(src.path.resolve()),
                 derived_options=json.dumps({"drop_smpl": drop_smpl, "joints_3d_share": joints_3d_share,
                                             "seed": seed}))
    with BundleWriter(out, dataset=str(src.attrs["dataset"]), split=split or str(src.attrs["split"]),
                      num_views=src.num_views, keypoint_set=src.keypoint_set,
                      joints_3d_keypoint_set=src.joints_3d_keypoint_set,
                      joints_3d_frame=src.joints_3d_frame or "world",
                      joints_3d_root_relative=src.joints_3d_root_relative, cameras=src.has_cameras,
                      smpl=smpl, image_storage=src.image_storage,
                      image_root=str(src.image_root) if src.image_root is not None else None,
                      attrs=attrs) as writer:
        for i in range(n):
            bundle = src.read_bundle(i, fields)
            if has_3d and not keep_3d[i]:
                bundle["joints_3d"] = bundle["joints_3d"].copy()
                bundle["joints_3d"][:, 3] = 0.0
            writer.append(bundle)
    src.close()
    return Path(out)
