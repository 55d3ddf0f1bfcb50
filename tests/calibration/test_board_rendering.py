"""Synthetic board frames through distorted cameras: the board is detected where the camera model
projects it (distortion included), the ray map interpolates the lens model to < 0.005 px (frame corners included), the
undistorted case equals OpenCV's plane homography, and checkerboard corners come back in board
order whichever end OpenCV starts from."""
import cv2
import numpy as np
import pytest
import torch

from calibration import CalibrationError, Camera, undistort_points
from calibration.board_calibration import _checkerboard_in_board_order, detect_corners
from calibration.board_rendering import render_board_views, undistorted_rays
from calibration.boards import BoardDescription, render_board

CHARUCO = BoardDescription("charuco", 7, 5, square_length=0.08, marker_length=0.06)
CHECKER = BoardDescription("checkerboard", 7, 6, square_length=0.07)
UPRIGHT = np.array([[1.0, 0, 0], [0, 0, 1], [0, -1, 0]])  # board x right, y down, facing a camera at -y


def _camera(k1, size=(480, 360), roll=0.0):
    up = (np.sin(roll), 0.0, np.cos(roll))
    return Camera.look_at(eye=(0.3, -1.2, 1.0), target=(0, 0, 0.8), up=up, focal=480, image_size=size,
                          dist=(k1, 0.0, 0.0, 0.0))


def _pose(board, turn=0.0, offset=(0.0, 0.0, 0.0)):
    R = UPRIGHT @ cv2.Rodrigues(np.array([0.0, 0.0, turn]))[0]
    middle = np.array([board.squares_x / 2, board.squares_y / 2, 0.0]) * board.square_length
    return R, np.array([0.05, 0.0, 0.8]) + offset - R @ middle


@pytest.mark.parametrize("board", [CHARUCO, CHECKER])
def test_distorted_board_is_detected_where_the_camera_projects_it(board):
    cam = _camera(-0.25)
    R, t = _pose(board, offset=(0.12, 0.0, 0.1))  # off centre: the lens bends the board visibly
    (frame,) = render_board_views(board, cam, [(R, t)])
    corners, ids = detect_corners(board, frame)
    assert len(ids) == board.inner_corners
    corners3d = board.object_points()[ids] @ R.T + t
    errors = np.linalg.norm(corners.reshape(-1, 2) - cam.project(corners3d), axis=1)
    assert np.median(errors) < 0.15 and errors.max() < 0.35, errors  # sub-pixel detection on anti-aliased edges
    pinhole = Camera(K=cam.K, R=cam.R, t=cam.t, image_size=cam.image_size)
    shift = np.linalg.norm(pinhole.project(corners3d) - cam.project(corners3d), axis=1)
    assert shift.max() > 3.0  # the distortion is really in the frame: an undistorted model misses by pixels


@pytest.mark.parametrize("size, supersample", [((480, 360), 3), ((481, 361), 2), ((320, 240), 1)])
def test_ray_map_matches_the_lens_model(size, supersample):
    cam = _camera(-0.25, size)
    rays = undistorted_rays(cam, supersample)
    big = cam.scaled(supersample)
    assert rays.shape == (big.image_size[1], big.image_size[0], 2) and rays.dtype == np.float32
    rng = np.random.default_rng(0)
    u = rng.integers(0, big.image_size[0], 500)
    v = rng.integers(0, big.image_size[1], 500)
    u[:4], v[:4] = [0, big.image_size[0] - 1, 0, big.image_size[0] - 1], [0, 0, big.image_size[1] - 1, big.image_size[1] - 1]
    exact = undistort_points(torch.tensor(np.stack([u, v], 1), dtype=torch.float64), torch.from_numpy(big.K),
                             torch.from_numpy(big.dist)).numpy()
    error_px = np.abs(rays[v, u] - exact).max() * cam.K[0, 0]  # in pixels of the camera's frame
    assert error_px < 0.005, error_px


def test_without_distortion_it_is_the_plane_homography():
    cam = _camera(0.0)
    R, t = _pose(CHARUCO, turn=0.3)
    (frame,) = render_board_views(CHARUCO, cam, [(R, t)], pixels_per_square=100, supersample=1)
    margin, s = 50, 100 / CHARUCO.square_length
    to_metric = np.array([[1 / s, 0, (0.5 - margin) / s], [0, 1 / s, (0.5 - margin) / s], [0, 0, 1]])
    Rc, tc = cam.R @ R, cam.R @ t + cam.t
    H = cam.K @ np.column_stack([Rc[:, 0], Rc[:, 1], tc]) @ to_metric
    image = render_board(CHARUCO, pixels_per_square=100, margin_px=margin)
    expected = cv2.warpPerspective(image, H, cam.image_size, flags=cv2.INTER_LINEAR, borderValue=90)
    diff = np.abs(frame.astype(int) - expected.astype(int))
    assert diff.mean() < 0.2 and np.percentile(diff, 99.9) <= 2, (diff.mean(), diff.max())


def test_board_behind_the_camera_is_not_seen():
    cam = _camera(-0.1)
    R, t = _pose(CHECKER)
    behind = (R, 2 * cam.center - t - R @ np.array([0.2, 0.2, 0.0]))  # mirrored through the camera centre
    seen, unseen = render_board_views(CHECKER, cam, [(R, t), behind], background=90)
    assert (seen != 90).mean() > 0.2
    assert (unseen == 90).all()  # a projective map alone would draw a point-mirrored board here


@pytest.mark.parametrize("turn, roll", [(0.0, 0.0), (np.pi, 0.0), (2.0, 0.0), (0.0, np.pi)])
def test_checkerboard_corners_come_back_in_board_order(turn, roll):
    cam = _camera(-0.15, roll=roll)
    R, t = _pose(CHECKER, turn=turn)
    (frame,) = render_board_views(CHECKER, cam, [(R, t)])
    truth = cam.project(CHECKER.object_points() @ R.T + t)
    corners, _ = detect_corners(CHECKER, frame)
    np.testing.assert_allclose(corners.reshape(-1, 2), truth, atol=0.35)
    grid = corners.reshape(5, 6, 1, 2)
    for other in (grid[::-1, ::-1], grid[:, ::-1], grid[::-1]):  # what other numberings look like
        renumbered = _checkerboard_in_board_order(frame, other.reshape(-1, 1, 2).copy(), CHECKER)
        np.testing.assert_array_equal(renumbered, corners)


def test_rendering_arguments_are_checked():
    cam = _camera(0.0)
    with pytest.raises(CalibrationError, match="supersample must be at least 1"):
        render_board_views(CHECKER, cam, [_pose(CHECKER)], supersample=0)
    with pytest.raises(CalibrationError, match="has no image size"):
        render_board_views(CHECKER, Camera(K=cam.K, R=cam.R, t=cam.t), [_pose(CHECKER)])


def test_partly_seen_or_absent_checkerboard_is_no_detection():
    # aniposelib's own Checkerboard.detect_image passes OpenCV 5's empty "not found" array to
    # cornerSubPix and raises; a partial checkerboard has no corner identities either.
    cam = _camera(-0.2)
    half_out = _pose(CHECKER, offset=(0.45, 0.0, 0.0))
    frames = render_board_views(CHECKER, cam, [half_out])
    frames.append(np.full((360, 480), 90, np.uint8))
    assert (frames[0] != 90).mean() > 0.05  # part of the board is in the frame
    for frame in frames:
        assert detect_corners(CHECKER, frame) == (None, None)
