"""The network start's SO(3) mean across views survives one view 180 degrees off."""
from __future__ import annotations

import math

import torch

from mvspin.fitting.view_estimates import robust_so3_mean, world_estimate_from_views
from mvspin.geometry import axis_angle_to_matrix


def _angle_deg(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    cos = ((a.transpose(-1, -2) @ b).diagonal(dim1=-2, dim2=-1).sum(-1) - 1) / 2
    return torch.rad2deg(torch.arccos(cos.clamp(-1, 1)))


def test_one_view_turned_round_is_left_out_of_the_world_orientation():
    gen = torch.Generator().manual_seed(0)
    b, v = 6, 4
    truth = axis_angle_to_matrix(torch.randn(b, 3, generator=gen))
    # cameras all around; each view's estimate 5-10 degrees off the truth
    R = axis_angle_to_matrix(torch.stack([torch.zeros(v), torch.arange(v) * 2 * math.pi / v, torch.zeros(v)], -1))
    noise = axis_angle_to_matrix(0.12 * torch.randn(b, v, 3, generator=gen))
    view_orient = R[None] @ noise @ truth[:, None]
    # view 2 mistakes the back for the front: turned 180 degrees about the body's vertical axis
    flip = axis_angle_to_matrix(torch.tensor([0.0, math.pi, 0.0]))
    view_orient[:, 2] = view_orient[:, 2] @ flip
    rotmat = torch.eye(3).repeat(b, v, 24, 1, 1)
    rotmat[:, :, 0] = view_orient
    est = world_estimate_from_views(rotmat, torch.zeros(b, v, 10), R)
    err = _angle_deg(est.global_orient, truth)
    assert float(err.max()) < 12.0, err
    # the plain Karcher mean is dragged tens of degrees by the one view
    from mvspin.geometry import so3_mean
    plain = so3_mean(R.transpose(-1, -2)[None] @ view_orient, torch.ones(b, v), dim=1)
    assert float(_angle_deg(plain, truth).min()) > 25.0


def test_agreeing_views_give_the_plain_mean_and_weights_count():
    gen = torch.Generator().manual_seed(1)
    rots = axis_angle_to_matrix(0.2 * torch.randn(3, 5, 3, generator=gen))
    from mvspin.geometry import so3_mean
    w = torch.rand(3, 5, generator=gen) + 0.1
    assert torch.allclose(robust_so3_mean(rots, w), so3_mean(rots, w, dim=1), atol=1e-5)
    # two views that disagree: the heavier one wins, not a rotation half way
    two = torch.stack([torch.eye(3), axis_angle_to_matrix(torch.tensor([math.pi * 0.9, 0.0, 0.0]))])[None]
    out = robust_so3_mean(two, torch.tensor([[1.0, 2.0]]))
    assert float(_angle_deg(out, two[:, 1])) < 1e-3
