"""The batched Levenberg-Marquardt solver and MV-SMPLify's residual models (``optimizer="lm"``)."""
from __future__ import annotations

from dataclasses import replace

import pytest
import torch

from mvspin.body import BodyModel
from mvspin.data.synthetic_keypoints import SyntheticOptions, make_capture, sample_bodies
from mvspin.fitting import MVSMPLify, MVSMPLifyConfig, lm_models
from mvspin.fitting.lm import LMOptions, LMSystem, levenberg_marquardt, robust_system
from mvspin.fitting.result import PerViewEstimate
from mvspin.geometry import crop_cam_to_translation


@pytest.fixture(scope="module")
def problem():
    body = BodyModel.free("low")
    params = sample_bodies(body, 3, torch.Generator().manual_seed(0))
    cap = make_capture(body, params, 2, seed=1, options=SyntheticOptions())
    return BodyModel.free("low", dtype=torch.float64), cap


def _crop_stage2(body, cap, stage2_translation=False):
    fitter = MVSMPLify(body, MVSMPLifyConfig(stage2_translation=stage2_translation))
    xy, conf = fitter.prepare_keypoints(cap.crop_keypoints.double())
    rot = cap.estimate.rotmat.double()
    b, v = xy.shape[:2]
    g = torch.Generator().manual_seed(3)
    pose = (0.1 * torch.randn(b, 69, generator=g, dtype=torch.float64))
    betas = 0.3 * torch.randn(b, 10, generator=g, dtype=torch.float64)
    d = 0.05 * torch.randn(b, v, 3, generator=g, dtype=torch.float64)
    transl = crop_cam_to_translation(cap.estimate.cam.double(), 5000.0, 224)
    w2 = fitter.stage2_weights(conf)
    mask = torch.ones(b, dtype=torch.float64)
    system = lm_models.crop_stage2_system(fitter, rot[:, :, 0], xy, w2, None if stage2_translation else transl, mask)
    x = torch.cat([pose, betas, d.flatten(1)] + ([transl.flatten(1)] if stage2_translation else []), 1)

    def project(x):
        dd = x[:, 79:79 + 3 * v].view(b, v, 3)
        t = x[:, 79 + 3 * v:].view(b, v, 3) if stage2_translation else transl
        body_rot, root = fitter.rotations(x[:, :69], dd, rot[:, :, 0])
        return fitter.project_crop(fitter.posed_keypoints(body_rot, x[:, 69:79], root, t))

    def energy(x):
        return fitter.stage2_energy(project(x), xy, w2, x[:, :69], x[:, 69:79])

    return fitter, system, x, energy, (project, xy, w2)


@pytest.mark.parametrize("free_t", [False, True])
def test_residual_model_gradient_equals_autograd(problem, free_t):
    body, cap = problem
    _, system, x, energy, _ = _crop_stage2(body, cap, free_t)
    sys = system(x)
    xg = x.clone().requires_grad_(True)
    e = energy(xg)
    (grad,) = torch.autograd.grad(e.sum(), xg)
    torch.testing.assert_close(sys.energy, e.detach(), rtol=1e-10, atol=1e-8)
    torch.testing.assert_close(sys.grad, grad, rtol=1e-7, atol=1e-6 * float(grad.abs().max()))


def _dense_gauss_newton(residuals, x, weight, sigma):
    """Per bundle ``J^T W J`` of the reprojection residuals ``residuals(x) (B, N)`` with autograd's
    Jacobian and the Geman-McClure reweighting ``W = 2 w (s^2 / (s^2 + r^2))^2``."""
    r = residuals(x)
    jac = torch.autograd.functional.jacobian(residuals, x)  # (B, N, B, P)
    b = x.shape[0]
    jac = jac[torch.arange(b), :, torch.arange(b)]  # each bundle's own block (B, N, P)
    s2 = sigma ** 2
    w = weight * 2 * (s2 / (s2 + r.square())).square()
    return jac.transpose(1, 2) @ (w[..., None] * jac)


