"""``mvspin infer`` end to end: npz camera, overlay placement, videos, views, bad input."""
from __future__ import annotations

import json
import logging
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch

from mvspin.body import BodyModel
from mvspin.cli.main import main
from mvspin.data.video import VideoFrames
from mvspin.geometry import (
    axis_angle_to_matrix,
    crop_cam_to_translation,
    crop_intrinsics,
    crop_to_image_points,
    perspective_projection,
)
from mvspin.io_outputs import read_smpl_npz
from mvspin.regressor.checkpoint import load_regressor_checkpoint, save_regressor_checkpoint
from mvspin.regressor.hmr import HMRRegressor
from mvspin.regressor.preprocess import bbox_to_center_scale, crop_image, normalize_crop

W, H = 320, 240
BOX = [170.0, 30.0, 110.0, 190.0]  # x, y, w, h: off the image centre, so the camera shift matters


@pytest.fixture(scope="module")
def body() -> BodyModel:
    return BodyModel.free("low")


@pytest.fixture(scope="module")
def data(tmp_path_factory: pytest.TempPathFactory, body: BodyModel) -> Path:
    """A ResNet-18 checkpoint with the body model's mean parameters, images and box files."""
    root = tmp_path_factory.mktemp("infer")
    torch.manual_seed(0)
    model = HMRRegressor(18, mean_params=body.mean_params)
    with torch.no_grad():  # a slightly turned, off-centre body instead of the mean one
        model.deccam.bias.copy_(torch.tensor([0.05, 0.12, -0.08]))
        model.decpose.bias[:6].add_(torch.tensor([0.0, 0.1, 0.15, 0.0, 0.0, 0.0]))
    save_regressor_checkpoint(root / "r18.pt", model, epoch=7)
    rng = np.random.default_rng(0)
    grey = np.full((H, W, 3), 128, np.uint8)
    cv2.imwrite(str(root / "grey.png"), grey)
    (root / "grey.json").write_text(json.dumps({"bbox": BOX}))
    folder = root / "folder"
    (folder / "boxes").mkdir(parents=True)
    cv2.imwrite(str(folder / "good.jpg"), rng.integers(0, 255, (120, 160, 3), dtype=np.uint8))
    (folder / "corrupt.png").write_bytes(b"\x89PNG\r\n\x1a\n not really a png")
    cv2.imwrite(str(folder / "nobox.png"), grey[:100, :100])
    for stem in ("good", "corrupt"):
        (folder / "boxes" / f"{stem}.json").write_text(json.dumps({"bbox": [10, 10, 100, 100]}))
    return root


def _run(capsys: pytest.CaptureFixture, *argv: str) -> tuple[int, str, str]:
    code = main(["infer", *argv, "--resolution", "low"])
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def _network_keypoints_in_image(data: Path, body: BodyModel) -> tuple[np.ndarray, np.ndarray]:
    """The network's joints projected in its crop camera, mapped to the image (independent of
    the inference code), and its mesh vertices in the crop camera frame."""
    model, _ = load_regressor_checkpoint(data / "r18.pt")
    center, scale = bbox_to_center_scale(np.array([BOX[0], BOX[1], BOX[0] + BOX[2], BOX[1] + BOX[3]]), rescale=1.0)
    image = cv2.cvtColor(cv2.imread(str(data / "grey.png")), cv2.COLOR_BGR2RGB)
    crop, _ = crop_image(image, center, scale)
    with torch.no_grad():
        out = model(normalize_crop(crop)[None])
        posed = body(body_pose=out.rotmat[:, 1:], betas=out.betas, global_orient=out.rotmat[:, :1],
                     transl=crop_cam_to_translation(out.cam))
    crop_px = perspective_projection(posed.joints.double(), crop_intrinsics(dtype=torch.float64))
    image_px = crop_to_image_points(crop_px, torch.tensor(center)[None], torch.tensor([scale]))
    return image_px[0].numpy(), posed.vertices[0].numpy()


