"""Reading and writing regressor checkpoints in SPIN's layout.

A SPIN ``model_checkpoint.pt`` is a dict ``{"model": state_dict, "optimizer": ..., "epoch": ...,
"batch_idx": ..., "batch_size": ..., "dataset_perm": ..., "total_step_count": ...}``; the state
dict of a ResNet-50 HMR has 331 entries (see :func:`spin_state_dict_layout`). Files are read with
``torch.load(weights_only=True)``; numeric numpy arrays (SPIN's ``dataset_perm``) are allowed,
nothing else beyond tensors and plain containers. Unlike SPIN (``strict=False``) loading is
strict: every missing, unexpected or mis-shaped key is an error that names it.

Files written here keep SPIN's layout (``model`` + the caller's extra entries) and add an
``mvspin`` entry ``{"depth", "version", "format"}``, so SPIN's own loader reads them too.

Example:
    >>> import tempfile, os
    >>> model = HMRRegressor(depth=18)
    >>> path = os.path.join(tempfile.mkdtemp(), "model_checkpoint.pt")
    >>> _ = save_regressor_checkpoint(path, model, epoch=3)
    >>> loaded, meta = load_regressor_checkpoint(path)
    >>> loaded.depth, meta["epoch"]
    (18, 3)
"""
from __future__ import annotations

import os
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch
from torch import nn

from mvspin._version import __version__
from mvspin.atomic import atomic_path
from mvspin.learning.backbone import (
    RESNET_DEPTHS,
    TRUNK_PREFIXES,
    CheckpointError,
    read_weights_file,
    state_dict_problems,
    summarise_keys,
)
from mvspin.learning.regressor import HMRRegressor

__all__ = [
    "CHECKPOINT_FORMAT",
    "CheckpointError",
    "HEAD_KEYS",
    "infer_depth",
    "load_regressor_checkpoint",
    "save_regressor_checkpoint",
    "spin_state_dict_layout",
]

CHECKPOINT_FORMAT = 1  # version of the `mvspin` metadata entry
# Names only the HMR head has: their presence is what makes a state dict an HMR regressor.
HEAD_KEYS: tuple[str, ...] = ("fc1.weight", "fc2.weight", "decpose.weight", "decshape.weight",
                              "deccam.weight", "init_pose", "init_shape", "init_cam")
_BLOCK_KEY = re.compile(r"^layer([1-4])\.(\d+)\.")


def spin_state_dict_layout(depth: int = 50) -> dict[str, tuple[int, ...]]:
    """Names and shapes of every entry of an HMR regressor state dict, in order.

    For ``depth=50`` this is SPIN's checkpoint layout: 331 entries (318 ResNet-50 trunk entries
    including BatchNorm statistics, 10 head weights/biases, 3 mean-parameter buffers).
    """
    state = HMRRegressor(depth).state_dict()
    return {name: tuple(value.shape) for name, value in state.items()}


def infer_depth(state_dict: Mapping[str, Any]) -> int | None:
    """ResNet depth of a torchvision-named trunk from its keys; ``None`` if not recognisable.

    Bottleneck blocks have ``conv3``/``bn3``; depths are told apart by the blocks per stage.
    """
    blocks = [0, 0, 0, 0]
    bottleneck = False
    for key in state_dict:
        match = _BLOCK_KEY.match(key)
        if match:
            stage, index = int(match.group(1)) - 1, int(match.group(2))
            blocks[stage] = max(blocks[stage], index + 1)
            bottleneck |= ".conv3." in key or ".bn3." in key
    kind = "bottleneck" if bottleneck else "basic"
    for depth, (depth_kind, depth_blocks) in RESNET_DEPTHS.items():
        if depth_kind == kind and tuple(blocks) == depth_blocks:
            return depth
    return None




def _split_checkpoint(raw: Any, path: Path) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    """(state dict, other entries) from a SPIN-layout dict or a bare state dict."""
    if not isinstance(raw, Mapping):
        raise CheckpointError(f"{path}: expected a dict (SPIN checkpoint or state dict), got "
                              f"{type(raw).__name__}")
    if "model" in raw:
        state, meta = raw["model"], {k: v for k, v in raw.items() if k != "model"}
        if not isinstance(state, Mapping):
            raise CheckpointError(f"{path}: entry 'model' should be a state dict, got "
                                  f"{type(state).__name__}")
    else:
        state, meta = raw, {}
    not_tensors = [k for k, v in state.items() if not isinstance(v, torch.Tensor)]
    if not_tensors:
        raise CheckpointError(f"{path}: not a state dict: entries {summarise_keys(not_tensors)} are "
                              f"not tensors (a SPIN checkpoint keeps the weights under 'model')")
    state = dict(state)
    # Saved from a DataParallel/DistributedDataParallel wrapper: every key has this prefix.
    if state and all(k.startswith("module.") for k in state):
        state = {k[len("module."):]: v for k, v in state.items()}
    return state, meta


