"""Fits run in SPIN's 224 px crop whatever the network's crop size (mvspin.learning.fit_frame)."""
from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import torch

from mvspin.body import BodyModel
from mvspin.fitting import MVSMPLify, MVSMPLifyConfig, PerViewEstimate
from mvspin.geometry import (
    axis_angle_to_matrix,
    crop_cam_to_translation,
    crop_intrinsics,
    image_to_crop_transform,
    perspective_projection,
    translation_to_crop_cam,
)
from mvspin.learning.augment import normalize_keypoints
from mvspin.learning.fit_frame import FIT_CROP_SIZE, fitting_config, to_fitting_frame

F = 5000.0


def test_the_map_keeps_the_crop_centre_and_normalised_coordinates():
    kp = torch.tensor([[[32.0, 32.0, 1.0], [0.0, 64.0, 0.5], [-0.5, 10.25, 0.0]]])
    out = to_fitting_frame(kp, 64)
    assert FIT_CROP_SIZE == 224
    torch.testing.assert_close(out[0, 0], torch.tensor([112.0, 112.0, 1.0]))  # crop centre -> crop centre
    torch.testing.assert_close(out[0, 1], torch.tensor([0.0, 224.0, 0.5]))
    torch.testing.assert_close(out[..., 2], kp[..., 2])  # confidence untouched
    torch.testing.assert_close(normalize_keypoints(out, 224), normalize_keypoints(kp, 64))
    assert kp[0, 1, 1] == 64.0  # the input is not modified
    # The crop code's box centre lands on S / 2 for any S, so the map of a 64 px crop's keypoints
    # equals cropping the image straight to 224 px.
    center, scale = torch.tensor([300.0, 200.0], dtype=torch.float64), torch.tensor(1.3, dtype=torch.float64)
    pts = torch.tensor([[250.0, 120.0], [300.0, 200.0], [391.0, 333.5]], dtype=torch.float64)
    to64, to224 = image_to_crop_transform(center, scale, 64), image_to_crop_transform(center, scale, 224)
    q64 = pts @ to64[:2, :2].T + to64[:2, 2]
    q224 = pts @ to224[:2, :2].T + to224[:2, 2]
    with_conf = torch.cat([q64, torch.ones(3, 1, dtype=torch.float64)], -1)
    torch.testing.assert_close(to_fitting_frame(with_conf, 64)[:, :2], q224)
    with pytest.raises(ValueError):
        to_fitting_frame(kp, 0)
    assert fitting_config(MVSMPLifyConfig(crop_size=64, sigma=50.0)).crop_size == 224
    assert fitting_config(MVSMPLifyConfig(crop_size=64, sigma=50.0)).sigma == 50.0


def test_the_crop_camera_is_resolution_independent_up_to_perspective():
    # [s, tx, ty] at S px puts the root at depth 2 f / (S s): points at the root's depth project
    # to the same normalised coordinates for any S; a point dz off it moves by a relative
    # (1 - 64/224) |dz| / (tz + dz) between 64 and 224 px (tz ~ 45 m at s = 1: ~1% for 0.5 m).
    rng = np.random.default_rng(0)
    cam = torch.tensor([[0.9, 0.05, -0.1], [1.1, -0.2, 0.15], [0.7, 0.0, 0.3]], dtype=torch.float64)
    xy = torch.as_tensor(rng.normal(scale=0.4, size=(3, 20, 2)))
    for dz_scale in (0.0, 0.5):
        dz = torch.as_tensor(rng.uniform(-dz_scale, dz_scale, size=(3, 20, 1)))
        points = torch.cat([xy, dz], -1)
        centred = {}
        for size in (64, 224):
            t = crop_cam_to_translation(cam, F, size)
            uv = perspective_projection(points + t[:, None], crop_intrinsics(F, size, dtype=torch.float64))
            centred[size] = (uv - size / 2) / size
            # The translation differs by size; the camera it comes back to does not.
            torch.testing.assert_close(translation_to_crop_cam(t, F, size), cam)
        tz224 = crop_cam_to_translation(cam, F, 224)[:, None, 2:]
        bound = (1 - 64 / 224) * dz.abs() / (tz224 + dz) * 1.0001
        gap = (centred[224] - centred[64]).abs()
        assert bool((gap <= bound * centred[64].abs() + 1e-9).all())
        if dz_scale == 0.0:
            torch.testing.assert_close(centred[224], centred[64], rtol=1e-9, atol=1e-9)
        else:
            assert 1e-4 < float((gap / centred[64].abs().clamp_min(1e-3)).max()) < 0.011


