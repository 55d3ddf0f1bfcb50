"""Frame offsets of unsynchronised cameras from keypoints: a walking stick figure seen by four
cameras that started recording at different, sub-frame moments; and, where the detector's
keypoints of the Pose2Sim demo are at hand ($MVSPIN_DEMO_KEYPOINTS), the demo shifted by whole
frames."""
import json
import os
from pathlib import Path

import numpy as np
import pytest

from calibration.sync import offsets_from_rig, shift_keypoints
from tests.calibration.test_person_calibration import detections, lab_rig, walking_skeleton

FPS = 30.0
TRUE = np.array([0.0, 2.3, -4.6, 7.8])  # frames: camera v's frame f + TRUE[v] shows the reference's frame f


@pytest.fixture(scope="module")
def unsynchronised():
    """Each camera samples the same walk (waving now and then), starting TRUE[v] frames earlier than the
    reference."""
    rig = lab_rig()
    per_camera = []
    for v, d in enumerate(TRUE):
        skeleton = walking_skeleton(frames=110, seed=0, fps=FPS, start=(-10.0 - d) / FPS, wave=True)  # frame f: time (f - 10 - d) / fps
        per_camera.append(detections(rig, skeleton, seed=v + 1, swap_fraction=0.02)[:, v])
    return rig, np.stack(per_camera, axis=1)


def test_rig_offsets_are_found_to_a_quarter_frame(unsynchronised):
    rig, kp = unsynchronised
    result = offsets_from_rig(kp, rig, max_offset=15)
    np.testing.assert_allclose(result.offsets, TRUE, atol=0.25)
    assert result.method == "rig" and result.offsets[0] == 0


def test_shift_keypoints_moves_cameras_onto_the_reference_frames():
    kp = np.zeros((10, 2, 1, 3))
    kp[:, :, 0, 0] = np.arange(10)[:, None]  # x = the frame number
    kp[..., 2] = 1.0
    out = shift_keypoints(kp, [0.0, 2.5])
    np.testing.assert_allclose(out[:7, 1, 0, 0], np.arange(7) + 2.5)
    assert (out[7:, 1, 0, 2] == 0).all() and (out[:, 0] == kp[:, 0]).all()


def test_sync_command_writes_offsets_that_fit_rig_reads(tmp_path, unsynchronised):
    from calibration.formats import save_rig
    from mvspin.apps.sync import SyncConfig, read_offsets, run
    from mvspin.data.synthetic_recording import write_openpose_folders

    rig, kp = unsynchronised
    save_rig(rig, tmp_path / "rig.toml")
    write_openpose_folders(kp[:, :, None], rig.names, tmp_path / "keypoints")
    report = run(SyncConfig(keypoints=tmp_path / "keypoints", rig=tmp_path / "rig.toml", out=tmp_path / "offsets.json",
                            max_offset=15))
    assert json.loads((tmp_path / "offsets.json").read_text())["reference"] == "cam01"
    np.testing.assert_allclose(read_offsets(tmp_path / "offsets.json", rig.names[::-1]), TRUE[::-1], atol=0.25)
    assert "cam04" in report.table()


@pytest.mark.skipif(not os.environ.get("MVSPIN_DEMO_KEYPOINTS"),
                    reason="set MVSPIN_DEMO_KEYPOINTS to `mvspin detect`'s keypoints of the Pose2Sim demo")
def test_demo_shifted_by_whole_frames_is_recovered_exactly():
    """The demo's cameras shifted by 0, +7, -12, +23 frames (each still recording the whole walk):
    the offsets found move by exactly those amounts from the ones found on the demo as it is."""
    from calibration import load_rig

    demo = next((p / "shared/data/pose2sim_demo" for p in Path(__file__).resolve().parents
                 if (p / "shared/data/pose2sim_demo").is_dir()), None)
    if demo is None:
        pytest.skip("shared/data/pose2sim_demo is not beside the repository")
    ref = load_rig(demo / "calibration/Calib.qca.txt")
    folder = Path(os.environ["MVSPIN_DEMO_KEYPOINTS"])
    kp = np.zeros((100, 4, 33, 3))
    for v, name in enumerate(ref.names):
        for f in sorted((folder / name).glob("*.json")):
            people = json.loads(f.read_text())["people"]
            if people:
                kp[int(f.stem.split("_")[1]), v] = np.array(people[0]["pose_keypoints_2d"]).reshape(-1, 3)
    true = np.array([0, 7, -12, 23])
    shifted = shift_keypoints(kp, -(true - true.min()), frames=100 + int(np.ptp(true)))
    base = np.array(offsets_from_rig(kp, ref, max_offset=30).offsets)
    found = np.array(offsets_from_rig(shifted, ref, max_offset=30).offsets)
    np.testing.assert_array_equal(np.round(found - base), true)
