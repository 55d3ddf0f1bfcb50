"""Extrinsics from a person walking: a stick figure in OpenPose BODY_25 order walks a curve through
a four-camera portrait rig (1088 x 1920, focal ~1700 px, k1 -0.05); its keypoints, with pixel
noise, a few detections with left and right swapped and some gross outliers, must give back the
rig: camera centres and rotations after a similarity alignment, the floor and the scale."""
import numpy as np
import pytest

from calibration import Camera, Rig, load_rig
from calibration.person_calibration import calibrate_from_keypoints
from calibration.rig_comparison import compare_rigs, similarity_transform
from mvspin.errors import CalibrationError

SIZE = (1088, 1920)
HEIGHT = 1.75
EYES = 0.936 * HEIGHT
FOOT = [11, 14, 19, 20, 21, 22, 23, 24]  # ankles, toes, heels
HEAD = [15, 16]  # eyes
MIRROR = [0, 1, 5, 6, 7, 2, 3, 4, 8, 12, 13, 14, 9, 10, 11, 16, 15, 18, 17, 22, 23, 24, 19, 20, 21]


def walking_skeleton(frames=45, seed=0, fps=15.0, start=0.0, wave=False, speed=0.9):
    """``(T, 25, 3)`` BODY_25 keypoints (metres, Z up, floor z = 0) of a person walking a gentle
    curve, arms swinging, feet flat on the floor in stance and lifted in swing; with ``wave``,
    the right hand also waves now and then (irregular, as people do)."""
    rng = np.random.default_rng(seed)
    t = start + np.arange(frames) / fps  # default: 3 s at 15 frames per second
    path = np.stack([-1.2 + speed * t, 0.5 * np.sin(0.6 * t), np.zeros_like(t)], axis=1)
    heading = np.arctan2(np.gradient(path[:, 1]), np.gradient(path[:, 0]))
    fwd = np.stack([np.cos(heading), np.sin(heading), 0 * heading], axis=1)
    left = np.stack([-np.sin(heading), np.cos(heading), 0 * heading], axis=1)
    up = np.array([0, 0, 1.0])
    phase = 2 * np.pi * 0.9 * t
    out = np.zeros((frames, 25, 3))

    def at(i, f, side, h):
        out[:, i] = path + fwd * f[:, None] + left * side[:, None] + up * h[:, None]

    z = np.zeros(frames)
    for side, s, sign in (("r", 1, -1.0), ("l", 0, 1.0)):
        stride = 0.3 * np.sin(phase + np.pi * s)
        lift = 0.08 * np.clip(np.sin(phase + np.pi * s + np.pi / 2), 0, None)
        hip, knee, ankle, heel, big, small = ((9, 10, 11, 24, 22, 23) if side == "r" else (12, 13, 14, 21, 19, 20))
        at(hip, 0.5 * z, sign * 0.1 + z, 0.92 + z)
        at(knee, 0.5 * stride, sign * 0.1 + z, 0.5 + 0.5 * lift)
        at(ankle, stride, sign * 0.1 + z, 0.08 + lift)
        at(heel, stride - 0.06, sign * 0.1 + z, 0.0 + lift)
        at(big, stride + 0.18, sign * 0.11 + z, 0.0 + lift)
        at(small, stride + 0.15, sign * 0.15 + z, 0.0 + lift)
        shoulder, elbow, wrist = (2, 3, 4) if side == "r" else (5, 6, 7)
        at(shoulder, z, sign * 0.19 + z, 1.44 + z)
        at(elbow, -0.5 * stride * 0.6, sign * 0.22 + z, 1.15 + z)
        at(wrist, -stride * 0.6, sign * 0.23 + z, 0.88 + z)
        at(16 if side == "l" else 15, 0.09 + z, sign * 0.032 + z, EYES + z)
        at(18 if side == "l" else 17, z, sign * 0.075 + z, EYES - 0.03 + z)
    if wave:  # bursts of waving at irregular moments, raised up to 0.6 m
        burst = np.exp(-((t - 0.8) / 0.25) ** 2) + 0.7 * np.exp(-((t - 2.1) / 0.35) ** 2) + np.exp(-((t - 3.0) / 0.2) ** 2)
        lift = 0.6 * burst * (0.6 + 0.4 * np.sin(2 * np.pi * 2.3 * t))
        out[:, 4, 2] += lift
        out[:, 3, 2] += 0.5 * lift
    at(0, 0.11 + z, z, EYES - 0.05 + z)
    at(1, z, z, 1.48 + z)
    at(8, z, z, 0.93 + z)
    return out + rng.normal(0, 0.003, out.shape)


