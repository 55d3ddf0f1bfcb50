"""Triangulation: accuracy on a synthetic rig, robustness to a wrong view, undistortion."""
import numpy as np
import torch

from calibration import Camera, Rig, triangulate_points, undistort_points


def _rig(dist=(0.05, -0.02, 0.001, 0.001, 0.0)) -> Rig:
    angles = np.radians([0.0, 95.0, 180.0, 265.0])
    return Rig([Camera.look_at(eye=(4 * np.sin(a), 1.3, 4 * np.cos(a)), target=(0, 1, 0), focal=1000,
                               image_size=(1000, 1000), dist=dist, name=f"c{i}") for i, a in enumerate(angles)])


def test_undistort_inverts_distortion():
    rig = _rig()
    cam = rig[1]
    pts = np.random.default_rng(1).normal(size=(40, 3)) * 0.4 + [0, 1, 0]
    px = torch.tensor(cam.project(pts))
    cam_pts = pts @ cam.R.T + cam.t
    expected = cam_pts[:, :2] / cam_pts[:, 2:]
    ct = cam.to_torch(torch.float64)
    np.testing.assert_allclose(undistort_points(px, ct.K, ct.dist).numpy(), expected, atol=1e-9)


def test_triangulation_accuracy_and_outlier_view():
    rng = np.random.default_rng(0)
    rig = _rig()
    X = rng.normal(size=(3, 25, 3)) * 0.4 + [0.0, 1.0, 0.0]
    uv = rig.project(X) + rng.normal(size=(3, 4, 25, 2))  # 1 px noise
    w = np.ones(uv.shape[:-1])
    w[0, 2] = 0.0  # bundle 0: camera 2 saw nothing
    uv[1, 3] += rng.uniform(150, 300, size=(25, 2))  # bundle 1: camera 3 saw someone else
    cams = rig.to_torch(torch.float64)
    tri = triangulate_points(torch.tensor(uv), torch.tensor(w), cams, threshold_px=20.0)
    err_mm = 1000 * np.linalg.norm(tri.points.numpy() - X, axis=-1)
    assert tri.valid.all()
    assert err_mm.max() < 20.0 and err_mm.mean() < 6.0, (err_mm.max(), err_mm.mean())
    assert not tri.inliers[1, 3].any() and tri.inliers[1, :3].all()
    assert not tri.inliers[0, 2].any()
    assert float(tri.error.mean()) < 1.5
    plain = triangulate_points(torch.tensor(uv), torch.tensor(w), cams, threshold_px=None)
    assert 1000 * np.linalg.norm(plain.points[1].numpy() - X[1], axis=-1).mean() > 50.0  # why the consensus exists


def test_too_few_views_is_invalid_not_nan():
    rig = _rig(dist=())
    uv = torch.tensor(rig.project(np.array([[[0.0, 1.0, 0.0]]])))  # (1, 4, 1, 2)
    w = torch.tensor([[[1.0], [0.0], [0.0], [0.0]]])
    tri = triangulate_points(uv, w, rig.to_torch(torch.float64))
    assert not tri.valid.any() and torch.isfinite(tri.points).all() and torch.isinf(tri.error).all()


def test_triangulation_gradcheck():
    # float64: the DLT point is differentiable in the pixels, the confidences and the cameras
    # (plain weighted DLT and the robust one, whose inlier choice is piecewise constant).
    rig = _rig()
    X = np.random.default_rng(3).normal(size=(2, 3)) * 0.3 + [0.0, 1.0, 0.0]
    cams = rig.to_torch(torch.float64)
    uv = torch.tensor(rig.project(X), dtype=torch.float64) + 0.3  # off the exact solution
    w = torch.tensor([[0.9, 0.5], [1.0, 0.7], [0.6, 1.0], [0.8, 0.4]], dtype=torch.float64)
    for threshold in (None, 20.0):
        def points(uv, w, K, dist, threshold=threshold):
            return triangulate_points(uv, w, cams._replace(K=K, dist=dist), threshold_px=threshold).points

        inputs = (uv.requires_grad_(True), w.requires_grad_(True), cams.K.clone().requires_grad_(True),
                  cams.dist.clone().requires_grad_(True))
        assert torch.autograd.gradcheck(points, inputs, atol=1e-7, fast_mode=True)  # random Jacobian projections


def test_dlt_point_is_the_eigendecompositions():
    # _solve finds the DLT null vector by inverse iteration, with eigh where that has not
    # converged: the points must be eigh's, for wide and narrow baselines, 1-50 px noise (50: views
    # of different people), 2-4 views.
    from calibration.triangulation import _normal_matrices, _solve

    rng = np.random.default_rng(5)
    rig = _rig(dist=())
    cams = rig.to_torch(torch.float64)
    Rt = torch.cat([cams.R, cams.t.unsqueeze(-1)], -1)
    X = rng.normal(size=(500, 3)) * 0.5 + [0.0, 1.0, 0.0]
    for noise in (1.0, 20.0, 50.0):
        uv = torch.tensor(rig.project(X) + rng.normal(size=(4, 500, 2)) * noise)
        w = torch.tensor(rng.uniform(0.3, 1.0, size=(4, 500)))
        per_view = _normal_matrices(undistort_points(uv, cams.K, None), w, Rt)  # (V, N, 4, 4)
        for views in ([0, 1], [0, 3], [1, 2, 3], [0, 1, 2, 3]):
            normal = per_view[views].sum(0)
            vecs = torch.linalg.eigh(normal / normal.diagonal(dim1=-2, dim2=-1).sum(-1)[:, None, None])[1][..., 0]
            got, ok = _solve(normal)
            assert ok.all()
            gap_mm = 1000 * (got - vecs[:, :3] / vecs[:, 3:]).norm(dim=-1)
            assert float(gap_mm.max()) < 1e-6, (noise, views, float(gap_mm.max()))
    # No views, one view: no point, nothing non-finite.
    for normal in (torch.zeros(3, 4, 4, dtype=torch.float64), per_view[0, :3]):
        pts, ok = _solve(normal)
        assert torch.isfinite(pts).all()
    assert not _solve(torch.zeros(3, 4, 4, dtype=torch.float64))[1].any()
