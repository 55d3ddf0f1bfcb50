"""fit-rig's overlay videos: H.264 through PyAV (mp4v with one log line without it), and overlays
for cameras given as image folders."""
from __future__ import annotations

import logging
import sys

import numpy as np
import pytest
import torch

from calibration.formats import save_rig
from mvspin.body import BodyModel
from mvspin.body.config import BodyModelConfig
from mvspin.data.synthetic_recording import RecordingOptions, make_rig_recording, write_openpose_folders
from mvspin.io_outputs import VideoWriter, write_image


@pytest.fixture(autouse=True)
def one_thread():
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def _codec(path) -> tuple[str, str, int]:
    av = pytest.importorskip("av", reason="reading the codec needs PyAV (pip install 'mvspin[video]')")
    with av.open(str(path)) as container:
        ctx = container.streams.video[0].codec_context
        return ctx.name, ctx.pix_fmt, sum(1 for _ in container.decode(video=0))


def test_h264_with_pyav_and_mp4v_fallback_with_one_line(tmp_path, monkeypatch, caplog):
    import mvspin.io_outputs as io

    pytest.importorskip("av", reason="H.264 needs PyAV (pip install 'mvspin[video]')")
    frames = [np.full((71, 97, 3), 10 * i, np.uint8) for i in range(6)]  # odd sizes: padded to even
    with VideoWriter(tmp_path / "h264.mp4", fps=25) as video:
        for f in frames:
            video.write(f)
    assert video.codec == "h264" and _codec(tmp_path / "h264.mp4") == ("h264", "yuv420p", 6)
    monkeypatch.setitem(sys.modules, "av", None)  # PyAV not installed
    monkeypatch.setattr(io, "_H264_FALLBACK_LOGGED", False)
    with caplog.at_level(logging.WARNING, logger="mvspin"):
        for name in ("a.mp4", "b.mp4"):
            with VideoWriter(tmp_path / name, fps=25) as video:
                for f in frames:
                    video.write(f)
            assert video.codec == "mp4v"
    lines = [r.getMessage() for r in caplog.records]
    assert len(lines) == 1 and "mp4v" in lines[0] and "mvspin[video]" in lines[0]
    monkeypatch.undo()
    assert _codec(tmp_path / "a.mp4")[0] == "mpeg4" and _codec(tmp_path / "a.mp4")[2] == 6


def test_image_folder_cameras_get_overlays(tmp_path):
    from mvspin.apps.rig import FitRigConfig, fit_rig
    from mvspin.data.video import VideoFrames

    body = BodyModel.free("low")
    rec = make_rig_recording(body, RecordingOptions(num_frames=6, num_views=3, image_size=(320, 240), focal=300.0),
                             seed=2)
    write_openpose_folders(rec.detections, rec.rig.names, tmp_path / "kp")
    save_rig(rec.rig, tmp_path / "rig.toml")
    folders = []
    for cam in rec.rig:
        w, h = cam.image_size
        for t in range(6):  # named like the keypoint files: the frame number is the last number
            write_image(tmp_path / "images" / cam.name / f"img_{t:04d}.png", np.full((h, w, 3), 20, np.uint8))
        folders.append(tmp_path / "images" / cam.name)
    report = fit_rig(FitRigConfig(rig=tmp_path / "rig.toml", keypoints=tmp_path / "kp", out=tmp_path / "out",
                                  videos=folders, fps=25.0, body=BodyModelConfig(resolution="low")))
    overlay = tmp_path / "out" / f"overlay_{rec.rig.names[1]}.mp4"
    assert overlay in report.files
    frames = list(VideoFrames(overlay))
    assert len(frames) == 6
    with torch.no_grad():
        g = rec.gt
        pelvis = body(body_pose=g.body_pose, betas=g.betas, global_orient=g.global_orient, transl=g.transl).joints[:, 0]
    uv = rec.rig[1].project(pelvis.double().numpy())
    for t in (0, 5):
        x, y = np.round(uv[t]).astype(int)
        assert frames[t][y - 4:y + 5, x - 4:x + 5].max() > 120  # the skeleton drawn on the dark image
