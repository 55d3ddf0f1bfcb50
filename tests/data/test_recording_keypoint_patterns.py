"""Real keypoint folders as they come: the dominant naming pattern per camera, strays listed."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from mvspin.data.keypoint_files import KeypointFileError
from mvspin.data.recording_keypoints import dominant_pattern, file_pattern, read_recording_keypoints


def _write(path: Path, x: float, k: int = 25) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    kp = np.tile([x, 2 * x, 0.9], (k, 1)).reshape(-1).tolist()
    path.write_text(json.dumps({"people": [{"person_id": [-1], "pose_keypoints_2d": kp}]}))


def test_patterns():
    assert file_pattern(Path("cam03.0000.json")) == "cam#.{frame}.json"
    assert file_pattern(Path("cam03.0012.json")) == file_pattern(Path("cam03.0000.json"))
    assert file_pattern(Path("cam03_000000000012_keypoints.json")) == "cam#_{frame}_keypoints.json"
    assert file_pattern(Path("notes.json")) is None


def test_stray_files_are_skipped_and_listed(tmp_path):
    for cam in ("cam01", "cam02"):
        for f in range(6):
            _write(tmp_path / cam / f"{cam}_{f:012d}_keypoints.json", 10.0 + f)
    # Pose2Sim's published folders: stray files whose last number is 0, and a file with no number
    for i in range(3):
        _write(tmp_path / "cam02" / f"del_{i:06d}_0.json", 999.0)
    (tmp_path / "cam02" / "readme.json").write_text("{}")
    rec = read_recording_keypoints(tmp_path, ["cam01", "cam02"])
    assert rec.num_frames == 6 and not rec.missing.any()
    np.testing.assert_allclose(rec.keypoints[:, 1, 0, 0, 0], 10.0 + np.arange(6))  # no 999 read
    skipped = {p.name: why for p, why in rec.skipped}
    assert set(skipped) == {"del_000000_0.json", "del_000001_0.json", "del_000002_0.json", "readme.json"}
    assert "del_#_{frame}.json" in skipped["del_000001_0.json"] and "cam#_{frame}_keypoints.json" in skipped[
        "del_000001_0.json"]
    assert "no frame number" in skipped["readme.json"]


def test_two_files_for_one_frame_within_the_pattern_stay_an_error(tmp_path):
    for f in range(4):
        _write(tmp_path / "a" / f"a_{f:04d}.json", 1.0)
    _write(tmp_path / "a" / "a_00000.json", 1.0)  # the same pattern, frame 0 again
    with pytest.raises(KeypointFileError, match="a second file for frame 0"):
        read_recording_keypoints(tmp_path, ["a"])


def test_a_tie_between_patterns_is_an_error(tmp_path):
    files = [tmp_path / f"x_{i}.json" for i in range(2)] + [tmp_path / f"y_{i}.json" for i in range(2)]
    with pytest.raises(KeypointFileError, match="cannot tell"):
        dominant_pattern(files)
