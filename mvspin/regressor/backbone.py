"""ResNet trunks with torchvision's parameter names, and reading of weight files.

The trunk is the part of torchvision's ResNet up to the global average pool: no ``fc`` classifier.
Parameter and buffer names are exactly torchvision's (``conv1``, ``bn1``, ``layer1.0.conv1``,
``layer1.0.downsample.0``, ``...bn1.running_mean``, ``...num_batches_tracked``), so a torchvision
ImageNet file loads into it (see :func:`load_imagenet_weights`) and SPIN's HMR checkpoints, which
use the same names for their backbone, load into :class:`mvspin.regressor.hmr.HMRRegressor`.

Bottleneck blocks put the stride on the 3x3 convolution (torchvision's "ResNet v1.5", which is
what torchvision and therefore SPIN use).

Pooling: torchvision uses adaptive average pooling; SPIN's HMR uses a fixed ``AvgPool2d(7)``, which
only works for 224x224 inputs. Both are parameter-free and give identical features at 224x224
(the final map is 7x7), so here the pool is adaptive: SPIN checkpoints behave the same at 224 and
CPU users can run smaller inputs (e.g. 128x128) for quick experiments.

Example:
    >>> import torch
    >>> trunk = resnet(18)
    >>> trunk(torch.zeros(2, 3, 128, 128)).shape
    torch.Size([2, 512])
"""
from __future__ import annotations

import os
import pickle
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from mvspin.errors import CheckpointError

try:
    from numpy._core import multiarray as _NUMPY_MULTIARRAY  # numpy >= 2
except ImportError:  # numpy 1.x
    from numpy.core import multiarray as _NUMPY_MULTIARRAY  # type: ignore[no-redef]

__all__ = [
    "BasicBlock",
    "Bottleneck",
    "CheckpointError",
    "RESNET_DEPTHS",
    "ResNet",
    "TRUNK_PREFIXES",
    "load_imagenet_weights",
    "read_weights_file",
    "resnet",
]

# depth -> (block type name, blocks per stage); torchvision's table.
RESNET_DEPTHS: dict[int, tuple[str, tuple[int, int, int, int]]] = {
    10: ("basic", (1, 1, 1, 1)),  # not torchvision's: a small trunk for CPU experiments (no ImageNet file)
    18: ("basic", (2, 2, 2, 2)),
    34: ("basic", (3, 4, 6, 3)),
    50: ("bottleneck", (3, 4, 6, 3)),
    101: ("bottleneck", (3, 4, 23, 3)),
    152: ("bottleneck", (3, 8, 36, 3)),
}

# First components of every parameter/buffer name that belongs to the trunk.
TRUNK_PREFIXES: tuple[str, ...] = ("conv1.", "bn1.", "layer1.", "layer2.", "layer3.", "layer4.")


def _conv3x3(in_channels: int, out_channels: int, stride: int = 1) -> nn.Conv2d:
    return nn.Conv2d(in_channels, out_channels, 3, stride=stride, padding=1, bias=False)


def _conv1x1(in_channels: int, out_channels: int, stride: int = 1) -> nn.Conv2d:
    return nn.Conv2d(in_channels, out_channels, 1, stride=stride, bias=False)


class BasicBlock(nn.Module):
    """Two 3x3 convolutions with a residual connection (ResNet-18/34)."""

    expansion = 1

    def __init__(self, in_channels: int, width: int, stride: int = 1,
                 downsample: nn.Module | None = None) -> None:
        super().__init__()
        self.conv1 = _conv3x3(in_channels, width, stride)
        self.bn1 = nn.BatchNorm2d(width)
        self.relu = nn.ReLU(inplace=True)
        self.conv2 = _conv3x3(width, width)
        self.bn2 = nn.BatchNorm2d(width)
        self.downsample = downsample

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(N, C_in, H, W) -> (N, width, H/stride, W/stride)."""
        identity = x if self.downsample is None else self.downsample(x)
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return self.relu(out + identity)


class Bottleneck(nn.Module):
    """1x1 reduce, 3x3 (strided, as in torchvision v1.5), 1x1 expand x4, residual (ResNet-50+)."""

    expansion = 4

    def __init__(self, in_channels: int, width: int, stride: int = 1,
                 downsample: nn.Module | None = None) -> None:
        super().__init__()
        self.conv1 = _conv1x1(in_channels, width)
        self.bn1 = nn.BatchNorm2d(width)
        self.conv2 = _conv3x3(width, width, stride)
        self.bn2 = nn.BatchNorm2d(width)
        self.conv3 = _conv1x1(width, width * self.expansion)
        self.bn3 = nn.BatchNorm2d(width * self.expansion)
        self.relu = nn.ReLU(inplace=True)
        self.downsample = downsample

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(N, C_in, H, W) -> (N, 4*width, H/stride, W/stride)."""
        identity = x if self.downsample is None else self.downsample(x)
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.relu(self.bn2(self.conv2(out)))
        out = self.bn3(self.conv3(out))
        return self.relu(out + identity)


