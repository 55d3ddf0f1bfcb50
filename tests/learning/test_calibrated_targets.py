"""Calibrated MV-SMPLify in the training loop: image keypoints recovered from augmented crops,
network estimates in the stored camera frames, world fits in the store's frame, accuracy from
exact keypoints, static calibrated fits, and files without cameras refused."""
from __future__ import annotations

import numpy as np
import pytest
import torch
from torch.utils.data import DataLoader

from mvspin.body import BodyModel
from mvspin.config import ConfigError
from mvspin.data.bundle_format import BundleFile
from mvspin.data.synthetic_capture import generate_capture_file
from mvspin.data.synthetic_options import SyntheticOptions
from mvspin.fitting import MVSMPLify, MVSMPLifyConfig
from mvspin.geometry import axis_angle_to_matrix, pa_mpjpe
from mvspin.learning.augment import AugmentConfig
from mvspin.learning.calibrated_targets import (
    fit_calibrated_batch,
    image_keypoints,
    network_start,
    world_start,
)
from mvspin.learning.fits_store import FitsStore, to_augmented
from mvspin.learning.training_dataset import TrainingDataset
from tests.learning.test_training_dataset import write_fabricated
from tests.learning.train_helpers import tiny_config

# Flip every bundle, rotate every view: the hardest case for undoing the augmentation.
FLIP_ROTATE = AugmentConfig(flip_prob=1.0, rotation_zero_prob=0.0)


@pytest.fixture(scope="module")
def body():
    return BodyModel.free("low")


@pytest.fixture(scope="module")
def clean(tmp_path_factory, body):
    """4 bundles of 3 views with exact keypoints (no noise, none dropped), 96 px images."""
    path = tmp_path_factory.mktemp("calibrated") / "clean.h5"
    generate_capture_file(path, 4, seed=3, body=body, options=SyntheticOptions.preset(
        "capture", num_views=3, image_size=(96, 96), focal=150.0, background="plain", noise_px=0.0, drop_rate=0.0))
    return path


def _batch(path, augment, size=4):
    ds = TrainingDataset([path], crop_size=32, augment=augment, seed=2)
    return ds, next(iter(DataLoader(ds, batch_size=size)))


def _records(path, batch):
    bf = BundleFile(path)
    return [bf.read_bundle(int(i)) for i in batch["bundle_index"]]


def test_image_keypoints_recovered_from_augmented_items(clean):
    for augment in (FLIP_ROTATE, AugmentConfig(flip_prob=0.0, rotation_zero_prob=0.0), None):
        ds, batch = _batch(clean, augment)
        if augment is FLIP_ROTATE:
            assert batch["flip"].all() and (batch["rotation_deg"] != 0).all()
        kp = image_keypoints(batch["keypoints_2d"], batch["crop_transform"], batch["flip"], ds.keypoint_set)
        stored = np.stack([r["keypoints_2d"] for r in _records(clean, batch)])
        assert kp.shape == stored.shape
        np.testing.assert_allclose(kp.numpy(), stored, atol=1e-3, rtol=0)
    # The swap matters: without undoing it the flipped keypoints land on the other side.
    ds, batch = _batch(clean, FLIP_ROTATE)
    wrong = image_keypoints(batch["keypoints_2d"], batch["crop_transform"], torch.zeros(4, dtype=torch.bool),
                            ds.keypoint_set)
    assert np.abs(wrong.numpy() - stored).max() > 5.0


