"""Board calibration with aniposelib on ChArUco recordings rendered into synthetic cameras with
known parameters: focal lengths, camera centres and the floor frame come back within 1% / 1 cm;
cameras that never see the board or share no views get clear errors."""
import concurrent.futures
import json
import multiprocessing

import cv2
import numpy as np
import pytest

from calibration import CalibrationError, Camera, Rig, WorldFrame, transform_rig
from calibration.board_calibration import calibrate_rig, detect_board
from calibration.boards import BoardDescription, render_board

BOARD = BoardDescription("charuco", 7, 5, square_length=0.08, marker_length=0.06)
SIZE = (480, 360)
PX = 160  # board image pixels per square
FLOOR_FRAMES = (15, 16, 17)  # the board lies on the floor in the last three frames
FLOOR_SPOTS = ((-0.25, 0.35), (0.25, 0.35), (0.0, 0.65))


def _rotation(axis, angle):
    return cv2.Rodrigues(np.asarray(axis, dtype=np.float64) * angle)[0]


def _cameras():
    cams = []
    for i, a in enumerate(np.deg2rad([-40, -12, 15, 42])):
        eye = (1.25 * np.sin(a), -1.25 * np.cos(a), 1.35 + 0.05 * i)
        cams.append(Camera.look_at(eye=eye, target=(0, 0, 0.75), up=(0, 0, 1), focal=500 + 30 * i, image_size=SIZE,
                                   name=f"cam{i + 1}"))
    return cams


def _board_poses(rng, count):
    """Board-to-world (R, t): the board upright facing the cameras, turned and tilted, then
    lying on the floor (markers up) at FLOOR_SPOTS."""
    upright = np.array([[1.0, 0, 0], [0, 0, 1], [0, -1, 0]])  # columns: board x, y (down), z (into board)
    poses = []
    for _ in range(count):
        R = _rotation([0, 0, 1], rng.uniform(-0.6, 0.6)) @ _rotation([1, 0, 0], rng.uniform(-0.45, 0.45)) @ upright
        centre = np.array([rng.uniform(-0.12, 0.12), rng.uniform(-0.1, 0.1), 0.8 + rng.uniform(-0.12, 0.12)])
        poses.append((R, centre - R @ [3.5 * BOARD.square_length, 2.5 * BOARD.square_length, 0]))
    flat = np.array([[1.0, 0, 0], [0, -1, 0], [0, 0, -1]])  # board y towards the cameras, z into the floor
    for x, y in FLOOR_SPOTS:
        poses.append((flat, np.array([x, y, 0.0]) - flat @ [3.5 * BOARD.square_length, 2.5 * BOARD.square_length, 0]))
    return poses


def render_views(camera, poses, board_image, margin, supersample=3):
    """The board image warped into ``camera`` for each board pose (plane homography) at
    ``supersample`` times the size, then area-averaged down (anti-aliased edges); gray 90
    background; frames ``(H, W)`` uint8."""
    s = PX / BOARD.square_length
    to_metric = np.array([[1 / s, 0, (0.5 - margin) / s], [0, 1 / s, (0.5 - margin) / s], [0, 0, 1]])
    big = camera.scaled(supersample)
    frames = []
    for R, t in poses:
        Rc, tc = big.R @ R, big.R @ t + big.t
        H = big.K @ np.column_stack([Rc[:, 0], Rc[:, 1], tc]) @ to_metric
        frame = cv2.warpPerspective(board_image, H, big.image_size, flags=cv2.INTER_LINEAR, borderValue=90)
        frames.append(cv2.resize(frame, camera.image_size, interpolation=cv2.INTER_AREA))
    return frames


def _write_video(path, frames):
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"MJPG"), 10, SIZE)
    writer.set(cv2.VIDEOWRITER_PROP_QUALITY, 100)
    for f in frames:
        writer.write(cv2.cvtColor(f, cv2.COLOR_GRAY2BGR))
    writer.release()


def _write_folder(path, frames):
    path.mkdir()
    for i, f in enumerate(frames):
        cv2.imwrite(str(path / f"frame_{i}.png"), f)  # natural order: frame_2 before frame_10


@pytest.fixture(scope="module")
def recordings(tmp_path_factory):
    root = tmp_path_factory.mktemp("charuco")
    margin = PX // 2
    board_image = render_board(BOARD, pixels_per_square=PX, margin_px=margin)
    poses = _board_poses(np.random.default_rng(0), 15)
    cams = _cameras()
    sources = []
    for i, cam in enumerate(cams):
        frames = render_views(cam, poses, board_image, margin)
        if i < 3:
            sources.append(root / f"{cam.name}.avi")
            _write_video(sources[-1], frames)
        else:
            sources.append(root / cam.name)
            _write_folder(sources[-1], frames)
    return Rig(cams), sources, board_image, margin


def _calibrate_with_progress(sources):
    calls = []
    rig, report = calibrate_rig(BOARD, sources, floor_frames=FLOOR_FRAMES, up="z",
                                progress=lambda v, done, total: calls.append((v, done, total)))
    return rig, report, calls


def _run_command(argv):
    import contextlib
    import io

    from mvspin.cli.main import main

    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        code = main(argv)
    return code, out.getvalue()


@pytest.fixture(scope="module")
def child():
    """One spawned worker process for the calibrations: aniposelib's bundle adjustment imports
    JAX, which is multithreaded, and later tests in this process fork (DataLoader workers)."""
    with concurrent.futures.ProcessPoolExecutor(1, mp_context=multiprocessing.get_context("spawn")) as pool:
        yield pool


