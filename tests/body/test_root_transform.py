"""BodyModel.canonical_keypoints + apply_root: the fitter's split of keypoints_multiview."""
import pytest
import torch

from mvspin.body import BodyModel
from mvspin.geometry import axis_angle_to_matrix


@pytest.fixture(scope="module")
def body():
    return BodyModel.free("low")


def test_canonical_then_root_equals_full_forward(body):
    g = torch.Generator().manual_seed(3)
    b, v = 2, 3
    pose = 0.3 * torch.randn(b, 69, generator=g)
    betas = torch.randn(b, 10, generator=g)
    orient = axis_angle_to_matrix(torch.randn(b, v, 3, generator=g))
    transl = torch.randn(b, v, 3, generator=g)
    kp, pelvis = body.canonical_keypoints("openpose25", pose, betas)
    assert kp.shape == (b, 25, 3) and pelvis.shape == (b, 3)
    torch.testing.assert_close(pelvis, body.rest_joints(betas)[:, 0])
    posed = body.apply_root("openpose25", kp, pelvis, orient, transl)
    assert posed.shape == (b, v, 25, 3)
    for i in range(v):  # one full smplx forward per view
        full = body(body_pose=pose, betas=betas, global_orient=orient[:, i], transl=transl[:, i],
                    keypoints="openpose25").keypoints
        torch.testing.assert_close(posed[:, i], full, atol=1e-5, rtol=0)
    # axis-angle orientations are accepted too
    aa = torch.zeros(b, v, 3)
    torch.testing.assert_close(body.apply_root("openpose25", kp, pelvis, aa, torch.zeros(b, v, 3)),
                               kp[:, None].expand(b, v, 25, 3), atol=1e-6, rtol=0)
    with pytest.raises(ValueError, match=r"openpose25 keypoints must have shape \(B, 25, 3\), got \(2, 10, 3\)"):
        body.apply_root("openpose25", kp[:, :10], pelvis, orient, transl)
