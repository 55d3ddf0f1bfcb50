"""Shared test settings and fixtures.

- A small thread count so the suite behaves on 2-core CI machines.
- ``device`` / ``dtype`` fixtures (kornia's pattern): a test that takes ``device`` runs on the
  CPU always and on CUDA when one is present; one that takes ``dtype`` runs in float32 and
  float64. Use ``tol(dtype)`` for a tolerance that fits the precision.
"""
import os

os.environ.setdefault("EGL_PLATFORM", "surfaceless")  # open3d offscreen rendering on CPU

import pytest
import torch

torch.set_num_threads(min(2, torch.get_num_threads()))

DEVICES = ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])
"""Devices every device-parametrised test runs on: CPU always, CUDA when present."""

DTYPES = [torch.float32, torch.float64]

_TOLERANCE = {torch.float32: 1e-5, torch.float64: 1e-10}


def tol(dtype: torch.dtype) -> float:
    """Absolute tolerance for results of unit magnitude computed in ``dtype``."""
    return _TOLERANCE[dtype]


@pytest.fixture(params=DEVICES)
def device(request) -> str:
    """``"cpu"``, and ``"cuda"`` when present (a string, like torch's ``device=`` arguments take)."""
    return request.param


@pytest.fixture(params=DTYPES, ids=["float32", "float64"])
def dtype(request) -> torch.dtype:
    return request.param
