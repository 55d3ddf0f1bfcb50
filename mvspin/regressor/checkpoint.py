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

import json
import os
import re
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any, Optional

import numpy as np
import torch
from torch import nn

from mvspin._version import __version__
from mvspin.atomic import atomic_path
from mvspin.regressor.backbone import (
    RESNET_DEPTHS,
    TRUNK_PREFIXES,
    CheckpointError,
    read_weights_file,
    state_dict_problems,
    summarise_keys,
)
from mvspin.regressor.hmr import HMRRegressor

if TYPE_CHECKING:
    from mvspin.body import BodyModel

__all__ = [
    "CHECKPOINT_FORMAT",
    "CheckpointError",
    "HEAD_KEYS",
    "checkpoint_input_size",
    "find_checkpoint_setting",
    "find_training_model_section",
    "same_body_model",
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
            ``depth``, missing/unexpected/mis-shaped keys (named, with counts), or NaN or
            infinite weights.
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
    broken = [k for k, v in state.items() if torch.is_floating_point(v) and not bool(torch.isfinite(v).all())]
    if broken:  # a diverged run's weights: every prediction would be NaN
        raise CheckpointError(f"{path}: {len(broken)} weight tensors hold NaN or infinite values "
                              f"({', '.join(broken[:3])}{', ...' if len(broken) > 3 else ''}); the run that "
                              "wrote it diverged")
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


_INPUT_SIZE_KEYS = ("input_size", "crop_size", "img_res")
_BODY_MODEL_KEYS = ("body_model",)


def find_checkpoint_setting(meta: Any, keys: tuple[str, ...], depth: int = 0) -> Any:
    """The first non-mapping value under one of ``keys`` in a checkpoint's nested metadata (the
    trainer's saved config, stored as a mapping or as JSON text under ``config``); None if absent.

    Example:
        >>> find_checkpoint_setting({"config": '{"data": {"input_size": 96}}'}, ("input_size",))
        96
    """
    if not isinstance(meta, Mapping) or depth > 4:
        return None
    for k in keys:
        if k in meta and not isinstance(meta[k], Mapping):
            return meta[k]
    for key, value in meta.items():
        if key == "config" and isinstance(value, str):  # the trainer stores its config as JSON
            try:
                value = json.loads(value)
            except ValueError:
                continue
        found = find_checkpoint_setting(value, keys, depth + 1)
        if found is not None:
            return found
    return None


def checkpoint_input_size(meta: Mapping[str, Any], body: "BodyModel", path: str | Path = "checkpoint",
                          default: int = 224) -> int:
    """The network input size (pixels, square side) a checkpoint was trained with (``default``:
    SPIN's 224 when it does not say), after checking it was trained for ``body``.

    Args:
        meta: the checkpoint's entries besides the weights (:func:`load_regressor_checkpoint`).
        body: the body model the network will be used with.
        path: how messages name the checkpoint.

    Raises:
        CheckpointError: the checkpoint records another body model than ``body`` (its mean
            parameters and keypoints would not match).
    """
    recorded = find_checkpoint_setting(meta, _BODY_MODEL_KEYS)
    if recorded is None:  # the trainer's config: model.smpl_dir / model.body_resolution
        model_cfg = find_training_model_section(meta)
        if model_cfg is not None:
            recorded = "smpl" if model_cfg.get("smpl_dir") else f"free-{model_cfg.get('body_resolution', 'full')}"
    if isinstance(recorded, str) and recorded and recorded != body.name and not same_body_model(recorded, body):
        raise CheckpointError(f"{path}: trained for body model {recorded!r}, but the evaluation uses "
                              f"{body.name!r}; load the body model it was trained with (smpl_dir, resolution)")
    size = find_checkpoint_setting(meta, _INPUT_SIZE_KEYS)
    if isinstance(size, (int, np.integer)) and not isinstance(size, bool) and size > 0:
        return int(size)
    return default


def find_training_model_section(meta: Any, depth: int = 0) -> Optional[Mapping[str, Any]]:
    """The ``model`` section of a training config stored in a checkpoint (has ``body_resolution``)."""
    if not isinstance(meta, Mapping) or depth > 4:
        return None
    for key, value in meta.items():
        if key == "config" and isinstance(value, str):
            try:
                value = json.loads(value)
            except ValueError:
                continue
        if key == "model" and isinstance(value, Mapping) and "body_resolution" in value:
            return value
        found = find_training_model_section(value, depth + 1)
        if found is not None:
            return found
    return None


def same_body_model(recorded: str, body: "BodyModel") -> bool:
    """Whether the body model name a checkpoint records means ``body``: configs may name the
    model by its option (``free-low``, ``free``, ``smpl``) rather than the loaded model's full
    name (``free-1229v``)."""
    aliases = {"free": body.is_free, "smpl": not body.is_free}
    if recorded in aliases:
        return aliases[recorded]
    if recorded.startswith("free-") and body.is_free:
        from mvspin.body import model_files

        resolution = recorded.removeprefix("free-")
        stem = Path(model_files.FREE_MODEL_FILES.get(resolution, "")).stem.removeprefix("free_smpl_")
        return bool(stem) and body.name == f"free-{stem}"
    return False
