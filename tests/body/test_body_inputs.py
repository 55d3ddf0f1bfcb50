"""BodyModel refuses NaN parameters and matrices that are not rotations at its public entry
(issue 16, theme 8) and lets the fitting loops skip the check."""
import pytest
import torch

from mvspin.body import BodyModel
from mvspin.errors import ArgumentError, MvspinError


@pytest.fixture(scope="module")
def body():
    return BodyModel.free("low")


def test_nan_and_non_rotations_name_the_argument(body):
    pose = torch.zeros(3, 69)
    pose[2, 7] = float("nan")
    for call in (lambda: body(pose), lambda: body.keypoints("openpose25", pose, torch.zeros(3, 10)),
                 lambda: body.keypoints_multiview("openpose25", pose, torch.zeros(3, 10), torch.zeros(3, 2, 3),
                                                  torch.zeros(3, 2, 3))):
        with pytest.raises(ArgumentError, match=r"body_pose is NaN or infinite in 1 of 3 bodies \(first: index 2\)"):
            call()
    with pytest.raises(ArgumentError, match="betas is NaN"):
        body(betas=torch.full((1, 10), float("inf")))
    scaled = torch.eye(3).expand(2, 23, 3, 3) * 1.5
    with pytest.raises(ArgumentError, match="body_pose: 46 of 46 matrices are not rotations"):
        body(scaled)
    mirror = torch.diag(torch.tensor([1.0, 1.0, -1.0]))[None]
    with pytest.raises(ArgumentError, match=r"global_orient: 1 of 1 matrices are not rotations .*det down to -1"):
        body(global_orient=mirror)
    assert issubclass(ArgumentError, MvspinError) and issubclass(ArgumentError, ValueError)


def test_valid_inputs_pass_and_loops_may_skip_the_check(body):
    rot = torch.linalg.matrix_exp(torch.randn(4, 23, 3, 3).triu(1) - torch.randn(4, 23, 3, 3).triu(1).transpose(-1, -2))
    rot = torch.linalg.qr(rot).Q
    rot = rot * torch.linalg.det(rot)[..., None, None].sign()
    out = body(rot, torch.zeros(4, 10), keypoints="openpose25")
    assert torch.isfinite(out.keypoints).all()
    # a fitting loop (checked at its start) evaluates without the check: NaN flows through, no error
    pose = torch.zeros(1, 69)
    pose[0, 0] = float("nan")
    assert torch.isnan(body.keypoints("openpose25", pose, torch.zeros(1, 10), check=False)).any()
    # variables being optimised (requiring grad) are not checked on every evaluation either
    assert body.keypoints("openpose25", pose.requires_grad_(True), torch.zeros(1, 10)).shape == (1, 25, 3)
