"""Board descriptions (YAML, TOML, anipose config), rendered boards that detect at the predicted
pixels, and printable PNGs that carry their DPI."""
import struct

import cv2
import numpy as np
import pytest

from calibration import CalibrationError
from calibration.boards import BoardDescription, load_board, render_board, save_board, write_board_png

CHARUCO = BoardDescription("charuco", 7, 5, square_length=0.08, marker_length=0.06, marker_bits=4, dictionary_size=50)


def test_board_files_in_yaml_toml_and_anipose_config(tmp_path):
    (tmp_path / "b.yaml").write_text("type: charuco\nsquares_x: 7\nsquares_y: 5\nsquare_length: 80\n"
                                     "marker_length: 60\nunit: mm\n")
    assert load_board(tmp_path / "b.yaml") == CHARUCO
    (tmp_path / "b.toml").write_text('type = "checkerboard"\nsquares_x = 9\nsquares_y = 6\nsquare_length = 0.025\n')
    checker = load_board(tmp_path / "b.toml")
    assert (checker.type, checker.inner_corners, checker.square_length) == ("checkerboard", 40, 0.025)
    (tmp_path / "config.toml").write_text('[calibration]\nboard_type = "charuco"\nboard_size = [7, 5]\n'
                                          'board_marker_bits = 4\nboard_marker_dict_number = 50\n'
                                          'board_marker_length = 60\nboard_square_side_length = 80\n')
    assert load_board(tmp_path / "config.toml") == CHARUCO  # anipose's lengths are millimetres
    for board, name in ((CHARUCO, "s.yaml"), (checker, "s.toml")):
        save_board(board, tmp_path / name)
        assert load_board(tmp_path / name) == board


def test_either_board_size_convention_gives_one_board(tmp_path):
    """squares: [5, 8] and inner_corners: [4, 7] are the same board; it is stored as squares."""
    (tmp_path / "sq.yaml").write_text("type: checkerboard\nsquares: [5, 8]\nsquare_length: 60\nunit: mm\n")
    (tmp_path / "ic.toml").write_text('type = "checkerboard"\ninner_corners = [4, 7]\nsquare_length = 0.06\n')
    a, b = load_board(tmp_path / "sq.yaml"), load_board(tmp_path / "ic.toml")
    assert a == b == BoardDescription("checkerboard", 5, 8, square_length=0.06)
    assert a.inner_corners == 28
    save_board(a, tmp_path / "out.yaml")
    text = (tmp_path / "out.yaml").read_text()
    assert "squares: [5, 8]" in text and "4 x 7 inner corners" in text and "inner_corners:" not in text
    assert load_board(tmp_path / "out.yaml") == a


@pytest.mark.parametrize("text, message", [
    ("type: charuco\nsquares_x: 7\nsquares_y: 5\nsquare_length: 80\nmarker_length: 60\n", "larger than a metre: is the file in millimetres"),
    ("type: charuco\nsquares_x: 7\nsquares_y: 5\nsquare_length: 0.08\nmarker_length: 0.09\n", "0 < marker_length < square_length"),
    ("type: charuco\nsquares_x: 12\nsquares_y: 10\nsquare_length: 0.05\nmarker_length: 0.04\n", "60 markers, more than the dictionary's 50"),
    ("type: circles\nsquares_x: 7\nsquares_y: 5\nsquare_length: 0.08\n", "board type must be one of charuco, checkerboard"),
    ("type: charuco\nsquares: 7\n", r"squares must be two numbers \[along the width, along the height\], got 7"),
    ("type: charuco\nsizes: [7, 5]\n", "unknown board keys sizes"),
    ("type: checkerboard\nsquares: [5, 8]\ninner_corners: [4, 7]\nsquare_length: 0.06\n",
     r"give the board's size once, as squares: \[x, y\] or inner_corners: \[x, y\]"),
    ("type: checkerboard\nsquare_length: 0.06\n", r"missing squares \(or inner_corners\)"),
    ("type: checkerboard\nsquares_x: 7\nsquare_length: 0.08\n", "missing squares_y"),
])
def test_bad_board_files_name_the_problem(tmp_path, text, message):
    path = tmp_path / "board.yaml"
    path.write_text(text)
    with pytest.raises(CalibrationError, match=f"board.yaml: .*{message}"):
        load_board(path)


@pytest.mark.parametrize("board", [CHARUCO, BoardDescription("checkerboard", 8, 6, square_length=0.03)])
def test_rendered_board_detects_at_the_documented_pixels(board):
    px, margin = 60, 30
    image = render_board(board, pixels_per_square=px, margin_px=margin)
    assert image.shape == (board.squares_y * px + 2 * margin, board.squares_x * px + 2 * margin)
    corners, ids = board.to_aniposelib().detect_image(image)
    ids = np.arange(board.inner_corners) if board.type == "checkerboard" else ids.ravel()
    assert len(ids) == board.inner_corners
    expected = board.object_points()[ids, :2] * px / board.square_length + margin - 0.5
    found = corners.reshape(-1, 2)
    if board.type == "checkerboard" and np.linalg.norm(found[0] - expected[0]) > 1:
        found = found[::-1]  # a checkerboard's corner order can start from either end
    np.testing.assert_allclose(found, expected, atol=0.25)  # sub-pixel refinement on ideal step edges


def test_board_png_prints_at_true_size(tmp_path):
    path, (w, h) = write_board_png(CHARUCO, tmp_path / "board.png", dpi=100)
    data = path.read_bytes()
    image = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_GRAYSCALE)
    px = round(0.08 / 0.0254 * 100)  # 315 pixels per 8 cm square at 100 dpi
    assert image.shape == (5 * px + px // 2 * 2, 7 * px + px // 2 * 2)
    at = data.index(b"pHYs")
    ppm_x, ppm_y, unit = struct.unpack(">IIB", data[at + 4:at + 13])
    assert (ppm_x, ppm_y, unit) == (3937, 3937, 1)  # 100 dpi in pixels per metre
    assert abs(w - 8 * 0.08) < 0.002 and abs(h - 6 * 0.08) < 0.002  # 7 x 5 squares plus half a square each side


def test_shipped_board_description_is_the_default_charuco():
    from pathlib import Path

    assert load_board(Path(__file__).parents[2] / "configs" / "board_charuco_7x5.yaml") == CHARUCO