def _prior_hessian(fitter, x):
    p = x.shape[1]
    grad, hess = torch.zeros(x.shape[0], p, dtype=x.dtype), torch.zeros(x.shape[0], p, p, dtype=x.dtype)
    lm_models._add_priors(fitter, grad, hess, x[:, :69], x[:, 69:79])
    return hess


@pytest.mark.parametrize("free_t", [False, True])
def test_gauss_newton_matrix_equals_dense_jacobian_product(problem, free_t):
    """The residual model's Gauss-Newton matrix equals the reweighted J^T W J of autograd's
    Jacobian over every residual row, plus the priors' (free and fixed translations)."""
    body, cap = problem
    fitter, system, x, _, (project, xy, w2) = _crop_stage2(body, cap, free_t)
    dense = _dense_gauss_newton(lambda z: (project(z) - xy).flatten(1), x, w2.repeat_interleave(2, -1).flatten(1),
                                fitter.config.sigma)
    ours = system(x).hess - _prior_hessian(fitter, x)
    torch.testing.assert_close(ours, dense, rtol=1e-9, atol=1e-9 * float(dense.abs().max()))


def _calibrated_stage2(body, cap, seed, lens=False):
    """The calibrated stage-2 system at a random point near the start, with its pixels ``project(x)``
    (``lens``: the cameras get OpenCV distortion, radial and tangential)."""
    fitter = MVSMPLify(body, MVSMPLifyConfig(mode="calibrated"))
    cams = cap.cameras.to("cpu", torch.float64)
    if lens:
        dist = torch.tensor([-0.08, 0.02, 1e-3, -2e-3, 5e-3], dtype=torch.float64)
        cams = cams._replace(dist=dist.expand(*cams.K.shape[:-2], 5).clone())
    data = fitter._calibrated_inputs(cap.keypoints.double(), cams, None)
    start = fitter.calibrated_start(data, None)
    b = data.xy.shape[0]
    g = torch.Generator().manual_seed(seed)
    x = torch.cat([0.1 * torch.randn(b, 69, generator=g, dtype=torch.float64),
                   0.2 * torch.randn(b, 10, generator=g, dtype=torch.float64),
                   0.05 * torch.randn(b, 3, generator=g, dtype=torch.float64), start.transl], 1)
    w2 = fitter.stage2_weights(data.conf)
    system = lm_models.world_stage2_system(fitter, start.orient, data.project_with_jacobian, data.xy, w2,
                                           data.fit_mask)

    def project(z):
        body_rot, orient = fitter.rotations(z[:, :69], z[:, 79:82], start.orient)
        return data.project(fitter.posed_keypoints(body_rot, z[:, 69:79], orient[:, None], z[:, None, 82:]))

    return fitter, data, system, x, w2, project


@pytest.mark.parametrize("lens", [False, True])
def test_calibrated_gauss_newton_matrix_equals_dense_jacobian_product(problem, lens):
    """The closed-form projection Jacobian (distortion included) in the calibrated system equals
    autograd's through the camera model."""
    body, cap = problem
    fitter, data, system, x, w2, project = _calibrated_stage2(body, cap, seed=5, lens=lens)
    dense = _dense_gauss_newton(lambda z: (project(z) - data.xy).flatten(1), x,
                                w2.repeat_interleave(2, -1).flatten(1), fitter.config.sigma)
    ours = system(x).hess - _prior_hessian(fitter, x)
    torch.testing.assert_close(ours, dense, rtol=1e-9, atol=1e-9 * float(dense.abs().max()))


@pytest.mark.parametrize("lens", [False, True])
def test_calibrated_gradient_equals_autograd(problem, lens):
    body, cap = problem
    fitter, data, system, x, w2, project = _calibrated_stage2(body, cap, seed=4, lens=lens)

    def energy(x):
        return fitter.stage2_energy(project(x), data.xy, w2, x[:, :69], x[:, 69:79]) * data.fit_mask

    xg = x.clone().requires_grad_(True)
    e = energy(xg)
    (grad,) = torch.autograd.grad(e.sum(), xg)
    sys = system(x)
    torch.testing.assert_close(sys.energy, e.detach())
    torch.testing.assert_close(sys.grad, grad, rtol=1e-7, atol=1e-6 * float(grad.abs().max()))


