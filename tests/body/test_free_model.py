"""The bundled free model through BodyModel: smplx loading, anatomy, fast path, multi-view."""
import numpy as np
import pytest
import torch

from mvspin.body import KEYPOINT_SETS, SMPL_JOINT_NAMES, BodyModel
from mvspin.body.model_files import ASSETS_DIR, FREE_MODEL_FILES
from mvspin.geometry import axis_angle_to_matrix, rot6d_to_matrix

RESOLUTIONS = ("full", "low")
FREE_SETS = [s for s in KEYPOINT_SETS]


@pytest.fixture(scope="module", params=RESOLUTIONS)
def body(request):
    return BodyModel.free(request.param)


@pytest.fixture(scope="module")
def body_low():
    return BodyModel.free("low")


def _random_params(b, v=None, seed=0, dtype=torch.float32):
    g = torch.Generator().manual_seed(seed)
    pose = 0.35 * torch.randn(b, 69, generator=g, dtype=dtype)
    betas = 1.5 * torch.randn(b, 10, generator=g, dtype=dtype)
    shape = (b, 3) if v is None else (b, v, 3)
    orient = torch.randn(*shape, generator=g, dtype=dtype)
    transl = torch.randn(*shape, generator=g, dtype=dtype)
    return pose, betas, orient, transl


def test_loads_through_smplx_with_its_own_landmarks(body):
    import smplx

    assert isinstance(body.smpl, smplx.SMPL)
    assert body.is_free and body.num_vertices == {"free-notoes": 12272, "free-collapse10pc": 1229}.get(body.name, body.num_vertices)
    out = body(betas=torch.zeros(1, 10))
    # smplx appends vertex keypoints after the 24 joints; they must be the free mesh's own ids
    smplx_out = body.smpl(betas=torch.zeros(1, 10), body_pose=torch.zeros(1, 69), global_orient=torch.zeros(1, 3))
    nose = body.point_sources.landmarks["nose"]
    assert torch.allclose(smplx_out.joints[0, 24], out.vertices[0, nose])
    assert set(body.available_keypoint_sets) == set(KEYPOINT_SETS)


def test_raising_left_arm_raises_left_wrist_only(body_low):
    lw, rw = SMPL_JOINT_NAMES.index("left_wrist"), SMPL_JOINT_NAMES.index("right_wrist")
    rest = body_low(betas=torch.zeros(1, 10)).joints[0]
    pose = torch.zeros(1, 23, 3)
    pose[0, SMPL_JOINT_NAMES.index("left_shoulder") - 1, 2] = 1.2  # +z lifts the left arm (+X) up
    raised = body_low(body_pose=pose).joints[0]
    assert raised[lw, 1] - rest[lw, 1] > 0.3
    assert torch.allclose(raised[rw], rest[rw], atol=1e-6)
    assert rest[lw, 0] > 0.5 and rest[rw, 0] < -0.5  # left is +X


@pytest.mark.parametrize("k", [0])
def test_beta0_increases_stature_monotonically(body, k):
    betas = torch.zeros(9, 10)
    betas[:, k] = torch.linspace(-2, 2, 9)
    verts = body(betas=betas).vertices
    stature = verts[..., 1].amax(1) - verts[..., 1].amin(1)
    assert (stature.diff() > 0).all()
    assert 1.5 < stature[4] < 1.9 and stature[-1] - stature[0] > 0.2


def test_regressor_reproduces_reference_rest_joints(body):
    path = ASSETS_DIR / FREE_MODEL_FILES["full" if body.num_vertices > 5000 else "low"]
    with np.load(path) as z:
        ref_betas, ref_joints = torch.as_tensor(z["reference_betas"]), z["reference_joints"]
    joints = body(betas=ref_betas).joints.numpy()
    err = np.linalg.norm(joints - ref_joints, axis=-1)
    assert err.mean() < 0.012 and err.max() < 0.04, (err.mean(), err.max())


@pytest.mark.parametrize("set_name", FREE_SETS)
def test_fast_path_equals_full_forward(body, set_name):
    pose, betas, orient, transl = _random_params(6, seed=1)
    full = body(pose, betas, orient, transl, keypoints=set_name)
    fast = body.keypoints(set_name, pose, betas, orient, transl)
    assert fast.shape == (6, len(KEYPOINT_SETS[set_name]), 3)
    assert (fast - full.keypoints).abs().max() < 1e-5


