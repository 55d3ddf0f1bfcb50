"""Opt-in ``torch.compile`` of the fitters' stage energies, with an eager fallback.

An Adam fit is a few hundred small steps, each a few hundred tensor operations on tensors of a
few thousand numbers: eager PyTorch's per-operation overhead, not arithmetic, sets its pace.
Compiling each stage's energy (model keypoints, projection, robust reprojection term, priors;
forward and backward) fuses those operations into a few kernels. Measured on the 2-core x86_64
CPU, one thread, full free model, 16 bundles x 4 views, Adam 100 + 100, the same final energy to
rounding: per-view mode 1.11 -> 0.45 s, calibrated mode 1.23 -> 0.50 s (network start) and
1.27 -> 0.65 s (triangulation start, with stage 0); compiling the model keypoints alone saved 8%.

The price is the compile: about 45 s the first time on a machine, about 4 s from inductor's
on-disk cache afterwards, and again for each new batch shape. So it pays for training (the
in-loop fits keep one batch shape for thousands of steps) and long fits, not for a one-off fit
of a few bundles; ``SMPLifyConfig.compile`` is off by default.
"""
from __future__ import annotations

import warnings
from typing import Any, Callable, Optional

import torch

__all__ = ["MaybeCompiled"]


class MaybeCompiled:
    """``fn`` compiled with ``torch.compile`` on first use with autograd on; ``fn`` itself
    under ``torch.no_grad`` (results, checks: not worth a second compile) and, with a
    ``RuntimeWarning`` naming the cause, for good once compiling fails (no C++ compiler, an
    unsupported platform). Errors of ``fn`` itself are raised as they are.

    With ``no_grad=True`` the compiled ``fn`` runs under ``torch.no_grad`` as well: for
    functions that compute their own derivatives (the Levenberg-Marquardt systems of
    :mod:`mvspin.fitting.lm_models`). A new ``MaybeCompiled`` of another closure of the same
    code reuses dynamo's compiled graphs (they are cached on the code object)."""

    def __init__(self, fn: Callable[..., Any], name: str, no_grad: bool = False) -> None:
        self.fn = fn
        self.name = name
        self.no_grad = no_grad
        self.compiled: Optional[Callable[..., Any]] = None
        self.failed = False

    def __call__(self, *args: Any) -> Any:
        if self.failed or not (self.no_grad or torch.is_grad_enabled()):
            return self.fn(*args)
        if self.compiled is None:
            # Static shapes: one batch shape per fit, and the fastest kernels for it.
            self.compiled = torch.compile(self.fn, dynamic=False)
        try:
            return self.compiled(*args)
        except Exception as err:  # noqa: BLE001  (inductor and dynamo raise many types)
            out = self.fn(*args)  # an error of fn itself is raised here, as without compiling
            self.failed = True
            first = str(err).strip().splitlines()[0] if str(err).strip() else ""
            warnings.warn(f"{self.name}: torch.compile failed ({type(err).__name__}: {first[:200]}); "
                          "continuing without compiling", RuntimeWarning, stacklevel=2)
            return out
