"""calibrate --floor-frames refuses boards that do not lie flat on one floor (issue 16): a board
standing upright would make a wall the floor and put every camera height off."""
from __future__ import annotations

import numpy as np
import pytest

from calibration import CalibrationError, Camera, Rig
from calibration.world_frame import cameras_up_guess, check_floor_boards
from tests.calibration.test_board_calibration import recordings  # noqa: F401,F811  (the fixture: board videos)


def _rig() -> Rig:
    return Rig([Camera.look_at(eye=(3 * np.cos(a), 3 * np.sin(a), 2.2), target=(0, 0, 0.8), up=(0, 0, 1), focal=900,
                               image_size=(640, 480), name=f"c{i}") for i, a in enumerate(np.linspace(0, 4, 4))])


def _board(centre, normal_axis: str) -> np.ndarray:
    """A 7 x 5 grid of corners, 8 cm apart, lying flat (normal z) or standing (normal y)."""
    u, v = np.meshgrid(np.arange(7) * 0.08, np.arange(5) * 0.08)
    grid = np.column_stack([u.ravel(), v.ravel(), np.zeros(u.size)])
    if normal_axis == "y":
        grid = grid[:, [0, 2, 1]]
    return grid - grid.mean(0) + np.asarray(centre, dtype=float)


def test_flat_boards_pass_and_give_the_floor_normal():
    rig = _rig()
    assert cameras_up_guess(rig) @ np.array([0, 0, 1.0]) > 0.9
    normal = check_floor_boards(rig, [_board((0, 0, 0), "z"), _board((0.5, 0.3, 0.004), "z")], frames=[15, 16])
    np.testing.assert_allclose(normal, [0, 0, 1], atol=1e-6)


def test_upright_tilted_and_stacked_boards_are_refused():
    rig = _rig()
    with pytest.raises(CalibrationError, match=r"floor frames 0, 1: the board stands 8\d, 8\d degrees away from lying flat"):
        check_floor_boards(rig, [_board((0, 0, 0.8), "y"), _board((0.2, 0, 0.9), "y")], frames=[0, 1])
    with pytest.raises(CalibrationError, match="floor frame 7: the board stands"):
        check_floor_boards(rig, [_board((0, 0, 0), "z"), _board((0.5, 0, 0), "z"), _board((0, 0.5, 0.8), "y")],
                           frames=[5, 6, 7])
    tilted = _board((0, 0.5, 0), "z")
    c = np.cos(np.radians(25)), np.sin(np.radians(25))
    tilted = (tilted - tilted.mean(0)) @ np.array([[1, 0, 0], [0, c[0], -c[1]], [0, c[1], c[0]]]).T
    with pytest.raises(CalibrationError, match=r"floor frame 7: the board is tilted 1\d degrees"):
        check_floor_boards(rig, [_board((0, 0, 0), "z"), _board((0.5, 0, 0), "z"), tilted], frames=[5, 6, 7])
    with pytest.raises(CalibrationError, match=r"not in one plane \(heights differ by 0.70 m.*frame 9 is farthest"):
        check_floor_boards(rig, [_board((0, 0, 0), "z"), _board((0.5, 0, 0), "z"), _board((0, 0.5, 0.7), "z")],
                           frames=[8, 10, 9])


def test_calibrate_on_upright_board_frames_is_one_line_and_writes_nothing(recordings, tmp_path, capsys):  # noqa: F811
    from mvspin.cli.main import main

    _, sources = recordings
    board = tmp_path / "board.yaml"
    board.write_text("type: charuco\nsquares_x: 7\nsquares_y: 5\nsquare_length: 80\nmarker_length: 60\nunit: mm\n")
    out = tmp_path / "calib" / "rig.toml"
    # frames 0-2: the board stands upright facing the cameras (15-17 lie on the floor)
    rc = main(["calibrate", "--board", str(board), "--videos", *map(str, sources), "-o", str(out),
               "--floor-frames", "0", "1", "2", "--no-progress"])
    err = capsys.readouterr().err.strip()
    assert rc == 2 and len(err.splitlines()) == 1, err
    assert "floor frames 0, 1, 2: the board stands" in err and "lie flat on the floor" in err
    assert not (tmp_path / "calib").exists()


def test_a_truncated_calibration_video_says_so(tmp_path, caplog):
    import logging

    import cv2

    from calibration.board_calibration import _frames

    path = tmp_path / "cam1.avi"
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"MJPG"), 10, (160, 120))
    rng = np.random.default_rng(0)
    for _ in range(30):
        writer.write(rng.integers(0, 255, (120, 160, 3), dtype=np.uint8))
    writer.release()
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 3])  # a copy cut short: the header still claims 30 frames
    frames, total = _frames(path)
    with caplog.at_level(logging.WARNING, logger="calibration"):
        read = sum(1 for _ in frames)
    assert total == 30 and 0 < read < 20
    assert [r.getMessage() for r in caplog.records] == [
        f"{path}: read {read} of the 30 frames the video claims (truncated or damaged?); calibrating with those"]
