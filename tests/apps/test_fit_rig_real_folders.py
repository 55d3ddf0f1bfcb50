"""fit-rig on keypoint folders as real tools leave them (stray files beside the frames), and the
config rule that keypoints or videos must be given."""
from __future__ import annotations

import json
import shutil

import pytest

from calibration.formats import save_rig
from mvspin.apps.rig import FitRigConfig, fit_rig
from mvspin.body import BodyModel, BodyModelConfig
from mvspin.config import ConfigError
from mvspin.data.synthetic_recording import RecordingOptions, make_rig_recording, write_openpose_folders


def test_stray_files_are_skipped_and_named_in_the_report(tmp_path):
    body = BodyModel.free("low")
    rec = make_rig_recording(body, RecordingOptions(num_frames=8, num_views=4), seed=3)
    write_openpose_folders(rec.detections, rec.rig.names, tmp_path / "kp")
    save_rig(rec.rig, tmp_path / "rig.toml")
    strays = []
    for cam in rec.rig.names[:2]:  # as in Pose2Sim's published folders: del_<n>_0.json beside the frames
        frame = sorted((tmp_path / "kp" / cam).glob("*.json"))[0]
        for i in range(3):
            stray = tmp_path / "kp" / cam / f"del_{i:06d}_0.json"
            shutil.copy(frame, stray)
            strays.append(stray)
    report = fit_rig(FitRigConfig(rig=tmp_path / "rig.toml", keypoints=tmp_path / "kp", out=tmp_path / "out",
                                  body=BodyModelConfig(resolution="low")))
    assert report.summary["subjects"][0]["frames_fitted"] == 8
    listed = json.loads((tmp_path / "out" / "report.json").read_text())["skipped_keypoint_files"]
    assert sorted(row["file"] for row in listed) == sorted(str(p) for p in strays)
    assert all("del_#_{frame}.json" in row["why"] for row in listed)


def test_keypoints_or_videos(tmp_path):
    with pytest.raises(ConfigError) as err:
        FitRigConfig(rig=tmp_path / "rig.toml", out=tmp_path / "out")
    assert err.value.field == "keypoints"
    assert FitRigConfig(rig=tmp_path / "r.toml", out=tmp_path / "o", videos=[tmp_path / "a.mp4"]).keypoints is None