def test_npz_reprojects_onto_the_network_keypoints(data: Path, body: BodyModel, tmp_path: Path, capsys, caplog):
    caplog.set_level(logging.INFO, logger="mvspin")
    code, out, _ = _run(capsys, str(data / "grey.png"), "--checkpoint", str(data / "r18.pt"),
                        "--bbox", str(data / "grey.json"), "--out", str(tmp_path), "--no-render")
    assert code == 0 and "1 images (1 people)" in out
    assert f"body model: {body.name}" in caplog.text
    assert "r18.pt (ResNet-18 HMR regressor, epoch 7)" in caplog.text
    params = read_smpl_npz(tmp_path / "grey.npz")
    assert params["global_orient"].shape == (1, 3) and params["body_pose"].shape == (1, 69)
    assert params["betas"].shape == (10,) and params["transl"].shape == (1, 3)
    assert params["poses"].shape == (1, 156) and str(params["model"]) == body.name and float(params["fps"]) == 0
    np.testing.assert_array_equal(params["image_size"], [W, H])
    with torch.no_grad():
        posed = body(body_pose=torch.tensor(params["body_pose"]), betas=torch.tensor(params["betas"])[None],
                     global_orient=torch.tensor(params["global_orient"]), transl=torch.tensor(params["transl"]))
    projected = perspective_projection(posed.joints.double(), torch.tensor(params["K"]))[0].numpy()
    expected, _ = _network_keypoints_in_image(data, body)
    # The body stands off the image centre: a camera centred on the image would miss by pixels.
    assert np.abs(expected.mean(0) - [W / 2, H / 2]).max() > 30
    error = np.linalg.norm(projected - expected, axis=1)
    assert error.max() < 1.0, error.max()
    assert error.max() < 0.05  # in fact exact up to float32 rounding of the parameters
    obj = (tmp_path / "grey.obj").read_text()
    assert obj.count("\nv ") == body.num_vertices and obj.count("\nf ") == len(body.faces)


def _projected_triangles(vertices: np.ndarray, faces: np.ndarray, K: np.ndarray) -> np.ndarray:
    px = vertices[:, :2] / vertices[:, 2:] * np.diag(K)[:2] + K[:2, 2]
    mask = np.zeros((H, W), np.uint8)
    for tri in faces:
        cv2.fillPoly(mask, [np.round(px[tri] * 16).astype(np.int32)], 1, shift=4)
    return mask.astype(bool)


def test_overlay_draws_the_mesh_where_it_projects(data: Path, body: BodyModel, tmp_path: Path, capsys):
    code, _, _ = _run(capsys, str(data / "grey.png"), "--checkpoint", str(data / "r18.pt"),
                      "--bbox", str(data / "grey.json"), "--out", str(tmp_path))
    assert code == 0
    params = read_smpl_npz(tmp_path / "grey.npz")
    with torch.no_grad():
        vertices = body(body_pose=torch.tensor(params["body_pose"]), betas=torch.tensor(params["betas"])[None],
                        global_orient=torch.tensor(params["global_orient"]),
                        transl=torch.tensor(params["transl"])).vertices[0].double().numpy()
    reference = _projected_triangles(vertices, body.faces, params["K"][0])
    overlay = cv2.imread(str(tmp_path / "grey_overlay.png")).astype(int)
    drawn = (np.abs(overlay - 128) > 2).any(-1)
    iou = (drawn & reference).sum() / (drawn | reference).sum()
    assert reference.sum() > 2000 and iou > 0.9, iou
    side = cv2.imread(str(tmp_path / "grey_side.png"))
    assert side.shape == (H, W, 3) and (side < 250).any(-1).sum() > 500  # a body on white


def test_folder_run_lists_bad_files_and_goes_on(data: Path, tmp_path: Path, capsys):
    code, _, err = _run(capsys, str(data / "folder"), "--checkpoint", str(data / "r18.pt"),
                        "--bbox", str(data / "folder" / "boxes"), "--out", str(tmp_path), "--no-render")
    assert code == 1
    assert (tmp_path / "folder" / "good.npz").is_file() and (tmp_path / "folder" / "good.obj").is_file()
    assert not (tmp_path / "folder" / "corrupt.npz").exists() and not (tmp_path / "folder" / "nobox.npz").exists()
    lines = err.strip().splitlines()
    assert lines[-3] == "2 input(s) failed:"
    assert "corrupt.png: not an image OpenCV can read" in lines[-2]
    assert "nobox.png: missing bbox file: none of nobox.json, nobox_bbox.json in" in lines[-1]


def test_refuses_to_run_without_a_checkpoint(data: Path, tmp_path: Path, capsys):
    code, _, err = _run(capsys, str(data / "grey.png"), "--out", str(tmp_path))
    assert code == 2 and len(err.strip().splitlines()) == 1
    assert "no --checkpoint given: an untrained network predicts meaningless bodies" in err
    assert not tmp_path.exists() or not any(tmp_path.iterdir())


