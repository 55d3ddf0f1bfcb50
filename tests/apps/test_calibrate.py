"""mvspin.apps.calibrate: a rig calibrated, a board drawn and a file converted from Python; the
output format, dpi and board size checked before any work (exit status, one line, nothing on disk)."""
from __future__ import annotations

import struct

import cv2
import numpy as np
import pytest

from calibration import load_rig
from mvspin.apps.calibrate import (
    BoardImageConfig,
    CalibrateConfig,
    ConvertConfig,
    board_image_pixels,
    run,
    run_board_image,
    run_convert,
)
from mvspin.cli.main import main
from mvspin.config import ConfigError
from tests.calibration.test_board_calibration import BOARD, child, recordings  # noqa: F401  (fixtures)
from tests.calibration.test_formats import _assert_same_cameras, _rig, _truth

BOARD_YAML = "type: charuco\nsquares_x: 7\nsquares_y: 5\nsquare_length: 0.08\nmarker_length: 0.06\n"


def _calibrate_in_child(config: CalibrateConfig):
    calls = []
    report = run(config, progress=lambda stage, done, total: calls.append((stage, done, total)))
    return report, calls


def test_run_calibrates_writes_the_rig_and_the_report(recordings, child, tmp_path):  # noqa: F811
    truth, sources = recordings
    board = tmp_path / "board.yaml"
    board.write_text(BOARD_YAML)
    config = CalibrateConfig(board=board, videos=sources[:2], out=tmp_path / "rig.toml", every_nth=3,
                             report=tmp_path / "report.json")
    report, calls = child.submit(_calibrate_in_child, config).result()
    assert report.format == "anipose" and report.path == tmp_path / "rig.toml"
    written = load_rig(tmp_path / "rig.toml")
    assert written.names == ["cam1", "cam2"] == report.rig.names
    for est, ref in zip(written, truth.subset([0, 1])):
        assert abs(est.K[0, 0] / ref.K[0, 0] - 1) < 0.03
    assert report.calibration.median_error_px < 0.5 and (tmp_path / "report.json").is_file()
    assert {stage for stage, _, _ in calls} == {"detect cam1", "detect cam2"}


def test_bad_format_fails_before_calibrating(tmp_path, capsys, monkeypatch):
    import calibration.board_calibration as board_calibration

    ran = []
    monkeypatch.setattr(board_calibration, "calibrate_rig", lambda *a, **k: ran.append(1))
    (tmp_path / "board.yaml").write_text(BOARD_YAML)
    code = main(["calibrate", "--board", str(tmp_path / "board.yaml"), "--videos", "a.mp4", "b.mp4",
                 "-o", str(tmp_path / "out" / "rig.toml"), "--format", "bogus"])
    lines = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and lines == ["mvspin calibrate: error: --format must be one of anipose, easymocap, qualisys, "
                                   "h36m, mpi_inf_3dhp, got 'bogus'"]
    assert ran == [] and [p.name for p in tmp_path.iterdir()] == ["board.yaml"]
    # an output name of no known format, too
    code = main(["calibrate", "--board", str(tmp_path / "board.yaml"), "--videos", "a.mp4", "b.mp4",
                 "-o", str(tmp_path / "rig.txt")])
    lines = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(lines) == 1 and "cannot tell the calibration format" in lines[0] and ran == []


def test_board_image_from_python(tmp_path):
    (tmp_path / "board.yaml").write_text(BOARD_YAML)
    report = run_board_image(BoardImageConfig(board=tmp_path / "board.yaml", out=tmp_path / "b.png", dpi=40))
    image = cv2.imread(str(report.path), cv2.IMREAD_GRAYSCALE)
    px = round(0.08 / 0.0254 * 40)  # 126 px per 8 cm square
    assert report.pixels == (8 * px, 6 * px) == (image.shape[1], image.shape[0])
    assert report.page_m == pytest.approx((8 * px / 40 * 0.0254, 6 * px / 40 * 0.0254))
    data = report.path.read_bytes()
    ppm = struct.unpack(">I", data[data.index(b"pHYs") + 4:][:4])[0]
    assert ppm == round(40 / 0.0254)  # the file records its print resolution


@pytest.mark.parametrize("board, dpi, words", [
    (BOARD_YAML, "inf", "--dpi must be in (0, 2400], got inf"),
    (BOARD_YAML, "1e6", "--dpi must be in (0, 2400], got 1000000.0"),
    (BOARD_YAML, "0", "--dpi must be in (0, 2400], got 0.0"),
    ("type: checkerboard\nsquares_x: 1001\nsquares_y: 1000\nsquare_length: 0.02\n", "300",
     "--dpi 300: a 1001 x 1000 board would be 236472 x 236236 pixels, more than 250 megapixels"),
])
def test_board_image_refuses_absurd_sizes_before_drawing(tmp_path, capsys, monkeypatch, board, dpi, words):
    import calibration.boards as boards

    monkeypatch.setattr(boards, "render_board", lambda *a, **k: pytest.fail("drew the board"))
    (tmp_path / "board.yaml").write_text(board)
    code = main(["calibrate", "board-image", "--board", str(tmp_path / "board.yaml"), "-o", str(tmp_path / "b.png"),
                 "--dpi", dpi])
    lines = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(lines) == 1 and words in lines[0]
    assert [p.name for p in tmp_path.iterdir()] == ["board.yaml"]


def test_board_image_pixels_match_the_renderer():
    from calibration.boards import render_board

    px = round(BOARD.square_length / 0.0254 * 20)
    h, w = render_board(BOARD, pixels_per_square=px).shape
    assert board_image_pixels(BOARD, 20) == (w, h)


def test_board_image_is_a_png():
    with pytest.raises(ConfigError, match="the board image is a PNG") as err:
        BoardImageConfig(board="b.yaml", out="board.jpg")
    assert err.value.field == "out"


def test_convert_from_python(tmp_path):
    from calibration import save_rig

    truth = _truth(3)
    save_rig(_rig(truth), tmp_path / "a.toml")
    report = run_convert(ConvertConfig(input=tmp_path / "a.toml", out=tmp_path / "b.qca.txt"))
    assert report.input_format == "anipose" and report.path == tmp_path / "b.qca.txt"
    _assert_same_cameras(load_rig(tmp_path / "b.qca.txt"), _rig(truth), atol=1e-5)
    with pytest.raises(ConfigError, match="format must be one of") as err:
        ConvertConfig(input=tmp_path / "a.toml", out=tmp_path / "c.toml", format="bogus")
    assert err.value.field == "format"


def test_calibrate_config_checks():
    with pytest.raises(ConfigError, match="at least 2 cameras"):
        CalibrateConfig(board="b.yaml", videos=["a.mp4"], out="r.toml")
    with pytest.raises(ConfigError, match="every_nth must be >= 1"):
        CalibrateConfig(board="b.yaml", videos=["a.mp4", "b.mp4"], out="r.toml", every_nth=0)
    with pytest.raises(ConfigError, match="names: 1 names for 2 cameras"):
        CalibrateConfig(board="b.yaml", videos=["a.mp4", "b.mp4"], out="r.toml", names=["x"])
    assert np.all([isinstance(v, type(CalibrateConfig(board="b", videos=["a", "b"], out="r.toml").board))
                   for v in CalibrateConfig(board="b", videos=["a", "b"], out="r.toml").videos])