def test_step_equals_dense_gauss_newton(problem):
    """The first LM step equals a float64 dense reweighted Gauss-Newton step with Marquardt damping
    built from autograd's Jacobian of the stacked residuals."""
    body, cap = problem
    fitter, system, x, energy, _ = _crop_stage2(body, cap)
    b, v = x.shape[0], 2
    xy, conf = fitter.prepare_keypoints(cap.crop_keypoints.double())
    w2 = fitter.stage2_weights(conf)
    rot0 = cap.estimate.rotmat.double()[:, :, 0]
    transl = crop_cam_to_translation(cap.estimate.cam.double(), 5000.0, 224)
    c = fitter.config
    lam = 1e-2

    def residuals(xi):  # one bundle: reprojection (GMoF reweighted below) and prior residuals
        p, bt, dd = xi[:69], xi[69:79], xi[79:].view(v, 3)
        body_rot, root = fitter.rotations(p[None], dd[None], rot0[i:i + 1])
        uv = fitter.project_crop(fitter.posed_keypoints(body_rot, bt[None], root, transl[i:i + 1]))
        return (uv - xy[i:i + 1]).flatten(), p, bt

    for i in range(b):
        xi = x[i]
        r, _, _ = residuals(xi)
        jac = torch.autograd.functional.jacobian(lambda z: residuals(z)[0], xi)
        s2 = c.sigma ** 2
        w = w2[i].flatten().repeat_interleave(2) * 2 * (s2 / (s2 + r.square())).square()
        h = jac.T @ (w[:, None] * jac)
        g = jac.T @ (w * r)
        _, gp, hp = fitter.pose_prior.gauss_newton(xi[None, :69])
        h[:69, :69] += c.pose_prior_weight * (torch.diag(hp[0]) if hp.dim() == 2 else hp[0])  # free: diagonal
        g[:69] += c.pose_prior_weight * gp[0]
        from mvspin.body import angle_prior_gauss_newton
        ga, ha = angle_prior_gauss_newton(xi[None, :69])
        h[:69, :69] += torch.diag(c.angle_prior_weight * ha[0])
        g[:69] += c.angle_prior_weight * ga[0]
        h[69:79, 69:79] += 2 * c.shape_prior_weight * torch.eye(10, dtype=torch.float64)
        g[69:79] += 2 * c.shape_prior_weight * xi[69:79]
        a = h + lam * torch.diag(torch.diagonal(h))
        dense = -torch.linalg.solve(a, g)
        taken = {}

        def record_system(z, taken=taken):
            s = system(z)
            taken.setdefault("first", z.clone()) if len(taken) == 0 and not torch.equal(z, x) else None
            return s

        levenberg_marquardt(record_system, x, 1, options=LMOptions(damping=lam))
        step = taken["first"][i] - xi
        torch.testing.assert_close(step, dense, rtol=1e-6, atol=1e-9)


def test_rising_bundle_is_rejected_and_damped():
    """Two independent 1-D problems: bundle 0 a quadratic (its Gauss-Newton step is exact),
    bundle 1 a model whose Gauss-Newton curvature is far too small (its first step overshoots):
    bundle 1's step is rejected, it keeps its parameters and its damping grows, bundle 0 moves."""
    calls = []

    def evaluate(x):
        calls.append(x.clone())
        e0 = (x[0, 0] - 1.0) ** 2
        e1 = x[1, 0] ** 4 + 0.0
        energy = torch.stack([e0, e1])
        grad = torch.stack([2 * (x[0] - 1.0), 4 * x[1] ** 3])
        hess = torch.stack([torch.full((1, 1), 2.0), torch.full((1, 1), 1e-3)])
        return LMSystem(energy.double(), grad.double(), hess.double())

    x0 = torch.tensor([[5.0], [1.0]], dtype=torch.float64)
    x, its, energy = levenberg_marquardt(evaluate, x0, 1, options=LMOptions(damping=0.1))
    assert float(x[1, 0]) == 1.0 and float(energy[1]) == 1.0  # rejected: bundle 1 stays
    assert float(x[0, 0]) == pytest.approx(5.0 - 8.0 / (2.0 * 1.1))  # accepted: the damped step
    # a second iteration with the grown damping: bundle 1's next trial step is 8x damped
    calls.clear()
    x, its, energy = levenberg_marquardt(evaluate, x0, 2, options=LMOptions(damping=0.1, rel_tol=0.0))
    s1 = float(calls[1][1, 0] - 1.0)
    s2 = float(calls[2][1, 0] - 1.0)
    h, g, lam = 1e-3, 4.0, 0.1
    assert s1 == pytest.approx(-g / (h * (1 + lam)), rel=1e-6)
    assert s2 == pytest.approx(-g / (h * (1 + 8 * lam)), rel=1e-6)