def test_checkpoint_of_another_architecture_is_one_line(data: Path, tmp_path: Path, capsys):
    code, _, err = _run(capsys, str(data / "grey.png"), "--checkpoint", str(data / "r18.pt"),
                        "--backbone", "resnet50", "--out", str(tmp_path))
    assert code == 2 and len(err.strip().splitlines()) == 1
    assert "architecture mismatch: the checkpoint holds a ResNet-18 HMR regressor but depth=50" in err


def test_missing_box_file_is_one_line(data: Path, tmp_path: Path, capsys):
    code, _, err = _run(capsys, str(data / "grey.png"), "--checkpoint", str(data / "r18.pt"),
                        "--bbox", str(data / "absent.json"), "--out", str(tmp_path))
    assert code == 2 and err.strip() == f"mvspin infer: error: --bbox {data / 'absent.json'}: no such file or folder"


def test_video_gives_one_sequence_file_and_an_overlay_video(data: Path, body: BodyModel, tmp_path: Path, capsys):
    video = tmp_path / "clip.mp4"
    writer = cv2.VideoWriter(str(video), cv2.VideoWriter_fourcc(*"mp4v"), 12.0, (96, 72))
    for i in range(5):
        writer.write(np.full((72, 96, 3), 40 * i, np.uint8))
    writer.release()
    code, _, _ = _run(capsys, str(video), "--allow-untrained", "--backbone", "resnet18", "--batch-size", "2",
                      "--out", str(tmp_path / "out"))
    assert code == 0
    params = read_smpl_npz(tmp_path / "out" / "clip.npz")
    assert params["poses"].shape == (5, 156) and params["betas"].shape == (5, 10)
    assert params["K"].shape == (5, 3, 3) and float(params["fps"]) == pytest.approx(12.0)
    np.testing.assert_allclose(params["center"], [[47.5, 35.5]] * 5)  # whole-frame boxes
    capture = cv2.VideoCapture(str(tmp_path / "out" / "clip_overlay.mp4"))
    assert int(capture.get(cv2.CAP_PROP_FRAME_COUNT)) == 5
    ok, frame = capture.read()
    capture.release()
    assert ok and frame.shape == (72, 96, 3) and (np.abs(frame.astype(int) - 0) > 20).any()
    # The .glb: valid, with normals, the root's keys turning the camera frame (y down) to glTF's y up
    from tests.file_checks import Glb, assert_valid_gltf, quat_matrix

    glb = Glb(tmp_path / "out" / "clip.glb")
    assert glb.attribute("NORMAL").shape == glb.attribute("POSITION").shape and glb.doc.animations[0].extras["frames"] == 5
    root = axis_angle_to_matrix(torch.as_tensor(params["global_orient"][3], dtype=torch.float64)).numpy()
    np.testing.assert_allclose(quat_matrix(glb.keys(0, "rotation")[3]), np.diag([1.0, -1, -1]) @ root, atol=1e-5)
    assert_valid_gltf(tmp_path / "out" / "clip.glb")
    # smooth: the same clip with the bodies smoothed over 5 frames (less frame-to-frame change)
    code, _, _ = _run(capsys, str(video), "--allow-untrained", "--backbone", "resnet18", "--batch-size", "2",
                      "--out", str(tmp_path / "smooth"), "--smooth", "5")
    assert code == 0
    smooth = read_smpl_npz(tmp_path / "smooth" / "clip.npz")

    def wiggle(p):  # squared third differences of the rotation matrices (5 frames, window 5: one quadratic)
        rot = axis_angle_to_matrix(torch.as_tensor(p["body_pose"]).view(5, 23, 3)).numpy()
        return float((np.diff(rot, 3, axis=0) ** 2).sum())

    assert wiggle(smooth) < 0.05 * wiggle(params)
    assert len(list(VideoFrames(tmp_path / "smooth" / "clip_overlay.mp4"))) == 5


