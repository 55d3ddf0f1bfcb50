"""Shared fixtures: the low-resolution free model and the 4-camera synthetic capture."""
import pytest
import torch

from mvspin.body import BodyModel
from mvspin.data.synthetic_keypoints import SyntheticOptions, make_capture, sample_bodies

BUNDLES = 8
VIEWS = 4


@pytest.fixture(scope="session")
def body() -> BodyModel:
    return BodyModel.free("low")


@pytest.fixture(scope="session")
def gt_bodies(body):
    return sample_bodies(body, BUNDLES, torch.Generator().manual_seed(0))


@pytest.fixture(scope="session")
def capture(body, gt_bodies):
    """4 views, 1000x1000 px, focal 1000 px, noise 2 px, 10% keypoints dropped (the issue's setting)."""
    return make_capture(body, gt_bodies, VIEWS, seed=1, options=SyntheticOptions())


@pytest.fixture(autouse=True, scope="package")
def one_thread():
    """Fitting runs thousands of tiny tensor operations: on a shared 2-core machine one intra-op
    thread is several times faster than two (no synchronisation). Restored afterwards."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)
