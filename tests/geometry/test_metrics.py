import numpy as np
import pytest
import torch
from scipy.spatial.transform import Rotation

from mvspin.geometry import MPI_INF_3DHP_AUC_THRESHOLDS_MM, auc, mpjpe, pa_mpjpe, pck, root_align


def as_tensor(x, device, dtype) -> torch.Tensor:
    return torch.as_tensor(np.asarray(x), dtype=dtype, device=device)


def _displaced(device, dtype):
    """Two samples of 3 joints: sample 0 displaced by 12, 62 and 200 mm, sample 1 by 52, 0, 0 mm.

    No error lies on the 5 mm threshold grid, where float32 rounding would decide the count."""
    rng = np.random.default_rng(0)
    target = rng.normal(scale=0.3, size=(2, 3, 3))
    offsets = np.array(
        [
            [[0.012, 0.0, 0.0], [0.0, -0.062, 0.0], [0.0, 0.0, 0.2]],
            [[0.0312, 0.0416, 0.0], [0.0, 0.0, 0.0], [0.0, 0.0, 0.0]],  # 3-4-5 triangle: 52 mm
        ]
    )
    return as_tensor(target + offsets, device, dtype), as_tensor(target, device, dtype)


def test_mpjpe_known_errors_in_mm(device, dtype):
    pred, target = _displaced(device, dtype)
    expected = as_tensor([274.0 / 3.0, 52.0 / 3.0], device, dtype)
    torch.testing.assert_close(mpjpe(pred, target), expected)
    mask = torch.tensor([[True, True, False], [True, True, True]], device=device)
    expected = as_tensor([37.0, 52.0 / 3.0], device, dtype)
    torch.testing.assert_close(mpjpe(pred, target, mask), expected)
    # Float masks act as weights: (1 * 12 + 3 * 62) / 4.
    weights = as_tensor([[1.0, 3.0, 0.0], [1.0, 0.0, 0.0]], device, dtype)
    torch.testing.assert_close(mpjpe(pred, target, weights), as_tensor([49.5, 52.0], device, dtype))
    # No valid joint: undefined, NaN.
    assert torch.isnan(mpjpe(pred, target, torch.zeros_like(mask))).all()


def test_pck_known_values(device, dtype):
    pred, target = _displaced(device, dtype)
    torch.testing.assert_close(pck(pred, target), as_tensor([2.0 / 3.0, 1.0], device, dtype))
    expected = as_tensor([1.0 / 3.0, 1.0], device, dtype)
    torch.testing.assert_close(pck(pred, target, threshold_mm=55.0), expected)
    expected = as_tensor([0.0, 2.0 / 3.0], device, dtype)
    torch.testing.assert_close(pck(pred, target, threshold_mm=10.0), expected)
    mask = torch.tensor([[False, True, True], [True, True, True]], device=device)
    torch.testing.assert_close(pck(pred, target, mask=mask), as_tensor([0.5, 1.0], device, dtype))


def test_pck_threshold_is_strict():
    # 0.125 m is exact in binary, so the error is exactly 125 mm: not below a 125 mm threshold.
    pred = torch.tensor([[[0.125, 0.0, 0.0]]], dtype=torch.float64)
    target = torch.zeros(1, 1, 3, dtype=torch.float64)
    assert pck(pred, target, threshold_mm=125.0).item() == 0.0
    assert pck(pred, target, threshold_mm=125.001).item() == 1.0


def test_auc_known_values(device, dtype):
    assert MPI_INF_3DHP_AUC_THRESHOLDS_MM == tuple(range(0, 151, 5))
    pred, target = _displaced(device, dtype)
    # Thresholds 0, 5, ..., 150. Error 12 mm is below 28 of them (15..150), 62 mm below 18
    # (65..150), 200 mm below none; 0 mm below 30 (all but 0), 52 mm below 20 (55..150).
    expected = as_tensor([(28 + 18 + 0) / 93.0, (20 + 30 + 30) / 93.0], device, dtype)
    torch.testing.assert_close(auc(pred, target), expected)
    mask = torch.tensor([[True, True, False], [False, True, True]], device=device)
    expected = as_tensor([46.0 / 62.0, 30.0 / 31.0], device, dtype)
    torch.testing.assert_close(auc(pred, target, mask=mask), expected)
    # Custom thresholds: PCK@50 = 1/3, PCK@100 = 2/3 for sample 0.
    value = auc(pred, target, thresholds_mm=[50.0, 100.0])[0]
    torch.testing.assert_close(value, as_tensor(0.5, device, dtype))