def test_views_are_fused_into_one_body(data: Path, body: BodyModel, tmp_path: Path, capsys):
    images = []
    for i, shift in enumerate((0, 40)):
        path = tmp_path / f"view{i}.png"
        cv2.imwrite(str(path), np.roll(np.random.default_rng(i).integers(0, 255, (H, W, 3), dtype=np.uint8), shift, 1))
        images.append(str(path))
    code, _, _ = _run(capsys, "--views", *images, "--checkpoint", str(data / "r18.pt"), "--out",
                      str(tmp_path / "out"), "--no-render", "--mesh-format", "ply")
    assert code == 0 and (tmp_path / "out" / "views.ply").is_file()
    params = read_smpl_npz(tmp_path / "out" / "views.npz")
    assert params["body_pose"].shape == (2, 69) and params["betas"].shape == (10,)
    np.testing.assert_allclose(params["body_pose"][0], params["body_pose"][1], atol=1e-6)
    assert list(params["view_names"]) == ["view0", "view1"] and params["K"].shape == (2, 3, 3)
    # Each view's file row is its own complete body: betas shared, root and camera per view.
    code, _, _ = _run(capsys, images[0], "--checkpoint", str(data / "r18.pt"), "--out", str(tmp_path / "single"),
                      "--no-render")
    single = read_smpl_npz(tmp_path / "single" / "view0.npz")
    np.testing.assert_allclose(params["global_orient"][0], single["global_orient"][0], atol=1e-5)
    np.testing.assert_allclose(params["transl"][0], single["transl"][0], atol=1e-4)
    np.testing.assert_allclose(params["K"][0], single["K"][0])


def _openpose_file(path: Path, people: list[np.ndarray]) -> None:
    path.write_text(json.dumps({"version": 1.3, "people": [
        {"person_id": [-1], "pose_keypoints_2d": p.reshape(-1).tolist()} for p in people]}))


def _person(x0: float, y0: float, size: float) -> np.ndarray:
    """25 BODY_25 keypoints spread over a box (enough for a crop box; not a real pose)."""
    kp = np.zeros((25, 3))
    kp[:, 0] = x0 + size * np.linspace(0.2, 0.8, 25)
    kp[:, 1] = y0 + size * np.linspace(0.0, 1.0, 25)
    kp[:, 2] = 0.9
    return kp


def test_every_openpose_person_gets_its_own_output(data: Path, tmp_path: Path, capsys):
    bystander = np.zeros((25, 3))
    bystander[0] = [5, 5, 0.9]  # one confident keypoint: no box, skipped without failing the image
    _openpose_file(tmp_path / "grey_keypoints.json", [_person(20, 20, 150), bystander, _person(200, 60, 90)])
    code, out, _ = _run(capsys, str(data / "grey.png"), "--checkpoint", str(data / "r18.pt"), "--openpose",
                        str(tmp_path), "--person", "all", "--out", str(tmp_path / "out"), "--no-render")
    assert code == 0 and "1 images (2 people)" in out
    assert sorted(p.name for p in (tmp_path / "out").glob("*.npz")) == ["grey_p0.npz", "grey_p2.npz"]
    first, third = read_smpl_npz(tmp_path / "out" / "grey_p0.npz"), read_smpl_npz(tmp_path / "out" / "grey_p2.npz")
    # Boxes from the keypoints: centre of their extent, side 1.2 x the longer side.
    np.testing.assert_allclose(first["center"][0], [20 + 150 * 0.5, 20 + 75], atol=1e-4)
    np.testing.assert_allclose(third["scale"][0], 90 * 1.2 / 200, rtol=1e-6)


def test_video_boxes_follow_per_frame_keypoint_files(data: Path, tmp_path: Path, capsys):
    video = tmp_path / "walk.mp4"
    writer = cv2.VideoWriter(str(video), cv2.VideoWriter_fourcc(*"mp4v"), 25.0, (160, 120))
    for i in range(5):
        writer.write(np.full((120, 160, 3), 60, np.uint8))
    writer.release()
    frames = tmp_path / "openpose"
    frames.mkdir()
    for index in (0, 1, 3):  # frame 2 has no file; frame 4 has nobody in it
        _openpose_file(frames / f"walk_{index:012d}_keypoints.json", [_person(10 + 20 * index, 10, 80)])
    _openpose_file(frames / f"walk_{4:012d}_keypoints.json", [])
    code, out, _ = _run(capsys, str(video), "--checkpoint", str(data / "r18.pt"), "--openpose", str(frames),
                        "--out", str(tmp_path / "out"), "--no-render")
    assert code == 0 and "2 video frames had no box" in out
    params = read_smpl_npz(tmp_path / "out" / "walk.npz")
    np.testing.assert_array_equal(params["box_detected"], [True, True, False, True, False])
    np.testing.assert_allclose(params["center"][:, 0], [50, 70, 70, 110, 110], atol=1e-4)
    assert float(params["fps"]) == pytest.approx(25.0)


