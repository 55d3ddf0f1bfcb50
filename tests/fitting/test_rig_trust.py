"""fit-rig never returns a wrong result with exit 0 (issue 16, theme 1): keypoint folders in
another order than the rig's, an 18-point layout that is not COCO-18, one camera's frames
numbered from 1, cameras whose detections never agree, more subjects asked than present,
confidences that carry nothing. Each case: the exit status, the one line's key words, and what
is on disk afterwards."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from calibration import Camera, Rig
from calibration.formats import save_rig
from mvspin.body import BodyModel, get_keypoint_set
from mvspin.cli.main import main
from mvspin.data.synthetic_recording import RecordingOptions, make_rig_recording, write_openpose_folders
from mvspin.errors import ArgumentError, KeypointFileError, RecordingError
from mvspin.fitting.recording import RigFitConfig, fit_recording

FAST = ["--resolution", "low", "--set", "sequence.refine_iterations=30"]


@pytest.fixture(scope="module")
def body() -> BodyModel:
    return BodyModel.free("low")


@pytest.fixture(scope="module")
def rec(body):
    return make_rig_recording(body, RecordingOptions(num_frames=12, num_views=4, bystander_rate=0.0), seed=3)


def _write(rec, folder: Path, det=None, names=None, rig=None) -> list[str]:
    write_openpose_folders(rec.detections if det is None else det, names or rec.rig.names, folder / "kp")
    save_rig(rig or rec.rig, folder / "rig.toml")
    return ["fit-rig", "--rig", str(folder / "rig.toml"), "--keypoints", str(folder / "kp"), "-o", str(folder / "out")]


def _refused(args, capsys) -> str:
    rc = main(args)
    err = capsys.readouterr().err.strip()
    assert rc == 2 and len(err.splitlines()) == 1, err
    assert "Traceback" not in err
    return err


def _world_error(body, fit_subject, rec) -> float:
    from mvspin.geometry import axis_angle_to_matrix

    r = fit_subject.result
    t = r.num_frames
    with torch.no_grad():
        pred = body.keypoints("openpose25", r.body_pose, r.betas.expand(t, -1), r.global_orient, r.transl)
        g = rec.gt
        gt = body.keypoints("openpose25", g.body_pose, g.betas, axis_angle_to_matrix(g.global_orient), g.transl)
    return float((pred - gt).norm(dim=-1).mean())


def test_folders_in_reverse_order_are_matched_by_geometry(rec, tmp_path, capsys):
    # folders c4 c3 c2 c1 for the rig's cam0..cam3 (natural order reverses them)
    det = rec.detections[:, [3, 2, 1, 0]]
    args = _write(rec, tmp_path, det=det, names=["c1", "c2", "c3", "c4"]) + FAST
    assert main(args) == 0
    out = capsys.readouterr().out
    assert "matched by geometry" in out and "c1 -> cam3" in out.replace("'", "")
    report = json.loads((tmp_path / "out" / "report.json").read_text())
    assert report["camera_order"]["order"] == ["c4", "c3", "c2", "c1"] and report["camera_order"]["reordered"]
    assert report["camera_order"]["residual_m"] < 0.03 < report["camera_order"]["given_residual_m"]
    assert any("matched by geometry" in w for w in report["warnings"])
    assert report["subjects"][0]["frames_fitted"] == 12
    per_camera = report["subjects"][0]["per_camera"]
    assert all(row["mean_px"] < 15 and row["frames_seen"] >= 10 for row in per_camera.values()), per_camera


def _rolled(rig: Rig, views) -> Rig:
    roll = np.array([[0.0, -1.0, 0.0], [1.0, 0.0, 0.0], [0.0, 0.0, 1.0]])  # 90 degrees about the optical axis
    return Rig([Camera(K=c.K, R=roll @ c.R, t=roll @ c.t, dist=c.dist, image_size=c.image_size, name=c.name)
                if v in views else c for v, c in enumerate(rig)])


def test_order_matched_folders_that_fit_no_camera_are_refused(rec, tmp_path, capsys):
    args = _write(rec, tmp_path, names=["s1", "s2", "s3", "s4"], rig=_rolled(rec.rig, range(4))) + FAST
    err = _refused(args, capsys)
    assert "no assignment of them to the cameras triangulates together" in err and "cam0+cam1" in err
    assert not (tmp_path / "out").exists()


def test_an_other_18_point_layout_is_not_taken_as_coco18(body, tmp_path, capsys):
    rec = make_rig_recording(body, RecordingOptions(num_frames=8, num_views=4, keypoint_set="coco18",
                                                    bystander_rate=0.0), seed=5)
    c17, c18 = get_keypoint_set("coco17"), get_keypoint_set("coco18")
    # COCO-17's order with the neck appended: 18 points, but not OpenPose's COCO-18
    order = [c18.names.index(n) for n in c17.names] + [c18.names.index("neck")]
    args = _write(rec, tmp_path, det=rec.detections[..., order, :]) + FAST
    err = _refused(args, capsys)
    assert "do not look like a coco18 skeleton" in err and "keypoint_set" in err
    assert not (tmp_path / "out").exists()
    # the real COCO-18 files are guessed from their count (and their skeleton)
    from mvspin.data.recording_keypoints import layout_plausibility, read_recording_keypoints

    write_openpose_folders(rec.detections, rec.rig.names, tmp_path / "good")
    assert read_recording_keypoints(tmp_path / "good", rec.rig.names).keypoint_set == "coco18"
    assert layout_plausibility(rec.detections.numpy(), "coco18") > 0.9
    assert layout_plausibility(rec.detections[..., order, :].numpy(), "coco18") < 0.3


def test_17_points_of_human36m_are_not_taken_as_coco17(body, tmp_path):
    from mvspin.data.recording_keypoints import read_recording_keypoints

    rec = make_rig_recording(body, RecordingOptions(num_frames=6, num_views=3, keypoint_set="h36m17",
                                                    bystander_rate=0.0, flip_view=None, outlier_view=None), seed=2)
    write_openpose_folders(rec.detections, rec.rig.names, tmp_path)
    with pytest.raises(KeypointFileError, match=r"coco17 skeleton .*h36m17 0\.9"):
        read_recording_keypoints(tmp_path, rec.rig.names)
    assert read_recording_keypoints(tmp_path, rec.rig.names, keypoint_set="h36m17").keypoint_set == "h36m17"


def test_one_camera_numbered_from_1_is_not_fitted_out_of_step(rec, tmp_path, capsys):
    args = _write(rec, tmp_path) + FAST
    cam = tmp_path / "kp" / "cam2"
    for f in sorted(cam.iterdir(), reverse=True):  # 0..11 -> 1..12: same count, other numbers
        n = int(f.name.split("_")[1])
        f.rename(cam / f"frame_{n + 1:012d}_keypoints.json")
    err = _refused(args, capsys)
    assert "different frame numbers" in err and "cam2" in err and "shifted by +1" in err
    assert not (tmp_path / "out").exists()


def _swap_extrinsics(rig: Rig, a: int, b: int) -> Rig:
    cams = list(rig)
    ca, cb = cams[a], cams[b]
    cams[a] = Camera(K=ca.K, R=cb.R, t=cb.t, dist=ca.dist, image_size=ca.image_size, name=ca.name)
    cams[b] = Camera(K=cb.K, R=ca.R, t=ca.t, dist=cb.dist, image_size=cb.image_size, name=cb.name)
    return Rig(cams)


def test_half_the_rig_dropped_is_an_error_unless_asked_for(body, rec, tmp_path, capsys):
    args = _write(rec, tmp_path, rig=_swap_extrinsics(rec.rig, 1, 2)) + FAST
    err = _refused(args, capsys)
    assert "2 of 4 cameras never agree with the others" in err and "allow_dropped_cameras" in err
    assert "cam1" in err and "cam2" in err and not (tmp_path / "out").exists()
    assert main(args + ["--allow-dropped-cameras"]) == 0
    printed = capsys.readouterr().out
    assert "warning: camera cam1 dropped" in printed
    report = json.loads((tmp_path / "out" / "report.json").read_text())
    assert sorted(report["dropped_cameras"]) == ["cam1", "cam2"]
    assert "extrinsics" in report["dropped_cameras"]["cam1"] or "elsewhere" in report["dropped_cameras"]["cam1"]


def test_a_rolled_camera_is_a_warning_with_its_cause(body, rec, tmp_path, capsys):
    args = _write(rec, tmp_path, rig=_rolled(rec.rig, [3])) + FAST + ["--subjects", "3"]
    assert main(args) == 0
    printed = capsys.readouterr().out
    assert "warning: camera cam3 dropped" in printed and "asked for 3 subjects, found 1" in printed
    report = json.loads((tmp_path / "out" / "report.json").read_text())
    assert list(report["dropped_cameras"]) == ["cam3"]
    assert "rolled" in report["dropped_cameras"]["cam3"] and "0% of the 12 frames" in report["dropped_cameras"]["cam3"]
    assert any("asked for 3 subjects, found 1" in w for w in report["warnings"])
    assert sorted(p.name for p in (tmp_path / "out").glob("subject*")) == ["subject0.glb", "subject0.npz"]
    assert report["subjects"][0]["per_camera"]["cam3"]["frames_seen"] == 0


def test_confidences_and_radius_name_the_real_cause(rec, tmp_path, capsys):
    args = _write(rec, tmp_path) + FAST
    for v, name in enumerate(rec.rig.names):  # a detector that writes negative scores, one .npz per camera
        det = rec.detections[:, v].numpy().copy()
        det[..., 2] = np.where(det[..., 2] > 0, -0.5, 0.0)
        np.savez(tmp_path / "neg" / f"{name}.npz" if (tmp_path / "neg").is_dir() else
                 (tmp_path / "neg").mkdir() or tmp_path / "neg" / f"{name}.npz", keypoints=det)
    args[4] = str(tmp_path / "neg")
    err = _refused(args, capsys)
    assert "no keypoint has a positive confidence" in err and "wrong calibration" not in err
    assert not (tmp_path / "out").exists()
    err = _refused(_write(rec, tmp_path / "r") + ["--set", "association.radius_m=-0.1"], capsys)
    assert "association.radius_m" in err and "wrong calibration" not in err
    assert not (tmp_path / "r" / "out").exists()


def test_fit_recording_names_the_wrong_argument(body, rec):
    det, rig = rec.detections, rec.rig
    cases = [
        (dict(detections=det.tolist()), "detections must be a numpy array"),
        (dict(config={"association": {}}), "config must be a RigFitConfig, got dict"),
        (dict(rig=np.stack([c.K for c in rig])), "rig must be a calibration.Rig"),
        (dict(fps=0), "fps must be a finite number > 0"),
        (dict(fps=float("inf")), "fps must be"),
        (dict(detections=det[:0]), "no frame or no person"),
        (dict(keypoint_set="nope"), "keypoint_set"),
        (dict(num_subjects=0), "num_subjects"),
        (dict(body="free"), "body must be a BodyModel"),
        (dict(frames=np.arange(3)), "frames must give one number per frame"),
    ]
    for change, words in cases:
        kw = dict(body=body, detections=det, rig=rig, keypoint_set="openpose25", config=RigFitConfig())
        kw.update(change)
        with pytest.raises(ArgumentError, match=words):
            fit_recording(**kw)
    with pytest.raises(RecordingError, match="keypoints are for 3 cameras but the rig has 4"):
        fit_recording(body, det[:, :3], rig, "openpose25")


def _camera_to_world(c: Camera) -> Camera:
    return Camera(K=c.K, R=c.R.T, t=-c.R.T @ c.t, dist=c.dist, image_size=c.image_size, name=c.name)


def _far_principal_point(c: Camera) -> Camera:
    K = c.K.copy()
    K[0, 2] = 8000.0
    return Camera(K=K, R=c.R, t=c.t, dist=c.dist, image_size=c.image_size, name=c.name)


def _absurd_distortion(c: Camera) -> Camera:
    return Camera(K=c.K, R=c.R, t=c.t, dist=np.array([80.0, -300.0, 0.0, 0.0, 900.0]), image_size=c.image_size,
                  name=c.name)


@pytest.mark.parametrize("case, cause", [
    ("camera-to-world", "outside this camera's view"),
    ("principal point", "principal point (8000, 500) is outside its 1000x1000 image"),
    ("distortion", "absurd lens distortion"),
    ("coordinates x 1e7", "keypoints lie far outside its 1000x1000 image"),
])
def test_a_camera_that_never_agrees_is_reported_with_its_cause(body, rec, case, cause):
    det, cams = rec.detections.clone(), list(rec.rig)
    if case == "coordinates x 1e7":
        det[:, 1, ..., :2] *= 1e7
    else:
        change = {"camera-to-world": _camera_to_world, "principal point": _far_principal_point,
                  "distortion": _absurd_distortion}[case]
        cams[1] = change(cams[1])
    config = RigFitConfig()
    config.sequence.refine_iterations = 20
    fit = fit_recording(body, det, Rig(cams), "openpose25", config=config)
    assert list(fit.dropped_cameras) == ["cam1"], fit.dropped_cameras
    assert cause in fit.dropped_cameras["cam1"]
    assert any(w.startswith("camera cam1 dropped") for w in fit.warnings)
    # the fit rests on the three others (the flipped camera 1 is the one left out): 6-7 cm here
    assert _world_error(body, fit.subjects[0], rec) < 0.08