class ResNet(nn.Module):
    """torchvision ResNet without the classifier; ``forward`` returns the pooled feature.

    Args:
        depth: one of ``RESNET_DEPTHS`` (10, 18, 34, 50, 101, 152).

    Attributes:
        depth: the depth given.
        feature_dim: length of the pooled feature (512 for 18/34, 2048 for 50+).
    """

    def __init__(self, depth: int = 50) -> None:
        super().__init__()
        if depth not in RESNET_DEPTHS:
            raise ValueError(f"ResNet depth {depth!r} is not supported; "
                             f"choose one of {sorted(RESNET_DEPTHS)}")
        kind, blocks = RESNET_DEPTHS[depth]
        block: type[BasicBlock] | type[Bottleneck] = BasicBlock if kind == "basic" else Bottleneck
        self.depth = depth
        self._in_channels = 64
        self.conv1 = nn.Conv2d(3, 64, kernel_size=7, stride=2, padding=3, bias=False)
        self.bn1 = nn.BatchNorm2d(64)
        self.relu = nn.ReLU(inplace=True)
        self.maxpool = nn.MaxPool2d(kernel_size=3, stride=2, padding=1)
        self.layer1 = self._make_stage(block, 64, blocks[0], stride=1)
        self.layer2 = self._make_stage(block, 128, blocks[1], stride=2)
        self.layer3 = self._make_stage(block, 256, blocks[2], stride=2)
        self.layer4 = self._make_stage(block, 512, blocks[3], stride=2)
        # Adaptive instead of SPIN's AvgPool2d(7): identical at 224x224, also valid elsewhere.
        self.avgpool = nn.AdaptiveAvgPool2d(1)
        self.feature_dim = 512 * block.expansion
        self._init_trunk_weights()

    def _make_stage(self, block: type[BasicBlock] | type[Bottleneck], width: int, n_blocks: int,
                    stride: int) -> nn.Sequential:
        downsample = None
        out_channels = width * block.expansion
        if stride != 1 or self._in_channels != out_channels:
            downsample = nn.Sequential(_conv1x1(self._in_channels, out_channels, stride),
                                       nn.BatchNorm2d(out_channels))
        layers = [block(self._in_channels, width, stride, downsample)]
        self._in_channels = out_channels
        layers += [block(out_channels, width) for _ in range(1, n_blocks)]
        return nn.Sequential(*layers)

    def _init_trunk_weights(self) -> None:
        # He init on convolutions (fan_out), unit/zero BatchNorm: what torchvision and SPIN do.
        for module in self.modules():
            if isinstance(module, nn.Conv2d):
                nn.init.kaiming_normal_(module.weight, mode="fan_out", nonlinearity="relu")
            elif isinstance(module, nn.BatchNorm2d):
                nn.init.ones_(module.weight)
                nn.init.zeros_(module.bias)

    def extract_features(self, images: torch.Tensor) -> torch.Tensor:
        """Pooled trunk feature: images (N, 3, H, W) -> (N, feature_dim).

        H and W must be at least 32 (the trunk downsamples by 32).
        """
        if images.ndim != 4 or images.shape[1] != 3:
            raise ValueError(f"expected images of shape (N, 3, H, W), got {tuple(images.shape)}")
        if images.shape[2] < 32 or images.shape[3] < 32:
            raise ValueError(f"images must be at least 32x32 pixels, got "
                             f"{images.shape[2]}x{images.shape[3]}")
        x = self.maxpool(self.relu(self.bn1(self.conv1(images))))
        x = self.layer4(self.layer3(self.layer2(self.layer1(x))))
        return torch.flatten(self.avgpool(x), 1)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        """images (N, 3, H, W) -> pooled feature (N, feature_dim)."""
        return self.extract_features(images)


def resnet(depth: int = 50) -> ResNet:
    """A randomly initialised torchvision-named ResNet trunk of the given depth."""
    return ResNet(depth)


# numpy objects allowed when reading weight files with weights_only=True. SPIN checkpoints hold a
# numpy array (`dataset_perm`); arrays pickle as `_reconstruct(ndarray, ...)` + a dtype, and
# files written under numpy 1.x name the module `numpy.core.multiarray` instead of numpy 2's
# `numpy._core.multiarray`. Only numeric dtypes: object arrays would need arbitrary unpickling.
_NUMERIC_DTYPES = (np.bool_, np.int8, np.int16, np.int32, np.int64, np.uint8, np.uint16, np.uint32,
                   np.uint64, np.float16, np.float32, np.float64)
_NUMPY_SAFE_GLOBALS: list[Any] = [
    (_NUMPY_MULTIARRAY._reconstruct, "numpy.core.multiarray._reconstruct"),
    (_NUMPY_MULTIARRAY.scalar, "numpy.core.multiarray.scalar"),
    (_NUMPY_MULTIARRAY._reconstruct, "numpy._core.multiarray._reconstruct"),
    (_NUMPY_MULTIARRAY.scalar, "numpy._core.multiarray.scalar"),
    np.ndarray,
    np.dtype,
    *sorted({type(np.dtype(t)) for t in _NUMERIC_DTYPES}, key=lambda c: c.__name__),
]


