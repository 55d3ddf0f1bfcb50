"""Robust reprojection terms: values, weights, gradients, undefined errors."""
import pytest
import torch

from mvspin.fitting import gmof, reprojection_energy, reprojection_error, squared_reprojection_energy


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


def test_robust_loss_gradcheck_float64():
    g = torch.Generator().manual_seed(0)
    # residuals across the quadratic and the saturating range of sigma = 3
    r = (torch.randn(7, generator=g, dtype=torch.float64) * 4).requires_grad_()
    assert torch.autograd.gradcheck(lambda x: gmof(x, 3.0), (r,))
    proj = (torch.randn(2, 5, 2, generator=g, dtype=torch.float64) * 10).requires_grad_()
    target = torch.randn(2, 5, 2, generator=g, dtype=torch.float64) * 10
    w = torch.rand(2, 5, generator=g, dtype=torch.float64).requires_grad_()
    assert torch.autograd.gradcheck(lambda p, ww: reprojection_energy(p, target, ww, 5.0), (proj, w))
    assert torch.autograd.gradcheck(lambda p, ww: squared_reprojection_energy(p, target, ww), (proj, w))


def test_squared_energy_values():
    proj = torch.tensor([[[3.0, 4.0], [1.0, 1.0]]])
    out = squared_reprojection_energy(proj, torch.zeros(1, 2, 2), torch.tensor([[2.0, 0.0]]))
    assert float(out) == 50.0  # 2 * (9 + 16); the zero-weight keypoint adds nothing


def test_fused_adam_called_directly_matches_torch_optim_adam():
    # mvspin.fitting.engine._FusedAdam: the fused kernel without the optimiser wrapper, bitwise
    # torch.optim.Adam(fused=True)'s parameters step by step (where this torch has the kernel).
    from mvspin.fitting.engine import _adam, _fused_adam_runs, _FusedAdam

    for dtype in (torch.float32, torch.float64):
        if not _fused_adam_runs(dtype):
            pytest.skip("this torch has no fused Adam kernel on the CPU")
        g = torch.Generator().manual_seed(0)
        start = [torch.randn(4, 3, generator=g, dtype=dtype), torch.randn(7, generator=g, dtype=dtype)]
        ours = [p.clone().requires_grad_(True) for p in start]
        ref = [p.clone().requires_grad_(True) for p in start]
        opt, ref_opt = _adam(ours, 0.01), torch.optim.Adam(ref, lr=0.01, fused=True)
        assert isinstance(opt, _FusedAdam)
        for _ in range(30):
            for params, o in ((ours, opt), (ref, ref_opt)):
                o.zero_grad()
                (params[0].sin().square().sum() + (params[1] ** 3).sum()).backward()
                o.step()
            for a, b in zip(ours, ref):
                assert torch.equal(a, b)
