"""The library's user-facing errors (every one of them, here and only here) and its one shape check.

Every error that means "the input is wrong" (a missing or corrupt file, a config value out of
range, an array of the wrong shape, a fit that cannot be done) derives from :class:`MvspinError`.
The command line prints those as one line naming the file or config field; anything else (a
``KeyError`` or ``TypeError`` inside the library) is a programming error and keeps its
traceback. The concrete classes also derive from the matching built-in (``ValueError``,
``FileNotFoundError``, ...) so ``except ValueError`` in user code keeps working.

This module imports nothing from ``mvspin`` (nor ``calibration``): every layer, ``calibration``
included, imports its errors from here. The modules that raise an error re-export it under the
name users import it by today (``from mvspin.config import ConfigError`` keeps working).
Control flow never reads an error's message: it tests the class or an attribute (``field``).
"""
from __future__ import annotations

import importlib
import pickle
from types import ModuleType
from typing import Any, Mapping, Optional, Sequence, Union

__all__ = [
    "MvspinError", "ShapeError", "ArgumentError", "FitError", "MissingExtraError", "check_shape", "import_optional",
    # shared core
    "ConfigError", "IncompleteWriteError", "OutputLocationError",
    # calibration
    "CalibrationError", "CalibrationRefusedError",
    # body
    "BodyModelFilesError", "UnsafePickleError", "KeypointSetUnavailable",
    # fitting
    "RecordingError", "NoFrameFittedError", "CameraMismatchError",
    # data
    "BundleFormatError", "VideoError", "KeypointFileError", "MissingKeypointFileError", "BuildDataError",
    # network, training and evaluation
    "CheckpointError", "TrainingError", "FitsStoreError", "EvaluationDataError",
    # inference
    "InferError", "InputError", "NoPersonError",
    # detection
    "DetectionError", "ModelFilesError",
]

Dim = Union[int, str, None]


class MvspinError(Exception):
    """Base class of every user-facing mvspin error; the message is one line."""


class ShapeError(MvspinError, ValueError):
    """An array or tensor does not have the documented shape; the message names it, the
    expected and the actual shape."""


class ArgumentError(MvspinError, TypeError, ValueError):
    """A public function was called with an argument of the wrong type or an impossible value
    (a list where an array is needed, a dict for a config, ``fps=0``); the message names the
    argument. A ``TypeError`` and a ``ValueError`` so callers catching either still do."""


class FitError(MvspinError, FloatingPointError):
    """A fit cannot continue (for example its energy became NaN or infinite)."""


class MissingExtraError(MvspinError, ImportError):
    """An optional part of mvspin is not installed; the message names the extra to install."""


# --- shared core: configuration (mvspin.config) and file writes (mvspin.atomic) -------------------

class ConfigError(MvspinError, ValueError):
    """A YAML file, an override or a config value does not fit the job's configuration.

    ``field`` is the dotted name of the config field at fault when there is one
    (``"batch_size"``, ``"sequence.smooth_weight"``); the message names it by that name, and the
    command line shows the matching flag instead (``--batch-size``); ``related`` lists other
    fields the message names.

    Example:
        >>> err = ConfigError("batch_size must be >= 1, got 0", field="batch_size")
        >>> err.field, str(err)
        ('batch_size', 'batch_size must be >= 1, got 0')
    """

    def __init__(self, message: str, field: Optional[str] = None, related: Sequence[str] = ()) -> None:
        super().__init__(message)
        self.field = field
        self.related = tuple(related)
        """Other fields the message names (``checkpoint needs videos``: ``("videos",)``)."""


class IncompleteWriteError(MvspinError, OSError):
    """A file did not reach the disk completely (typically: the disk is full); names the file."""


class OutputLocationError(MvspinError, OSError):
    """An output path cannot be written (a file or folder in the way, no permission, a full disk);
    ``field`` names the config field it came from (``"out"``) when there is one."""

    def __init__(self, message: str, field: Optional[str] = None) -> None:
        super().__init__(message)
        self.field = field


# --- calibration ------------------------------------------------------------------------------------

class CalibrationError(MvspinError, ValueError):
    """A calibration file or job is unusable; the message names the file, camera or board."""


