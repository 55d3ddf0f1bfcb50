"""Body measurements of a shape in the rest pose (what a fitted shape is checked against).

The rest (T-)pose of SMPL-layout models stands along +Y facing +Z, so a measurement is an extent
of the rest vertices along one of those axes.
"""
from __future__ import annotations

import torch
from torch import Tensor

from mvspin.body.model import BodyModel

__all__ = ["CHEST_JOINT", "CHEST_BAND_M", "rest_measurements"]

CHEST_JOINT = 9
"""SMPL's spine3 (the chest joint): the chest depth is measured at its rest height."""
CHEST_BAND_M = 0.03
"""Half height (metres) of the band of vertices around the chest joint whose depth is taken."""


def rest_measurements(body: BodyModel, betas: Tensor) -> tuple[Tensor, Tensor]:
    """Standing height and chest depth ``(B,)`` each (metres) of shapes ``betas (B, num_betas)``.

    Height: the rest vertices' extent along Y (head top to sole). Chest depth: their extent along
    Z (front to back) within :data:`CHEST_BAND_M` of the chest joint's rest height.

    Args:
        body: a :class:`~mvspin.body.BodyModel`.
        betas: ``(B, num_betas)``.
    """
    with torch.no_grad():
        verts = body(betas=betas).vertices  # (B, N, 3), rest pose
        chest_y = body.rest_joints(betas)[:, CHEST_JOINT, 1]
    y, z = verts[..., 1], verts[..., 2]
    band = (y - chest_y[:, None]).abs() < CHEST_BAND_M
    front = torch.where(band, z, torch.full_like(z, -torch.inf)).amax(1)
    back = torch.where(band, z, torch.full_like(z, torch.inf)).amin(1)
    return y.amax(1) - y.amin(1), front - back