def test_network_start_is_the_stored_camera_frame(clean):
    """Ground truth as the dataset gives it (augmented frames) -> R_v @ world orientation and the
    un-mirrored pose; the views then agree exactly, mean-parameter estimates do not."""
    _, batch = _batch(clean, FLIP_ROTATE)
    b, v = batch["flip"].shape[0], batch["camera_R"].shape[1]
    rotmat = torch.cat([batch["smpl_global_orient"].unsqueeze(2),
                        batch["smpl_body_pose"].unsqueeze(1).expand(b, v, 23, 3, 3)], dim=2)
    start = network_start(rotmat, batch["smpl_betas"].unsqueeze(1).expand(b, v, 10), batch["camera_augmentation"],
                          batch["flip"])
    recs = _records(clean, batch)
    world = axis_angle_to_matrix(torch.tensor(np.stack([r["smpl_global_orient"] for r in recs])).float())
    pose = axis_angle_to_matrix(torch.tensor(np.stack([r["smpl_body_pose"] for r in recs])).float().view(b, 23, 3))
    torch.testing.assert_close(start.rotmat[:, :, 0], batch["camera_R"] @ world[:, None], atol=1e-5, rtol=0)
    torch.testing.assert_close(start.rotmat[:, :, 1:], pose[:, None].expand(b, v, 23, 3, 3), atol=1e-5, rtol=0)
    seen = torch.ones(b, v)
    est = world_start(start, batch["camera_R"], seen, 1.0)
    assert est.valid.all()
    torch.testing.assert_close(est.global_orient, world, atol=1e-5, rtol=0)
    torch.testing.assert_close(est.body_pose, pose, atol=1e-5, rtol=0)
    facing = torch.diag(torch.tensor([1.0, -1.0, -1.0])).expand(b, v, 24, 3, 3)  # the same in every camera
    same = network_start(facing, torch.zeros(b, v, 10), batch["camera_augmentation"], batch["flip"])
    assert not world_start(same, batch["camera_R"], seen, 45.0).valid.any()
    assert world_start(same, batch["camera_R"], seen, 180.0).valid.all()


def test_in_loop_fit_is_in_the_store_frame_and_error_in_crop_pixels(clean, body):
    ds, batch = _batch(clean, FLIP_ROTATE)
    fitter = MVSMPLify(body, MVSMPLifyConfig(mode="calibrated", stage1_iterations=5, stage2_iterations=5,
                                             triangulation_fit_iterations=20), ds.keypoint_set)
    cal = fit_calibrated_batch(fitter, batch, None, 32)
    R = batch["camera_R"]
    torch.testing.assert_close(cal.global_orient, R @ cal.fit.world_orient[:, None], atol=1e-5, rtol=0)
    assert cal.fit.fitted.all() and torch.isfinite(cal.error).all()
    # Error in un-augmented 224 px crop pixels (the per-view mode's unit), from the projection into
    # the augmented 32 px crops: the fit ran at the same 224 px crop scale and A is a similarity,
    # so it equals the fit's own view errors.
    torch.testing.assert_close(cal.view_error, cal.fit.view_reprojection_error, rtol=1e-4, atol=1e-4)
    torch.testing.assert_close(cal.error, cal.view_error.mean(1))
    assert cal.error.max() < 10.0  # 5 + 5 iterations
    # The store ranks by SPIN's fitting loss of the same residuals (mvspin.learning.fit_acceptance).
    assert torch.equal(cal.scores.error_px, cal.error) and bool((cal.scores.loss > 0).all())
    # The step's targets (augmented frame) are the store's entry mapped as the dataset maps
    # ground truth: M_v R_v W F under the flip.
    orient_aug, _ = to_augmented(cal.global_orient, cal.body_pose, batch["camera_augmentation"], batch["flip"])
    mirror = torch.diag(torch.tensor([-1.0, 1.0, 1.0]))
    torch.testing.assert_close(orient_aug, batch["camera_augmentation"] @ R @ cal.fit.world_orient[:, None] @ mirror,
                               atol=1e-5, rtol=0)


def test_fit_from_exact_keypoints_is_close_to_the_ground_truth(clean, body):
    ds, batch = _batch(clean, FLIP_ROTATE)
    gt = torch.from_numpy(np.stack([r["joints_3d"][:, :3] for r in _records(clean, batch)]))
    fitter = MVSMPLify(body, MVSMPLifyConfig(mode="calibrated", stage1_iterations=30, stage2_iterations=30,
                                             triangulation_fit_iterations=30), ds.keypoint_set)
    errors = {}
    for scale in (224, None):  # the 224 px crop scale SMPLify's weights are tuned for / image pixels
        fit = fit_calibrated_batch(fitter, batch, None, 32, fit_crop_size=scale).fit
        joints = body(fit.body_pose, fit.betas, fit.world_orient, fit.world_transl, keypoints="h36m17").keypoints
        errors[scale] = pa_mpjpe(joints.double(), gt)
    # Measured: 16-22 mm at crop scale, 44-53 mm in the 96 px images' pixels.
    assert errors[224].max() < 30.0, errors
    assert errors[224].mean() < 0.6 * errors[None].mean(), errors
    # Started from the ground truth as a network would give it (augmented crop frames): the
    # views agree, the fit starts there and stays close (measured 9-11 mm).
    b, v = batch["camera_R"].shape[:2]
    rotmat = torch.cat([batch["smpl_global_orient"].unsqueeze(2),
                        batch["smpl_body_pose"].unsqueeze(1).expand(b, v, 23, 3, 3)], dim=2)
    start = network_start(rotmat, batch["smpl_betas"].unsqueeze(1).expand(b, v, 10), batch["camera_augmentation"],
                          batch["flip"])
    fit = fit_calibrated_batch(fitter, batch, start, 32, agreement_deg=10.0).fit
    assert fit.iterations_3d == 0  # no triangulation start: every bundle started from the estimate
    joints = body(fit.body_pose, fit.betas, fit.world_orient, fit.world_transl, keypoints="h36m17").keypoints
    assert pa_mpjpe(joints.double(), gt).max() < 15.0


