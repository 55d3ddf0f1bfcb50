"""Shared test settings and fixtures.

- A small thread count so the suite behaves on 2-core CI machines.
- ``device`` / ``dtype`` fixtures (kornia's pattern): a test that takes ``device`` runs on the
  CPU always and on CUDA when one is present; one that takes ``dtype`` runs in float32 and
  float64. Use ``tol(dtype)`` for a tolerance that fits the precision.
"""
import os

os.environ.setdefault("EGL_PLATFORM", "surfaceless")  # open3d offscreen rendering on CPU

import pytest
import torch

torch.set_num_threads(min(2, torch.get_num_threads()))

DEVICES = ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])
"""Devices every device-parametrised test runs on: CPU always, CUDA when present."""

DTYPES = [torch.float32, torch.float64]

_TOLERANCE = {torch.float32: 1e-5, torch.float64: 1e-10}


def tol(dtype: torch.dtype) -> float:
    """Absolute tolerance for results of unit magnitude computed in ``dtype``."""
    return _TOLERANCE[dtype]


@pytest.fixture(params=DEVICES)
def device(request) -> str:
    """``"cpu"``, and ``"cuda"`` when present (a string, like torch's ``device=`` arguments take)."""
    return request.param


@pytest.fixture(params=DTYPES, ids=["float32", "float64"])
def dtype(request) -> torch.dtype:
    return request.param


@pytest.fixture(scope="session")
def demo_keypoints(tmp_path_factory):
    """``(keypoints folder, demo folder)``: BlazePose's keypoints of the Pose2Sim demo's four videos
    (100 frames each; ``mvspin detect``'s OpenPose-layout folders), detected once per test session
    for every test that needs them. Skips, with one line, where the model files (`mvspin detect
    install-model`, which CI runs) or the recording (shared/data/pose2sim_demo) are missing."""
    from tests.detection.conftest import find_demo

    demo = find_demo()
    if demo is None:
        pytest.skip("the Pose2Sim demo recording (shared/data/pose2sim_demo) is not beside the repository")
    pytest.importorskip("ai_edge_litert", reason="ai-edge-litert is not installed (pip install 'mvspin[detect]')")
    from mvspin.apps.detect import DetectConfig, run
    from mvspin.detection.models import find_blazepose
    from mvspin.errors import ModelFilesError

    try:
        find_blazepose()
    except ModelFilesError:
        pytest.skip("BlazePose model files not installed (run `mvspin detect install-model`)")
    names = ["cam01", "cam02", "cam03", "cam04"]
    out = tmp_path_factory.mktemp("demo_keypoints") / "keypoints"
    run(DetectConfig(inputs=[str(demo / "videos" / f"{n}.mp4") for n in names], out=str(out), camera_names=names))
    return out, demo