def _check_is_hmr(state: Mapping[str, torch.Tensor], path: Path) -> None:
    absent = [k for k in HEAD_KEYS if k not in state]
    if len(absent) < len(HEAD_KEYS):
        return  # some head present: a damaged HMR checkpoint is reported key by key later
    if "fc.weight" in state and "conv1.weight" in state:
        raise CheckpointError(
            f"{path}: this is a ResNet image classifier (it has 'fc.weight' and no HMR head), not "
            f"an HMR regressor checkpoint; ImageNet weights go through load_imagenet_weights")
    raise CheckpointError(f"{path}: not an HMR regressor state dict: none of the head entries "
                          f"{', '.join(HEAD_KEYS[:5])}, ... are present; it holds "
                          f"{summarise_keys(list(state))}")


def load_regressor_checkpoint(
        path: str | os.PathLike[str], depth: int | None = None,
        map_location: str | torch.device = "cpu") -> tuple[HMRRegressor, dict[str, Any]]:
    """Build an :class:`HMRRegressor` from a checkpoint file, loading it strictly.

    Args:
        path: a SPIN/mvspin checkpoint (dict with ``model``) or a bare state dict file. Keys
            prefixed ``module.`` (saved from a DataParallel wrapper) are accepted.
        depth: ResNet depth expected; ``None`` infers it from the keys.
        map_location: device to read the tensors to; the model is moved there too.

    Returns:
        (model in eval mode, meta) where meta holds every top-level entry except ``model``
        (SPIN: ``optimizer``, ``epoch``, ``batch_idx``, ``dataset_perm``, ...; mvspin adds
        ``mvspin``); empty for a bare state dict.

    Raises:
        FileNotFoundError: no such file.
        CheckpointError: unreadable file, not an HMR regressor, another architecture than
            ``depth``, or missing/unexpected/mis-shaped keys (named, with counts).
    """
    path = Path(path)
    state, meta = _split_checkpoint(read_weights_file(path, map_location=map_location), path)
    _check_is_hmr(state, path)
    found = infer_depth(state)
    if depth is not None and depth not in RESNET_DEPTHS:
        raise ValueError(f"depth {depth!r} is not supported; choose one of {sorted(RESNET_DEPTHS)}")
    if depth is not None and found is not None and found != depth:
        raise CheckpointError(f"{path}: architecture mismatch: the checkpoint holds a "
                              f"ResNet-{found} HMR regressor but depth={depth} was requested")
    if depth is None:
        recorded = meta.get("mvspin", {}).get("depth") if isinstance(meta.get("mvspin"),
                                                                     Mapping) else None
        depth = found if found is not None else recorded
        if depth is None:
            raise CheckpointError(f"{path}: cannot tell the ResNet depth from the keys (trunk "
                                  f"entries damaged or absent); pass depth= explicitly")

    model = HMRRegressor(depth)
    expected = model.state_dict()
    missing, unexpected, problems = state_dict_problems(state, expected)
    if problems:
        trunk_only = all(k.startswith(TRUNK_PREFIXES) for k in missing + unexpected)
        hint = (f" (its trunk entries do not form a ResNet-{depth})"
                if found is None and trunk_only and missing + unexpected else "")
        raise CheckpointError(f"{path}: does not fit HMRRegressor(depth={depth}){hint}: "
                              + "; ".join(problems))
    model.load_state_dict(state, strict=True)
    if isinstance(map_location, (str, torch.device)):
        model.to(map_location)
    return model.eval(), meta


def save_regressor_checkpoint(path: str | os.PathLike[str], model: nn.Module, /,
                              **extra: Any) -> Path:
    """Write ``{"model": state_dict, **extra, "mvspin": {...}}`` atomically; returns the path.

    ``extra`` carries the trainer's entries (``optimizer``, ``epoch``, ...); keep them to tensors,
    plain Python values and numeric numpy arrays so :func:`load_regressor_checkpoint` can read
    them with ``weights_only=True``. The file is written to a temporary name in the same folder
    and renamed, so an existing checkpoint is never left half written. A DataParallel /
    DistributedDataParallel wrapper is unwrapped.
    """
    if isinstance(model, (nn.DataParallel, nn.parallel.DistributedDataParallel)):
        model = model.module
    if not isinstance(model, HMRRegressor):
        raise TypeError(f"expected an HMRRegressor, got {type(model).__name__}")
    reserved = {"model", "mvspin"} & set(extra)
    if reserved:
        raise ValueError(f"extra entries may not be named {sorted(reserved)}: reserved for the "
                         f"state dict and mvspin's metadata")
    payload = {"model": model.state_dict(), **extra,
               "mvspin": {"depth": model.depth, "version": __version__,
                          "format": CHECKPOINT_FORMAT}}
    path = Path(path)
    with atomic_path(path, fsync=True) as tmp:
        torch.save(payload, tmp)
    return path
