"""Robust reprojection terms: values, weights, gradients, undefined errors."""
import pytest
import torch

from mvspin.fitting import gmof, reprojection_energy, reprojection_error


def test_gmof_values_and_saturation():
    r = torch.tensor([0.0, 1.0, 100.0, 1e6])
    out = gmof(r, sigma=100.0)
    torch.testing.assert_close(out[:3], torch.tensor([0.0, 1e4 / (1e4 + 1.0), 5000.0]))
    assert 9999.0 < float(out[3]) <= 1e4  # bounded by sigma^2: a wrong detection costs at most that
    with pytest.raises(ValueError, match="sigma"):
        gmof(r, 0.0)


def test_reprojection_energy_sums_weighted_coordinates():
    proj = torch.tensor([[[3.0, 4.0], [0.0, 0.0], [10.0, 0.0]]])
    target = torch.zeros(1, 3, 2)
    w = torch.tensor([[1.0, 1.0, 0.0]])
    expected = gmof(torch.tensor(3.0), 100.0) + gmof(torch.tensor(4.0), 100.0)
    torch.testing.assert_close(reprojection_energy(proj, target, w, 100.0), expected.reshape(1))
    # a zero-weight keypoint with garbage coordinates gets no gradient
    p = proj.clone().requires_grad_()
    reprojection_energy(p, target, w, 100.0).sum().backward()
    assert torch.all(p.grad[0, 2] == 0) and torch.all(p.grad[0, 0] != 0)


def test_reprojection_error_means_and_inf_when_undefined():
    proj = torch.tensor([[[3.0, 4.0], [6.0, 8.0]], [[1.0, 1.0], [2.0, 2.0]]])
    target = torch.zeros(2, 2, 2)
    w = torch.tensor([[1.0, 3.0], [0.0, 0.0]])
    err = reprojection_error(proj, target, w)
    assert float(err[0]) == pytest.approx((5.0 + 3 * 10.0) / 4)
    assert torch.isinf(err[1])


def test_shape_guards():
    with pytest.raises(ValueError, match=r"\(\.\.\., K, 2\)"):
        reprojection_energy(torch.zeros(2, 3), torch.zeros(2, 3), torch.zeros(2), 100.0)
    with pytest.raises(ValueError, match="weights"):
        reprojection_error(torch.zeros(1, 3, 2), torch.zeros(1, 3, 2), torch.zeros(1, 4))