def test_one_body_many_views_equals_per_view_full_forward(body):
    b, v = 3, 4
    pose, betas, orient, transl = _random_params(b, v, seed=2)
    mv = body.keypoints_multiview("spin49", axis_angle_to_matrix(pose.reshape(b, 23, 3)), betas,
                                  axis_angle_to_matrix(orient), transl)
    full = body(pose.repeat_interleave(v, 0), betas.repeat_interleave(v, 0), orient.reshape(-1, 3),
                transl.reshape(-1, 3), keypoints="spin49").keypoints.reshape(b, v, 49, 3)
    assert (mv - full).abs().max() < 1e-5


def test_fast_path_gradients_match_full_forward(body_low):
    pose, betas, orient, transl = _random_params(2, seed=3, dtype=torch.float32)
    grads = []
    for fast in (False, True):
        p = pose.clone().requires_grad_(True)
        kp = (body_low.keypoints("coco17", p, betas, orient, transl) if fast
              else body_low(p, betas, orient, transl, keypoints="coco17").keypoints)
        kp.square().sum().backward()
        grads.append(p.grad)
    assert torch.allclose(grads[0], grads[1], atol=1e-4)


def test_mean_params_decode_to_upright_rotations(body_low):
    rots = rot6d_to_matrix(torch.as_tensor(body_low.mean_params["pose"]).reshape(24, 6))
    eye = torch.eye(3).expand(24, 3, 3)
    assert torch.allclose(rots.transpose(1, 2) @ rots, eye, atol=1e-5)
    assert torch.allclose(torch.linalg.det(rots), torch.ones(24), atol=1e-5)
    # root: SMPL's +Y (up) maps to the camera's -Y (up in an OpenCV image)
    assert torch.allclose(rots[0] @ torch.tensor([0.0, 1.0, 0.0]), torch.tensor([0.0, -1.0, 0.0]), atol=1e-5)


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"body_pose": torch.zeros(2, 70)}, r"body_pose must be \(B, 23, 3, 3\)"),
        ({"global_orient": torch.zeros(2, 4)}, r"global_orient must be \(B, 3, 3\)"),
        ({"body_pose": torch.zeros(2, 69), "betas": torch.zeros(2, 7)}, r"betas must have shape \(B, 10\) with B=2"),
        ({"body_pose": torch.zeros(2, 69), "transl": torch.zeros(3, 3)}, "batch sizes disagree"),
    ],
)
def test_wrong_shapes_raise_value_error(body_low, kwargs, match):
    with pytest.raises(ValueError, match=match):
        body_low(**kwargs)


def test_multiview_shape_errors(body_low):
    with pytest.raises(ValueError, match=r"keypoints_multiview: transl must have shape \(B, V, 3\), got \(2, 3\)"):
        body_low.keypoints_multiview("coco17", torch.zeros(2, 69), torch.zeros(2, 10), torch.zeros(2, 4, 3), torch.zeros(2, 3))


def test_unknown_set_lists_known_sets(body_low):
    with pytest.raises(KeyError, match="known sets: smpl24"):
        body_low.keypoint_map("body_42")


def test_three_axis_angle_orientations_are_not_a_matrix(body_low):
    """(3, 3) global_orient is three axis-angle vectors, (3, 3, 3) three matrices."""
    orient = torch.tensor([[0.3, 0.0, 0.0], [0.0, 0.5, 0.0], [0.0, 0.0, 0.7]])
    by_aa = body_low(global_orient=orient).joints
    by_mat = body_low(global_orient=axis_angle_to_matrix(orient)).joints
    assert by_aa.shape == (3, 24, 3) and torch.allclose(by_aa, by_mat, atol=1e-6)
    mv_aa = body_low.keypoints_multiview("coco17", torch.zeros(1, 69), torch.zeros(1, 10), orient[None], torch.zeros(1, 3, 3))
    mv_mat = body_low.keypoints_multiview("coco17", torch.zeros(1, 69), torch.zeros(1, 10),
                                          axis_angle_to_matrix(orient)[None], torch.zeros(1, 3, 3))
    assert torch.allclose(mv_aa, mv_mat, atol=1e-6)
