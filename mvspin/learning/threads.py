"""Torch intra-op thread count for a block of work (restored after).

MV-SMPLify's tensors are small (a few thousand numbers per iteration): extra threads only add
synchronisation, and on a loaded CPU they cost far more (measured on the 2-core development
machine under load: 30-46 s for a 4 x 4-view fit of 30 + 30 iterations with 2 threads, 2-2.7 s
with 1). The trainer fits with ``optim.fitting_threads`` and runs the network with the rest.
"""
from __future__ import annotations

import contextlib
from typing import Iterator, Optional

import torch

__all__ = ["torch_threads"]


@contextlib.contextmanager
def torch_threads(n: Optional[int]) -> Iterator[None]:
    """Run the block with ``torch.set_num_threads(n)`` (None or 0: unchanged)."""
    before = torch.get_num_threads()
    if n and n != before:
        torch.set_num_threads(int(n))
    try:
        yield
    finally:
        if torch.get_num_threads() != before:
            torch.set_num_threads(before)
