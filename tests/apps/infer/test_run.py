"""The infer job called from Python (mvspin.apps.infer.run), output naming, all-or-nothing outputs, bad input."""
from __future__ import annotations

import json
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch

from mvspin.apps.infer import InferConfig, InferSession, PersonBox, collect_inputs, run
from mvspin.body import BodyModel, BodyModelConfig
from mvspin.cli.main import main
from mvspin.config import load_config
from mvspin.io_outputs import read_smpl_npz
from mvspin.regressor.checkpoint import save_regressor_checkpoint
from mvspin.regressor.hmr import HMRRegressor

W, H = 160, 120


@pytest.fixture(scope="module")
def body() -> BodyModel:
    return BodyModel.free("low")


@pytest.fixture(scope="module")
def model(body: BodyModel) -> HMRRegressor:
    torch.manual_seed(0)
    return HMRRegressor(18, mean_params=body.mean_params).eval()


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory: pytest.TempPathFactory, model: HMRRegressor) -> Path:
    path = tmp_path_factory.mktemp("ckpt") / "r18.pt"
    save_regressor_checkpoint(path, model)
    return path


def _image(path: Path, seed: int, size: tuple[int, int] = (W, H)) -> Path:
    small = np.random.default_rng(seed).integers(0, 255, (size[1] // 8 + 1, size[0] // 8 + 1, 3), dtype=np.uint8)
    path.parent.mkdir(parents=True, exist_ok=True)
    cv2.imwrite(str(path), cv2.resize(small, size, interpolation=cv2.INTER_CUBIC))
    return path


def _video(path: Path, frames: int, size: tuple[int, int] = (96, 72)) -> Path:
    fourcc = "MJPG" if path.suffix == ".avi" else "mp4v"
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*fourcc), 10.0, size)
    rng = np.random.default_rng(1)
    for _ in range(frames):
        writer.write(rng.integers(0, 255, (size[1], size[0], 3), dtype=np.uint8))
    writer.release()
    return path


def test_api_on_images_and_a_video(tmp_path: Path, body: BodyModel, model: HMRRegressor):
    images = [_image(tmp_path / "in" / f"img{i}.png", i) for i in range(2)]
    video = _video(tmp_path / "in" / "clip.mp4", 5)
    config = InferConfig(inputs=[*images, video], allow_untrained=True, out=tmp_path / "out", render=False,
                         batch_size=2, body=BodyModelConfig(resolution="low"))
    report = run(config, body=body, model=model)

    assert (report.images, report.people, report.videos, report.frames, report.failures) == (2, 2, 1, 5, [])
    assert [item.source.name for item in report.items] == ["img0.png", "img1.png", "clip.mp4"]
    assert sorted(p.name for p in report.files) == ["clip.glb", "clip.npz", "img0.npz", "img0.obj", "img1.npz", "img1.obj",
                                                    "infer_config.yaml"]
    # The prediction returned equals the file, and the array API gives the same body.
    still = read_smpl_npz(tmp_path / "out" / "img1.npz")
    np.testing.assert_allclose(report.items[1].prediction.global_orient.numpy(), still["global_orient"], atol=1e-6)
    rgb = cv2.cvtColor(cv2.imread(str(images[1])), cv2.COLOR_BGR2RGB)
    direct = InferSession(config, body=body, model=model).predict_image(rgb)
    np.testing.assert_allclose(direct.body_pose.numpy(), still["body_pose"], atol=1e-5)
    np.testing.assert_allclose(direct.transl.numpy(), still["transl"], atol=1e-5)
    assert direct.vertices.shape == (1, body.num_vertices, 3)
    np.testing.assert_allclose(still["center"], [[(W - 1) / 2, (H - 1) / 2]])  # whole-image box

    clip = read_smpl_npz(tmp_path / "out" / "clip.npz")
    assert clip["body_pose"].shape == (5, 69) and clip["betas"].shape == (5, 10)
    assert float(clip["fps"]) == pytest.approx(10.0) and len(report.items[2].prediction) == 5
    np.testing.assert_allclose(report.items[2].prediction.transl.numpy(), clip["transl"], atol=1e-6)
    # The resolved config is saved beside the outputs and reads back.
    assert load_config(InferConfig, tmp_path / "out" / "infer_config.yaml") == config


