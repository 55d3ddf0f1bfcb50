import math
import pickle

import numpy as np
import pytest
import torch

from mvspin.body.priors import JOINT_LIMITS_DEG, FreePosePrior, GMMPosePrior, angle_prior, shape_prior


def _gmm(seed=0):
    rng = np.random.default_rng(seed)
    means = rng.normal(scale=0.3, size=(3, 69))
    a = rng.normal(size=(3, 69, 69)) * 0.05
    covars = a @ a.transpose(0, 2, 1) + 0.02 * np.eye(69)
    weights = np.array([0.5, 0.3, 0.2])
    return means, covars, weights


def test_gmm_energy_matches_hand_computation():
    means, covars, weights = _gmm()
    prior = GMMPosePrior(means, covars, weights).double()
    x = np.random.default_rng(1).normal(scale=0.3, size=(4, 69))
    sqrt_dets = np.sqrt(np.linalg.det(covars))
    expected = []
    for xi in x:
        comps = []
        for k in range(3):
            d = xi - means[k]
            w = weights[k] / ((2 * math.pi) ** 34.5 * sqrt_dets[k] / sqrt_dets.min())
            comps.append(0.5 * d @ np.linalg.solve(covars[k], d) - math.log(w))
        expected.append(min(comps))
    got = prior(torch.as_tensor(x)).numpy()
    np.testing.assert_allclose(got, expected, rtol=1e-4)
    # the minimum over poses is at the mean of the best-weighted component
    at_mean = prior(torch.as_tensor(means, dtype=torch.float64))
    assert (at_mean <= prior(torch.as_tensor(means + 0.1, dtype=torch.float64))).all()


def test_gmm_from_pickle(tmp_path):
    means, covars, weights = _gmm(2)
    path = tmp_path / "gmm_08.pkl"
    with open(path, "wb") as f:
        pickle.dump({"means": means, "covars": covars, "weights": weights}, f, protocol=2)
    prior = GMMPosePrior.from_pickle(path)
    assert prior.means.shape == (3, 69)
    with pytest.raises(ValueError, match="covars"):
        GMMPosePrior(means, covars[:, :10, :10], weights)


def test_free_prior_zero_inside_limits_positive_outside():
    prior = FreePosePrior(l2_weight=0.0)
    inside = prior.sample(64, generator=torch.Generator().manual_seed(0), spread=1.0)
    assert prior(inside).abs().max() == 0
    assert ((inside >= prior.lower) & (inside <= prior.upper)).all()
    bent_back = torch.zeros(1, 69)
    bent_back[0, 3 * 3 + 0] = math.radians(-40)  # left knee hyper-extended by 40 deg (limit -5)
    assert prior(bent_back).item() == pytest.approx(math.radians(35) ** 2, rel=1e-5)


def test_free_prior_mirrors_left_to_right():
    prior = FreePosePrior()
    lo, hi = prior.lower.reshape(23, 3), prior.upper.reshape(23, 3)
    left, right = 16 - 1, 17 - 1  # shoulders (body-pose index = joint - 1)
    lim = np.radians(JOINT_LIMITS_DEG["left_shoulder"])
    np.testing.assert_allclose(lo[left].numpy(), lim[:, 0], rtol=1e-6)
    np.testing.assert_allclose(lo[right].numpy(), [lim[0, 0], -lim[1, 1], -lim[2, 1]], rtol=1e-6)
    np.testing.assert_allclose(hi[right].numpy(), [lim[0, 1], -lim[1, 0], -lim[2, 0]], rtol=1e-6)


def test_angle_prior_penalises_hyperextension_only():
    def energy(joint, axis, value):
        pose = torch.zeros(1, 69)
        pose[0, (joint - 1) * 3 + axis] = value
        return angle_prior(pose).item()

    rest = energy(4, 0, 0.0)
    assert energy(4, 0, -0.5) > rest > energy(4, 0, 0.5)  # left knee: -x hyper-extends
    assert energy(18, 1, 0.5) > rest > energy(18, 1, -0.5)  # left elbow: +y hyper-extends
    assert energy(19, 1, -0.5) > rest > energy(19, 1, 0.5)  # right elbow mirrored


def test_shape_prior_and_shape_errors():
    assert shape_prior(torch.tensor([[3.0, 4.0]])).item() == 25.0
    with pytest.raises(ValueError, match=r"\(B, 69\)"):
        FreePosePrior()(torch.zeros(2, 68))


def test_gmm_samples_follow_the_mixture():
    means = np.zeros((2, 69))
    means[1] = 1.0
    covars = np.stack([0.01 * np.eye(69), 0.04 * np.eye(69)])
    prior = GMMPosePrior(means, covars, np.array([1.0, 3.0]))  # unnormalised: 25 % / 75 %
    x = prior.sample(4000, generator=torch.Generator().manual_seed(0))
    assert x.shape == (4000, 69) and x.dtype == prior.means.dtype
    x = x.double()
    second = x.mean(-1) > 0.5
    assert abs(second.double().mean().item() - 0.75) < 0.03
    np.testing.assert_allclose(x[second].mean(0).numpy(), 1.0, atol=0.03)
    np.testing.assert_allclose(x[second].std(0).mean().item(), 0.2, rtol=0.05)
    np.testing.assert_allclose(x[~second].std(0).mean().item(), 0.1, rtol=0.05)
    half = prior.sample(4000, generator=torch.Generator().manual_seed(1), spread=0.5).double()
    np.testing.assert_allclose(half[half.mean(-1) > 0.5].std(0).mean().item(), 0.1, rtol=0.05)


def test_model_gallery_samples_an_official_models_gmm_prior(tmp_path):
    """render-model draws its prior samples from the GMM when the SMPL directory has one."""
    from mvspin.apps.render_model import model_gallery
    from mvspin.body import BodyModel
    from tests.body.fake_smpl import write_smpl_dir

    write_smpl_dir(tmp_path)
    means, covars, weights = _gmm(3)
    with open(tmp_path / "gmm_08.pkl", "wb") as f:
        pickle.dump({"means": means, "covars": covars, "weights": weights}, f, protocol=2)
    body = BodyModel.load(tmp_path)
    assert isinstance(body.pose_prior(), GMMPosePrior)
    panels = model_gallery(body, 3, seed=0)
    samples = [pose for label, pose, _ in panels if label.startswith("prior sample")]
    assert len(samples) == 3 and all(p.shape == (69,) for p in samples)
    # near one of the components (spread 0.25 of their standard deviation)
    nearest = torch.cdist(torch.stack(samples).double(), torch.as_tensor(means)).min(1).values
    assert float(nearest.max()) < 0.25 * float(np.sqrt(np.trace(covars, axis1=1, axis2=2)).max()) * 1.5