def test_robust_system_matches_autograd():
    g = torch.Generator().manual_seed(0)
    r0 = torch.randn(2, 6, generator=g, dtype=torch.float64) * 80
    jac = torch.randn(2, 6, 4, generator=g, dtype=torch.float64)
    w = torch.rand(2, 6, generator=g, dtype=torch.float64)
    x = torch.zeros(2, 4, dtype=torch.float64, requires_grad=True)
    r = r0 + (jac @ x[..., None])[..., 0]
    e = (w * 100.0**2 * r.square() / (100.0**2 + r.square())).sum()
    (grad,) = torch.autograd.grad(e, x)
    ours, hess = robust_system(r0, jac, w, 100.0)
    torch.testing.assert_close(ours, grad)
    assert torch.allclose(hess, hess.transpose(1, 2)) and bool((torch.linalg.eigvalsh(hess) >= -1e-9).all())


def test_proximal_system_is_the_energy_plus_its_term():
    """Gradient and Gauss-Newton matrix of the proximal term are exact (autograd); the metric is
    the square root of the Gauss-Newton diagonal at the anchor."""
    from mvspin.fitting.lm import proximal_system

    g = torch.Generator().manual_seed(4)
    a = torch.randn(2, 5, 5, generator=g, dtype=torch.float64)
    h0 = a @ a.transpose(1, 2) + torch.eye(5, dtype=torch.float64)
    target = torch.randn(2, 5, generator=g, dtype=torch.float64)

    def quadratic(x):
        d = x - target
        return LMSystem((d[:, None] @ h0 @ d[..., None])[:, 0, 0], 2 * (h0 @ d[..., None])[..., 0], 2 * h0)

    anchor = torch.randn(2, 5, generator=g, dtype=torch.float64)
    system = proximal_system(quadratic, anchor, 0.7)
    x = torch.randn(2, 5, generator=g, dtype=torch.float64, requires_grad=True)
    metric = torch.diagonal(2 * h0, dim1=-2, dim2=-1).sqrt()
    energy = quadratic(x).energy + 0.7 * (metric * (x - anchor).square()).sum(-1)
    (grad,) = torch.autograd.grad(energy.sum(), x)
    ours = system(x.detach())
    torch.testing.assert_close(ours.energy, energy.detach())
    torch.testing.assert_close(ours.grad, grad)
    for i in range(2):
        exact = torch.autograd.functional.hessian(
            lambda z: (z - target[i]) @ h0[i] @ (z - target[i]) + 0.7 * (metric[i] * (z - anchor[i]).square()).sum(),
            x[i].detach())
        torch.testing.assert_close(ours.hess[i], exact)  # a quadratic: Gauss-Newton is exact
    # the minimiser lies between the anchor and the energy's own minimum (one LM solve)
    x_min, _, _ = levenberg_marquardt(system, anchor, 20, options=LMOptions(damping=1e-6))
    assert bool(((x_min - target).norm(dim=-1) < (anchor - target).norm(dim=-1)).all())
    assert bool(((x_min - target).norm(dim=-1) > 1e-3).all())


