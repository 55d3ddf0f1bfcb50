"""The fitting fast path (BodyModel.keypoints_multiview): float64 gradients, and the same values
on every device and dtype as the full forward."""
import pytest
import torch

from mvspin.body import BodyModel
from mvspin.geometry import axis_angle_to_matrix
from tests.conftest import tol


@pytest.fixture(scope="module")
def body64() -> BodyModel:
    return BodyModel.free("low", dtype=torch.float64)


def test_keypoints_multiview_gradcheck(body64):
    # One bundle, two views, the 17 COCO keypoints (joints and vertex-defined points): gradients
    # with respect to the shared pose and betas and the per-view roots match finite differences.
    g = torch.Generator().manual_seed(0)
    pose = (0.3 * torch.randn(1, 69, generator=g, dtype=torch.float64)).requires_grad_(True)
    betas = torch.randn(1, 10, generator=g, dtype=torch.float64).requires_grad_(True)
    orient = (0.5 * torch.randn(1, 2, 3, generator=g, dtype=torch.float64)).requires_grad_(True)
    transl = torch.randn(1, 2, 3, generator=g, dtype=torch.float64).requires_grad_(True)

    def keypoints(pose, betas, orient, transl):
        return body64.keypoints_multiview("coco17", pose, betas, orient, transl)

    # fast_mode: checks random projections of the Jacobian (one backward pass, not one per output)
    assert torch.autograd.gradcheck(keypoints, (pose, betas, orient, transl), atol=1e-7, fast_mode=True)


def test_keypoints_multiview_matches_full_forward_on_every_device(device, dtype):
    body = BodyModel.free("low", dtype=dtype, device=device)
    g = torch.Generator().manual_seed(1)
    b, v = 2, 3
    pose = (0.3 * torch.randn(b, 69, generator=g)).to(device, dtype)
    betas = torch.randn(b, 10, generator=g).to(device, dtype)
    orient = axis_angle_to_matrix(0.5 * torch.randn(b, v, 3, generator=g)).to(device, dtype)
    transl = torch.randn(b, v, 3, generator=g).to(device, dtype)
    fast = body.keypoints_multiview("coco17", pose, betas, orient, transl)
    assert fast.shape == (b, v, 17, 3) and fast.dtype == dtype and fast.device.type == device
    full = body(body_pose=pose.repeat_interleave(v, 0), betas=betas.repeat_interleave(v, 0),
                global_orient=orient.reshape(b * v, 3, 3), transl=transl.reshape(b * v, 3), keypoints="coco17")
    # metres; float32 keeps ~1e-6 m at body scale
    torch.testing.assert_close(fast.reshape(b * v, 17, 3), full.keypoints, atol=100 * tol(dtype), rtol=0)