def test_pa_mpjpe(device, dtype):
    rng = np.random.default_rng(1)
    target = rng.normal(scale=0.3, size=(3, 14, 3))
    target_t = as_tensor(target, device, dtype)
    R = Rotation.random(3, random_state=2).as_matrix()
    # A similarity transform of the target is a perfect reconstruction.
    pred = 1.4 * target @ R.transpose(0, 2, 1) + np.array([0.1, -0.5, 3.0])
    assert pa_mpjpe(as_tensor(pred, device, dtype), target_t).abs().max() < 1e-3
    # ... also when masked joints are corrupted: they take no part in the alignment.
    corrupted = pred.copy()
    corrupted[:, :2] += 1.0
    mask = torch.ones(3, 14, dtype=torch.bool, device=device)
    mask[:, :2] = False
    assert pa_mpjpe(as_tensor(corrupted, device, dtype), target_t, mask).abs().max() < 1e-3

    # Noisy prediction: compare with an independent alignment (scipy's Wahba solver + LS scale).
    noisy = pred + rng.normal(scale=0.02, size=pred.shape)
    result = pa_mpjpe(as_tensor(noisy, device, dtype), target_t)
    for b in range(3):
        x = noisy[b] - noisy[b].mean(axis=0)
        y = target[b] - target[b].mean(axis=0)
        R_ref = Rotation.align_vectors(y, x)[0].as_matrix()
        s_ref = np.sum(y * (x @ R_ref.T)) / np.sum(x * x)
        expected = np.linalg.norm(s_ref * x @ R_ref.T - y, axis=-1).mean() * 1000.0
        assert result[b].item() == pytest.approx(expected, rel=1e-4)
    assert (result < mpjpe(as_tensor(noisy, device, dtype), target_t)).all()


def test_leading_batch_dims():
    rng = np.random.default_rng(3)
    target = torch.tensor(rng.normal(size=(2, 4, 17, 3)))
    pred = target + 0.01 * torch.tensor(rng.normal(size=(2, 4, 17, 3)))
    for metric in (mpjpe, pa_mpjpe, pck, auc):
        value = metric(pred, target)
        assert value.shape == (2, 4)
        torch.testing.assert_close(value[1, 2], metric(pred[1, 2:3], target[1, 2:3])[0])


def test_root_align(device):
    joints = torch.tensor([[[1.0, 1.0, 1.0], [3.0, 1.0, 1.0], [2.0, 5.0, 1.0]]], device=device)
    expected = torch.tensor([[[-1.0, 0.0, 0.0], [1.0, 0.0, 0.0], [0.0, 4.0, 0.0]]], device=device)
    torch.testing.assert_close(root_align(joints, [0, 1]), expected)  # mean of the two "hips"
    torch.testing.assert_close(root_align(joints, 2), joints - joints[:, 2:3])
    # Centring both sets makes MPJPE invariant to a global shift.
    shifted = joints + torch.tensor([0.5, -0.2, 2.0], device=device)
    error = mpjpe(root_align(shifted, [0, 1]), root_align(joints, [0, 1]))
    assert error.item() == pytest.approx(0.0, abs=1e-4)


def test_errors():
    x = torch.zeros(2, 5, 3)
    expected = r"target \(pred's shape\) must have shape \(2, 5, 3\), got \(2, 4, 3\)"
    with pytest.raises(ValueError, match=expected):
        mpjpe(x, torch.zeros(2, 4, 3))
    with pytest.raises(ValueError, match=r"pred must have shape \(\.\.\., \?, 3\), got \(2, 5, 2\)"):
        pck(torch.zeros(2, 5, 2), x)
    with pytest.raises(ValueError, match=r"mask must have shape \(2, 5\), got \(5,\)"):
        pa_mpjpe(x, x, torch.ones(5, dtype=torch.bool))
    with pytest.raises(ValueError, match=r"mask must have shape \(2, 5\), got \(2, 5, 1\)"):
        auc(x, x, mask=torch.ones(2, 5, 1))
    with pytest.raises(ValueError, match=r"thresholds_mm must have shape \(T\)"):
        auc(x, x, thresholds_mm=[[5.0]])
    with pytest.raises(ValueError, match="within 5 joints"):
        root_align(x, [0, 7])
    with pytest.raises(ValueError, match=r"joints must have shape \(\.\.\., \?, 3\), got \(5, 2\)"):
        root_align(torch.zeros(5, 2), 0)