def test_proximal_lm_fits_no_worse_than_adam_from_the_network_estimate():
    """From the network's estimate, plain LM's lower energy is a worse body (PA-MPJPE) than Adam's
    100 + 100; with the proximal term (the default weight) LM's bodies are no worse than Adam's in
    each of the three fits (per-view, calibrated, SMPLify; low model, 8 bundles x 4 views, 2 px)."""
    from mvspin.fitting import SMPLify, SMPLifyConfig
    from mvspin.fitting.evaluation import fit_pose_errors
    from mvspin.geometry import axis_angle_to_matrix

    body = BodyModel.free("low")
    cap = make_capture(body, sample_bodies(body, 8, torch.Generator().manual_seed(0)), 4, seed=1,
                       options=SyntheticOptions())
    gt, est = cap.gt, cap.estimate
    assert MVSMPLifyConfig().lm_proximal_weight > 0
    for mode in ("per_view", "calibrated", "smplify"):
        pa, energy = {}, {}
        for name, opt, weight in (("adam", "adam", 0.0), ("plain", "lm", 0.0), ("proximal", "lm", None)):
            extra = {} if weight is None else {"lm_proximal_weight": weight}
            if mode == "smplify":  # every view alone: B*V fits, compared view by view
                r = SMPLify(body, SMPLifyConfig(optimizer=opt, patience=0, **extra)).fit(
                    cap.crop_keypoints.flatten(0, 1), est.rotmat.flatten(0, 1), est.betas.flatten(0, 1),
                    est.cam.flatten(0, 1))
            else:
                f = MVSMPLify(body, MVSMPLifyConfig(mode=mode, optimizer=opt, patience=0, **extra))
                r = f.fit_per_view(cap.crop_keypoints, est) if mode == "per_view" else \
                    f.fit_calibrated(cap.keypoints, cap.cameras, est)
            _, a = fit_pose_errors(body, r, gt.body_pose, gt.betas, axis_angle_to_matrix(gt.global_orient),
                                   cap.crop_orient)
            pa[name], energy[name] = float(a.mean()), float(r.energy.sum())
        # measured: per-view 22.9 / 30.8 / 21.6 mm, calibrated 8.2 / 10.6 / 7.0, SMPLify 57.0 / 87.3 / 54.9
        assert pa["plain"] > pa["adam"] + 1.0, (mode, pa)
        assert pa["proximal"] <= pa["adam"], (mode, pa)
        assert energy["proximal"] > energy["plain"], (mode, energy)  # the term trades energy for the body


@pytest.mark.parametrize("mode, start", [("per_view", "network"), ("per_view", "mean"), ("calibrated", "network"),
                                         ("calibrated", "triangulation")])
def test_lm_fit_at_its_default_caps_reaches_adam_energy_from_every_start(mode, start):
    """LM at its damping and 7 + 14 caps ends at or below Adam 100 + 100's energy from the
    network's estimate, the mean pose and triangulation (with the former damping of 1e-3 it ended
    above Adam's from triangulation and the mean pose)."""
    body = BodyModel.free("low")
    params = sample_bodies(body, 4, torch.Generator().manual_seed(0))
    cap = make_capture(body, params, 3, seed=1, options=SyntheticOptions())
    # the solver's reach: plain LM on the SMPLify energy (no proximal term, which trades energy)
    base = MVSMPLifyConfig(mode=mode, patience=0, stage1_iterations=100, stage2_iterations=100, lm_proximal_weight=0.0)
    run = {}
    for opt in ("adam", "lm"):
        f = MVSMPLify(body, replace(base, optimizer=opt))
        if mode == "per_view":
            run[opt] = f.fit_per_view(cap.crop_keypoints, cap.estimate if start == "network" else PerViewEstimate.mean(body, 4, 3))
        else:
            run[opt] = f.fit_calibrated(cap.keypoints, cap.cameras, cap.estimate if start == "network" else None)
    assert bool(run["lm"].fitted.all())
    assert max(run["lm"].iterations) <= 14
    assert float(run["lm"].energy.sum()) <= float(run["adam"].energy.sum())