def lab_rig():
    specs = [((3.2, -2.6, 2.1), 1680, -0.05), ((3.0, 2.8, 1.6), 1700, -0.04), ((-3.4, 2.2, 2.4), 1720, -0.06),
             ((-3.3, -2.5, 1.2), 1690, -0.05)]
    cams = []
    for i, (eye, f, k1) in enumerate(specs):
        c = Camera.look_at(eye=eye, target=(0.0, 0.0, 0.9), up=(0, 0, 1), focal=f, image_size=SIZE,
                           dist=(k1, 0.05, 0, 0, 0), name=f"cam0{i + 1}")
        cams.append(c)
    return Rig(cams)


def detections(rig, skeleton, seed=1, noise_px=1.5, swap_fraction=0.04, outlier_fraction=0.01):
    """``(T, V, 25, 3)`` pixels and confidence with noise, left/right swaps and outliers."""
    rng = np.random.default_rng(seed)
    uv = rig.project(skeleton)  # (T, V, K, 2)
    uv = uv + rng.normal(0, noise_px, uv.shape)
    swap = rng.random(uv.shape[:2]) < swap_fraction
    uv[swap] = uv[swap][:, MIRROR]
    outliers = rng.random(uv.shape[:3]) < outlier_fraction
    uv[outliers] += rng.normal(0, 80, (outliers.sum(), 2))
    conf = rng.uniform(0.6, 1.0, uv.shape[:3])
    inside = (uv[..., 0] >= 0) & (uv[..., 0] < SIZE[0]) & (uv[..., 1] >= 0) & (uv[..., 1] < SIZE[1])
    return np.concatenate([uv, (conf * inside)[..., None]], axis=-1)


@pytest.fixture(scope="module")
def recording():
    rig = lab_rig()
    return rig, detections(rig, walking_skeleton())


def test_person_walking_gives_back_the_rig_floor_and_scale(recording):
    truth, kp = recording
    rig, report = calibrate_from_keypoints(kp, list(truth), foot=FOOT, head=HEAD, person_height=HEIGHT,
                                           mirror=MIRROR)
    cmp = compare_rigs(rig, truth)
    assert max(cmp.centre_error_m) < 0.02 and max(cmp.rotation_error_deg) < 0.2, cmp.table()
    assert abs(cmp.scale - 1) < 0.02  # the eyes' height gives the scale
    assert report.converged and not report.problems and report.median_error_px < 2.5, report.table()
    assert report.swapped > 0.5 * 0.04 * kp.shape[0] * kp.shape[1]
    # Z up, floor at z = 0: camera heights as in the truth (scale and floor), within 4 cm.
    np.testing.assert_allclose([c.center[2] for c in rig], [c.center[2] for c in truth], atol=0.04)
    assert rig.world is not None and rig.world.up == "z"
    # Repeatability without a reference: each half of the walk alone gives nearly the same rig.
    assert max(c.halves_rotation_deg for c in report.cameras) < 0.4
    assert max(c.halves_centre_m for c in report.cameras) < 0.02
    assert report.halves.startswith("the rigs calibrated from frames 0-21 and 22-44 alone differ by up to")
    assert "halves deg" in report.table()


