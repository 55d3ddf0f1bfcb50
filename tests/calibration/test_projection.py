"""The one lens model (calibration.projection): OpenCV parity, inverse, gradients, numpy callers."""
import cv2
import numpy as np
import pytest
import torch

from calibration import (
    Camera,
    Rig,
    distort,
    look_at,
    project_points,
    project_points_jacobian,
    undistort,
    undistort_points,
)
from tests.conftest import tol

DISTORTIONS = {
    4: [-0.12, 0.03, 0.001, -0.002],
    5: [-0.25, 0.11, 0.0015, -0.001, -0.02],
    8: [0.3, -0.05, 0.0012, -0.0008, 0.01, 0.5, -0.02, 0.04],
}
K_NP = np.array([[1150.0, 0.7, 640.0], [0.0, 1100.0, 360.0], [0.0, 0.0, 1.0]])


def _points(seed: int, n: int = 30) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return np.concatenate([rng.uniform(-0.35, 0.35, size=(n, 2)), np.ones((n, 1))], axis=1) * rng.uniform(2, 5, (n, 1))


@pytest.mark.parametrize("n_dist", [4, 5, 8])
def test_project_points_matches_cv2(device, dtype, n_dist):
    pts = _points(n_dist)
    K = K_NP.copy()
    K[0, 1] = 0.0  # cv2.projectPoints ignores skew
    rvec, tvec = np.array([0.1, -0.2, 0.05]), np.array([0.05, -0.1, 0.3])
    expected = cv2.projectPoints(pts, rvec, tvec, K, np.array(DISTORTIONS[n_dist]))[0][:, 0]
    as_t = lambda a: torch.as_tensor(np.asarray(a), dtype=dtype, device=device)  # noqa: E731
    uv = project_points(as_t(pts), as_t(K), as_t(cv2.Rodrigues(rvec)[0]), as_t(tvec), as_t(DISTORTIONS[n_dist]))
    assert uv.shape == (30, 2) and uv.dtype == dtype
    assert np.abs(uv.double().cpu().numpy() - expected).max() < (1e-3 if dtype == torch.float32 else 1e-8)


@pytest.mark.parametrize("n_dist", [4, 5, 8])
def test_undistort_points_matches_cv2_and_inverts_distort(device, n_dist):
    dtype = torch.float64
    pts = _points(10 + n_dist)
    K, dist = torch.tensor(K_NP, dtype=dtype, device=device), torch.tensor(DISTORTIONS[n_dist], dtype=dtype, device=device)
    xy = torch.tensor(pts[:, :2] / pts[:, 2:], dtype=dtype, device=device)
    uv = project_points(torch.tensor(pts, dtype=dtype, device=device), K, dist=dist)
    # distort then undistort is the identity (the fixed point converges for these lenses) ...
    torch.testing.assert_close(undistort(distort(xy, dist), dist), xy, atol=1e-10, rtol=0)
    got = undistort_points(uv, K, dist)
    torch.testing.assert_close(got, xy, atol=1e-10, rtol=0)
    # ... and agrees with OpenCV's (which ignores skew: compare on a skew-free K).
    K0 = K_NP.copy()
    K0[0, 1] = 0.0
    uv0 = project_points(torch.tensor(pts, dtype=dtype), torch.tensor(K0), dist=dist.cpu())
    crit = (cv2.TERM_CRITERIA_COUNT | cv2.TERM_CRITERIA_EPS, 100, 1e-14)
    expected = cv2.undistortPoints(uv0.numpy()[:, None], K0, np.array(DISTORTIONS[n_dist]), criteria=crit)[:, 0]
    np.testing.assert_allclose(undistort_points(uv0, torch.tensor(K0), dist.cpu()).numpy(), expected, atol=1e-9)


def test_no_distortion_is_the_identity(device, dtype):
    xy = torch.tensor([[0.3, -0.2], [0.0, 0.1]], dtype=dtype, device=device)
    assert distort(xy, None) is xy and undistort(xy, torch.zeros(0, dtype=dtype, device=device)) is xy
    torch.testing.assert_close(distort(xy, torch.zeros(5, dtype=dtype, device=device)), xy, atol=tol(dtype), rtol=0)


def test_distortion_gradcheck(device):
    dtype = torch.float64
    xy = torch.tensor(_points(3, n=5)[:, :2] / 3.0, dtype=dtype, device=device).requires_grad_(True)
    dist = torch.tensor(DISTORTIONS[8], dtype=dtype, device=device).requires_grad_(True)
    K = torch.tensor(K_NP, dtype=dtype, device=device).requires_grad_(True)
    assert torch.autograd.gradcheck(distort, (xy, dist))
    assert torch.autograd.gradcheck(undistort, (xy, dist))
    uv = project_points(torch.tensor(_points(4, n=5), dtype=dtype, device=device), K.detach(), dist=dist.detach())
    assert torch.autograd.gradcheck(undistort_points, (uv.detach().requires_grad_(True), K, dist))


