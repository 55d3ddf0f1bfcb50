"""``SMPLifyConfig.compile``: the compiled stage energies give the eager fit (same energy, same
minimiser), and a platform where compiling fails fits eagerly with one warning.

The first compile on a machine takes about 45 s (inductor's cache makes later ones seconds), so
one per-view fit is compiled here, on a small batch."""
from __future__ import annotations

import warnings
from dataclasses import replace

import pytest
import torch

from mvspin.fitting import MVSMPLify, MVSMPLifyConfig, PerViewEstimate
from mvspin.fitting.compiled import MaybeCompiled

SHORT = MVSMPLifyConfig(mode="per_view", stage1_iterations=15, stage2_iterations=15, patience=0)


def _inputs(capture):
    est = capture.estimate
    return capture.crop_keypoints[:2, :2], PerViewEstimate(est.rotmat[:2, :2], est.betas[:2, :2], est.cam[:2, :2])


def test_compiled_fit_is_the_eager_fit(body, capture):
    pytest.importorskip("torch._inductor")
    kp, est = _inputs(capture)
    eager = MVSMPLify(body, SHORT).fit_per_view(kp, est)
    fitter = MVSMPLify(body, replace(SHORT, compile=True))
    with warnings.catch_warnings():
        warnings.simplefilter("error", RuntimeWarning)  # a failed compile would warn: not here
        compiled = fitter.fit_per_view(kp, est)
    assert isinstance(fitter._crop_stage2, MaybeCompiled) and not fitter._crop_stage2.failed
    assert fitter._crop_stage2.compiled is not None
    # float32 kernels fused differently: the same fit to rounding, over 30 Adam steps
    torch.testing.assert_close(compiled.energy, eager.energy, rtol=1e-3, atol=1e-2)
    torch.testing.assert_close(compiled.body_pose, eager.body_pose, rtol=0, atol=2e-3)
    torch.testing.assert_close(compiled.betas, eager.betas, rtol=0, atol=2e-3)


def test_a_failed_compile_falls_back_to_eager_with_one_warning(body, capture, monkeypatch):
    def broken_compile(fn, **kwargs):
        def run(*args):
            raise RuntimeError("InvalidCxxCompiler: no working C++ compiler found\nmore detail")
        return run

    monkeypatch.setattr(torch, "compile", broken_compile)
    kp, est = _inputs(capture)
    eager = MVSMPLify(body, SHORT).fit_per_view(kp, est)
    fitter = MVSMPLify(body, replace(SHORT, compile=True))
    with pytest.warns(RuntimeWarning, match="torch.compile failed .*no working C\\+\\+ compiler") as caught:
        result = fitter.fit_per_view(kp, est)
    assert len([w for w in caught if "torch.compile failed" in str(w.message)]) == 2  # stage 1 and stage 2, once each
    torch.testing.assert_close(result.energy, eager.energy)
    torch.testing.assert_close(result.body_pose, eager.body_pose)


def test_errors_of_the_function_itself_are_not_hidden():
    def shape_error(x):
        raise ValueError("x must be (B, 3)")

    wrapped = MaybeCompiled(shape_error, "test")
    wrapped.compiled = shape_error  # as if compiled: the compiled call raises, then eager raises the same
    with torch.enable_grad(), pytest.raises(ValueError, match="must be"):
        wrapped(torch.zeros(2))


def test_compiled_calibrated_fit_is_the_eager_fit(body, capture):
    pytest.importorskip("torch._inductor")
    cfg = replace(SHORT, mode="calibrated")
    kp = capture.keypoints[:2]
    cams = type(capture.cameras)(*(None if x is None else x[:2] for x in capture.cameras))  # (B, V) rigs
    init = PerViewEstimate(*(x[:2] for x in (capture.estimate.rotmat, capture.estimate.betas, capture.estimate.cam)))
    eager = MVSMPLify(body, cfg).fit_calibrated(kp, cams, init)
    fitter = MVSMPLify(body, replace(cfg, compile=True))
    with warnings.catch_warnings():
        warnings.simplefilter("error", RuntimeWarning)
        compiled = fitter.fit_calibrated(kp, cams, init)
    assert isinstance(fitter._world_stage2, MaybeCompiled) and fitter._world_stage2.compiled is not None
    torch.testing.assert_close(compiled.energy, eager.energy, rtol=1e-3, atol=1e-2)
    torch.testing.assert_close(compiled.body_pose, eager.body_pose, rtol=0, atol=2e-3)
    torch.testing.assert_close(compiled.world_transl, eager.world_transl, rtol=0, atol=1e-3)


