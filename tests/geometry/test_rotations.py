import math

import numpy as np
import pytest
import torch
from scipy.spatial.transform import Rotation

from mvspin.geometry import (
    axis_angle_to_matrix,
    geodesic_distance,
    matrix_to_axis_angle,
    matrix_to_quaternion,
    matrix_to_rot6d,
    rot6d_to_matrix,
    so3_mean,
    so3_right_jacobian,
)
from tests.conftest import tol


def random_rotations(n: int, seed: int) -> np.ndarray:
    return Rotation.random(n, random_state=seed).as_matrix()


def as_tensor(x, device, dtype) -> torch.Tensor:
    return torch.as_tensor(np.asarray(x), dtype=dtype, device=device)


# ---------------------------------------------------------------------------------------------
# 6D representation


def test_rot6d_spin_convention_hand_cases(device, dtype):
    # 90 deg about +z: R = [[0,-1,0],[1,0,0],[0,0,1]]; SPIN's 6 numbers are R[:, :2] row-major.
    x = as_tensor([0.0, -1.0, 1.0, 0.0, 0.0, 0.0], device, dtype)
    expected = as_tensor([[0.0, -1.0, 0.0], [1.0, 0.0, 0.0], [0.0, 0.0, 1.0]], device, dtype)
    torch.testing.assert_close(rot6d_to_matrix(x), expected, atol=1e-7, rtol=0)
    torch.testing.assert_close(matrix_to_rot6d(expected), x, atol=0, rtol=0)

    # Gram-Schmidt by hand: column a1 = (x0, x2, x4) = (3, 0, 4), a2 = (x1, x3, x5) = (5, 2, 0).
    # b1 = (0.6, 0, 0.8); a2 - (b1.a2) b1 = (5, 2, 0) - 3 b1 = (3.2, 2, -2.4), norm sqrt(20);
    # b3 = b1 x b2 = (-1.6, 4, 1.2) / sqrt(20).
    x = as_tensor([3.0, 5.0, 0.0, 2.0, 4.0, 0.0], device, dtype)
    r20 = math.sqrt(20.0)
    b1 = [0.6, 0.0, 0.8]
    b2 = [3.2 / r20, 2.0 / r20, -2.4 / r20]
    b3 = [-1.6 / r20, 4.0 / r20, 1.2 / r20]
    expected = as_tensor(np.stack([b1, b2, b3], axis=1), device, dtype)  # b's are columns
    torch.testing.assert_close(rot6d_to_matrix(x), expected, atol=10 * tol(dtype), rtol=0)


def test_rot6d_round_trip_and_orthonormality(device, dtype):
    R = as_tensor(random_rotations(40, seed=0), device, dtype).reshape(2, 4, 5, 3, 3)
    x6 = matrix_to_rot6d(R)
    assert x6.shape == (2, 4, 5, 6)
    torch.testing.assert_close(rot6d_to_matrix(x6), R, atol=10 * tol(dtype), rtol=0)

    # Arbitrary (network-like) 6D vectors always give proper rotations.
    x = torch.randn(7, 24, 6, generator=torch.Generator().manual_seed(1), dtype=dtype).to(device)
    Rx = rot6d_to_matrix(x)
    eye = torch.eye(3, dtype=dtype, device=device).expand_as(Rx)
    torch.testing.assert_close(Rx @ Rx.transpose(-1, -2), eye, atol=10 * tol(dtype), rtol=0)
    torch.testing.assert_close(torch.det(Rx), torch.ones(7, 24, dtype=dtype, device=device))
    # ... and reading the 6 numbers back yields the same rotation, not the same numbers.
    round_trip = rot6d_to_matrix(matrix_to_rot6d(Rx))
    torch.testing.assert_close(round_trip, Rx, atol=10 * tol(dtype), rtol=0)


def test_rot6d_empty_batch():
    assert rot6d_to_matrix(torch.zeros(0, 6)).shape == (0, 3, 3)
    assert matrix_to_rot6d(torch.zeros(2, 0, 3, 3)).shape == (2, 0, 6)


def test_rot6d_gradcheck(device):
    x = torch.randn(3, 6, dtype=torch.float64, device=device, requires_grad=True)
    assert torch.autograd.gradcheck(rot6d_to_matrix, (x,))


def test_rot6d_shape_errors():
    with pytest.raises(ValueError, match=r"x must have shape \(\.\.\., 6\), got \(4, 9\)"):
        rot6d_to_matrix(torch.zeros(4, 9))
    with pytest.raises(ValueError, match=r"R must have shape \(\.\.\., 3, 3\), got \(4, 3, 2\)"):
        matrix_to_rot6d(torch.zeros(4, 3, 2))


