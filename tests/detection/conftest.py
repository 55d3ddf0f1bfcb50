"""Fixtures of the detection tests: the BlazePose model files and the real demo recording.

Both are outside the repository: the model files come from ``mvspin detect install-model`` (CI
runs it), the recording from ``shared/data/pose2sim_demo`` beside the repository (CI has it).
Tests that need one skip, with one line saying why, where it is missing.
"""
from __future__ import annotations

from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


def find_demo() -> Path | None:
    """``shared/data/pose2sim_demo`` beside the repository root or beside one of its parents (a
    worktree may sit deeper than the clone CI makes)."""
    for folder in (ROOT, *ROOT.parents):
        candidate = folder / "shared" / "data" / "pose2sim_demo"
        if (candidate / "videos").is_dir():
            return candidate
    return None


@pytest.fixture(scope="session")
def demo() -> Path:
    path = find_demo()
    if path is None:
        pytest.skip("the Pose2Sim demo recording (shared/data/pose2sim_demo) is not beside the repository")
    return path


@pytest.fixture(scope="session")
def blazepose_files():
    pytest.importorskip("ai_edge_litert", reason="ai-edge-litert is not installed (pip install 'mvspin[detect]')")
    from mvspin.detection.models import find_blazepose
    from mvspin.errors import ModelFilesError

    try:
        return find_blazepose()
    except ModelFilesError:
        pytest.skip("BlazePose model files not installed (run `mvspin detect install-model`)")


@pytest.fixture(scope="session")
def blazepose(blazepose_files):
    from mvspin.detection.blazepose import BlazePose

    return BlazePose(blazepose_files, threads=1)


def read_frames(video: Path, count: int):
    """The first ``count`` frames of a video, RGB."""
    import cv2

    cap = cv2.VideoCapture(str(video))
    frames = []
    while len(frames) < count:
        ok, frame = cap.read()
        if not ok:
            break
        frames.append(cv2.cvtColor(frame, cv2.COLOR_BGR2RGB))
    cap.release()
    return frames