class CalibrationRefusedError(CalibrationError):
    """A calibration was computed but is implausible (reprojection error over the threshold,
    focal length or distortion out of range, bundle adjustment not converged, image sets that are
    not synchronised): nothing is written. ``table`` is the per-camera report that shows why;
    ``problems`` the reasons, one line each."""

    def __init__(self, message: str, table: str = "", problems: Optional[list[str]] = None) -> None:
        super().__init__(message)
        self.table = table
        self.problems = list(problems or [])


# --- body -------------------------------------------------------------------------------------------

class BodyModelFilesError(MvspinError, FileNotFoundError):
    """A body-model file is missing or incomplete. The message is one line naming the file."""


class UnsafePickleError(MvspinError, pickle.UnpicklingError):
    """A pickle asked for something other than arrays and chumpy/scipy.sparse containers."""


class KeypointSetUnavailable(MvspinError, KeyError):
    """A keypoint set needs a point the loaded body model cannot provide."""

    def __str__(self) -> str:  # KeyError would print the message with quotes
        return str(self.args[0])


# --- fitting ----------------------------------------------------------------------------------------

class RecordingError(MvspinError, ValueError):
    """A recording cannot be fitted as given (units, cameras that see nothing, no subject)."""


class NoFrameFittedError(RecordingError):
    """No frame of a sequence could be fitted: no camera saw the subject with enough keypoints."""


class CameraMismatchError(MvspinError, ValueError):
    """The cameras cannot describe the keypoints (invalid values, wrong units or convention)."""


# --- data -------------------------------------------------------------------------------------------

class BundleFormatError(MvspinError, ValueError):
    """A bundle file (or one being written) does not follow the bundle schema; names file and field."""


class VideoError(MvspinError, OSError):
    """A video file is missing or cannot be opened or decoded; the message names the file."""


class KeypointFileError(MvspinError, ValueError):
    """A keypoint or box file is unreadable, malformed or missing; the message names the file."""


class MissingKeypointFileError(KeypointFileError, FileNotFoundError):
    """A keypoint or box file (or the one matching an image) does not exist."""


class BuildDataError(MvspinError, ValueError):
    """A dataset build wrote no bundle (every item skipped); ``report`` says what was skipped and why."""

    def __init__(self, message: str, report: Any = None) -> None:
        super().__init__(message)
        self.report = report


# --- network, training and evaluation ---------------------------------------------------------------

class CheckpointError(MvspinError, ValueError):
    """A weight file cannot be read or does not fit the model it is loaded into."""


class TrainingError(MvspinError, RuntimeError):
    """Training cannot start or continue (nothing to resume, a NaN loss, an unsplittable batch)."""


class FitsStoreError(MvspinError, ValueError):
    """A fits store file is unreadable, damaged or belongs to another training set."""


class EvaluationDataError(MvspinError, ValueError):
    """A bundle cannot be evaluated with a protocol (wrong dataset, no samples, no ground truth)."""


# --- inference --------------------------------------------------------------------------------------

class InferError(MvspinError, ValueError):
    """An inference run as a whole cannot go ahead (options, checkpoint, ``views`` inputs)."""


class InputError(MvspinError, ValueError):
    """One inference input cannot be processed (unreadable, no box); the run goes on with the others."""


class NoPersonError(InputError):
    """A keypoint file names nobody usable (a video frame then keeps the previous box)."""


def import_optional(module: str, *, extra: str, purpose: str, package: Optional[str] = None) -> ModuleType:
    """Import ``module`` of an optional part of mvspin (setup.py's ``extras_require``).

    Optional packages are imported here, inside the function that needs them, so the rest of
    mvspin works without them.

    Args:
        module: the module to import (``"torch.utils.tensorboard"``).
        extra: the setup.py extra that installs it (``"train"``).
        purpose: what needs it, for the message (``"training logs"``).
        package: the package's name on PyPI, for the message (default: ``module``'s first part).

    Raises:
        MissingExtraError: one line: ``training logs need tensorboard: pip install 'mvspin[train]'``.

    Example:
        >>> import_optional("json", extra="train", purpose="nothing").__name__
        'json'
    """
    try:
        return importlib.import_module(module)
    except ImportError:
        name = package or module.split(".")[0]
        raise MissingExtraError(f"{purpose} need {name}: pip install 'mvspin[{extra}]'") from None


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
    if not ok:  # the message is built only here: the fitting loops check shapes every iteration
        expected = ("(..., " + _shape_text(want)[1:]) if lead else _shape_text(want)
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
