"""``mvspin view``: the scene built from a fitted synthetic recording (bodies, cameras, detections
and projections, per-frame error), its .viser recording, and the one line for a folder without a fit."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from calibration.formats import save_rig
from mvspin.body import BodyModel
from mvspin.body.config import BodyModelConfig
from mvspin.cli.main import main
from mvspin.data.synthetic_recording import RecordingOptions, make_rig_recording, write_openpose_folders


@pytest.fixture(scope="module")
def fitted(tmp_path_factory) -> tuple[Path, object, BodyModel]:
    from mvspin.apps.rig import FitRigConfig, fit_rig

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    tmp = tmp_path_factory.mktemp("view")
    body = BodyModel.free("low")
    rec = make_rig_recording(body, RecordingOptions(num_frames=8, num_views=3, image_size=(320, 240), focal=300.0),
                             seed=2)
    write_openpose_folders(rec.detections, rec.rig.names, tmp / "kp")
    save_rig(rec.rig, tmp / "rig.toml")
    fit_rig(FitRigConfig(rig=tmp / "rig.toml", keypoints=tmp / "kp", out=tmp / "out", fps=25.0,
                         body=BodyModelConfig(resolution="low")))
    torch.set_num_threads(before)
    return tmp, rec, body


def test_scene_shows_the_fit_where_the_cameras_saw_it(fitted):
    from mvspin.apps.view import ViewConfig, build_view_scene, frame_image

    tmp, rec, body = fitted
    scene = build_view_scene(ViewConfig(fit=tmp / "out"))
    assert scene.num_frames == 8 and scene.camera_names == list(rec.rig.names) and scene.fps == 25.0
    sub = scene.subjects[0]
    assert sub.vertices.shape == (8, body.num_vertices, 3)
    # The projections of the fitted body land on the detections it was fitted to (the nearest
    # listed person: bystanders are listed too), and far from another camera's
    det = scene.detections  # (T, V, P, K, 3)
    proj = sub.projections.transpose(1, 0, 2, 3)  # (T, V, K, 2)

    def median_px(p2d):
        d = np.linalg.norm(p2d[:, :, None] - det[..., :2], axis=-1)  # (T, V, P, K)
        d = np.where(det[..., 2] > 0, d, np.inf).min(2)
        return float(np.median(d[np.isfinite(d)]))

    assert median_px(proj) < 10.0 and median_px(proj[:, [1, 2, 0]]) > 30.0
    # the mesh's silhouette is where the projections say: it covers the projected pelvis
    uv = rec.rig[0].project(sub.vertices[3].astype(np.float64))
    assert float(np.min(np.linalg.norm(uv - proj[3, 0, 8], axis=1))) < 3.0
    # The worst frames come first, by the report's per-frame error
    err = sub.error_px
    assert scene.worst_frames[0] == int(np.nanargmax(err)) and len(scene.worst_frames) == int(np.isfinite(err).sum())
    # Each camera's picture: white detections, the subject's colour at its projections; frames differ
    a, b = frame_image(scene, 1, 0, width=320), frame_image(scene, 1, 7, width=320)
    assert a.shape == (240, 320, 3) and (a == 255).all(-1).any() and not np.array_equal(a, b)
    x, y = np.round(proj[0, 1, 8]).astype(int)
    assert a[y - 2:y + 3, x - 2:x + 3].any(-1).any()


def test_camera_pictures_show_the_video_frames(fitted, tmp_path):
    from mvspin.apps.view import ViewConfig, build_view_scene, frame_image
    from mvspin.io_outputs import write_image

    tmp, rec, _ = fitted
    folders = []
    for cam in rec.rig:
        w, h = cam.image_size
        for t in range(8):  # frame t is grey level 10 t
            write_image(tmp_path / cam.name / f"frame_{t:04d}.png", np.full((h, w, 3), 10 * t, np.uint8))
        folders.append(tmp_path / cam.name)
    scene = build_view_scene(ViewConfig(fit=tmp / "out", videos=folders, picture_width=160))
    picture = frame_image(scene, 2, 5)
    assert picture.shape == (120, 160, 3) and int(np.median(picture)) == 50


def test_save_writes_a_viser_recording_and_no_fit_is_one_line(fitted, tmp_path, capsys):
    pytest.importorskip("viser", reason="the viewer needs viser (pip install 'mvspin[view]')")
    tmp, _, _ = fitted
    assert main(["view", str(tmp / "out"), "--save", str(tmp_path / "scene.viser"), "--port", "0"]) == 0
    assert (tmp_path / "scene.viser").stat().st_size > 10000
    assert main(["view", str(tmp_path)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "no fitted recording here" in err[0]