# ---------------------------------------------------------------------------------------------
# axis-angle


def _test_rotvecs() -> np.ndarray:
    rng = np.random.default_rng(2)
    axes = rng.normal(size=(6, 3))
    axes /= np.linalg.norm(axes, axis=1, keepdims=True)
    angles = np.array([0.0, 1e-9, 1e-4, 0.7, 2.5, math.pi - 1e-5])
    generic = Rotation.random(18, random_state=3).as_rotvec()
    return np.concatenate([axes * angles[:, None], generic])  # (24, 3)


def test_matrix_to_quaternion_matches_scipy_and_keeps_small_components():
    """Against scipy (float64, ``w >= 0``); and a float32 matrix whose quaternion has a tiny
    component (a 0.25 rad turn about an axis 0.01 degrees off z: x = 2.2e-5) reads back to 1e-7,
    where the symmetric square-root formulas the .glb writer used read it as 0."""
    R = random_rotations(200, 3)
    expected = Rotation.from_matrix(R).as_quat()[:, [3, 0, 1, 2]]  # scipy: x, y, z, w
    expected *= np.sign(expected[:, :1])
    np.testing.assert_allclose(matrix_to_quaternion(torch.from_numpy(R)).numpy(), expected, atol=1e-12)
    axis = np.array([np.sin(np.radians(0.01)), 0.0, np.cos(np.radians(0.01))])
    rot = Rotation.from_rotvec(0.25 * axis)
    q = matrix_to_quaternion(torch.from_numpy(rot.as_matrix().astype(np.float32)).double()).numpy()
    np.testing.assert_allclose(q, rot.as_quat()[[3, 0, 1, 2]], atol=1e-7)
    assert matrix_to_quaternion(torch.zeros(0, 3, 3)).shape == (0, 4)


def test_axis_angle_to_matrix_matches_scipy(device, dtype):
    rotvecs = _test_rotvecs()
    expected = Rotation.from_rotvec(rotvecs).as_matrix().reshape(4, 6, 3, 3)
    R = axis_angle_to_matrix(as_tensor(rotvecs.reshape(4, 6, 3), device, dtype))
    torch.testing.assert_close(R, as_tensor(expected, device, dtype), atol=10 * tol(dtype), rtol=0)


def test_axis_angle_to_matrix_matches_cv2_rodrigues(device, dtype):
    cv2 = pytest.importorskip("cv2")
    rng = np.random.default_rng(7)
    directions = rng.normal(size=(40, 3))
    directions /= np.linalg.norm(directions, axis=-1, keepdims=True)
    angles = np.concatenate([[0.0, 1e-12, 1e-6, 1e-5, 1e-4, 9.9e-5, 1.01e-4, 1e-3, 0.01],
                             rng.uniform(0.0, math.pi, 28), [math.pi - 1e-6, math.pi, 4.0]])
    rotvecs = directions * angles[:, None]
    expected = np.stack([cv2.Rodrigues(v.reshape(3, 1))[0] for v in rotvecs])
    R = axis_angle_to_matrix(as_tensor(rotvecs.reshape(5, 8, 3), device, dtype))
    torch.testing.assert_close(R.reshape(40, 3, 3), as_tensor(expected, device, dtype),
                               atol=10 * tol(dtype), rtol=0)


def test_axis_angle_to_matrix_gradcheck(device):
    # Generic angles, angles in the Taylor branch (theta^2 < 1e-8), just outside it, and zero.
    rng = np.random.default_rng(8)
    directions = rng.normal(size=(6, 3))
    directions /= np.linalg.norm(directions, axis=-1, keepdims=True)
    for angle in [0.0, 1e-6, 2e-4, 1e-2, 1.3, 3.0]:
        aa = as_tensor(directions * angle, device, torch.float64).requires_grad_(True)
        # eps below the branch threshold keeps gradcheck's finite differences inside one branch.
        assert torch.autograd.gradcheck(axis_angle_to_matrix, (aa,), eps=1e-7, atol=1e-7)


