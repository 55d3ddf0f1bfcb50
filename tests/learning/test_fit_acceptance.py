"""SPIN's fit acceptance: the fitting loss against a transcription of SPIN's formula, the
un-augmented frame, the threshold and the betas rule, and the store that keeps the loss."""
from __future__ import annotations

import math

import h5py
import numpy as np
import pytest
import torch

from mvspin.body import BodyModel
from mvspin.fitting import MVSMPLify, MVSMPLifyConfig
from mvspin.fitting.config import SPIN_IGNORED_POINTS
from mvspin.fitting.result import FitResult
from mvspin.geometry import axis_angle_to_matrix, crop_cam_to_translation
from mvspin.learning.augment import augmented_crop_transform, camera_augmentation_matrix
from mvspin.learning.fit_acceptance import accept_fits, score_fit, spin_fitting_loss, unaugment_residuals
from mvspin.learning.fits_store import FitsStore, FitsStoreError


def _spin_loss(projected: np.ndarray, keypoints_2d: np.ndarray, sigma: float = 100.0) -> np.ndarray:
    """SPIN's ``get_fitting_loss`` + ``.mean(dim=-1)``, transcribed in float64 numpy:
    ``(joints_conf ** 2) * gmof(reprojected - joints_2d, sigma).sum(-1)``, mean over keypoints."""
    joints_2d, joints_conf = keypoints_2d[..., :2], keypoints_2d[..., 2]
    x = projected - joints_2d
    gmof = sigma ** 2 * x ** 2 / (sigma ** 2 + x ** 2)
    return ((joints_conf ** 2) * gmof.sum(-1)).mean(-1)


def _residual_cases(rng, n=5, k=49):
    residual = rng.normal(scale=8.0, size=(n, k, 2))
    residual[:, :5] *= 60.0  # outliers far past sigma: saturate near sigma^2 per axis
    residual[0, 7] = [3.0, 4.0]
    conf = rng.uniform(0.2, 1.0, size=(n, k))
    conf[:, 10:16] = 0.0  # undetected keypoints with large garbage residuals
    residual[:, 10:16] = 1e4
    return residual, conf


def test_loss_equals_spins_formula():
    rng = np.random.default_rng(0)
    residual, conf = _residual_cases(rng)
    target = rng.uniform(0, 224, size=residual.shape)
    keypoints = np.concatenate([target, conf[..., None]], -1)
    ref = _spin_loss(target + residual, keypoints)
    ours = spin_fitting_loss(torch.as_tensor(residual), torch.as_tensor(conf ** 2))
    np.testing.assert_allclose(ours.numpy(), ref, rtol=1e-6)
    assert ours.dtype == torch.float64
    # A hand value: one keypoint at (3, 4) px of confidence 1 among 4: (9e4/10009 + 16e4/10016) / 4.
    one = spin_fitting_loss(torch.tensor([[3.0, 4.0], [0, 0], [0, 0], [1e3, 1e3]], dtype=torch.float64),
                            torch.tensor([1.0, 1.0, 1.0, 0.0], dtype=torch.float64))
    assert float(one) == pytest.approx((9e4 / 10009 + 16e4 / 10016) / 4, rel=1e-12)
    # Model-unplaceable keypoints count in the mean as SPIN's zero-confidence ones.
    part = spin_fitting_loss(torch.as_tensor(residual[:, :40]), torch.as_tensor(conf[:, :40] ** 2), num_keypoints=49)
    conf_cut = conf.copy()
    conf_cut[:, 40:] = 0
    np.testing.assert_allclose(part.numpy(), _spin_loss(target + residual, np.concatenate([target, conf_cut[..., None]], -1)),
                               rtol=1e-6)
    with pytest.raises(ValueError):
        spin_fitting_loss(torch.as_tensor(residual), torch.as_tensor(conf), num_keypoints=10)


def test_residuals_return_to_the_unaugmented_crop():
    rng = np.random.default_rng(1)
    center, scale = np.array([310.0, 190.0]), 1.1
    b, v = 3, 2
    r_un = rng.normal(scale=5.0, size=(b, v, 7, 2))
    M = np.zeros((b, v, 3, 3))
    f = np.zeros((b, v))
    r_aug = np.zeros_like(r_un)
    for i, flip in enumerate([False, True, True]):
        for j in range(v):
            rot, f[i, j] = rng.uniform(-20, 20), rng.uniform(0.75, 1.25)
            A = augmented_crop_transform(center, scale, rot, f[i, j], flip, 224)
            A0 = augmented_crop_transform(center, scale, 0.0, 1.0, False, 224)
            # A crop offset d (un-augmented) becomes lin(A A0^-1) d in the augmented crop.
            lin = (A @ np.linalg.inv(A0))[:2, :2]
            r_aug[i, j] = r_un[i, j] @ lin.T
            M[i, j] = camera_augmentation_matrix(rot, flip)
    back = unaugment_residuals(torch.as_tensor(r_aug), torch.as_tensor(M), torch.as_tensor(f))
    np.testing.assert_allclose(back.numpy(), r_un, atol=1e-9)


