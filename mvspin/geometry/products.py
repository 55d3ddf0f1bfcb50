"""Tiny matrix products (an inner dimension of 3) that are fast both eagerly and compiled.

Eagerly, ``torch.matmul`` (batched GEMM) is the fastest way to multiply many 3x3 matrices on
CPU (about 3x a broadcast multiply-and-sum, forward and backward). Inside ``torch.compile`` it is
the slowest: inductor calls the library once per product, while a broadcast multiply-and-sum is
fused into the generated kernels around it. A per-view MV-SMPLify stage-2 Levenberg-Marquardt
system (16 bundles x 4 views, one CPU thread) made 36 ``bmm`` calls per evaluation, most of them
such tiny products; with those fused (19 calls remain, products over more than 3), an
evaluation takes 2.9-3.9 ms instead of 4.7-5.0."""
from __future__ import annotations

import importlib

import torch
from torch import Tensor

__all__ = ["is_compiling", "matmul3"]


# torch.compiler.is_compiling from torch 2.3; older torch: torch._dynamo.is_compiling (resolved
# once: matmul3 runs in every eager fitting iteration)
_IS_COMPILING = getattr(torch.compiler, "is_compiling", None) or importlib.import_module("torch._dynamo").is_compiling


def is_compiling() -> bool:
    """Inside ``torch.compile``'s tracing."""
    return bool(_IS_COMPILING())


def matmul3(a: Tensor, b: Tensor) -> Tensor:
    """``a @ b`` for ``a (..., n, 3)`` and ``b (..., 3, k)`` (batch dimensions broadcast):
    ``torch.matmul`` eagerly, a broadcast multiply-and-sum inside ``torch.compile`` (correct for
    any inner size, meant for 3: larger products belong to the library's GEMM)."""
    if _IS_COMPILING():
        return (a[..., :, :, None] * b[..., None, :, :]).sum(-2)
    return torch.matmul(a, b)