@pytest.mark.parametrize("n_dist", [0, 4, 5, 8])
def test_closed_form_jacobian_matches_autograd(n_dist):
    """project_points_jacobian: the pixels of project_points and, per point and camera, the 2x3
    derivative autograd gives (skew, every distortion size, per-camera lenses broadcast over a
    batch, a point behind the camera whose depth derivative is clamped to 0)."""
    dtype = torch.float64
    g = torch.Generator().manual_seed(n_dist)
    pts = torch.as_tensor(_points(20 + n_dist, 12), dtype=dtype).reshape(3, 4, 3)  # (B, N, 3)
    pts[0, 0, 2] = -1.0  # behind camera 1: clamped depth
    K = torch.tensor(K_NP, dtype=dtype).expand(2, 3, 3).clone()
    K[1, 0, 0] = 900.0
    R = torch.stack([torch.as_tensor(look_at([0.3, -0.2, -1.0], [0.0, 0.0, 3.0])[0]), torch.eye(3, dtype=torch.float64)]).to(dtype)
    t = torch.randn(2, 3, generator=g, dtype=dtype) * 0.1
    dist = torch.tensor(DISTORTIONS[n_dist], dtype=dtype).expand(2, -1) * torch.tensor([[1.0], [0.5]], dtype=dtype) \
        if n_dist else None
    uv, jac = project_points_jacobian(pts[:, None], K, R, t, dist)
    assert uv.shape == (3, 2, 4, 2) and jac.shape == (3, 2, 4, 2, 3)
    assert torch.allclose(uv, project_points(pts[:, None], K, R, t, dist), atol=1e-9)
    x = pts[:, None].expand(-1, 2, -1, -1).clone().requires_grad_(True)
    proj = project_points(x, K, R, t, dist)
    (du,) = torch.autograd.grad(proj[..., 0].sum(), x, retain_graph=True)
    (dv,) = torch.autograd.grad(proj[..., 1].sum(), x)
    assert torch.allclose(jac, torch.stack([du, dv], -2), atol=1e-8, rtol=1e-9)
    # camera 1 is the identity: its depth is the world z, clamped for the point behind it
    assert float(jac[0, 1, 0, :, 2].abs().max()) == 0.0 and float(jac[0, 1, 0, :, :2].abs().max()) > 0


def test_undistort_gradient_is_the_inverse_of_distort_jacobian():
    # Implicit function theorem: d undistort / d x_d = (d distort / d x)^-1 at x = undistort(x_d).
    dist = torch.tensor(DISTORTIONS[5], dtype=torch.float64)
    x_d = torch.tensor([[0.31, -0.22]], dtype=torch.float64)
    x = undistort(x_d, dist)
    j_distort = torch.autograd.functional.jacobian(lambda p: distort(p, dist), x)[0, :, 0, :]
    j_undistort = torch.autograd.functional.jacobian(lambda p: undistort(p, dist, iterations=60), x_d)[0, :, 0, :]
    torch.testing.assert_close(j_undistort, torch.linalg.inv(j_distort), atol=1e-9, rtol=0)


def test_numpy_cameras_go_through_the_one_model():
    cams = [Camera(K=K_NP, R=look_at((0.3 * i, 1.0, 4.0), (0.0, 1.0, 0.0))[0],
                   t=look_at((0.3 * i, 1.0, 4.0), (0.0, 1.0, 0.0))[1], dist=DISTORTIONS.get(n, []), name=f"c{i}")
            for i, n in enumerate([0, 4, 5, 8])]
    rig = Rig(cams)
    pts = np.random.default_rng(5).normal(size=(2, 9, 3)) * 0.3 + [0.0, 1.0, 0.0]
    uv = rig.project(pts)
    assert uv.shape == (2, 4, 9, 2)
    for v, cam in enumerate(cams):
        dist = torch.tensor(cam.dist) if cam.dist.size else None
        expected = project_points(torch.tensor(pts), torch.tensor(cam.K), torch.tensor(cam.R), torch.tensor(cam.t), dist)
        np.testing.assert_allclose(uv[:, v], expected.numpy(), atol=1e-9)
        np.testing.assert_allclose(cam.project(pts), expected.numpy(), atol=1e-9)
    assert cams[0].project(np.array([0.0, 1.0, 0.0])).shape == (2,)


def test_look_at_has_one_home():
    from mvspin.rendering import look_at as rendering_look_at

    assert rendering_look_at is look_at
    R, t = look_at(eye=(2.0, 1.0, 3.0), target=(0.0, 1.0, 0.0))
    np.testing.assert_allclose(R @ R.T, np.eye(3), atol=1e-12)
    np.testing.assert_allclose(R @ np.array([0.0, 1.0, 0.0]) + t, [0.0, 0.0, np.sqrt(13.0)], atol=1e-12)
    with pytest.raises(ValueError, match="eye and target coincide"):
        look_at((1.0, 1.0, 1.0), (1.0, 1.0, 1.0))


def test_shape_errors():
    K = torch.eye(3)
    with pytest.raises(ValueError, match=r"project_points: points must have shape \(\.\.\., \?, 3\), got \(3,\)"):
        project_points(torch.zeros(3), K)
    with pytest.raises(ValueError, match=r"dist must have shape \(\.\.\., D\) with D in \(4, 5, 8\), got \(6,\)"):
        distort(torch.zeros(2, 2), torch.zeros(6))
    with pytest.raises(ValueError, match=r"undistort_points: K must have shape \(\.\.\., 3, 3\), got \(3, 4\)"):
        undistort_points(torch.zeros(4, 2), torch.zeros(3, 4))
