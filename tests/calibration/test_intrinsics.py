"""Intrinsics per camera from its own stills, and calibrations refused as implausible.

The stills are rendered through real-camera-like lenses (portrait 1088 x 1920, focal 1680-1720 px,
k1 -0.04 to -0.06, principal point a few pixels off centre): six per camera, each camera's taken
on its own (not synchronised), two of the six with the board partly out of view."""
import json

import cv2
import numpy as np
import pytest

from calibration import Camera, load_rig
from calibration.board_rendering import render_board_views
from calibration.boards import BoardDescription
from calibration.intrinsics import plausibility_problems
from mvspin.apps.calibrate import CalibrateConfig, IntrinsicsConfig, run, run_intrinsics
from mvspin.errors import CalibrationRefusedError

SIZE = (1088, 1920)
LENSES = [("cam01", 1680.0, (6.0, -4.0), -0.05), ("cam02", 1700.0, (-5.0, 7.0), -0.04), ("cam03", 1720.0, (3.0, 5.0), -0.06)]
CHECKER = BoardDescription("checkerboard", 5, 8, square_length=0.06)  # 4 x 7 inner corners, the lab's board
CHARUCO = BoardDescription("charuco", 5, 7, square_length=0.06, marker_length=0.045)
BOARD_FILES = {
    "checker-squares": "type: checkerboard\nsquares: [5, 8]\nsquare_length: 60\nunit: mm\n",
    "checker-inner-corners": "type: checkerboard\ninner_corners: [4, 7]\nsquare_length: 60\nunit: mm\n",
    "charuco": "type: charuco\nsquares: [5, 7]\nsquare_length: 0.06\nmarker_length: 0.045\n",
}


def _camera(name, focal, offset, k1):
    K = np.array([[focal, 0, (SIZE[0] - 1) / 2 + offset[0]], [0, focal, (SIZE[1] - 1) / 2 + offset[1]], [0, 0, 1]])
    return Camera(K=K, R=np.eye(3), t=np.zeros(3), dist=np.array([k1, 0.02, 0, 0, 0]), image_size=SIZE, name=name)


def _poses(board, rng, count=6, partial=(1, 4)):
    """Board poses in front of a camera at the origin looking along +z, tilted differently;
    the ``partial`` ones shifted so that part of the board leaves the frame."""
    middle = np.array([board.squares_x * board.square_length / 2, board.squares_y * board.square_length / 2, 0.0])
    poses = []
    for i in range(count):
        tilt = np.array([rng.uniform(0.25, 0.55) * rng.choice([-1, 1]), rng.uniform(0.2, 0.5) * rng.choice([-1, 1]),
                         rng.uniform(-0.4, 0.4)])
        R = cv2.Rodrigues(tilt)[0]
        centre = np.array([rng.uniform(-0.08, 0.08), rng.uniform(-0.12, 0.12), rng.uniform(0.75, 1.05)])
        if i in partial:
            centre[0] = rng.choice([-1, 1]) * 0.27
        poses.append((R, centre - R @ middle))
    return poses


def _write_stills(folder, board, camera, rng, stretch=1.0):
    folder.mkdir(parents=True)
    for i, frame in enumerate(render_board_views(board, camera, _poses(board, rng), pixels_per_square=100, supersample=1)):
        if stretch != 1.0:  # an anamorphic resize and crop: what a wrong export does to a camera's stills
            frame = cv2.resize(frame, None, fx=stretch, fy=1.0)[:, : SIZE[0]]
        cv2.imwrite(str(folder / f"still_{i}.png"), frame)
    return folder


@pytest.fixture(scope="module")
def stills(tmp_path_factory):
    root = tmp_path_factory.mktemp("stills")
    out = {}
    for kind, board in (("checker", CHECKER), ("charuco", CHARUCO)):
        out[kind] = [_write_stills(root / kind / name, board, _camera(name, f, c, k1), np.random.default_rng(10 + j))
                     for j, (name, f, c, k1) in enumerate(LENSES)]
    return out


@pytest.mark.parametrize("board_file", list(BOARD_FILES))
def test_each_camera_calibrates_from_its_own_stills_to_one_percent(tmp_path, stills, board_file):
    board = tmp_path / "board.yaml"
    board.write_text(BOARD_FILES[board_file])
    folders = stills["charuco" if board_file == "charuco" else "checker"]
    report = run_intrinsics(IntrinsicsConfig(board=board, images=folders, out=tmp_path / "intrinsics.toml",
                                             report=tmp_path / "report.json"))
    rig = load_rig(tmp_path / "intrinsics.toml")
    assert rig.names == [name for name, *_ in LENSES]
    for cam, cam_report, (name, focal, offset, k1) in zip(rig, report.cameras, LENSES):
        assert abs(cam.K[0, 0] / focal - 1) < 0.01 and abs(cam.K[1, 1] / focal - 1) < 0.01, (name, cam.K)
        assert abs(cam.dist[0] - k1) < 0.02, (name, cam.dist)
        assert cam_report.median_error_px < 0.5 and not cam_report.problems
        assert len(cam_report.views) == 6 and cam_report.used_views >= 4
        if board_file != "charuco":  # a partly seen checkerboard has no corner identities: reported, not used
            partial = [v for v in cam_report.views if not v.used]
            assert all(v.corners == 0 and v.note == "no board found" for v in partial), partial
    per_image = json.loads((tmp_path / "report.json").read_text())
    assert [v["image"] for v in per_image[0]["views"]] == [f"still_{i}.png" for i in range(6)]