def test_charuco_rig_calibrates_to_known_cameras(recordings, child):
    truth, sources, _, _ = recordings
    rig, report, calls = child.submit(_calibrate_with_progress, sources).result()
    assert rig.names == truth.names  # from the file and folder names
    assert rig.world == WorldFrame(up="z", origin="floor")
    for est, ref in zip(rig, truth):
        assert abs(est.K[0, 0] / ref.K[0, 0] - 1) < 0.01 and abs(est.K[1, 1] / ref.K[1, 1] - 1) < 0.01
        assert est.image_size == SIZE
    # Camera centres: compared in the first camera's frame (the calibration cannot know the
    # world's rotation about the vertical or its horizontal origin).
    est0 = transform_rig(rig, rig[0].R, rig[0].t)
    ref0 = transform_rig(truth, truth[0].R, truth[0].t)
    errors = [np.linalg.norm(a.center - b.center) for a, b in zip(est0, ref0)]
    assert max(errors) < 0.01, errors
    # Floor frame: heights above the floor are world z, as in the truth.
    np.testing.assert_allclose([c.center[2] for c in rig], [c.center[2] for c in truth], atol=0.01)
    assert report.median_error_px < 0.5
    assert [c.frames for c in report.cameras] == [18] * 4
    assert all(c.frames_with_board >= 16 and c.shared_views >= 14 for c in report.cameras)
    assert report.shared_frames >= 16
    table = report.table()
    assert all(name in table for name in truth.names) and "median reprojection error" in table
    assert {v for v, _, _ in calls} == {0, 1, 2, 3} and calls[-1][1:] == (18, 18)


def test_camera_that_never_sees_the_board_is_named(recordings, tmp_path):
    _, sources, _, _ = recordings
    blank = tmp_path / "blank"
    blank.mkdir()
    for i in range(3):
        cv2.imwrite(str(blank / f"{i}.png"), np.full(SIZE[::-1], 90, np.uint8))
    with pytest.raises(CalibrationError, match=r"camera blank \(.*blank\): the board was not detected in any of its 3 frames"):
        calibrate_rig(BOARD, [sources[3], blank])


def test_cameras_without_shared_views_are_refused(recordings, tmp_path):
    truth, _, board_image, margin = recordings
    poses = _board_poses(np.random.default_rng(1), 4)[:4]
    empty = np.full(SIZE[::-1], 90, np.uint8)
    a, b = render_views(truth[1], poses, board_image, margin), render_views(truth[2], poses, board_image, margin)
    _write_folder(tmp_path / "left", a[:2] + [empty, empty])  # left sees frames 0-1, right frames 2-3
    _write_folder(tmp_path / "right", [empty, empty] + b[2:])
    with pytest.raises(CalibrationError, match="cameras share no board views: right never see"):
        calibrate_rig(BOARD, [tmp_path / "left", tmp_path / "right"])


def test_detection_reads_folders_in_natural_order(recordings):
    truth, sources, _, _ = recordings
    det = detect_board(BOARD, sources[3], "cam4")
    assert det.frames == 18 and det.image_size == SIZE
    counts = det.corners_per_frame()
    assert counts[0] == BOARD.inner_corners  # frame_0 (not frame_10) comes first
    every_other = detect_board(BOARD, sources[3], "cam4", every_nth=2).corners_per_frame()
    assert set(every_other) == {f for f in counts if f % 2 == 0}


def test_calibrate_command_writes_rig_report_and_board(recordings, child, tmp_path, capsys):
    from calibration import load_rig
    from mvspin.cli.main import main

    truth, sources, _, _ = recordings
    board_file = tmp_path / "board.yaml"
    board_file.write_text("type: charuco\nsquares_x: 7\nsquares_y: 5\nsquare_length: 80\nmarker_length: 60\nunit: mm\n")
    out = tmp_path / "calib" / "intri.yml"  # EasyMocap, from the name
    code, printed = child.submit(_run_command, [
        "calibrate", "--board", str(board_file), "--videos", *map(str, sources[2:]), "-o", str(out),
        "--every-nth", "2", "--report", str(tmp_path / "report.json"), "--no-progress"]).result()
    assert code == 0 and "cam3" in printed and "cam4" in printed and "wrote" in printed
    rig = load_rig(out.parent)
    assert rig.names == ["cam3", "cam4"] and (out.parent / "extri.yml").is_file()
    for est, ref in zip(rig, truth.subset([2, 3])):
        assert abs(est.K[0, 0] / ref.K[0, 0] - 1) < 0.02
    report = json.loads((tmp_path / "report.json").read_text())
    assert [c["name"] for c in report["cameras"]] == ["cam3", "cam4"] and report["median_error_px"] < 0.5

    assert main(["calibrate", "board-image", "--board", str(board_file), "-o", str(tmp_path / "b.png"), "--dpi", "50"]) == 0
    image = cv2.imread(str(tmp_path / "b.png"), cv2.IMREAD_GRAYSCALE)
    assert image.shape == (5 * 157 + 156, 7 * 157 + 156)  # 157 px per 8 cm square at 50 dpi, half-square margins
    assert "print at 100%" in capsys.readouterr().out

    assert main(["calibrate", "--board", str(board_file), "-o", str(tmp_path / "r.toml")]) == 2
    assert "error: missing --videos" in capsys.readouterr().err
