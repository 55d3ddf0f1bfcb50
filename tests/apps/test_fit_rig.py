"""``mvspin.apps.rig.fit_rig`` from Python, and its output checks before any fitting."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from calibration.formats import save_rig
from mvspin.apps.rig import FitRigConfig, RigReport, fit_rig
from mvspin.body import BodyModel, BodyModelConfig
from mvspin.cli.main import main
from mvspin.config import ConfigError
from mvspin.data.synthetic_recording import RecordingOptions, make_rig_recording, write_openpose_folders
from mvspin.geometry import axis_angle_to_matrix


@pytest.fixture(scope="module")
def recording(tmp_path_factory):
    folder = tmp_path_factory.mktemp("rig")
    body = BodyModel.free("low")
    rec = make_rig_recording(body, RecordingOptions(num_frames=16, num_views=4), seed=7)
    write_openpose_folders(rec.detections, rec.rig.names, folder / "kp")
    save_rig(rec.rig, folder / "rig.toml")
    return body, rec, folder


def test_fit_rig_from_python(recording, tmp_path):
    body, rec, folder = recording
    stages: dict[str, tuple[int, int]] = {}
    report = fit_rig(FitRigConfig(rig=folder / "rig.toml", keypoints=folder / "kp", out=tmp_path / "out",
                                  body=BodyModelConfig(resolution="low"), meshes=True),
                     progress=lambda stage, done, total: stages.__setitem__(stage, (done, total)))
    assert isinstance(report, RigReport) and report.matched_by == "name" and report.body_model == body.name
    assert stages["fit 0"] == (16, 16) and stages["associate"] == (16, 16) and stages["write"] == (1, 1)
    sub = report.summary["subjects"][0]
    assert sub["frames_fitted"] == 16
    assert all(row["mean_px"] < 8 for row in sub["per_camera"].values())
    assert all(Path(f).is_file() for f in report.files)
    assert len(list((tmp_path / "out" / "meshes").glob("subject0_*.obj"))) == 16
    r = report.fit.subjects[0].result
    with torch.no_grad():
        pred = body.keypoints("openpose25", r.body_pose, r.betas.expand(16, -1), r.global_orient, r.transl)
        g = rec.gt
        gt = body.keypoints("openpose25", g.body_pose, g.betas, axis_angle_to_matrix(g.global_orient), g.transl)
    # metres, world frame; the default config on this hard case (flips, outliers, a bystander) gives ~3 cm
    assert float((pred - gt).norm(dim=-1).mean()) < 0.04


def test_config_checks_name_the_field(recording, tmp_path):
    _, _, folder = recording
    base = dict(rig=folder / "rig.toml", keypoints=folder / "kp", out=tmp_path / "o")
    for bad, field in ((dict(fps=float("inf")), "fps"), (dict(fps=0.0), "fps"), (dict(subjects=0), "subjects"),
                       (dict(keypoint_set="nope"), "keypoint_set"), (dict(checkpoint=Path("c.pt")), "checkpoint"),
                       (dict(batch_size=0), "batch_size")):
        with pytest.raises(ConfigError) as err:
            FitRigConfig(**base, **bad)
        assert err.value.field == field
    assert not (tmp_path / "o").exists()


@pytest.fixture
def no_fitting(monkeypatch):
    """Fail the test if any fitting starts."""
    import mvspin.fitting.recording as recording_module

    def refuse(*args, **kwargs):
        raise AssertionError("fitting started before the outputs were checked")

    monkeypatch.setattr(recording_module, "fit_recording", refuse)


def _run(args, capsys) -> str:
    rc = main(args)
    err = capsys.readouterr().err.strip()
    assert rc == 2 and len(err.splitlines()) == 1, err
    return err


def test_bad_out_fails_in_one_line_before_fitting(recording, tmp_path, capsys, no_fitting):
    _, _, folder = recording
    base = ["fit-rig", "--rig", str(folder / "rig.toml"), "--keypoints", str(folder / "kp"), "--resolution", "low"]
    a_file = tmp_path / "a_file"
    a_file.write_text("x")
    assert "a file is in the way" in _run(base + ["-o", str(a_file)], capsys)
    assert "is a file, not a folder" in _run(base + ["-o", str(a_file / "sub")], capsys)
    # an output name blocked by a folder: refused before fitting, nothing written beside it
    out = tmp_path / "blocked"
    (out / "subject0.glb").mkdir(parents=True)
    err = _run(base + ["-o", str(out)], capsys)
    assert "--out" in err and "subject0.glb" in err and "directory is in the way" in err
    assert sorted(p.name for p in out.iterdir()) == ["subject0.glb"]
    # a bad input after the output check: the folder this run created is removed again
    err = _run(base[:2] + [str(tmp_path / "missing.toml")] + base[3:] + ["-o", str(tmp_path / "new" / "out")], capsys)
    assert "missing.toml" in err and not (tmp_path / "new").exists()
    # unreadable videos are opened before fitting
    bad_video = tmp_path / "cam.mp4"
    bad_video.write_bytes(b"not a video")
    err = _run(base + ["-o", str(tmp_path / "v"), "--videos", *[str(bad_video)] * 4], capsys)
    assert "cam.mp4" in err


def test_offsets_file_puts_shifted_cameras_back_on_the_reference_frames(recording, tmp_path):
    """Cameras that started recording 0, 2, 1, 3 frames before the reference (each padded with
    frames where nobody is seen) and the offsets file mvspin sync writes for them: fit-rig fits
    the same bodies as on the synchronised recording."""
    import json

    from mvspin.apps.sync import CONVENTION

    body, rec, folder = recording
    det = np.asarray(rec.detections, dtype=np.float64)
    t_count = det.shape[0]
    lead = [0, 2, 1, 3]
    padded = np.zeros((t_count + max(lead),) + det.shape[1:])
    for v, d in enumerate(lead):  # camera v's frame f + d shows the reference's frame f
        padded[d:d + t_count, v] = det[:, v]
    write_openpose_folders(padded, rec.rig.names, tmp_path / "kp")
    offsets = {"convention": CONVENTION, "reference": rec.rig.names[0], "method": "epipolar",
               "offsets": dict(zip(rec.rig.names, map(float, lead)))}
    (tmp_path / "offsets.json").write_text(json.dumps(offsets))
    common = dict(rig=folder / "rig.toml", body=BodyModelConfig(resolution="low"))
    plain = fit_rig(FitRigConfig(keypoints=folder / "kp", out=tmp_path / "plain", **common)).fit.subjects[0]
    moved = fit_rig(FitRigConfig(keypoints=tmp_path / "kp", offsets=tmp_path / "offsets.json", out=tmp_path / "moved",
                                 **common)).fit.subjects[0]
    assert not any(f < t_count for f in moved.failed)
    a, b = plain.result.transl.detach().numpy(), moved.result.transl[:t_count].detach().numpy()
    # within 1 cm of the synchronised fit (the padded frames, fitted as failed, move it a little:
    # up to 8.5 mm at one frame), where the body moves 5 cm or more between frames: a camera one
    # frame off would show
    assert np.linalg.norm(np.diff(a, axis=0), axis=1).min() > 0.05
    np.testing.assert_allclose(b, a, atol=1e-2)
    with torch.no_grad():
        joints = [body.keypoints("openpose25", r.body_pose[:t_count], r.betas.expand(t_count, -1),
                                 r.global_orient[:t_count], r.transl[:t_count]) for r in (plain.result, moved.result)]
    gap = (joints[1] - joints[0]).norm(dim=-1)
    print(f"joints: mean {float(gap.mean()) * 1000:.1f} mm, max {float(gap.max()) * 1000:.1f} mm")
    assert float(gap.mean()) < 0.005 and float(gap.max()) < 0.03


def test_bad_offsets_files_fail_in_one_line(recording, tmp_path, capsys, no_fitting):
    _, rec, folder = recording
    base = ["fit-rig", "--rig", str(folder / "rig.toml"), "--keypoints", str(folder / "kp"), "--resolution", "low"]
    garbled = tmp_path / "garbled.json"
    garbled.write_text("{not json")
    err = _run(base + ["--offsets", str(garbled), "-o", str(tmp_path / "a")], capsys)
    assert "--offsets" in err and "garbled.json" in err and "not an offsets file" in err
    partial = tmp_path / "partial.json"
    partial.write_text('{"offsets": {"cam01": 0.0, "cam02": 1.5}}')
    err = _run(base + ["--offsets", str(partial), "-o", str(tmp_path / "b")], capsys)
    assert "no offset for cameras" in err and rec.rig.names[3] in err
    err = _run(base + ["--offsets", str(tmp_path / "missing.json"), "-o", str(tmp_path / "c")], capsys)
    assert "missing.json" in err
    assert not any((tmp_path / n).exists() for n in "abc")
