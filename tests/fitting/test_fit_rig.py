"""Recording keypoint readers, the fit-rig outputs (.npz with AMASS keys, animated .glb, report)
and the command's bad-input errors, on small synthetic recordings written in the real layouts."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from calibration import Camera, Rig
from calibration.formats import save_rig
from mvspin.body import SMPL_JOINT_NAMES, BodyModel, get_keypoint_set
from mvspin.cli.main import main
from mvspin.data.keypoint_files import KeypointFileError
from mvspin.data.recording_keypoints import read_recording_keypoints
from mvspin.data.synthetic_recording import RecordingOptions, make_rig_recording, write_openpose_folders
from mvspin.geometry import axis_angle_to_matrix
from tests.file_checks import bvh_joint_positions, quat_matrix, read_trc

SETS = ("openpose25", "openpose25b", "coco18", "coco17", "halpe26")


@pytest.fixture(scope="module")
def body() -> BodyModel:
    return BodyModel.free("low")


@pytest.mark.parametrize("kset", SETS)
def test_openpose_folders_read_back(tmp_path, kset):
    rng = np.random.default_rng(0)
    k = len(get_keypoint_set(kset))
    det = rng.uniform(1, 900, size=(6, 3, 2, k, 3)).round(3)
    det[..., 2] = rng.uniform(0.1, 1.0, size=det.shape[:-1]).round(3)
    det[rng.random(det.shape[:-1]) < 0.2] = 0  # missing joints as 0, 0, 0
    det[2, 1, 1] = 0  # camera 1 lists one person in frame 2
    names = ["cam_2", "cam_10", "cam_1"]
    write_openpose_folders(det, names, tmp_path, stem="take")
    # random points are no skeleton: the set is named (guessing from the count is tested in test_rig_trust.py)
    rec = read_recording_keypoints(tmp_path, names, keypoint_set=kset)
    assert rec.keypoint_set == kset and rec.matched_by == "name"
    assert rec.frames.tolist() == list(range(6)) and not rec.missing.any()
    np.testing.assert_allclose(rec.keypoints, det, atol=1e-6)
    first = json.loads((tmp_path / "cam_10" / "take_000000000002_keypoints.json").read_text())
    assert len(first["people"]) == 1  # the real layout: a person with no keypoint is not listed


def test_npz_and_mmpose_and_order_matching(tmp_path):
    det = np.random.default_rng(1).uniform(1, 500, size=(4, 2, 1, 17, 3)).astype(np.float32)
    np.savez(tmp_path / "11111.npz", keypoints=det[:, 0, 0], frames=np.arange(10, 14))
    (tmp_path / "22222").mkdir()
    for i, f in enumerate(range(10, 14)):
        inst = [{"keypoints": det[i, 1, 0, :, :2].tolist(), "keypoint_scores": det[i, 1, 0, :, 2].tolist()}]
        (tmp_path / "22222" / f"img_{f:04d}.json").write_text(json.dumps({"instance_info": inst}))
    with pytest.raises(KeypointFileError, match="do not look like a coco17 skeleton"):
        read_recording_keypoints(tmp_path, ["serial_a", "serial_b"])  # random points: no layout to guess
    rec = read_recording_keypoints(tmp_path, ["serial_a", "serial_b"], keypoint_set="coco17")
    assert rec.matched_by == "order" and rec.keypoint_set == "coco17"
    assert rec.frames.tolist() == [10, 11, 12, 13]
    np.testing.assert_allclose(rec.keypoints, det, rtol=1e-6)


def test_reader_errors_are_one_clear_line(tmp_path):
    det = np.ones((3, 3, 1, 25, 3))
    write_openpose_folders(det, ["a", "b", "c"], tmp_path)
    with pytest.raises(KeypointFileError, match=r"the rig has 4 cameras \(a, b, c, d\) but there are keypoints for 3"):
        read_recording_keypoints(tmp_path, ["a", "b", "c", "d"])
    (tmp_path / "c" / "frame_000000000002_keypoints.json").unlink()
    with pytest.raises(KeypointFileError, match=r"different frame numbers: most are 0..2 \(3 frames\) but c \(c\) numbered 0..1, 2 frames"):
        read_recording_keypoints(tmp_path, ["a", "b", "c"])
    rec = read_recording_keypoints(tmp_path, ["a", "b", "c"], allow_missing_frames=True)
    assert rec.missing[:, 2].tolist() == [False, False, True]
    (tmp_path / "c" / "frame_000000000002_keypoints.json").write_text("{not json")
    with pytest.raises(KeypointFileError, match="frame_000000000002_keypoints.json: not valid JSON"):
        read_recording_keypoints(tmp_path, ["a", "b", "c"])


def _recording_files(body, tmp_path: Path, num_frames=24, **kw):
    opt = RecordingOptions(num_frames=num_frames, num_views=4, **kw)
    rec = make_rig_recording(body, opt, seed=4)
    write_openpose_folders(rec.detections, rec.rig.names, tmp_path / "kp")
    save_rig(rec.rig, tmp_path / "rig.toml")
    return rec


def test_fit_rig_writes_npz_glb_and_report(body, tmp_path, capsys):
    rec = _recording_files(body, tmp_path)
    # A stretch of frames nobody detects: the rest are still fitted, the report lists them.
    for cam in rec.rig.names:
        for t in (10, 11):
            (tmp_path / "kp" / cam / f"frame_{t:012d}_keypoints.json").write_text('{"version": 1.3, "people": []}')
    from mvspin.io_outputs import VideoWriter

    for cam in rec.rig.names:  # dark 1000 x 1000 videos, one per camera, named after it
        with VideoWriter(tmp_path / "videos" / f"{cam}.mp4", 25) as video:
            for _ in range(24):
                video.write(np.full((1000, 1000, 3), 20, np.uint8))
    rc = main(["fit-rig", "--rig", str(tmp_path / "rig.toml"), "--keypoints", str(tmp_path / "kp"),
               "--videos", *[str(tmp_path / "videos" / f"{c}.mp4") for c in reversed(rec.rig.names)],
               "--resolution", "low", "-o", str(tmp_path / "out"), "--fps", "25",
               "--config", str(Path(__file__).resolve().parents[2] / "configs" / "fit_rig.yaml"),
               "--set", "sequence.refine_iterations=80", "--bvh", "--trc"])
    assert rc == 0
    printed = capsys.readouterr().out
    assert "subject 0: 22/24 frames fitted" in printed and "cam0" in printed
    npz = np.load(tmp_path / "out" / "subject0.npz")
    for key in ("poses", "trans", "betas", "gender", "mocap_frame_rate", "global_orient", "body_pose", "transl"):
        assert key in npz.files
    assert npz["poses"].shape == (24, 156) and npz["betas"].shape == (10,) and str(npz["gender"]) == "neutral"
    assert float(npz["mocap_frame_rate"]) == 25.0
    np.testing.assert_array_equal(npz["trans"], npz["transl"])
    assert npz["fitted"].tolist() == [t not in (10, 11) for t in range(24)]
    # The fit is right where seen (a loose check here; accuracy is tested in test_sequence.py).
    with torch.no_grad():
        pred = body.keypoints("openpose25", torch.as_tensor(npz["body_pose"]), torch.as_tensor(npz["betas"]).expand(24, -1),
                              axis_angle_to_matrix(torch.as_tensor(npz["global_orient"])), torch.as_tensor(npz["transl"]))
        g = rec.gt
        gt = body.keypoints("openpose25", g.body_pose, g.betas, axis_angle_to_matrix(g.global_orient), g.transl)
    seen = torch.as_tensor(npz["fitted"])
    assert float((pred - gt).norm(dim=-1)[seen].mean()) < 0.03

    assert "refine_iterations: 80" in (tmp_path / "out" / "config.yaml").read_text()  # the resolved config is kept
    report = json.loads((tmp_path / "out" / "report.json").read_text())
    sub = report["subjects"][0]
    assert [f["frame"] for f in sub["frames_failed"]] == [10, 11]
    assert "subject not found" in sub["frames_failed"][0]["reason"]
    assert set(sub["per_camera"]) == set(rec.rig.names)
    assert all(row["mean_px"] < 8 for row in sub["per_camera"].values())
    assert (tmp_path / "out" / "report.png").stat().st_size > 1000

    # Overlays: the fitted skeleton drawn where the subject's pelvis projects, untouched where nobody was fitted.
    from mvspin.data.video import VideoFrames

    frames = list(VideoFrames(tmp_path / "out" / "overlay_cam2.mp4"))
    assert len(frames) == 24
    pelvis_uv = rec.rig[2].project(gt[:, 8].double().numpy())  # openpose mid_hip = SMPL pelvis
    for t in (3, 17):
        x, y = np.round(pelvis_uv[t]).astype(int)
        assert frames[t][y - 6:y + 7, x - 6:x + 7].max() > 120  # drawn (the video is dark, 20)
    assert frames[10].max() < 60

    # The .glb: valid (Khronos validator), with normals, its root keys carrying the Z-up -> Y-up
    # turn, and its skeleton posed by the keys on the .npz's joints
    from mvspin.io_outputs import Z_UP_TO_Y_UP
    from tests.file_checks import Glb, assert_valid_gltf

    glb = Glb(tmp_path / "out" / "subject0.glb")
    assert len(glb.doc.skins) == 1 and len(glb.doc.skins[0].joints) == 24
    assert glb.attribute("NORMAL").shape == glb.attribute("POSITION").shape
    times = glb.accessor(glb.doc.animations[0].samplers[0].input)
    assert len(times) == 24 and abs(float(times[1, 0]) - 1 / 25) < 1e-6
    assert glb.doc.animations[0].extras["fps"] == 25.0
    frame = 17
    for joint in (0, 4, 18):  # root, left knee, left elbow
        mat = quat_matrix(glb.keys(joint, "rotation")[frame])
        aa = npz["poses"][frame, 3 * joint:3 * joint + 3]
        expected = axis_angle_to_matrix(torch.as_tensor(aa, dtype=torch.float64)).numpy()
        np.testing.assert_allclose(mat, Z_UP_TO_Y_UP @ expected if joint == 0 else expected, atol=1e-5)
    pelvis = body.rest_joints(torch.as_tensor(npz["betas"])[None])[0, 0].numpy()
    np.testing.assert_allclose(glb.keys(0, "translation")[frame], Z_UP_TO_Y_UP @ (npz["trans"][frame] + pelvis), atol=1e-5)
    with torch.no_grad():
        joints = body(body_pose=torch.as_tensor(npz["body_pose"][frame:frame + 1]), betas=torch.as_tensor(npz["betas"])[None],
                      global_orient=torch.as_tensor(npz["global_orient"][frame:frame + 1]),
                      transl=torch.as_tensor(npz["transl"][frame:frame + 1])).joints[0].numpy()
    np.testing.assert_allclose(glb.joint_positions(frame) @ Z_UP_TO_Y_UP, joints, atol=1e-4)
    rest = glb.joint_positions(None)  # no keys: the T-pose stands up in glTF's Y-up
    assert rest[15, 1] - rest[0, 1] > 0.3 and abs(rest[15, 0] - rest[0, 0]) < 0.05
    assert_valid_gltf(tmp_path / "out" / "subject0.glb")

    # --bvh: the skeleton read back by a BVH library lands on the .npz's joints (1 mm)
    with torch.no_grad():
        all_joints = body(body_pose=torch.as_tensor(npz["body_pose"]), betas=torch.as_tensor(npz["betas"])[None].expand(24, -1),
                          global_orient=torch.as_tensor(npz["global_orient"]), transl=torch.as_tensor(npz["transl"])).joints.numpy()
    names, positions, frame_time = bvh_joint_positions(tmp_path / "out" / "subject0.bvh")
    order = [names.index(n) for n in SMPL_JOINT_NAMES]
    assert frame_time == pytest.approx(1 / 25) and positions.shape == (24, 24, 3)
    assert float(np.abs(positions[:, order] / 100 @ Z_UP_TO_Y_UP - all_joints).max()) < 1e-3
    # --trc: the fitted keypoints (Pose2Sim's names) and SMPL joints in mm, Y-up, empty where not fitted
    header, names, times, markers = read_trc(tmp_path / "out" / "subject0.trc")
    assert header["Units"] == "mm" and names[:3] == ["Nose", "Neck", "RShoulder"] and names[25] == "smpl_pelvis"
    np.testing.assert_allclose(times, np.arange(24) / 25, atol=1e-6)
    np.testing.assert_allclose(markers[seen.numpy(), :25] / 1000 @ Z_UP_TO_Y_UP, pred[seen].numpy(), atol=1e-4)
    np.testing.assert_allclose(markers[seen.numpy(), 25:] / 1000 @ Z_UP_TO_Y_UP, all_joints[seen.numpy()], atol=1e-4)
    assert np.isnan(markers[10]).all() and np.isnan(markers[11]).all()


def _run_error(args, capsys) -> str:
    rc = main(args)
    err = capsys.readouterr().err.strip()
    assert rc == 2 and len(err.splitlines()) == 1, err
    return err


def test_fit_rig_bad_input_one_line_each(body, tmp_path, capsys):
    rec = _recording_files(body, tmp_path, num_frames=6)
    base = ["fit-rig", "--keypoints", str(tmp_path / "kp"), "--resolution", "low", "-o", str(tmp_path / "out")]
    # keypoints for 3 of the rig's 4 cameras
    save_rig(Rig(list(rec.rig) + [Camera.look_at((5, 0, 1), (0, 0, 1), 1000, (1000, 1000), up=(0, 0, 1),
                                                 name="cam4")]), tmp_path / "rig5.toml")
    err = _run_error(["fit-rig", "--rig", str(tmp_path / "rig5.toml")] + base[1:], capsys)
    assert "the rig has 5 cameras" in err and "keypoints for 4" in err
    # a calibration in millimetres
    mm = Rig([Camera(K=c.K, R=c.R, t=c.t * 1000, image_size=c.image_size, name=c.name) for c in rec.rig])
    save_rig(mm, tmp_path / "rig_mm.toml")
    err = _run_error(["fit-rig", "--rig", str(tmp_path / "rig_mm.toml")] + base[1:], capsys)
    assert "looks like millimetres" in err
    # cameras that do not see these keypoints (another rig)
    other = make_rig_recording(body, RecordingOptions(num_frames=2, num_views=4), seed=11).rig
    shuffled = Rig([Camera(K=c.K, R=o.R, t=o.t + np.array([0, 0, 3.0]), image_size=c.image_size, name=c.name)
                    for c, o in zip(rec.rig, other)])
    save_rig(shuffled, tmp_path / "rig_other.toml")
    err = _run_error(["fit-rig", "--rig", str(tmp_path / "rig_other.toml")] + base[1:], capsys)
    assert "do not see these keypoints" in err
    # an unreadable JSON
    save_rig(rec.rig, tmp_path / "rig.toml")
    (tmp_path / "kp" / "cam1" / "frame_000000000003_keypoints.json").write_text("[1, 2")
    err = _run_error(["fit-rig", "--rig", str(tmp_path / "rig.toml")] + base[1:], capsys)
    assert "frame_000000000003_keypoints.json: not valid JSON" in err
    assert not (tmp_path / "out").exists() or not any((tmp_path / "out").iterdir())