def test_axis_angle_to_matrix_exact_near_zero(device, dtype):
    # At the identity dR/dv_k is the generator [e_k]_x, and the value is I + [v]_x to first order.
    aa = torch.zeros(3, dtype=dtype, device=device, requires_grad=True)
    jac = torch.autograd.functional.jacobian(axis_angle_to_matrix, aa)  # (3, 3, 3)
    generators = torch.tensor([[[0, 0, 0], [0, 0, -1], [0, 1, 0]],
                               [[0, 0, 1], [0, 0, 0], [-1, 0, 0]],
                               [[0, -1, 0], [1, 0, 0], [0, 0, 0]]], dtype=dtype, device=device)
    torch.testing.assert_close(jac.permute(2, 0, 1), generators, atol=0, rtol=0)
    torch.testing.assert_close(axis_angle_to_matrix(aa.detach()), torch.eye(3, dtype=dtype, device=device),
                               atol=0, rtol=0)

    # float32 keeps float64's value and gradient at small angles on either side of the Taylor
    # branch (no 1 - cos cancellation): the Jacobian agrees to float32 rounding.
    v = torch.tensor([0.3, -0.5, 0.8], dtype=torch.float64)
    v = v / v.norm()
    for angle in [1e-5, 9e-5, 1.2e-4, 1e-3, 3e-2]:
        ref = torch.autograd.functional.jacobian(axis_angle_to_matrix, angle * v)
        got = torch.autograd.functional.jacobian(axis_angle_to_matrix, (angle * v).to(device, dtype))
        torch.testing.assert_close(got.double().cpu(), ref, atol=5e-7 if dtype == torch.float32 else 1e-12, rtol=0)


def test_matrix_to_axis_angle_matches_scipy(device):
    dtype = torch.float64
    rotvecs = _test_rotvecs()
    R = as_tensor(Rotation.from_rotvec(rotvecs).as_matrix(), device, dtype)
    aa = matrix_to_axis_angle(R.reshape(2, 12, 3, 3)).reshape(24, 3)
    torch.testing.assert_close(aa, as_tensor(rotvecs, device, dtype), atol=1e-8, rtol=0)

    # At exactly pi the axis sign is arbitrary: compare the rotations, and the angle.
    half_turn = as_tensor(Rotation.from_rotvec([[0.0, math.pi, 0.0]]).as_matrix(), device, dtype)
    aa_pi = matrix_to_axis_angle(half_turn)
    pi = torch.full((1,), math.pi, dtype=dtype, device=device)
    torch.testing.assert_close(aa_pi.norm(dim=-1), pi)
    torch.testing.assert_close(axis_angle_to_matrix(aa_pi), half_turn, atol=1e-12, rtol=0)


@pytest.mark.parametrize("shape", [(0, 3), (2, 0, 3)])
def test_axis_angle_empty_batch(shape):
    R = axis_angle_to_matrix(torch.zeros(shape))
    assert R.shape == shape + (3,)
    assert matrix_to_axis_angle(R).shape == shape


def test_axis_angle_shape_errors():
    with pytest.raises(ValueError, match=r"axis_angle must have shape \(\.\.\., 3\), got \(2, 4\)"):
        axis_angle_to_matrix(torch.zeros(2, 4))
    with pytest.raises(ValueError, match=r"R must have shape \(\.\.\., 3, 3\), got \(9,\)"):
        matrix_to_axis_angle(torch.zeros(9))


# ---------------------------------------------------------------------------------------------
# SO(3) mean


def _noisy_copies(center: np.ndarray, n: int, noise_deg: float, seed: int) -> np.ndarray:
    """n rotations center @ exp(noise), isotropic noise with the given rms angle."""
    rng = np.random.default_rng(seed)
    noise = rng.normal(scale=math.radians(noise_deg) / math.sqrt(3.0), size=(n, 3))
    return center @ Rotation.from_rotvec(noise).as_matrix()


def test_so3_mean_recovers_rotation_from_noisy_copies(device, dtype):
    center = Rotation.from_rotvec([0.3, -1.2, 2.0]).as_matrix()
    samples = _noisy_copies(center, 50, noise_deg=5.0, seed=4)
    mean = so3_mean(as_tensor(samples, device, dtype))
    error = geodesic_distance(mean, as_tensor(center, device, dtype))
    assert math.degrees(error.item()) < 1.5

    # Karcher optimality, checked with scipy's log map: the mean residual vanishes.
    mean_np = mean.double().cpu().numpy()
    residual = Rotation.from_matrix(mean_np.T @ samples).as_rotvec().mean(axis=0)
    assert np.abs(residual).max() < (1e-5 if dtype == torch.float32 else 1e-12)
    # The chordal L2 mean (scipy's Rotation.mean) is close to the geodesic mean for small noise.
    chordal = Rotation.from_matrix(samples).mean().as_matrix()
    gap = np.linalg.norm(Rotation.from_matrix(chordal.T @ mean_np).as_rotvec())
    assert math.degrees(gap) < 0.005


