"""The detect job and command: outputs, reruns, and bad inputs (one line each, nothing half-written)."""
from __future__ import annotations

import json
from pathlib import Path

import cv2
import numpy as np
import pytest

from mvspin.apps.detect import REPORT_NAME, DetectConfig, run
from mvspin.cli.main import main
from mvspin.config import ConfigError
from mvspin.errors import DetectionError, ModelFilesError
from tests.detection.conftest import read_frames


def _no_temporaries(folder: Path) -> bool:
    return not any("mvspin-tmp" in p.name for p in folder.rglob("*"))


def _image_folder(folder: Path, frames) -> Path:
    folder.mkdir(parents=True)
    for i, f in enumerate(frames):
        cv2.imwrite(str(folder / f"img_{i}.jpg"), cv2.cvtColor(f, cv2.COLOR_RGB2BGR))
    return folder


def test_config_checks_name_the_field():
    with pytest.raises(ConfigError) as err:
        DetectConfig(inputs=["a.mp4"], out="o", detector="yolo")
    assert err.value.field == "detector"
    with pytest.raises(ConfigError, match="same camera name") as err:
        DetectConfig(inputs=["x/cam1.mp4", "y/cam1.mp4"], out="o")
    assert DetectConfig(inputs=["x/cam1.mp4", "y/cam1.mp4"], out="o", camera_names=["a", "b"]).camera_names == ["a", "b"]
    with pytest.raises(ConfigError) as err:
        DetectConfig(inputs=["a.mp4"], out="o", detector="onnx")
    assert err.value.field == "model"
    with pytest.raises(ConfigError) as err:
        DetectConfig(inputs=["a.mp4"], out="o", max_frames=0)
    assert err.value.field == "max_frames"


def test_no_model_files_is_one_line_and_leaves_no_folder(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("MVSPIN_HOME", str(tmp_path / "empty"))
    video = tmp_path / "cam1.mp4"
    video.write_bytes(b"x")
    with pytest.raises(ModelFilesError, match="mvspin detect install-model"):
        run(DetectConfig(inputs=[str(video)], out=str(tmp_path / "kp")))
    assert not (tmp_path / "kp").exists()
    assert main(["detect", str(video), "-o", str(tmp_path / "kp")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "install-model" in err[0]
    assert not (tmp_path / "kp").exists()


def test_bad_inputs_fail_alone_and_the_others_finish(tmp_path, demo, blazepose_files, capsys):
    frames = read_frames(demo / "videos" / "cam02.mp4", 4)
    good = _image_folder(tmp_path / "good", frames)
    short = _image_folder(tmp_path / "short", frames[:3])
    empty = tmp_path / "empty"
    empty.mkdir()
    (empty / "notes.txt").write_text("no images here")
    broken = tmp_path / "broken.mp4"
    broken.write_bytes(b"\x00\x00\x00\x18ftypmp42" + bytes(200))  # an MP4 header and nothing after it
    out = tmp_path / "kp"
    report = run(DetectConfig(inputs=[str(good), str(empty), str(broken), str(short)], out=str(out)))
    by_name = {c.name: c for c in report.cameras}
    assert by_name["good"].error is None and by_name["good"].frames == 4 and by_name["good"].frames_with_people == 4
    assert "no images in the folder" in by_name["empty"].error and str(empty) in by_name["empty"].error
    assert str(broken) in by_name["broken"].error
    assert all("\n" not in c.error for c in report.failed)
    assert {c.name for c in report.failed} == {"empty", "broken"}
    assert any("short (3)" in w for w in report.warnings)
    # the good cameras are complete, the failed ones left nothing behind
    assert sorted(p.name for p in out.iterdir()) == ["detect.json", "good", "short"]
    assert len(list((out / "good").glob("good_*_keypoints.json"))) == 4
    assert _no_temporaries(out)
    record = json.loads((out / REPORT_NAME).read_text())
    assert record["keypoint_set"] == "blazepose33" and record["cameras"][2]["error"]
    # the command: a summary with frames/s, the failures named, exit status 2
    assert main(["detect", str(good), str(broken), "-o", str(tmp_path / "kp2")]) == 2
    printed = capsys.readouterr().out
    assert "frames/s" in printed and "failed" in printed and "broken.mp4" in printed


def test_rerun_writes_identical_files(tmp_path, demo, blazepose_files):
    inputs = [str(demo / "videos" / "cam03.mp4")]
    first = run(DetectConfig(inputs=inputs, out=str(tmp_path / "a"), max_frames=6))
    second = run(DetectConfig(inputs=inputs, out=str(tmp_path / "b"), max_frames=6))
    a = sorted((tmp_path / "a" / "cam03").iterdir())
    b = sorted((tmp_path / "b" / "cam03").iterdir())
    assert [p.name for p in a] == [p.name for p in b] and len(a) == 6
    assert all(x.read_bytes() == y.read_bytes() for x, y in zip(a, b))
    assert first.cameras[0].people == second.cameras[0].people == 1
    # rerunning into the same folder replaces the camera folder whole
    run(DetectConfig(inputs=inputs, out=str(tmp_path / "a"), max_frames=3))
    assert len(list((tmp_path / "a" / "cam03").iterdir())) == 3 and _no_temporaries(tmp_path / "a")


def test_a_video_shorter_than_the_others_stops_fit_rig_before_fitting(tmp_path, demo, blazepose_files):
    from mvspin.apps.rig import FitRigConfig, fit_rig

    blank = [np.zeros((64, 48, 3), np.uint8)] * 3
    folders = [_image_folder(tmp_path / f"cam0{i}", blank if i != 3 else blank[:2]) for i in (1, 2, 3, 4)]
    with pytest.raises(DetectionError, match=r"videos of different lengths: cam03 has 2 frames, the others 3"):
        fit_rig(FitRigConfig(rig=demo / "calibration" / "Calib.qca.txt", videos=folders, out=tmp_path / "fit"))
    assert not (tmp_path / "fit" / "subject0.npz").exists()


def test_onnx_detector_with_a_file_that_is_not_a_pose_model(tmp_path, capsys):
    pytest.importorskip("onnxruntime")
    pytest.importorskip("onnx")
    import torch

    model = tmp_path / "classifier.onnx"
    torch.onnx.export(torch.nn.Linear(10, 3), (torch.zeros(1, 10),), str(model), dynamo=False)
    video = tmp_path / "cam1.mp4"
    video.write_bytes(b"x")
    assert main(["detect", str(video), "--detector", "onnx", "--model", str(model), "-o", str(tmp_path / "kp")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "classifier.onnx: not an RTMPose SimCC pose model" in err[0]
    assert not (tmp_path / "kp").exists()