def read_weights_file(path: str | os.PathLike[str], map_location: Any = "cpu") -> Any:
    """Read a ``torch.save`` file with ``weights_only=True``.

    Besides tensors and plain containers, numeric numpy arrays and scalars are accepted (SPIN
    checkpoints store one); nothing else is unpickled.

    Raises:
        FileNotFoundError: the file does not exist.
        CheckpointError: the file is not a readable PyTorch file, or holds other objects.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"weights file not found: {path}")
    try:
        with torch.serialization.safe_globals(_NUMPY_SAFE_GLOBALS):
            return torch.load(path, map_location=map_location, weights_only=True)
    except pickle.UnpicklingError as err:
        text = str(err)
        if "Weights only load failed" in text:
            # Name the offending object, without torch's advice to allowlist it.
            found = re.search(r"GLOBAL (\S+)|but got (<[^>]+>)", text)
            culprit = next((g for g in found.groups() if g), "") if found else "unknown"
            raise CheckpointError(
                f"{path}: holds a Python object that is not allowed in a weights file "
                f"({culprit}); only tensors, plain containers and numeric numpy arrays are "
                f"read") from None
        raise CheckpointError(f"{path}: not a readable PyTorch weights file "
                              f"({text.strip()[:200]})") from err
    except Exception as err:  # noqa: BLE001 - any failure to decode means an unreadable file
        raise CheckpointError(f"{path}: not a readable PyTorch weights file "
                              f"({type(err).__name__}: {str(err)[:200]})") from err


def summarise_keys(keys: list[str], limit: int = 5) -> str:
    """``"N (a, b, c, ...)"``: a count and the first few names, for error messages."""
    shown = ", ".join(keys[:limit])
    return f"{len(keys)} ({shown}{', ...' if len(keys) > limit else ''})"


def state_dict_problems(state: Mapping[str, Any], expected: Mapping[str, torch.Tensor],
                        optional_suffixes: tuple[str, ...] = ()) -> tuple[list[str], list[str], list[str]]:
    """Missing, unexpected and shape-mismatched keys of ``state`` against ``expected``, plus a
    one-line description of each non-empty group (missing keys ending in ``optional_suffixes``
    are tolerated)."""
    missing = [k for k in expected if k not in state and not k.endswith(optional_suffixes)]
    unexpected = [k for k in state if k not in expected]
    mismatched = [f"{k} {tuple(state[k].shape)} vs {tuple(expected[k].shape)}"
                  for k in expected if k in state and state[k].shape != expected[k].shape]
    problems = []
    if missing:
        problems.append(f"missing keys {summarise_keys(missing)}")
    if unexpected:
        problems.append(f"unexpected keys {summarise_keys(unexpected)}")
    if mismatched:
        problems.append(f"shape mismatches {summarise_keys(mismatched, 3)}")
    return missing, unexpected, problems


def load_imagenet_weights(model: nn.Module, path: str | os.PathLike[str]) -> None:
    """Load a torchvision ImageNet ResNet state-dict file into ``model``'s trunk, in place.

    ``model`` is a :class:`ResNet` or anything that owns the trunk under torchvision's names
    (e.g. :class:`~mvspin.regressor.hmr.HMRRegressor`); its other parameters are untouched.
    ``fc.*`` keys of the file are dropped; every other trunk key must match by name and shape.
    The file holds a bare state dict (torchvision's ``resnet50-*.pth``) or one under
    ``"state_dict"``. Files from before PyTorch 0.4 lack ``num_batches_tracked``; BatchNorm
    fills those in itself.

    Raises:
        FileNotFoundError / CheckpointError: unreadable file, missing or unexpected keys (named),
            shape mismatches (e.g. a ResNet-18 file into a ResNet-50).
    """
    state = read_weights_file(path)
    if isinstance(state, Mapping) and "state_dict" in state and isinstance(state["state_dict"],
                                                                           Mapping):
        state = state["state_dict"]
    if not isinstance(state, Mapping) or not all(isinstance(v, torch.Tensor)
                                                 for v in state.values()):
        raise CheckpointError(f"{path}: expected a ResNet state dict (names -> tensors), got "
                              f"{type(state).__name__}")
    state = {k: v for k, v in state.items() if not k.startswith("fc.")}
    expected = {k: v for k, v in model.state_dict().items() if k.startswith(TRUNK_PREFIXES)}
    # files saved before PyTorch 0.4 have no num_batches_tracked
    _, _, problems = state_dict_problems(state, expected, optional_suffixes=("num_batches_tracked",))
    if problems:
        depth = getattr(model, "depth", "?")
        raise CheckpointError(f"{path}: does not fit a ResNet-{depth} trunk: " + "; ".join(problems))
    # strict=False only because `model` may have non-trunk parameters (the HMR head); the trunk
    # keys were checked above.
    model.load_state_dict(state, strict=False)