def test_a_camera_bumped_halfway_shows_in_the_halves(recording):
    """cam02 turned by about a degree halfway through (its detections 30 px to the side from then
    on): the two halves disagree on cam02 most, by most of that (the alignment of the two rigs
    spreads some of it over the others); unbumped, every camera's halves agree within 0.2."""
    truth, kp = recording
    bumped = kp.copy()
    bumped[kp.shape[0] // 2:, 1, :, 0] += 30.0
    _, report = calibrate_from_keypoints(bumped, list(truth), foot=FOOT, head=HEAD, person_height=HEIGHT,
                                         mirror=MIRROR)
    angles = [c.halves_rotation_deg for c in report.cameras]
    assert 0.5 < angles[1] < 1.6 and angles[1] > 2 * max(np.delete(angles, 1)), report.table()  # measured 0.73, next 0.30
    _, quick = calibrate_from_keypoints(kp, list(truth), foot=FOOT, head=HEAD, mirror=MIRROR, halves=False)
    assert quick.cameras[0].halves_rotation_deg is None and quick.halves.startswith("not compared")
    assert quick.half_rigs is None and "half_rigs" not in quick.to_dict()


def test_a_measured_camera_distance_sets_the_scale_and_y_up_works(recording):
    truth, kp = recording
    d = float(np.linalg.norm(truth[0].center - truth[2].center))
    rig, report = calibrate_from_keypoints(kp, list(truth), foot=FOOT, head=HEAD, person_height=None,
                                           camera_distance=(0, 2, d), up="y", mirror=MIRROR)
    centres = np.stack([c.center for c in rig])
    _, _, scale = similarity_transform(centres, np.stack([c.center for c in truth]))
    assert abs(scale - 1) < 0.005 and abs(report.person_height_m - HEIGHT) < 0.05
    np.testing.assert_allclose(centres[:, 1], [c.center[2] for c in truth], atol=0.04)  # height is y


def test_bad_detections_are_refused_by_the_error_threshold(recording):
    truth, kp = recording
    noisy = kp.copy()
    noisy[:, 3, :, :2] += np.random.default_rng(5).normal(0, 40, noisy[:, 3, :, :2].shape)  # a camera's detections are junk
    _, report = calibrate_from_keypoints(noisy, list(truth), foot=FOOT, head=HEAD, mirror=MIRROR,
                                         max_median_error_px=8.0)
    assert any(p.startswith("camera cam04: median reprojection error") for p in report.problems), report.table()


def test_person_command_writes_the_rig_and_compares_it(tmp_path, recording):
    from calibration.formats import save_rig
    from mvspin.apps.calibrate_person import PersonCalibrateConfig, run_person
    from mvspin.data.synthetic_recording import write_openpose_folders

    truth, kp = recording
    save_rig(truth, tmp_path / "lab.toml")
    write_openpose_folders(kp[:, :, None], truth.names, tmp_path / "keypoints")
    report = run_person(PersonCalibrateConfig(intrinsics=[tmp_path / "lab.toml"], keypoints=tmp_path / "keypoints",
                                              out=tmp_path / "rig.toml", reference=tmp_path / "lab.toml"))
    assert max(report.comparison.centre_error_m) < 0.03, report.comparison.table()
    assert report.reference_warnings == []
    rig = load_rig(tmp_path / "rig.toml")
    assert rig.names == truth.names and rig.world.up == "z"


def test_a_reference_off_in_one_camera_is_shown_by_the_held_out_table(tmp_path, recording):
    """The lab's file has cam02 tilted by a degree: judged on the frames each was not made from,
    every pair with cam02 sits off to one side under the lab's calibration, no pair under the
    person's (each half's rig judged on the other half); the report JSON keeps the table, and
    the job warns that the reference's cam02 disagrees with the keypoints."""
    import json

    from calibration.formats import save_rig
    from mvspin.apps.calibrate_person import PersonCalibrateConfig, run_person
    from mvspin.data.synthetic_recording import write_openpose_folders
    from tests.calibration.test_rig_comparison import _turned

    truth, kp = recording
    save_rig(Rig([_turned(c, 1.0) if i == 1 else c for i, c in enumerate(truth)]), tmp_path / "lab.toml")
    write_openpose_folders(kp[:, :, None], truth.names, tmp_path / "keypoints")
    report = run_person(PersonCalibrateConfig(intrinsics=[tmp_path / "lab.toml"], keypoints=tmp_path / "keypoints",
                                              out=tmp_path / "rig.toml", reference=tmp_path / "lab.toml",
                                              report=tmp_path / "report.json"))
    assert [label.split(";")[0] for label, _ in report.held_out] == ["person, from the other half", "lab.toml"] * 2
    for label, c in report.held_out:
        signed = np.abs(c.median_signed_px)
        with_cam02 = np.array(["cam02" in p for p in c.pairs])
        if label.startswith("lab.toml"):
            assert signed[with_cam02].min() > 5.0 and signed[~with_cam02].max() < 1.5, report.held_out_table()
        else:
            assert signed.max() < 1.5, report.held_out_table()
    assert "frames 22-44" in report.held_out_table()
    saved = json.loads((tmp_path / "report.json").read_text())
    assert len(saved["held_out"]) == 4 and saved["held_out"][1]["calibration"].startswith("lab.toml")
    assert len(report.reference_warnings) == 1 and "reference's cam02 disagrees" in report.reference_warnings[0]
    assert saved["reference_warnings"] == report.reference_warnings


def test_person_command_takes_the_offsets_of_unsynchronised_cameras(tmp_path):
    """Cameras that started 0, 2, -1, 3 frames apart (frame f + lead of camera v shows the
    reference's frame f) and an offsets file as mvspin sync writes it (with sub-frame noise, which
    calibrate person rounds away): the rig comes back as from synchronised cameras."""
    import json

    from calibration.formats import save_rig
    from mvspin.apps.calibrate_person import PersonCalibrateConfig, run_person
    from mvspin.data.synthetic_recording import write_openpose_folders

    truth = lab_rig()
    lead = np.array([0, 2, -1, 3])
    kp = np.stack([detections(truth, walking_skeleton(frames=50, start=-d / 15.0), seed=v + 1)[:, v]
                   for v, d in enumerate(lead)], axis=1)
    save_rig(truth, tmp_path / "lab.toml")
    write_openpose_folders(kp[:, :, None], truth.names, tmp_path / "keypoints")
    found = lead + np.array([0.0, 0.2, -0.3, 0.1])
    (tmp_path / "offsets.json").write_text(json.dumps({"offsets": dict(zip(truth.names, found.tolist()))}))
    report = run_person(PersonCalibrateConfig(intrinsics=[tmp_path / "lab.toml"], keypoints=tmp_path / "keypoints",
                                              offsets=tmp_path / "offsets.json", out=tmp_path / "rig.toml",
                                              reference=tmp_path / "lab.toml"))
    assert max(report.comparison.centre_error_m) < 0.03, report.comparison.table()
    assert max(report.comparison.rotation_error_deg) < 0.5, report.comparison.table()


def test_sub_frame_offsets_are_modelled_not_ignored():
    """Each camera films the walk at its own moments (0, +0.4, -0.3, +0.2 frames at 15 fps, the
    person moving 2-3 cm between them): given the offsets, the calibration is as good as with
    synchronised cameras; without them, clearly worse."""
    truth = lab_rig()
    offsets = [0.0, 0.4, -0.3, 0.2]  # frame f + offset of camera v shows the moment of camera 0's frame f
    fps, frames = 15.0, 45
    kp = []
    for i, off in enumerate(offsets):
        # camera i's frame f shows the moment f - off
        skeleton = walking_skeleton(frames=frames, start=-off / fps)
        kp.append(detections(Rig([truth[i]]), skeleton, seed=1 + i, swap_fraction=0.0, outlier_fraction=0.0))
    kp = np.concatenate(kp, axis=1)
    errors = {}
    for name, given in (("given", offsets), ("ignored", None)):
        rig, _ = calibrate_from_keypoints(kp, list(truth), foot=FOOT, head=HEAD, mirror=MIRROR, time_offsets=given)
        errors[name] = max(compare_rigs(rig, truth).rotation_error_deg)
    assert errors["given"] < 0.2 and errors["ignored"] > 1.5 * errors["given"], errors


def test_whole_frame_offsets_shift_the_keypoints_first():
    truth = lab_rig()
    skeleton = walking_skeleton(frames=50)
    kp = detections(truth, skeleton, swap_fraction=0.0, outlier_fraction=0.0)
    late = kp.copy()
    late[:, 2] = 0.0
    late[3:, 2] = kp[:-3, 2]  # camera 3 started 3 frames late: its frame f + 3 shows frame f
    rig, _ = calibrate_from_keypoints(late, list(truth), foot=FOOT, head=HEAD, mirror=MIRROR,
                                      time_offsets=[0, 0, 3, 0])
    assert max(compare_rigs(rig, truth).rotation_error_deg) < 0.2
    with pytest.raises(CalibrationError, match="time_offsets"):
        calibrate_from_keypoints(kp, list(truth), foot=FOOT, head=HEAD, time_offsets=[0, 1])