def test_so3_mean_weights(device):
    dtype = torch.float64
    center = Rotation.from_rotvec([-2.0, 0.5, 0.1]).as_matrix()
    inliers = _noisy_copies(center, 12, noise_deg=8.0, seed=5)
    outliers = random_rotations(5, seed=6)
    samples = as_tensor(np.concatenate([inliers, outliers]), device, dtype)
    weights = torch.cat([torch.ones(12), torch.zeros(5)]).to(device=device, dtype=dtype)

    # Zero-weight outliers are ignored exactly.
    weighted = so3_mean(samples, weights)
    torch.testing.assert_close(weighted, so3_mean(samples[:12]), atol=1e-12, rtol=0)
    assert math.degrees(geodesic_distance(weighted, as_tensor(center, device, dtype)).item()) < 5.0

    # Integer weights equal repeating the samples.
    counts = torch.tensor([1, 3, 2, 1, 1, 4, 1, 1, 2, 1, 1, 1])
    repeated = samples[:12].repeat_interleave(counts.to(device), dim=0)
    torch.testing.assert_close(
        so3_mean(samples[:12], counts.to(device)), so3_mean(repeated), atol=1e-12, rtol=0
    )

    # A group whose weights are all zero (or that is empty) gives the identity.
    eye = torch.eye(3, dtype=dtype, device=device)
    torch.testing.assert_close(so3_mean(samples, torch.zeros_like(weights)), eye, atol=0, rtol=0)
    torch.testing.assert_close(so3_mean(samples[:0]), eye, atol=0, rtol=0)


def test_so3_mean_stops_once_converged(monkeypatch):
    """The Karcher loop stops when its steps reach the dtype's precision: a converged mean
    (its residual vanishes, checked with scipy's log map) in a few log maps, not the cap."""
    import mvspin.geometry.rotations as rotations

    center = Rotation.from_rotvec([0.4, 1.1, -0.7]).as_matrix()
    samples = np.stack([_noisy_copies(center, 4, 17.0, seed=s) for s in range(20)])  # (20, 4, 3, 3)
    calls = []
    original = rotations.rotation_matrix_to_axis_angle
    monkeypatch.setattr(rotations, "rotation_matrix_to_axis_angle", lambda m: calls.append(1) or original(m))
    for dtype, bound in ((torch.float64, 1e-13), (torch.float32, 2e-6)):
        calls.clear()
        mean = so3_mean(torch.as_tensor(samples, dtype=dtype), iterations=50).double().numpy()
        assert 1 < len(calls) < 10  # converged and stopped, not 50 steps
        for m, group in zip(mean, samples):
            residual = Rotation.from_matrix(m.T @ group).as_rotvec().mean(axis=0)
            assert np.abs(residual).max() < bound


def test_so3_mean_view_axis_and_broadcast_weights(device):
    dtype = torch.float64
    B, V, J = 2, 4, 3
    centers = random_rotations(B * J, seed=7).reshape(B, J, 3, 3)
    samples = np.stack(
        [_noisy_copies(centers[b, j], V, 10.0, seed=10 * b + j) for b in range(B) for j in range(J)]
    ).reshape(B, J, V, 3, 3)
    per_view = as_tensor(samples, device, dtype).transpose(1, 2)  # (B, V, J, 3, 3)
    view_weights = as_tensor([[1.0, 0.5, 0.0, 2.0], [1.0, 1.0, 1.0, 1.0]], device, dtype)

    fused = so3_mean(per_view, view_weights[:, :, None], dim=1)  # per-view weight for all joints
    assert fused.shape == (B, J, 3, 3)
    for b in range(B):
        for j in range(J):
            reference = so3_mean(per_view[b, :, j], view_weights[b])
            torch.testing.assert_close(fused[b, j], reference, atol=1e-12, rtol=0)
    # dim=1 and the equivalent negative index agree.
    torch.testing.assert_close(so3_mean(per_view, dim=-4), so3_mean(per_view, dim=1))


def test_so3_mean_chordal_initialisation(device):
    # iterations=0 is the chordal L2 mean: SVD projection of the matrix average (numpy reference).
    samples = _noisy_copies(random_rotations(1, seed=8)[0], 6, 30.0, seed=9)
    U, _, Vt = np.linalg.svd(samples.mean(axis=0))
    expected = U @ np.diag([1.0, 1.0, np.linalg.det(U @ Vt)]) @ Vt
    mean = so3_mean(as_tensor(samples, device, torch.float64), iterations=0)
    torch.testing.assert_close(mean, as_tensor(expected, device, torch.float64), atol=1e-12, rtol=0)