def test_predict_image_refuses_boxes_that_do_not_fit(body: BodyModel, model: HMRRegressor, tmp_path: Path):
    session = InferSession(InferConfig(inputs=[tmp_path], allow_untrained=True, out=tmp_path, render=False),
                           body=body, model=model)
    image = np.zeros((H, W, 3), np.uint8)
    with pytest.raises(ValueError, match=r"box centre \(500.0, 60.0\), side 40.0 px lies outside the 160x120 image"):
        session.predict_image(image, [PersonBox("", np.array([500.0, 60.0]), 0.2)])
    with pytest.raises(ValueError, match="over 4 times the 160x120 image"):
        session.predict_image(image, [PersonBox("", np.array([80.0, 60.0]), 5000.0)])
    with pytest.raises(ValueError, match="the image is 1x1 pixels"):
        session.predict_image(np.zeros((1, 1, 3), np.uint8))


def test_views_with_one_file_name_per_camera_write_one_overlay_each(tmp_path: Path, checkpoint: Path, capsys):
    views = [_image(tmp_path / f"cam{i}" / "000.png", i) for i in (1, 2, 3)]
    items, failures = collect_inputs(views, tmp_path / "out")
    assert not failures and [i.prefix.name for i in items] == ["cam1_000", "cam2_000", "cam3_000"]
    code = main(["infer", "--views", *map(str, views), "--checkpoint", str(checkpoint), "--out",
                 str(tmp_path / "out"), "--resolution", "low", "--mesh-format", "ply"])
    out = capsys.readouterr().out
    assert code == 0
    written = sorted(p.name for p in (tmp_path / "out").iterdir())
    assert written == ["infer_config.yaml", "views.npz", "views.ply", "views_cam1_000_overlay.png",
                       "views_cam2_000_overlay.png", "views_cam3_000_overlay.png", "views_side.png"]
    assert f"{len(written)} files written" in out  # the summary counts what exists
    params = read_smpl_npz(tmp_path / "out" / "views.npz")
    assert list(params["view_names"]) == ["cam1_000", "cam2_000", "cam3_000"]
    overlays = [cv2.imread(str(tmp_path / "out" / f"views_cam{i}_000_overlay.png")) for i in (1, 2, 3)]
    assert all(o.shape == (H, W, 3) for o in overlays) and not np.array_equal(overlays[0], overlays[1])


def test_a_failed_item_leaves_no_sibling_outputs(tmp_path: Path, body: BodyModel, model: HMRRegressor, monkeypatch):
    import mvspin.io_outputs as io_outputs

    real = io_outputs.write_mesh

    def failing(path, vertices, faces):
        if "bad" in Path(path).name:
            raise OSError(28, "No space left on device", str(path))
        return real(path, vertices, faces)

    monkeypatch.setattr(io_outputs, "write_mesh", failing)
    images = [_image(tmp_path / "in" / "bad.png", 0), _image(tmp_path / "in" / "good.png", 1)]
    report = run(InferConfig(inputs=images, allow_untrained=True, out=tmp_path / "out", render=False),
                 body=body, model=model)
    assert [f[0] for f in report.failures] == [str(images[0])] and "No space left" in report.failures[0][1]
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["good.npz", "good.obj", "infer_config.yaml"]
    assert report.images == 1 and len(report.files) == 3


