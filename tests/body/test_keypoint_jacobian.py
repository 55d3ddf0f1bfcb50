"""BodyModel.keypoint_jacobian: the closed-form Jacobian the Gauss-Newton sequence refinement
uses equals autograd's, column block by column block (float64, free model without pose blend
shapes, where it is exact)."""
import pytest
import torch

from mvspin.body import BodyModel
from mvspin.geometry import axis_angle_to_matrix


@pytest.fixture(scope="module")
def body64() -> BodyModel:
    return BodyModel.free("low", dtype=torch.float64)


def _sample(b: int, seed: int):
    g = torch.Generator().manual_seed(seed)
    aa = 0.4 * torch.randn(b, 69, generator=g, dtype=torch.float64)
    betas = torch.randn(b, 10, generator=g, dtype=torch.float64)
    root = axis_angle_to_matrix(torch.randn(b, 3, generator=g, dtype=torch.float64))
    transl = torch.randn(b, 3, generator=g, dtype=torch.float64)
    return aa, betas, root, transl


def _per_sample(jac: torch.Tensor, b: int, cols: int) -> torch.Tensor:
    """autograd's (b, K, 3, b * cols) Jacobian of a batch -> (b, K, 3, cols) of each sample."""
    jac = jac.reshape(b, jac.shape[1], 3, b, cols)
    return torch.stack([jac[i, :, :, i] for i in range(b)])


@pytest.mark.parametrize("kset", ["openpose25", "coco17"])  # joints and vertex-defined keypoints
def test_perturbation_jacobian_matches_autograd(body64, kset):
    b = 3
    aa, betas, root, transl = _sample(b, 0)
    body_rot = axis_angle_to_matrix(aa.view(b, 23, 3))
    kp, jac = body64.keypoint_jacobian(kset, body_rot, betas, root, transl, with_betas=True)
    assert torch.allclose(kp, body64.keypoints(kset, body_rot, betas, root, transl), atol=1e-12)

    def perturbed(p: torch.Tensor) -> torch.Tensor:
        d = p.view(b, 25, 3)
        rot = axis_angle_to_matrix(d[:, :24])  # root in the world frame, body joints locally
        return body64.keypoints(kset, body_rot @ rot[:, 1:], betas, rot[:, 0] @ root, transl + d[:, 24])

    ref = _per_sample(torch.autograd.functional.jacobian(perturbed, torch.zeros(b * 75, dtype=torch.float64)), b, 75)
    ref_b = _per_sample(torch.autograd.functional.jacobian(
        lambda x: body64.keypoints(kset, body_rot, x.view(b, 10), root, transl), betas.reshape(-1)), b, 10)
    assert float(ref.abs().max()) > 0.5 and float(ref_b.abs().max()) > 0.05  # not trivially zero
    assert torch.allclose(jac[..., :75], ref, atol=1e-10)
    assert torch.allclose(jac[..., 75:], ref_b, atol=1e-10)


def test_axis_angle_jacobian_matches_autograd(body64):
    b = 2
    aa, betas, root, transl = _sample(b, 1)
    _, jac = body64.keypoint_jacobian("openpose25", aa, betas, root, transl, pose_coordinates="axis_angle")
    ref = _per_sample(torch.autograd.functional.jacobian(
        lambda x: body64.keypoints("openpose25", x.view(b, 69), betas, root, transl), aa.reshape(-1)), b, 69)
    assert torch.allclose(jac[..., 3:72], ref, atol=1e-10)
    with pytest.raises(ValueError, match="axis-angle"):
        body64.keypoint_jacobian("openpose25", axis_angle_to_matrix(aa.view(b, 23, 3)), betas, root, transl,
                                 pose_coordinates="axis_angle")