def test_refine_fits_the_keypoints(data: Path, body: BodyModel, tmp_path: Path, capsys):
    """OpenPose keypoints of a known posed body: SMPLify brings the network's guess onto them."""
    from mvspin.geometry import axis_angle_to_matrix
    from mvspin.regressor.predictor import crop_camera_to_image_camera

    g = torch.Generator().manual_seed(5)
    pose = 0.3 * torch.randn(1, 69, generator=g)
    center, scale = torch.tensor([[220.0, 120.0]], dtype=torch.float64), torch.tensor([1.0], dtype=torch.float64)
    K, transl = crop_camera_to_image_camera(torch.tensor([[0.8, 0.03, 0.05]], dtype=torch.float64), center, scale)
    orient = axis_angle_to_matrix(torch.tensor([[np.pi, 0.3, 0.0]]))
    with torch.no_grad():
        kp3d = body(body_pose=pose, global_orient=orient[:, None], transl=transl.float(), keypoints="openpose25").keypoints
    uv = perspective_projection(kp3d.double(), K)[0].numpy()
    _openpose_file(tmp_path / "grey_keypoints.json", [np.concatenate([uv, np.full((25, 1), 0.9)], axis=1)])

    def error_of(npz: Path) -> float:
        params = read_smpl_npz(npz)
        with torch.no_grad():
            kp = body(body_pose=torch.tensor(params["body_pose"]), betas=torch.tensor(params["betas"])[None],
                      global_orient=torch.tensor(params["global_orient"]), transl=torch.tensor(params["transl"]),
                      keypoints="openpose25").keypoints
        return float(np.linalg.norm(perspective_projection(kp.double(), torch.tensor(params["K"]))[0].numpy() - uv,
                                    axis=1).mean())

    common = ["--checkpoint", str(data / "r18.pt"), "--openpose", str(tmp_path), "--no-render"]
    assert _run(capsys, str(data / "grey.png"), *common, "--out", str(tmp_path / "net"))[0] == 0
    code, _, _ = _run(capsys, str(data / "grey.png"), *common, "--refine", "--set", "fit.stage1_iterations=20",
                      "fit.stage2_iterations=40", "--out", str(tmp_path / "fit"))
    assert code == 0
    refined = read_smpl_npz(tmp_path / "fit" / "grey.npz")
    assert bool(refined["refined"]) and refined["reprojection_error_px"].shape == (1,)
    before, after = error_of(tmp_path / "net" / "grey.npz"), error_of(tmp_path / "fit" / "grey.npz")
    assert after < 0.4 * before, (before, after)
    assert float(refined["reprojection_error_px"][0]) == pytest.approx(after, rel=0.5)


def test_output_writers_check_shapes_and_leave_no_partial_files(tmp_path: Path):
    from mvspin.io_outputs import VideoWriter, write_smpl_npz

    good = {"global_orient": np.zeros((2, 3)), "body_pose": np.zeros((2, 69)), "betas": np.ones(10),
            "transl": np.ones((2, 3))}
    path = write_smpl_npz(tmp_path / "seq.npz", **good, model="free-test", fps=30.0, extra={"K": np.eye(3)})
    params = read_smpl_npz(path)
    np.testing.assert_array_equal(params["poses"], np.zeros((2, 156)))
    assert str(params["model"]) == "free-test" and float(params["fps"]) == 30.0
    with pytest.raises(ValueError, match=r"bad\.npz: row counts differ: global_orient 2, body_pose 3"):
        write_smpl_npz(tmp_path / "bad.npz", **{**good, "body_pose": np.zeros((3, 69))}, model="m")
    with pytest.raises(ValueError, match="may not reuse the standard keys"):
        write_smpl_npz(tmp_path / "bad.npz", **good, model="m", extra={"poses": np.zeros(3)})
    with pytest.raises(ValueError, match="NaN"):
        write_smpl_npz(path, **{**good, "transl": np.full((2, 3), np.nan)}, model="m")
    assert read_smpl_npz(path)["transl"].shape == (2, 3)  # the earlier file is intact
    with pytest.raises(RuntimeError), VideoWriter(tmp_path / "clip.mp4", fps=10) as video:
        video.write(np.zeros((16, 16, 3), np.uint8))
        raise RuntimeError("interrupted")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["seq.npz"]  # no partial video, no temporaries
