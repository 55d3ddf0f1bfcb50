"""The library's user-facing errors and its one shape check.

Every error that means "the input is wrong" (a missing or corrupt file, a config value out of
range, an array of the wrong shape, a fit that cannot be done) derives from :class:`MvspinError`.
The command line prints those as one line naming the file or option; anything else (a
``KeyError`` or ``TypeError`` inside the library) is a programming error and keeps its
traceback. The concrete classes also derive from the matching built-in (``ValueError``,
``FileNotFoundError``, ...) so ``except ValueError`` in user code keeps working.
"""
from __future__ import annotations

from typing import Any, Mapping, Optional, Sequence, Union

__all__ = ["MvspinError", "ShapeError", "FitError", "check_shape"]

Dim = Union[int, str, None]


class MvspinError(Exception):
    """Base class of every user-facing mvspin error; the message is one line."""


class ShapeError(MvspinError, ValueError):
    """An array or tensor does not have the documented shape; the message names it, the
    expected and the actual shape."""


class FitError(MvspinError, FloatingPointError):
    """A fit cannot continue (for example its energy became NaN or infinite)."""


def _shape_text(dims: Sequence[Dim]) -> str:
    return "(" + ", ".join("?" if d is None else str(d) for d in dims) + ")"


def check_shape(name: str, x: Any, dims: Sequence[Dim], sizes: Optional[Mapping[str, int]] = None) -> dict[str, int]:
    """Check that ``x`` (a tensor or array) has the shape ``dims``; return the named sizes.

    Args:
        name: what ``x`` is, for the message (``"keypoints"``).
        x: anything with ``.shape`` (``torch.Tensor``, ``numpy.ndarray``).
        dims: one entry per axis: an ``int`` (that size), a name (``"B"``: any size >= 1, the
            same wherever the name recurs), ``None`` (any size) or ``"*"`` as the first entry
            (any number of leading axes).
        sizes: sizes already bound to names (from an earlier check), checked too.

    Returns:
        ``{name: size}`` of the named axes (including ``sizes``).

    Raises:
        ShapeError: naming ``name``, the expected and the actual shape.

    Example:
        >>> import torch
        >>> check_shape("keypoints", torch.zeros(2, 4, 25, 3), ["B", "V", 25, 3])
        {'B': 2, 'V': 4}
        >>> check_shape("R", torch.zeros(5, 3, 3), ["*", 3, 3])
        {}
    """
    bound: dict[str, int] = dict(sizes or {})
    shape = getattr(x, "shape", None)
    if shape is None:
        raise ShapeError(f"{name} must be an array of shape {_shape_text(dims)}, got {type(x).__name__}")
    shape = tuple(int(s) for s in shape)
    want = list(dims)
    lead = bool(want) and want[0] == "*"
    if lead:
        want = want[1:]
    expected = ("(..., " + _shape_text(want)[1:]) if lead else _shape_text(want)
    ok = len(shape) >= len(want) if lead else len(shape) == len(want)
    if ok:
        tail = shape[len(shape) - len(want):]
        for d, s in zip(want, tail):
            if d is None:
                continue
            if isinstance(d, int):
                ok = ok and s == d
            elif s < 1 or bound.setdefault(d, s) != s:
                ok = False
    if not ok:
        names = {k: v for k, v in bound.items() if sizes and k in sizes}
        known = f" with {', '.join(f'{k}={v}' for k, v in names.items())}" if names else ""
        raise ShapeError(f"{name} must have shape {expected}{known}, got {shape}")
    return bound


class DetectionError(MvspinError, RuntimeError):
    """2D keypoint detection cannot run or cannot finish (a model file that is not a pose model,
    an input with no frames); the message names the file."""


class ModelFilesError(DetectionError, FileNotFoundError):
    """A detector's model files are missing or are not the expected files; the message names the
    folder and the command that installs them (``mvspin detect install-model``)."""
