"""What a fit hands over: axis-angle at the file boundary, a clear error on NaN, public pieces."""
import numpy as np
import pytest
import torch

import mvspin.fitting
from mvspin.errors import FitError, MvspinError
from mvspin.fitting import MVSMPLify, MVSMPLifyConfig, PerViewEstimate, SMPLify, SMPLifyConfig
from mvspin.geometry import axis_angle_to_matrix, crop_camera_rotation

FAST = dict(stage1_iterations=5, stage2_iterations=5)


def test_numpy_is_axis_angle_under_plain_names(body, capture):
    est = capture.estimate
    r = MVSMPLify(body, MVSMPLifyConfig(mode="calibrated", **FAST)).fit(
        capture.keypoints[:2], init=PerViewEstimate(est.rotmat[:2], est.betas[:2], est.cam[:2], est.crop_center[:2]),
        cameras=capture.cameras._replace(K=capture.cameras.K[:2], R=capture.cameras.R[:2], t=capture.cameras.t[:2],
                                         image_size=capture.cameras.image_size[:2]))
    out = r.numpy()
    assert out["body_pose"].shape == (2, 69) and out["body_pose_rotmat"].shape == (2, 23, 3, 3)
    assert out["global_orient"].shape == (2, 4, 3) and out["global_orient_rotmat"].shape == (2, 4, 3, 3)
    assert out["world_orient"].shape == (2, 3) and out["world_orient_rotmat"].shape == (2, 3, 3)
    # the axis-angle and the matrices are the same rotations
    back = axis_angle_to_matrix(torch.from_numpy(out["body_pose"]).view(2, 23, 3))
    np.testing.assert_allclose(back.numpy(), out["body_pose_rotmat"], atol=1e-5)
    np.testing.assert_allclose(axis_angle_to_matrix(torch.from_numpy(out["world_orient"])).numpy(),
                               out["world_orient_rotmat"], atol=1e-5)
    assert "body_pose_aa" not in out and out["iterations"].tolist() == [5, 5]


def test_nan_energy_raises_fit_error(body, capture):
    est = capture.estimate
    crop = capture.crop_keypoints[:1, 0].clone()
    crop[..., :2] = 1e30  # finite, but squares overflow float32: the energy becomes NaN
    with pytest.raises(FitError, match="energy became nan at iteration 0 of stage 1") as info:
        SMPLify(body, SMPLifyConfig(**FAST)).fit(crop, est.rotmat[:1, 0], est.betas[:1, 0], est.cam[:1, 0])
    assert isinstance(info.value, MvspinError)


def test_crop_camera_rotation_lives_in_geometry():
    assert mvspin.fitting.crop_camera_rotation is crop_camera_rotation
    K = torch.tensor([[1000.0, 0.0, 500.0], [0.0, 1000.0, 400.0], [0.0, 0.0, 1.0]])
    R = crop_camera_rotation(torch.tensor([900.0, 400.0]), K)
    # the crop camera looks along the ray through the crop centre, x axis horizontal
    ray = torch.tensor([0.4, 0.0, 1.0]) / torch.tensor([0.4, 0.0, 1.0]).norm()
    torch.testing.assert_close(R[2], ray)
    assert abs(float(R[0, 1])) < 1e-7 and float(torch.det(R)) == pytest.approx(1.0)
    with pytest.raises(ValueError, match="center"):
        crop_camera_rotation(torch.zeros(3), K)