def test_fit_dataset_calibrated_writes_world_consistent_fits(clean, tmp_path):
    from mvspin.learning.dataset_fits import fit_dataset

    config = tiny_config([clean], **{"fits.fitting.mode": "calibrated", "fits.fitting.triangulation_fit_iterations": 10})
    store = FitsStore.load(fit_dataset(config, tmp_path / "fits.h5", batch_size=4).path)
    assert np.isfinite(store.error).all() and (store.error_px < 10.0).all()  # 224 px crop pixels
    assert (store.error < 100.0).all()  # SPIN's fitting loss: every fit accepted
    R = BundleFile(clean).read_field("camera_R").astype(np.float32)
    world = np.swapaxes(R, -1, -2) @ store.global_orient  # R_v^T (R_v W) = W for every view
    np.testing.assert_allclose(world, np.broadcast_to(world[:, :1], world.shape), atol=1e-5)


def test_calibrated_mode_needs_cameras_in_every_file(clean, tmp_path):
    nocam = write_fabricated(tmp_path / "nocam.h5", num_bundles=2, num_views=3, frame="view0_camera", cameras=False)
    with pytest.raises(ConfigError, match=r"data.files\[1\].*nocam.h5.*no(ne)? camera|has none"):
        tiny_config([clean, nocam], **{"fits.fitting.mode": "calibrated"})
    tiny_config([clean, nocam])  # the per-view mode does not need them


def test_crop_error_projects_through_the_lens_distortion(clean, body):
    """A body's own projections through distorted cameras (cv2, the independent reference), as
    augmented crop keypoints, have zero crop error; ignoring the distortion does not."""
    import cv2

    from mvspin.learning.augment import swap_left_right
    from mvspin.learning.calibrated_targets import crop_scores

    ds, batch = _batch(clean, FLIP_ROTATE)
    fitter = MVSMPLify(body, MVSMPLifyConfig(mode="calibrated", stage1_iterations=2, stage2_iterations=2,
                                             triangulation_fit_iterations=2), ds.keypoint_set)
    fit = fit_calibrated_batch(fitter, batch, None, 32).fit
    joints = body(fit.body_pose, fit.betas, fit.world_orient, fit.world_transl, keypoints=ds.keypoint_set).keypoints
    dist = np.array([-0.25, 0.08, 0.002, -0.001, 0.0])
    b, v = batch["camera_R"].shape[:2]
    kp = np.zeros(tuple(batch["keypoints_2d"].shape))
    for i in range(b):
        for j in range(v):
            uv, _ = cv2.projectPoints(joints[i].double().numpy(), cv2.Rodrigues(batch["camera_R"][i, j].double().numpy())[0],
                                      batch["camera_t"][i, j].double().numpy(), batch["camera_K"][i, j].double().numpy(), dist)
            A = batch["crop_transform"][i, j].double().numpy()
            kp[i, j, :, :2] = uv[:, 0] @ A[:2, :2].T + A[:2, 2]
            kp[i, j, :, 2] = 1.0
        kp[i] = swap_left_right(kp[i], ds.keypoint_set)  # every bundle is flipped
    distorted = {**batch, "keypoints_2d": torch.from_numpy(kp).float(),
                 "camera_dist": torch.from_numpy(np.tile(dist, (b, v, 1))).float()}
    err = crop_scores(fitter, fit, distorted, 32).error_px
    assert err.max() < 2e-3  # 224 px crop pixels
    pinhole = crop_scores(fitter, fit, {**distorted, "camera_dist": torch.zeros(b, v, 5)}, 32).error_px
    assert pinhole.min() > 100 * err.max() and pinhole.min() > 0.2  # measured 0.30-0.47 px