def test_pose_blend_shapes_use_the_exact_autograd_jacobian(tmp_path):
    """A SMPL-shaped model with pose blend shapes: the closed-form Jacobian holds them fixed, so
    the residual model takes forward-mode autograd instead; its gradient is autograd's."""
    from tests.body.fake_smpl import write_smpl_dir

    write_smpl_dir(tmp_path, spin_files=False)
    smpl = BodyModel.from_smpl_dir(tmp_path, dtype=torch.float64)
    assert smpl.has_pose_blendshapes
    small = BodyModel.free("low")
    cap = make_capture(small, sample_bodies(small, 2, torch.Generator().manual_seed(0)), 2, seed=1,
                       options=SyntheticOptions())
    _, system, x, energy, _ = _crop_stage2(smpl, cap)
    xg = x.clone().requires_grad_(True)
    (grad,) = torch.autograd.grad(energy(xg).sum(), xg)
    torch.testing.assert_close(system(x).grad, grad, rtol=1e-7, atol=1e-6 * float(grad.abs().max()))


def test_gmm_prior_gauss_newton_is_the_closest_component():
    from mvspin.body import GMMPosePrior

    g = torch.Generator().manual_seed(0)
    means = torch.randn(3, 69, generator=g, dtype=torch.float64) * 0.2
    a = torch.randn(3, 69, 69, generator=g, dtype=torch.float64) * 0.1
    covars = a @ a.transpose(1, 2) + 0.05 * torch.eye(69, dtype=torch.float64)
    prior = GMMPosePrior(means.numpy(), covars.numpy(), torch.tensor([0.5, 0.3, 0.2]).numpy()).double()
    x = (means[[2, 0]] + 0.05 * torch.randn(2, 69, generator=g, dtype=torch.float64)).requires_grad_(True)
    e = prior(x)
    (grad,) = torch.autograd.grad(e.sum(), x)
    energy, ours, hess = prior.gauss_newton(x.detach())
    torch.testing.assert_close(energy, e.detach())
    torch.testing.assert_close(ours, grad)
    torch.testing.assert_close(hess, prior.precisions[[2, 0]])  # each pose's closest component


def test_free_prior_and_angle_prior_gradients_equal_autograd():
    from mvspin.body import FreePosePrior, angle_prior, angle_prior_gauss_newton

    prior = FreePosePrior().double()
    x = (torch.randn(3, 69, generator=torch.Generator().manual_seed(1), dtype=torch.float64) * 1.5).requires_grad_(True)
    (g_free,) = torch.autograd.grad(prior(x).sum(), x)
    (g_angle,) = torch.autograd.grad(angle_prior(x).sum(), x)
    e, ours, hess = prior.gauss_newton(x.detach())
    torch.testing.assert_close(ours, g_free)
    torch.testing.assert_close(e, prior(x.detach()))
    # the curvature is the diagonal of the exact Hessian (a sum of squared one-component residuals)
    assert hess.shape == (3, 69) and bool((hess > 0).all()) and bool((hess > 0.1).any())
    for i in range(3):
        exact = torch.autograd.functional.hessian(lambda z: prior(z[None]).sum(), x[i].detach())
        torch.testing.assert_close(exact, torch.diag(hess[i]))
    ga, ha = angle_prior_gauss_newton(x.detach())
    torch.testing.assert_close(ga, g_angle)
    assert bool((ha >= 0).all()) and int((ha > 0).sum()) == 3 * 4


def test_calibrated_triangulation_start_runs_stage0_by_lm():
    body = BodyModel.free("low")
    cap = make_capture(body, sample_bodies(body, 3, torch.Generator().manual_seed(2)), 4, seed=3,
                       options=SyntheticOptions())
    r = MVSMPLify(body, MVSMPLifyConfig(mode="calibrated", optimizer="lm")).fit_calibrated(cap.keypoints, cap.cameras)
    assert r.iterations_3d > 0 and bool(r.fitted.all())
    assert float(r.reprojection_error.max()) < 10.0  # pixels, on 2 px noise