def _views(body, size, seed=0, v=2):
    """Keypoints (1, V, K, 3) of a known body in ``size`` px crops, and a start near it."""
    g = torch.Generator().manual_seed(seed)
    pose = 0.3 * torch.randn(1, 23, 3, generator=g)
    betas = 0.5 * torch.randn(1, 10, generator=g)
    orient = axis_angle_to_matrix(torch.tensor([[[np.pi, 0.0, 0.0], [np.pi, 0.6, 0.0]]]))[:, :v]
    cam = torch.tensor([[[0.9, 0.02, 0.05], [0.8, -0.03, 0.1]]])[:, :v]
    transl = crop_cam_to_translation(cam, F, size)
    kp3 = body.keypoints_multiview("smpl24", axis_angle_to_matrix(pose), betas, orient, transl)
    uv = perspective_projection(kp3, crop_intrinsics(F, size))
    keypoints = torch.cat([uv, torch.ones(*uv.shape[:-1], 1)], -1)
    start = PerViewEstimate(rotmat=torch.cat([orient.unsqueeze(2), torch.eye(3).expand(1, v, 23, 3, 3)], 2),
                            betas=torch.zeros(1, v, 10), cam=cam * torch.tensor([1.05, 1.0, 1.0]))
    return keypoints, start


def test_a_small_crop_fits_with_spins_224_px_weights():
    body = BodyModel.free("low")
    cfg = MVSMPLifyConfig(stage1_iterations=10, stage2_iterations=30)
    kp64, start = _views(body, 64)
    via_map = MVSMPLify(body, fitting_config(cfg), "smpl24").fit_per_view(to_fitting_frame(kp64, 64), start)
    native = MVSMPLify(body, dataclasses.replace(cfg, crop_size=64), "smpl24").fit_per_view(kp64, start)
    # In 64 px units the priors weigh (224/64)^2 = 12x more: the shape stays nearer the mean.
    assert float(native.betas.norm()) < 0.8 * float(via_map.betas.norm())
    # The fit's crop camera is used as it is: projected into the 64 px crop it lands where the
    # fit's 224 px projection lands, scaled, up to the perspective gap above (2% of the offsets
    # from the crop centre; 0.5 px at 224 px here, against a 6 px reprojection error).
    t64 = crop_cam_to_translation(via_map.cam, F, 64)
    uv64 = perspective_projection(body.keypoints_multiview("smpl24", via_map.body_pose, via_map.betas,
                                                           via_map.global_orient, t64), crop_intrinsics(F, 64))
    uv224 = perspective_projection(body.keypoints_multiview("smpl24", via_map.body_pose, via_map.betas,
                                                            via_map.global_orient, via_map.transl),
                                   crop_intrinsics(F, 224))
    gap = (uv64 * (224 / 64) - uv224).norm(dim=-1)
    assert float(gap.max()) < 0.02 * float((uv224 - 112).norm(dim=-1).max())


def test_fit_dataset_stores_the_same_fits_whatever_the_crop_size(tmp_path):
    from mvspin.learning.dataset_fits import fit_dataset
    from mvspin.learning.fits_store import FitsStore
    from tests.learning.train_helpers import tiny_capture, tiny_config

    capture = tiny_capture(tmp_path / "train.h5", num_bundles=2)
    stores = [FitsStore.load(fit_dataset(tiny_config([capture], **{"data.crop_size": s}), tmp_path / f"{s}.h5").path)
              for s in (32, 64)]
    # The crop keypoints of both sizes map to the same 224 px keypoints, and the mean start's
    # camera is the same: the fits agree, errors included (224 px units for both).
    assert np.isfinite(stores[0].error).all() and (stores[0].error > 0).all()
    np.testing.assert_allclose(stores[0].error, stores[1].error, rtol=1e-3)
    np.testing.assert_allclose(stores[0].body_pose, stores[1].body_pose, atol=1e-4)
    np.testing.assert_allclose(stores[0].betas, stores[1].betas, atol=1e-4)