def _crop_fit(body, b=2, v=3, seed=0):
    g = torch.Generator().manual_seed(seed)
    orient = axis_angle_to_matrix(torch.tensor([math.pi, 0.0, 0.0]) + 0.3 * torch.randn(b, v, 3, generator=g))
    cam = torch.tensor([0.9, 0.0, 0.05]).expand(b, v, 3).clone()
    return FitResult(mode="per_view", body_model=body.name, keypoint_set="spin49",
                     body_pose=axis_angle_to_matrix(0.2 * torch.randn(b, 23, 3, generator=g)),
                     betas=0.3 * torch.randn(b, 10, generator=g), global_orient=orient,
                     transl=crop_cam_to_translation(cam, 5000.0, 224), reprojection_error=torch.zeros(b),
                     view_reprojection_error=torch.zeros(b, v), energy=torch.zeros(b),
                     fitted=torch.tensor([True, False]), view_used=torch.tensor([[True, True, False]] * b),
                     iterations=(0, 0))


def test_score_fit_is_spins_loss_of_the_fit_mean_over_used_views():
    body = BodyModel.free("low")
    # SPIN's ignored joints (OP Neck, OP RHip, OP LHip, Right Hip, Left Hip) get weight 0.
    fitter = MVSMPLify(body, MVSMPLifyConfig(stage2_ignored_points=list(SPIN_IGNORED_POINTS)), "spin49")
    fit = _crop_fit(body)
    uv = fitter.project_crop(fitter.posed_keypoints(fit.body_pose, fit.betas, fit.global_orient, fit.transl))
    assert uv.shape[-2] == 49  # spin49 is placed whole: the data index is the identity
    rng = np.random.default_rng(2)
    residual, conf = _residual_cases(rng, n=6)
    residual, conf = torch.as_tensor(residual).view(2, 3, 49, 2).float(), torch.as_tensor(conf).view(2, 3, 49).float()
    keypoints = torch.cat([uv - residual, conf[..., None]], -1)
    scores = score_fit(fitter, keypoints, fit)
    # SPIN zeroes its ign_joints' confidence in the loss: here the fitter's 0-weight keypoints.
    ignored = (fitter.targets.weights == 0).numpy()
    assert ignored.sum() == 5
    kp_spin = keypoints.double().numpy().copy()
    kp_spin[..., ignored, 2] = 0.0
    ref = _spin_loss(uv.double().numpy(), kp_spin)  # (B, V)
    np.testing.assert_allclose(scores.view_loss.numpy(), ref, rtol=1e-5)
    assert scores.loss[0] == pytest.approx(ref[0, :2].mean(), rel=1e-5)  # view 2 unused
    assert math.isinf(float(scores.loss[1])) and math.isinf(float(scores.error_px[1]))  # not fitted
    # The pixel statistic: confidence-weighted mean distance over the weighed keypoints.
    w = conf.double().numpy() * ~ignored
    dist = np.linalg.norm(residual.double().numpy(), axis=-1)
    np.testing.assert_allclose(scores.view_error_px.numpy(), (w * dist).sum(-1) / w.sum(-1), rtol=1e-5)
    # Scored under an augmentation, the residuals are taken back first: a 90-degree turn and a
    # crop scale 1.25 give the loss of the residuals rotated back and scaled by 1.25.
    M = torch.as_tensor(camera_augmentation_matrix(90.0, False)).float().expand(2, 3, 3, 3)
    scale = torch.full((2, 3), 1.25)
    aug = score_fit(fitter, keypoints, fit, camera_augmentation=M, scale_factor=scale)
    back = unaugment_residuals(residual, M, scale)
    np.testing.assert_allclose(aug.view_loss.numpy(), _spin_loss(back.double().numpy(), np.concatenate(
        [np.zeros_like(back.numpy()), kp_spin[..., 2:]], -1)), rtol=1e-5)
    np.testing.assert_allclose(aug.view_error_px.numpy(), 1.25 * scores.view_error_px.numpy(), rtol=1e-5)
    assert not np.allclose(aug.view_loss.numpy(), scores.view_loss.numpy(), rtol=1e-2)  # GMoF is per axis


