"""The one place aniposelib is imported: with its dependencies' terminal noise silenced.

aniposelib imports numba (which logs "finding looplift candidates" and similar at import and
compile time) and, for its bundle adjustment, JAX (which warns "Unable to initialize backend
'tpu'" / "An NVIDIA GPU may be present..." while looking for accelerators). mvspin's users see
mvspin's lines only: :func:`aniposelib_modules` sets JAX to the CPU platform unless the user
chose one (``JAX_PLATFORMS``), raises those libraries' loggers to ERROR, ignores their import
warnings, and then imports aniposelib.
"""
from __future__ import annotations

import logging
import os
import warnings
from types import ModuleType
from typing import Any

__all__ = ["aniposelib_modules", "NOISY_LOGGERS"]

NOISY_LOGGERS = ("jax", "jax._src.xla_bridge", "jax._src.compiler", "numba", "numba.core", "absl")
"""Loggers of aniposelib's dependencies raised to ERROR before it is imported."""


def _silence() -> None:
    os.environ.setdefault("JAX_PLATFORMS", "cpu")  # no probing for TPU/GPU backends (and no warning about it)
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")  # XLA's C++ logging
    os.environ.setdefault("NUMBA_DEBUG", "0")
    for name in NOISY_LOGGERS:
        logging.getLogger(name).setLevel(logging.ERROR)
    for module in ("jax", "numba", "aniposelib"):
        warnings.filterwarnings("ignore", module=module)
    warnings.filterwarnings("ignore", message=".*[Ll]ooplift.*")
    warnings.filterwarnings("ignore", message=".*Unable to initialize backend.*")


def aniposelib_modules() -> tuple[Any, Any]:
    """``(aniposelib.boards, aniposelib.cameras)``, imported quietly (see the module docstring)."""
    _silence()
    import aniposelib.boards as boards
    import aniposelib.cameras as cameras

    _silence()  # the imports may have created loggers with their own levels
    modules: tuple[ModuleType, ModuleType] = (boards, cameras)
    return modules