def test_compiled_lm_systems_give_the_eager_lm_fit(body, capture):
    # with optimizer="lm" the compiled functions are the stage systems (energy, gradient and
    # Gauss-Newton matrix, run under no_grad): equal to the eager systems at the same point to
    # float32 rounding, and the same minimum
    pytest.importorskip("torch._inductor")
    import mvspin.fitting.engine as engine

    kp, est = _inputs(capture)
    # run to convergence (rounding changes which trial steps are accepted on the way)
    cfg = replace(SHORT, optimizer="lm", stage1_iterations=60, stage2_iterations=60, lm_stage1_iterations=60,
                  lm_stage2_iterations=60)
    systems = {}
    real_lm = engine.levenberg_marquardt

    def keep_systems(key):
        def lm(evaluate, x0, *args, **kwargs):
            systems.setdefault(key, []).append((evaluate, x0.clone()))
            return real_lm(evaluate, x0, *args, **kwargs)
        return lm

    calls = []
    real_compile = torch.compile

    def counting_compile(fn, **kwargs):
        calls.append(fn)
        return real_compile(fn, **kwargs)

    with warnings.catch_warnings(), pytest.MonkeyPatch.context() as mp:
        mp.setattr(engine, "levenberg_marquardt", keep_systems("eager"))
        eager = MVSMPLify(body, cfg).fit_per_view(kp, est)
        warnings.simplefilter("error", RuntimeWarning)
        mp.setattr(torch, "compile", counting_compile)
        mp.setattr(engine, "levenberg_marquardt", keep_systems("compiled"))
        compiled = MVSMPLify(body, replace(cfg, compile=True)).fit_per_view(kp, est)
    assert len(calls) == 2  # the LM systems of stage 1 and stage 2
    for (eager_system, x), (compiled_system, _) in zip(systems["eager"], systems["compiled"]):
        with torch.no_grad():
            e, c = eager_system(x), compiled_system(x)  # both stages, at the eager start of each
        for name in ("energy", "grad", "hess"):
            a, b = getattr(e, name), getattr(c, name)
            assert float((a - b).abs().max()) <= 1e-5 * float(a.abs().max()), name
    # The minimum is flat: the two fits' paths part by rounding, and their ends differ by up to
    # 2e-4 of the energy either way (measured: eager lower on one bundle, compiled on another).
    torch.testing.assert_close(compiled.energy, eager.energy, rtol=5e-4, atol=1e-2)
    # The minimum is flat along a few joint rotations (a collar or spine twist moves no keypoint
    # much: poses part there by up to 0.05), so the fits are compared where the data see them.
    torch.testing.assert_close(compiled.reprojection_error, eager.reprojection_error, rtol=0, atol=0.02)
    torch.testing.assert_close(compiled.view_reprojection_error, eager.view_reprojection_error, rtol=0, atol=0.05)
    torch.testing.assert_close(compiled.betas, eager.betas, rtol=0, atol=2e-2)


def test_a_compiled_lm_fit_compiles_each_system_once(body, capture):
    # a guarded lookup inside the energy (a cache filled on first use) recompiled the whole stage
    # on its second call: no recompile may happen within a fit, from a fresh start
    pytest.importorskip("torch._inductor")
    import torch._dynamo

    from mvspin.body import priors

    kp, est = _inputs(capture)
    cfg = replace(SHORT, optimizer="lm", compile=True)
    torch._dynamo.reset()
    priors._ANGLE_PRIOR_TENSORS.clear()
    with warnings.catch_warnings(), pytest.MonkeyPatch.context() as mp:
        warnings.simplefilter("error", RuntimeWarning)  # a recompile raises, and MaybeCompiled would warn
        mp.setattr(torch._dynamo.config, "error_on_recompile", True)
        result = MVSMPLify(body, cfg).fit_per_view(kp, est)
    assert bool(result.fitted.all())
