"""Opening videos: a damaged file is one mvspin line, without FFmpeg's own lines on the terminal."""
from __future__ import annotations

import cv2
import numpy as np
import pytest

from mvspin.data.video import video_info
from mvspin.errors import VideoError


def _video(path, frames=5):
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"mp4v"), 25.0, (64, 48))
    if not writer.isOpened():
        pytest.skip("OpenCV here cannot write mp4v")
    for i in range(frames):
        writer.write(np.full((48, 64, 3), 20 * i, np.uint8))
    writer.release()
    return path


def test_damaged_video_is_one_line_and_no_ffmpeg_noise(tmp_path, capfd):
    good = _video(tmp_path / "good.mp4")
    assert video_info(good).width == 64
    cut = tmp_path / "cut.mp4"
    cut.write_bytes(good.read_bytes()[:200])  # the header survives, the index (moov) does not
    capfd.readouterr()
    with pytest.raises(VideoError, match="cut.mp4: cannot open video"):
        video_info(cut)
    err = capfd.readouterr().err
    assert "moov" not in err and err.strip() == ""