def _run(capsys, *argv: str) -> tuple[int, str, str]:
    code = main(["infer", *argv, "--resolution", "low", "--no-render"])
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def test_inputs_that_make_no_sense_get_a_word(tmp_path: Path, checkpoint: Path, capsys):
    good = _image(tmp_path / "in" / "good.png", 0)
    tiny = _image(tmp_path / "in" / "tiny.png", 1, size=(1, 1))
    boxes = tmp_path / "boxes"
    boxes.mkdir()
    (boxes / "good.json").write_text(json.dumps({"bbox": [1000, 900, 50, 80]}))  # outside the 160x120 image
    (boxes / "huge.json").write_text(json.dumps({"bbox": [0, 0, 1e7, 1e7]}))
    (boxes / "tiny.json").write_text(json.dumps({"bbox": [0, 0, 1, 1]}))
    huge = _image(tmp_path / "in" / "huge.png", 2)
    code, _, err = _run(capsys, str(good), str(huge), str(tiny), "--checkpoint", str(checkpoint), "--bbox",
                        str(boxes), "--out", str(tmp_path / "out"))
    assert code == 1
    assert "good.png: " in err and "side 80.0 px lies outside the 160x120 image" in err
    assert "huge.png: " in err and "is over 4 times the 160x120 image" in err
    assert "tiny.png: " in err and "the image is 1x1 pixels" in err
    assert not list((tmp_path / "out").glob("*.npz"))

    # OpenPose keypoints of a 4x larger image: most of them outside this one.
    kp = np.zeros((25, 3))
    kp[:, 0], kp[:, 1], kp[:, 2] = np.linspace(300, 500, 25), np.linspace(200, 450, 25), 0.9
    folder = tmp_path / "openpose"
    folder.mkdir()
    (folder / "good_keypoints.json").write_text(json.dumps({"people": [{"pose_keypoints_2d": kp.ravel().tolist()}]}))
    code, _, err = _run(capsys, str(good), "--checkpoint", str(checkpoint), "--openpose", str(folder),
                        "--out", str(tmp_path / "out2"))
    assert code == 1 and "25 of 25 confident keypoints lie outside the 160x120 image" in err

    # A cut video: its frames are counted, not silently dropped.
    whole = _video(tmp_path / "walk.avi", 20)
    data = whole.read_bytes()
    cut = tmp_path / "cut.avi"
    cut.write_bytes(data[: len(data) // 2])
    code, _, err = _run(capsys, str(cut), "--checkpoint", str(checkpoint), "--out", str(tmp_path / "out3"))
    assert code == 1 and "truncated or damaged video: decoded" in err and "of the 20 frames the file reports" in err
    assert not list((tmp_path / "out3").glob("cut*"))


@pytest.mark.parametrize("option, message", [
    (["--batch-size", "0"], "--batch-size must be in 1..4096, got 0"),
    (["--person", "first"], "--person must be largest, most_confident, all or an index, got 'first'"),
    (["--device", "banana"], "device 'banana' is not a torch device"),
])
def test_options_out_of_range_are_one_line(tmp_path: Path, checkpoint: Path, capsys, option, message):
    code, _, err = _run(capsys, str(_image(tmp_path / "a.png", 0)), "--checkpoint", str(checkpoint), *option,
                        "--out", str(tmp_path / "out"))
    assert code == 2 and len(err.strip().splitlines()) == 1 and message in err


def test_output_location_is_checked_before_any_work(tmp_path: Path, capsys):
    image = _image(tmp_path / "grey.png", 0)
    broken = tmp_path / "broken.pt"
    broken.write_bytes(b"not a checkpoint")  # loading it would fail: the output check comes first
    (tmp_path / "file").write_text("in the way")
    code, _, err = _run(capsys, str(image), "--checkpoint", str(broken), "--out", str(tmp_path / "file"))
    assert code == 2
    assert err.strip() == f"mvspin infer: error: --out {tmp_path / 'file'}: a file is in the way (expected a folder)"
    # A directory where an output file goes: refused before the network runs, nothing written.
    out = tmp_path / "out"
    (out / "grey.npz").mkdir(parents=True)
    code, _, err = _run(capsys, str(image), "--allow-untrained", "--backbone", "resnet18", "--out", str(out))
    assert code == 2 and f"--out {out}: a directory is in the way of the output file {out / 'grey.npz'}" in err
    assert sorted(p.name for p in out.iterdir()) == ["grey.npz"]


def test_views_refine_fits_one_body_to_every_views_keypoints(tmp_path: Path, body: BodyModel, checkpoint: Path,
                                                            capsys):
    """``infer --views --refine``: MV-SMPLify on three views' OpenPose files of a known body."""
    from mvspin.geometry import perspective_projection
    from tests.regressor.test_predictor import _three_views_of_one_body

    _, keypoints, uv = _three_views_of_one_body(body)
    folder = tmp_path / "openpose"
    folder.mkdir()
    views = []
    for i in range(3):
        views.append(_image(tmp_path / f"view{i}.png", i, size=(640, 480)))
        (folder / f"view{i}_keypoints.json").write_text(json.dumps(
            {"people": [{"pose_keypoints_2d": keypoints[i].ravel().tolist()}]}))

    def errors(npz: Path) -> np.ndarray:
        p = read_smpl_npz(npz)
        with torch.no_grad():
            kp = body.keypoints("openpose25", torch.tensor(p["body_pose"]), torch.tensor(p["betas"]).expand(3, 10),
                                torch.tensor(p["global_orient"]), torch.tensor(p["transl"]))
        return (perspective_projection(kp.double(), torch.tensor(p["K"])) - uv).norm(dim=-1).mean(-1).numpy()

    common = ["--views", *map(str, views), "--checkpoint", str(checkpoint), "--openpose", str(folder)]
    assert _run(capsys, *common, "--out", str(tmp_path / "net"))[0] == 0
    code, _, _ = _run(capsys, *common, "--refine", "--set", "fit.stage1_iterations=20", "fit.stage2_iterations=40",
                      "--out", str(tmp_path / "fit"))
    assert code == 0
    fit = read_smpl_npz(tmp_path / "fit" / "views.npz")
    assert bool(fit["refined"]) and fit["reprojection_error_px"].shape == (3,) and fit["betas"].shape == (10,)
    np.testing.assert_allclose(fit["body_pose"][1:], np.repeat(fit["body_pose"][:1], 2, 0), atol=1e-5)
    before, after = errors(tmp_path / "net" / "views.npz"), errors(tmp_path / "fit" / "views.npz")
    # From an untrained network's guess (one orientation for every view) 60 iterations get the
    # views' mean error well under half (about 42 -> 15 px), every view closer.
    assert after.mean() < 0.5 * before.mean() and (after < before).all(), (before, after)
    np.testing.assert_allclose(fit["reprojection_error_px"], after, rtol=0.25)


def test_every_npz_infer_writes_is_an_axis_angle_smpl_file(tmp_path: Path, checkpoint: Path, capsys):
    image = _image(tmp_path / "in" / "two.png", 0)
    kp = np.zeros((2, 25, 3))
    kp[:, :, 0] = np.linspace(10, 60, 25) + np.array([[0], [80]])
    kp[:, :, 1], kp[:, :, 2] = np.linspace(10, 110, 25), 0.9
    (tmp_path / "in" / "two_keypoints.json").write_text(json.dumps(
        {"people": [{"pose_keypoints_2d": k.ravel().tolist()} for k in kp]}))
    video = _video(tmp_path / "in" / "clip.mp4", 3)
    assert _run(capsys, str(image), "--openpose", str(tmp_path / "in"), "--person", "all", "--checkpoint",
                str(checkpoint), "--out", str(tmp_path / "out"))[0] == 0
    assert _run(capsys, str(video), "--checkpoint", str(checkpoint), "--out", str(tmp_path / "out"))[0] == 0
    views = [_image(tmp_path / f"cam{i}" / "000.png", i) for i in (1, 2)]
    assert _run(capsys, "--views", *map(str, views), "--checkpoint", str(checkpoint), "--out",
                str(tmp_path / "out"))[0] == 0
    files = sorted(p.name for p in (tmp_path / "out").rglob("*.npz"))
    assert files == ["clip.npz", "two_p0.npz", "two_p1.npz", "views.npz"]
    rows = {"clip.npz": 3, "two_p0.npz": 1, "two_p1.npz": 1, "views.npz": 2}
    for path in (tmp_path / "out").rglob("*.npz"):
        p = read_smpl_npz(path)
        t = rows[path.name]
        assert p["body_pose"].shape == (t, 69) and p["global_orient"].shape == (t, 3), path
        assert p["transl"].shape == (t, 3) and p["K"].shape == (t, 3, 3)
        # Axis-angle, not matrices flattened: rotation angles below pi.
        assert np.linalg.norm(p["body_pose"].reshape(t, 23, 3), axis=-1).max() <= np.pi + 1e-5


def test_run_from_python_writes_the_files_and_reports_the_numbers(tmp_path: Path, checkpoint: Path, body: BodyModel):
    """``mvspin.apps.infer.run(InferConfig(...))`` on one image with a box file: the files, the
    counts, the progress calls, and the camera the box implies (focal 5000 * side / 224, principal
    point at the box centre)."""
    from mvspin.regressor import load_regressor_checkpoint

    image = _image(tmp_path / "in" / "walker.png", 4)
    (tmp_path / "in" / "walker.json").write_text(json.dumps({"bbox": [40, 10, 60, 100]}))  # x, y, w, h
    calls: list[tuple[str, int, int]] = []
    config = InferConfig(inputs=[image], checkpoint=checkpoint, bbox=tmp_path / "in" / "walker.json",
                         out=tmp_path / "out", render=False, body=BodyModelConfig(resolution="low"), device="cpu")
    report = run(config, progress=lambda *call: calls.append(call))

    assert (report.images, report.people, report.videos, report.frames, report.failures) == (1, 1, 0, 0, [])
    assert sorted(p.name for p in report.files) == ["infer_config.yaml", "walker.npz", "walker.obj"]
    assert calls[0] == ("images", 0, 1) and calls[-1] == ("images", 1, 1)
    assert report.timings["network"] > 0 and report.timings["body model"] > 0 and report.load_seconds > 0
    params = read_smpl_npz(tmp_path / "out" / "walker.npz")
    np.testing.assert_allclose(params["center"][0], [70.0, 60.0])  # SPIN's box: centre of x, y, w, h
    side = 100.0  # the longer side, kept as it is (rescale 1, as SPIN's demo)
    np.testing.assert_allclose(params["K"][0], [[5000 * side / 224, 0, 70], [0, 5000 * side / 224, 60], [0, 0, 1]],
                               rtol=1e-6)
    pred = report.items[0].prediction
    np.testing.assert_allclose(pred.transl.numpy(), params["transl"], atol=1e-6)
    # The network's own translation for the crop: depth 2 f / (224 s) from its crop camera.
    model, _ = load_regressor_checkpoint(checkpoint)
    s = float(pred.cam_crop[0, 0])
    assert params["transl"][0, 2] == pytest.approx(2 * 5000 / (224 * s), rel=1e-5)
    obj = (tmp_path / "out" / "walker.obj").read_text()
    assert obj.count("\nv ") == body.num_vertices and model.depth == 18
    assert load_config(InferConfig, tmp_path / "out" / "infer_config.yaml") == config


def test_config_problems_name_their_field_and_outputs_are_checked_before_loading(tmp_path: Path):
    from mvspin.atomic import OutputLocationError
    from mvspin.config import ConfigError
    from mvspin.fitting import MVSMPLifyConfig

    image = _image(tmp_path / "a.png", 0)
    cases = [
        (dict(checkpoint=None), "checkpoint", "no checkpoint given"),
        (dict(batch_size=0), "batch_size", "batch_size must be in 1..4096, got 0"),
        (dict(person="all", bbox=tmp_path), "person", "person all takes every person from openpose"),
        (dict(views=True, person="all", openpose=tmp_path), "views", "views takes one person per view"),
        (dict(refine=True), "refine", "refine fits SMPLify to 2D keypoints: give them with openpose"),
        (dict(fit=MVSMPLifyConfig(stage2_iterations=5)), "refine", "the fit settings set up refine"),
        (dict(mesh_format="stl"), "mesh_format", "mesh_format must be obj or ply"),
        (dict(inputs=[]), "inputs", "inputs is empty"),
    ]
    for change, field, message in cases:
        settings = dict(inputs=[image], checkpoint=tmp_path / "c.pt", out=tmp_path / "out") | change
        with pytest.raises(ConfigError, match=message) as err:
            InferConfig(**settings)
        assert err.value.field == field, change
    with pytest.raises(ConfigError, match="fit.mode must be per_view") as err:
        InferConfig(inputs=[image], allow_untrained=True, views=True, openpose=tmp_path, refine=True,
                    fit=MVSMPLifyConfig(mode="calibrated"))
    assert err.value.field == "fit.mode"

    # A fitting preset under the fit settings that were changed; a saved config reads back equal.
    preset = InferConfig(inputs=[image], allow_untrained=True, refine=True, openpose=tmp_path, fit_preset="spin",
                         fit=MVSMPLifyConfig(stage2_iterations=7), out=tmp_path / "preset")
    assert (preset.fit.stage1_loss, preset.fit.patience, preset.fit.stage2_iterations) == ("squared", 0, 7)
    assert "neck" in preset.fit.stage2_ignored_points
    assert InferConfig(**{**vars(preset)}) == preset
    with pytest.raises(ConfigError, match="fit_preset must be one of mvspin, spin, mvspin_paper") as err:
        InferConfig(inputs=[image], allow_untrained=True, refine=True, openpose=tmp_path, fit_preset="fast")
    assert err.value.field == "fit_preset"

    # Files named by the config are checked first, then the output folder, then the models load:
    # the broken checkpoint is never read when the output folder is blocked.
    broken = tmp_path / "broken.pt"
    broken.write_bytes(b"not a checkpoint")
    with pytest.raises(ConfigError, match="bbox .*absent.json: no such file or folder") as err:
        run(InferConfig(inputs=[image], checkpoint=broken, bbox=tmp_path / "absent.json"))
    assert err.value.field == "bbox"
    (tmp_path / "file").write_text("in the way")
    with pytest.raises(OutputLocationError, match="a file is in the way") as err:
        run(InferConfig(inputs=[image], checkpoint=broken, out=tmp_path / "file"))
    assert err.value.field == "out"