def test_a_corrupted_camera_is_refused_named_and_nothing_written(tmp_path, stills, capsys):
    """Two good cameras and one whose stills were stretched 8 % sideways (non-square pixels): the
    job fails naming that camera, prints the per-camera table, writes nothing; force writes and
    says so in the file."""
    board = tmp_path / "board.yaml"
    board.write_text(BOARD_FILES["checker-squares"])
    bad = _write_stills(tmp_path / "cam03", CHECKER, _camera(*LENSES[2]), np.random.default_rng(12), stretch=1.08)
    config = dict(board=board, images=[*stills["checker"][:2], bad], out=tmp_path / "intrinsics.toml")
    with pytest.raises(CalibrationRefusedError, match="camera cam03: fx .* and fy .* differ by more than 5 %") as err:
        run_intrinsics(IntrinsicsConfig(**config))
    assert "camera cam01" in err.value.table and "PROBLEM: fx" in err.value.table
    assert not any("cam01" in p or "cam02" in p for p in err.value.problems)
    assert not (tmp_path / "intrinsics.toml").exists()
    from mvspin.cli.main import main

    code = main(["calibrate", "intrinsics", "--board", str(board), "--images", *map(str, config["images"]),
                 "-o", str(tmp_path / "intrinsics.toml"), "--max-view-error-px", "1.0"])
    out, err = capsys.readouterr()
    assert code == 2 and "calibration refused, nothing written: camera cam03: fx" in err and "force" in err
    assert "still_0.png" in out and "PROBLEM: fx" in out  # the per-image, per-camera table
    assert not (tmp_path / "intrinsics.toml").exists()
    run_intrinsics(IntrinsicsConfig(**config, force=True))
    text = (tmp_path / "intrinsics.toml").read_text()
    assert "forced" in text and "cam03: fx" in text


def test_unsynchronised_stills_given_as_synchronised_are_refused(tmp_path, stills):
    """Each camera's own stills given as a synchronised rig recording (frame i of each the same
    moment): the board poses imply a different rig in every frame; refused with one clear line."""
    board = tmp_path / "board.yaml"
    board.write_text(BOARD_FILES["charuco"])
    with pytest.raises(CalibrationRefusedError, match=r"the sources are not synchronised: cameras cam01 and cam02 both "
                                                      r"see the board in \d frames .* changes by [\d.]+ degrees"):
        run(CalibrateConfig(board=board, videos=stills["charuco"], out=tmp_path / "rig.toml"))
    assert not (tmp_path / "rig.toml").exists()


@pytest.mark.parametrize("change, problem", [
    (dict(focal=595810.0), "focal length 595810 px is outside 346-19200 px"),
    (dict(focal=150.0, k1=0.0, k2=0.0), "focal length 150 px is outside"),
    (dict(k1=-188158.0), "folds over inside the image"),
    (dict(k1=2.5), "scales the image corners by"),
    (dict(centre=(40.0, 1800.0)), "principal point (40, 1800) px is outside the middle half"),
])
def test_implausible_cameras_say_why(change, problem):
    focal = change.get("focal", 1700.0)
    cx, cy = change.get("centre", (543.5, 959.5))
    K = np.array([[focal, 0, cx], [0, focal, cy], [0, 0, 1]])
    cam = Camera(K=K, R=np.eye(3), t=np.zeros(3), dist=np.array([change.get("k1", -0.05), change.get("k2", 0.1), 0, 0, 0]), image_size=SIZE)
    problems = plausibility_problems(cam)
    assert len(problems) == 1 and problem in problems[0], problems
    good = Camera(K=np.array([[1700, 0, 543.5], [0, 1700, 959.5], [0, 0, 1]]), R=np.eye(3), t=np.zeros(3),
                  dist=np.array([-0.046, 0.14, 0, 0, 0]), image_size=SIZE)
    assert plausibility_problems(good, median_error_px=0.8) == []
    assert plausibility_problems(good, median_error_px=96.0) == ["median reprojection error 96.00 px is over 2 px"]
