import numpy as np
import pytest
import torch
from scipy.spatial.transform import Rotation

from mvspin.geometry import similarity_procrustes
from tests.conftest import tol


def as_tensor(x, device, dtype) -> torch.Tensor:
    return torch.as_tensor(np.asarray(x), dtype=dtype, device=device)


def _similarity_case(seed: int, batch: int = 4, n: int = 20):
    rng = np.random.default_rng(seed)
    source = rng.normal(scale=0.4, size=(batch, n, 3))
    R = Rotation.random(batch, random_state=seed).as_matrix()
    scale = rng.uniform(0.6, 1.8, size=batch)
    t = rng.normal(size=(batch, 3))
    target = scale[:, None, None] * source @ R.transpose(0, 2, 1) + t[:, None, :]
    return source, target, scale, R, t


def test_recovers_known_similarity(device, dtype):
    source, target, scale, R, t = _similarity_case(seed=0)
    target_t = as_tensor(target, device, dtype)
    aligned, s_hat, R_hat, t_hat = similarity_procrustes(as_tensor(source, device, dtype), target_t)
    assert aligned.shape == (4, 20, 3) and s_hat.shape == (4,)
    assert R_hat.shape == (4, 3, 3) and t_hat.shape == (4, 3)
    close = dict(atol=tol(dtype), rtol=0)
    torch.testing.assert_close(s_hat, as_tensor(scale, device, dtype), **close)
    torch.testing.assert_close(R_hat, as_tensor(R, device, dtype), **close)
    torch.testing.assert_close(t_hat, as_tensor(t, device, dtype), **close)
    torch.testing.assert_close(aligned, target_t, atol=10 * tol(dtype), rtol=0)
    torch.testing.assert_close(torch.det(R_hat), torch.ones(4, dtype=dtype, device=device), **close)


def test_mirrored_target_gives_best_proper_rotation(device):
    # The target is a mirror image: the best fit among reflections would be exact, but the result
    # must be a rotation. Reference: scipy's Wahba solver (proper rotations) on the centred sets.
    dtype = torch.float64
    rng = np.random.default_rng(1)
    source = rng.normal(size=(3, 15, 3)) * np.array([0.5, 0.3, 0.1])
    mirror = np.diag([-1.0, 1.0, 1.0])
    target = 1.3 * source @ mirror + rng.normal(scale=0.01, size=source.shape)
    weights = rng.uniform(0.2, 1.0, size=(3, 15))
    _, s_hat, R_hat, t_hat = similarity_procrustes(
        as_tensor(source, device, dtype),
        as_tensor(target, device, dtype),
        as_tensor(weights, device, dtype),
    )
    torch.testing.assert_close(torch.det(R_hat), torch.ones(3, dtype=dtype, device=device))
    for b in range(3):
        w = weights[b] / weights[b].sum()
        x = source[b] - w @ source[b]
        y = target[b] - w @ target[b]
        R_ref = Rotation.align_vectors(y, x, weights=w)[0].as_matrix()
        s_ref = np.sum(w[:, None] * y * (x @ R_ref.T)) / np.sum(w[:, None] * x * x)
        t_ref = w @ target[b] - s_ref * R_ref @ (w @ source[b])
        np.testing.assert_allclose(R_hat[b].cpu().numpy(), R_ref, atol=1e-9)
        np.testing.assert_allclose(s_hat[b].item(), s_ref, atol=1e-9)
        np.testing.assert_allclose(t_hat[b].cpu().numpy(), t_ref, atol=1e-9)


def test_zero_weights_ignore_outliers(device, dtype):
    source, target, scale, R, t = _similarity_case(seed=2, batch=2, n=12)
    target[:, :3] += 5.0  # gross outliers on the first three points
    mask = np.ones((2, 12), dtype=bool)
    mask[:, :3] = False
    _, s_hat, R_hat, t_hat = similarity_procrustes(
        as_tensor(source, device, dtype),
        as_tensor(target, device, dtype),
        torch.as_tensor(mask, device=device),
    )
    close = dict(atol=tol(dtype), rtol=0)
    torch.testing.assert_close(s_hat, as_tensor(scale, device, dtype), **close)
    torch.testing.assert_close(R_hat, as_tensor(R, device, dtype), **close)
    torch.testing.assert_close(t_hat, as_tensor(t, device, dtype), **close)


def test_leading_batch_dims_and_degenerate_source():
    source, target, scale, _, _ = _similarity_case(seed=3, batch=6, n=10)
    source_t = torch.tensor(source).reshape(2, 3, 10, 3)
    s_hat = similarity_procrustes(source_t, torch.tensor(target).reshape(2, 3, 10, 3))[1]
    torch.testing.assert_close(s_hat, torch.tensor(scale).reshape(2, 3))

    # All source points at one place: no rotation is defined, scale 0, aligned = target centroid.
    collapsed = torch.ones(1, 5, 3, dtype=torch.float64)
    aligned, s_hat, R_hat, _ = similarity_procrustes(collapsed, torch.tensor(target[:1, :5]))
    assert torch.isfinite(aligned).all() and torch.isfinite(R_hat).all()
    assert s_hat.item() == 0.0
    torch.testing.assert_close(aligned[0], torch.tensor(target[0, :5]).mean(dim=0).expand(5, 3))


def test_gradcheck(device):
    rng = np.random.default_rng(4)
    source = torch.tensor(rng.normal(size=(2, 6, 3)), device=device, requires_grad=True)
    target = torch.tensor(rng.normal(size=(2, 6, 3)), device=device, requires_grad=True)
    weights = torch.tensor(rng.uniform(0.5, 1.5, size=(2, 6)), device=device, requires_grad=True)
    assert torch.autograd.gradcheck(similarity_procrustes, (source, target))
    assert torch.autograd.gradcheck(similarity_procrustes, (source, target, weights))


def test_shape_errors():
    x = torch.zeros(2, 5, 3)
    with pytest.raises(ValueError, match=r"source must have shape \(\.\.\., \?, 3\), got \(2, 5, 2\)"):
        similarity_procrustes(torch.zeros(2, 5, 2), x)
    expected = r"target \(source's shape\) must have shape \(2, 5, 3\), got \(2, 4, 3\)"
    with pytest.raises(ValueError, match=expected):
        similarity_procrustes(x, torch.zeros(2, 4, 3))
    with pytest.raises(ValueError, match=r"weights must have shape \(2, 5\), got \(5,\)"):
        similarity_procrustes(x, x, torch.ones(5))
    with pytest.raises(ValueError, match="non-negative"):
        similarity_procrustes(x, x, -torch.ones(2, 5))
