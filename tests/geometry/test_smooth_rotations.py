"""Savitzky-Golay smoothing of rotation sequences in 6D: jitter goes down, a smooth motion stays,
and a sequence crossing the axis-angle wrap (angle pi) has no jump."""
import numpy as np
import torch

from mvspin.geometry import axis_angle_to_matrix, geodesic_distance, smooth_rotations


def test_jitter_is_removed_and_the_wrap_at_pi_is_crossed_smoothly():
    g = torch.Generator().manual_seed(0)
    angle = torch.linspace(2.6, 3.7, 40, dtype=torch.float64)  # through pi: axis-angle flips there
    truth = axis_angle_to_matrix(torch.stack([torch.zeros(40), torch.zeros(40), angle], 1).double()[:, None]
                                 * torch.tensor([[1.0], [1.0]], dtype=torch.float64)[None])  # (40, 2, 3, 3)
    noise = axis_angle_to_matrix(0.05 * torch.randn(40, 2, 3, generator=g, dtype=torch.float64))
    noisy = truth @ noise
    smoothed = smooth_rotations(noisy, 9)
    assert smoothed.shape == noisy.shape
    np.testing.assert_allclose((smoothed.transpose(-1, -2) @ smoothed).numpy(), np.broadcast_to(np.eye(3), smoothed.shape),
                               atol=1e-10)  # still rotations
    before = float(geodesic_distance(noisy, truth).mean())
    after = float(geodesic_distance(smoothed, truth).mean())
    assert after < 0.7 * before  # SG(9, 2) keeps ~35% of white noise variance at the centre
    steps = geodesic_distance(smoothed[1:], smoothed[:-1])
    assert float(steps.max()) < 0.1  # no jump where the angle passes pi
    assert torch.equal(smooth_rotations(noisy[:3], 9), noisy[:3])  # too short for a quadratic fit
