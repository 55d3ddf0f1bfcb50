"""BlazePose on the real Pose2Sim demo recording (four 1080x1920 cameras, a walking subject and a
bystander at the back): stable detections, then fit-rig from the videos alone."""
from __future__ import annotations

import json

import cv2
import numpy as np

from mvspin.detection.blazepose import BlazePoseOptions
from mvspin.detection.runner import BlazePoseDetector, detect_sequence
from tests.detection.conftest import read_frames

FRAMES = 12


def _subject(people):
    """Keypoints of person 0 of each frame, ``(T, 33, 3)``."""
    return np.stack([dict(p)[0] for p in people])


def test_detections_repeat_exactly_and_survive_a_2x_smaller_video(demo, blazepose):
    frames = read_frames(demo / "videos" / "cam01.mp4", FRAMES)  # the camera with the bystander
    detector = BlazePoseDetector(blazepose, BlazePoseOptions())
    first = detect_sequence(frames, detector)
    again = detect_sequence(frames, detector)
    assert all(len(p) >= 1 and p[0][0] == 0 for p in first)  # the subject in every frame, id 0
    for a, b in zip(first, again):
        assert [i for i, _ in a] == [i for i, _ in b]
        for (_, ka), (_, kb) in zip(a, b):
            np.testing.assert_array_equal(ka, kb)
    small = [cv2.resize(f, (f.shape[1] // 2, f.shape[0] // 2), interpolation=cv2.INTER_AREA) for f in frames]
    half = detect_sequence(small, detector)
    full_kp, half_kp = _subject(first), _subject(half)
    # pixel-centre coordinates: x_full + 0.5 = 2 (x_half + 0.5)
    scaled = 2 * (half_kp[..., :2] + 0.5) - 0.5
    seen = (full_kp[..., 2] > 0.5) & (half_kp[..., 2] > 0.5)
    height = np.ptp(full_kp[..., 1], axis=1)  # nose-to-foot extent per frame, pixels
    assert height.min() > 500  # the subject (the bystander is under 400 px tall in this camera)
    diff = np.linalg.norm(full_kp[..., :2] - scaled, axis=-1)
    relative = np.median(diff[seen]) / np.median(height)
    assert seen.mean() > 0.8 and relative < 0.02, relative


def test_fit_rig_from_the_demo_videos_alone(demo, blazepose_files, tmp_path):
    from mvspin.apps.detect import REPORT_NAME, DetectConfig, run as detect
    from mvspin.apps.rig import FitRigConfig, fit_rig

    folders = []
    for cam in ("cam01", "cam02", "cam03", "cam04"):  # the first frames, as image folders (no overlay video)
        folder = tmp_path / "frames" / cam
        folder.mkdir(parents=True)
        for i, frame in enumerate(read_frames(demo / "videos" / f"{cam}.mp4", FRAMES)):
            cv2.imwrite(str(folder / f"{i:04d}.png"), cv2.cvtColor(frame, cv2.COLOR_RGB2BGR))
        folders.append(folder)
    out = tmp_path / "fit"
    report = fit_rig(FitRigConfig(rig=demo / "calibration" / "Calib.qca.txt", videos=folders, out=out, fps=60))
    subject = report.summary["subjects"][0]
    assert subject["frames_fitted"] == FRAMES and subject["frames_failed"] == []
    for cam, stats in subject["per_camera"].items():
        assert stats["frames_seen"] == FRAMES and stats["mean_px"] < 30, (cam, stats)
    # the detections were written per camera, the subject tall in every view
    for cam in ("cam01", "cam02", "cam03", "cam04"):
        files = sorted((out / "keypoints" / cam).glob("*.json"))
        assert len(files) == FRAMES
        people = json.loads(files[0].read_text())["people"]
        kp = np.asarray(people[0]["pose_keypoints_2d"]).reshape(33, 3)
        assert people[0]["person_id"] == [0] and np.ptp(kp[:, 1]) > 500
    # a rerun keeps the detections (what fit-rig does when run again into the same folder)
    again = detect(DetectConfig(inputs=[str(f) for f in folders], out=str(out / "keypoints"),
                                camera_names=["cam01", "cam02", "cam03", "cam04"], reuse=True))
    assert all(c.reused for c in again.cameras)
    assert json.loads((out / "keypoints" / REPORT_NAME).read_text())["cameras"][0]["reused"] is True