def test_stage0_alone_by_lm_with_adam_for_the_2d_stages():
    """``triangulation_fit_optimizer="lm"`` (fit-rig's key frames): stage 0 by LM within its cap,
    the 2D stages by Adam; stage 0 alone lands as close to the truth as 100 Adam steps do."""
    from mvspin.fitting import pose_errors
    from mvspin.geometry import axis_angle_to_matrix

    body = BodyModel.free("low")
    cap = make_capture(body, sample_bodies(body, 4, torch.Generator().manual_seed(5)), 4, seed=6,
                       options=SyntheticOptions())
    gt = cap.gt

    def stage0_only(optimizer):
        cfg = MVSMPLifyConfig(mode="calibrated", stage1_iterations=0, stage2_iterations=0,
                              triangulation_fit_optimizer=optimizer)
        r = MVSMPLify(body, cfg).fit_calibrated(cap.keypoints, cap.cameras)
        mpjpe, pa = pose_errors(body, r.body_pose, r.betas, r.world_orient, gt.body_pose, gt.betas,
                                axis_angle_to_matrix(gt.global_orient))
        return r, float(mpjpe.mean()), float(pa.mean())

    lm, lm_mpjpe, lm_pa = stage0_only("lm")
    adam, adam_mpjpe, adam_pa = stage0_only(None)  # the config's optimizer: adam
    assert 0 < lm.iterations_3d <= MVSMPLifyConfig().lm_stage2_iterations
    assert adam.iterations_3d > lm.iterations_3d
    assert lm_pa < adam_pa + 1.0 and lm_pa < 20.0, (lm_pa, adam_pa)  # mm, on 2 px noise (12.6 vs 13.8)
    assert lm_mpjpe < adam_mpjpe + 1.0, (lm_mpjpe, adam_mpjpe)  # 25.8 vs 25.9
    full = MVSMPLify(body, MVSMPLifyConfig(mode="calibrated", triangulation_fit_optimizer="lm",
                                           stage1_iterations=5, stage2_iterations=5)).fit_calibrated(
        cap.keypoints, cap.cameras)
    assert full.iterations == (5, 5)  # Adam's fixed counts (patience does not stop it this soon)
    with pytest.raises(ValueError, match="triangulation_fit_optimizer"):
        MVSMPLify(body, MVSMPLifyConfig(mode="calibrated", triangulation_fit_optimizer="newton"))


def test_reference_presets_keep_adam():
    assert MVSMPLifyConfig.preset("spin").optimizer == "adam"
    assert MVSMPLifyConfig.preset("mvspin_paper").optimizer == "adam"
    assert MVSMPLifyConfig().optimizer == "adam"
    cfg = MVSMPLifyConfig(optimizer="lm", stage1_iterations=3)
    body = BodyModel.free("low")
    cap = make_capture(body, sample_bodies(body, 2, torch.Generator().manual_seed(0)), 2, seed=1,
                       options=SyntheticOptions())
    r = MVSMPLify(body, cfg).fit_per_view(cap.crop_keypoints, cap.estimate)
    assert r.iterations[0] <= 3 and r.iterations[1] <= cfg.lm_stage2_iterations  # the counts are caps


def test_training_fits_by_lm_by_default_and_the_paper_config_by_adam():
    from pathlib import Path

    from mvspin.config import load_config
    from mvspin.learning.train_config import TrainConfig

    configs = Path(__file__).resolve().parents[2] / "configs"
    assert TrainConfig().fits.fitting.optimizer == "lm"
    assert load_config(TrainConfig, None).fits.fitting.optimizer == "lm"
    assert load_config(TrainConfig, configs / "synthetic_cpu.yaml").fits.fitting.optimizer == "lm"
    paper = load_config(TrainConfig, configs / "mvspin_h36m_3dhp.yaml").fits.fitting
    assert (paper.optimizer, paper.lr, paper.stage1_iterations, paper.stage2_iterations) == ("adam", 0.01, 100, 100)
    assert load_config(TrainConfig, None, ["fits.fitting.optimizer=adam"]).fits.fitting.optimizer == "adam"