def test_so3_mean_gradient(device):
    samples = as_tensor(_noisy_copies(np.eye(3), 5, 10.0, seed=11), device, torch.float64)
    samples.requires_grad_(True)
    # The unrolled Karcher steps give the mean's derivative (the SVD start is a constant).
    assert torch.autograd.gradcheck(so3_mean, (samples,), atol=1e-6)
    # Identical inputs: the log map is evaluated at the identity, gradients stay finite.
    same = torch.eye(3, dtype=torch.float64, device=device).repeat(4, 1, 1).requires_grad_(True)
    so3_mean(same).sum().backward()
    assert torch.isfinite(same.grad).all()


def test_so3_mean_errors():
    R = torch.eye(3).repeat(2, 4, 1, 1)
    with pytest.raises(ValueError, match="must name a leading axis"):
        so3_mean(R, dim=2)
    with pytest.raises(ValueError, match="must name a leading axis"):
        so3_mean(R, dim=-2)
    with pytest.raises(ValueError, match=r"expected weights broadcastable to \(2, 4\), got \(3,\)"):
        so3_mean(R, torch.ones(3))
    with pytest.raises(ValueError, match="non-negative"):
        so3_mean(R, -torch.ones(2, 4))
    with pytest.raises(ValueError, match=r"R must have shape \(\.\.\., \?, 3, 3\), got \(4, 3\)"):
        so3_mean(torch.zeros(4, 3))


# ---------------------------------------------------------------------------------------------
# geodesic distance


def test_geodesic_distance_matches_scipy(device, dtype):
    R1 = random_rotations(20, seed=12)
    R2 = random_rotations(20, seed=13)
    expected = np.linalg.norm(Rotation.from_matrix(R1.transpose(0, 2, 1) @ R2).as_rotvec(), axis=-1)
    angle = geodesic_distance(as_tensor(R1, device, dtype), as_tensor(R2, device, dtype))
    expected = as_tensor(expected, device, dtype)
    torch.testing.assert_close(angle, expected, atol=10 * tol(dtype), rtol=0)


def test_geodesic_distance_precision_and_gradient(device):
    dtype = torch.float64
    base = as_tensor(random_rotations(1, seed=14), device, dtype)  # (1, 3, 3), broadcasts
    angles = [0.0, 1e-9, 1e-6, math.pi - 1e-6, math.pi]
    rotvecs = np.array([[0.0, 0.0, a] for a in angles])
    other = base @ as_tensor(Rotation.from_rotvec(rotvecs).as_matrix(), device, dtype)
    other.requires_grad_(True)
    angle = geodesic_distance(base, other)
    # arccos would give ~1e-8 error at 1e-9 rad; atan2 keeps relative precision.
    torch.testing.assert_close(angle, as_tensor(angles, device, dtype), atol=1e-14, rtol=1e-6)
    angle.sum().backward()
    assert torch.isfinite(other.grad).all()


def test_geodesic_distance_shape_errors():
    with pytest.raises(ValueError, match=r"R2 must have shape \(\.\.\., 3, 3\), got \(3, 4\)"):
        geodesic_distance(torch.eye(3), torch.zeros(3, 4))


def test_so3_right_jacobian_first_order_and_small_angles():
    # exp(v + dv) = exp(v) exp(J_r(v) dv): compare with autograd's derivative of
    # log(exp(v)^T exp(v + dv)) at dv = 0, at large, moderate and tiny angles (Taylor branch).
    v = torch.tensor([[1.2, -0.7, 2.0], [0.3, 0.1, -0.2], [1e-4, -2e-4, 5e-5], [0.0, 0.0, 0.0]],
                     dtype=torch.float64)

    def rel(dv: torch.Tensor) -> torch.Tensor:
        return matrix_to_axis_angle(axis_angle_to_matrix(v).transpose(-1, -2) @ axis_angle_to_matrix(v + dv))

    jac = torch.autograd.functional.jacobian(rel, torch.zeros_like(v))
    ref = torch.stack([jac[i, :, i] for i in range(len(v))])
    out = so3_right_jacobian(v)
    assert torch.allclose(out, ref, atol=1e-8)
    assert torch.allclose(out[-1], torch.eye(3, dtype=torch.float64))
    assert float((out[0] - torch.eye(3, dtype=torch.float64)).abs().max()) > 0.3  # far from identity there