def test_acceptance_threshold_and_the_betas_rule():
    loss = torch.tensor([50.0, 100.0, 99.999, math.inf, 20.0, 10.0])
    betas = torch.zeros(6, 10)
    betas[:, 0] = torch.tensor([1.0, 0.5, -2.0, 0.0, 3.5, 3.0])
    betas[5, 9] = -3.0  # |beta| == 3 is not extreme (SPIN: > 3)
    valid, target = accept_fits(loss, betas, reject_loss=100.0, max_abs_beta=3.0, extreme_betas="zero")
    assert valid.tolist() == [True, False, True, False, True, True]  # loss < 100, strictly (SPIN)
    assert torch.equal(target[4], torch.zeros(10))  # extreme betas zeroed, the fit still supervises
    assert torch.equal(target[[0, 1, 2, 3, 5]], betas[[0, 1, 2, 3, 5]])
    valid_r, target_r = accept_fits(loss, betas, 100.0, 3.0, extreme_betas="reject")
    assert valid_r.tolist() == [True, False, True, False, False, True] and torch.equal(target_r, betas)
    assert betas[4, 0] == 3.5  # the input is not modified
    with pytest.raises(ValueError):
        accept_fits(loss, betas, extreme_betas="drop")


def _sources():
    return [{"name": "a.h5", "dataset": "synthetic", "split": "train", "num_bundles": 4, "num_views": 2,
             "boxes_sha1": "x"}]


def test_the_store_keeps_the_loss_and_refuses_version_1(tmp_path):
    store = FitsStore.empty(_sources(), num_views=2)
    rng = np.random.default_rng(3)
    pose, orient = rng.normal(size=(4, 23, 3, 3)), rng.normal(size=(4, 2, 3, 3))
    betas = np.zeros((4, 10))
    betas[3, 2] = 4.0
    replaced = store.update(np.arange(4), pose, betas, orient, np.array([40.0, 150.0, 80.0, 60.0]),
                            error_px=np.array([4.0, 14.0, 8.0, 6.0]), step=3)
    assert replaced.all()
    # Equal loss does not replace (SPIN: new < stored); a lower one does, with its pixel error.
    again = store.update(np.array([0, 1]), pose[:2], betas[:2], orient[:2], np.array([40.0, 120.0]),
                         error_px=np.array([1.0, 12.0]), step=4)
    assert again.tolist() == [False, True] and store.error_px[0] == 4.0 and store.error_px[1] == 12.0
    stats = store.statistics(reject_loss=100.0)
    assert stats == pytest.approx({"fitted_share": 1.0, "mean_error": 75.0, "mean_error_px": 7.5, "accepted_share": 0.75})
    assert store.statistics(100.0, max_abs_beta=3.0)["accepted_share"] == 0.5  # extreme_betas="reject"
    path = store.save(tmp_path / "fits.h5")
    assert FitsStore.load(path).equal(store)
    with h5py.File(path, "a") as f:
        f.attrs["version"] = 1
    with pytest.raises(FitsStoreError, match="version 1.*fitting loss.*fit-dataset"):
        FitsStore.load(path)


def test_training_applies_the_threshold_to_the_pose_terms_only(tmp_path):
    import json

    from mvspin.learning.trainer import train
    from tests.learning.train_helpers import tiny_capture, tiny_config

    capture = tiny_capture(tmp_path / "train.h5", num_bundles=2)
    runs = {}
    for name, threshold in (("none", 1e-6), ("all", 1e6)):
        s = train(tiny_config([capture], **{"optim.max_steps": 1, "fits.reject_loss": threshold}), tmp_path / name)
        metrics = json.loads((tmp_path / name / "metrics.jsonl").read_text().splitlines()[-1])
        runs[name] = (metrics, FitsStore.load(s.fits_store))
    none, store = runs["none"]
    assert none["fits/accepted_share"] == 0.0 and none["store/accepted_share"] == 0.0
    assert none["loss/pose"] == 0.0 and none["loss/betas"] == 0.0 and none["loss/keypoints_2d"] > 0.0
    # The rejected fits are still stored (a later fit must beat them), their loss in the metrics.
    assert np.isfinite(store.error).all() and (store.step == 1).all()
    assert none["fits/new_error"] == pytest.approx(float(store.error.mean()), rel=1e-5)
    assert none["store/mean_error"] == pytest.approx(float(store.error.mean()), rel=1e-5)
    assert none["store/mean_error_px"] == pytest.approx(float(store.error_px.mean()), rel=1e-5)
    everything, _ = runs["all"]
    assert everything["fits/accepted_share"] == 1.0 and everything["loss/pose"] > 0.0
    assert everything["loss/keypoints_2d"] == none["loss/keypoints_2d"]  # same network, same step
