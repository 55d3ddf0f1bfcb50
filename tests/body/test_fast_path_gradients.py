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


def test_joint_only_keypoints_gradcheck(body64):
    # SMPL's 24 joints (no vertex points): the gradient runs through the kinematic chain's
    # closed-form backward alone (mvspin.body.model._KinematicChain), not the keypoints' node.
    g = torch.Generator().manual_seed(1)
    pose = (0.4 * torch.randn(2, 69, generator=g, dtype=torch.float64)).requires_grad_(True)
    betas = torch.randn(2, 10, generator=g, dtype=torch.float64).requires_grad_(True)

    def joints(pose, betas):
        return body64.keypoints("smpl24", pose, betas)

    assert torch.autograd.gradcheck(joints, (pose, betas), atol=1e-7, fast_mode=True)


def test_closed_form_backward_equals_autograd_through_the_plain_code(body64):
    # The same gradients as autograd through the plain tensor code (what runs under torch.func),
    # for keypoints with vertex points (coco17) and joints only (smpl24).
    g = torch.Generator().manual_seed(2)
    pose = 0.5 * torch.randn(3, 69, generator=g, dtype=torch.float64)
    betas = torch.randn(3, 10, generator=g, dtype=torch.float64)
    weights = torch.randn(3, 24, 3, generator=g, dtype=torch.float64)
    for set_name in ("coco17", "smpl24"):
        def energy(p, b):
            kp = body64.keypoints(set_name, p, b)
            return (kp * weights[:, : kp.shape[1]]).sum()

        p, b = pose.clone().requires_grad_(True), betas.clone().requires_grad_(True)
        closed = torch.autograd.grad(energy(p, b), (p, b))
        plain = torch.func.grad(energy, argnums=(0, 1))(pose, betas)  # functorch: the plain code's backward
        for c, q in zip(closed, plain):
            torch.testing.assert_close(c, q, rtol=1e-10, atol=1e-10)
