"""mvspin.apps.render_model: the gallery from Python (its size from the config); absurd grids and
bad outputs refused before the body model loads."""
from __future__ import annotations

import cv2
import pytest

from mvspin.apps.render_model import RenderModelConfig, run
from mvspin.body import BodyModelConfig
from mvspin.cli.main import main
from mvspin.config import ConfigError


def test_gallery_from_python(tmp_path):
    calls = []
    config = RenderModelConfig(out=tmp_path / "g.png", samples=1, size=(64, 80), cols=3,
                               body=BodyModelConfig(resolution="low"))
    report = run(config, progress=lambda *c: calls.append(c))
    assert report.panels == 7 and config.grid_pixels() == (3 * 64 + 16, 3 * 80 + 16) == report.pixels  # 3 x 3, 4 px padding
    image = cv2.imread(str(report.path))
    assert image.shape == (256, 208, 3)
    assert calls[-1] == ("render-model", 7, 7) and report.body_model.startswith("free")
    # the panels show a body: each has pixels other than the background's
    panel = image[4:84, 4:68].reshape(-1, 3)
    assert len({tuple(p) for p in panel[::7]}) > 10


def test_grid_limits():
    with pytest.raises(ConfigError, match="make a 262404 x 20504 image, more than 64 megapixels") as err:
        RenderModelConfig(size=(4096, 4096), cols=64, samples=256)
    assert err.value.field == "size"
    with pytest.raises(ConfigError, match="size H must be in 32..4096, got 20480"):
        RenderModelConfig(size=(262144 // 64, 20480))


@pytest.mark.parametrize("flags, words", [
    (["--size", "4096", "4096", "--cols", "64", "--samples", "256"], "262404 x 20504 image"),
    (["--size", "262144", "20480"], "--size W must be in 32..4096, got 262144"),
    (["--samples", "1000"], "--samples must be in 0..256, got 1000"),
])
def test_absurd_grids_end_in_one_line_before_work(tmp_path, capsys, monkeypatch, flags, words):
    monkeypatch.setattr(BodyModelConfig, "load", lambda self, *a, **k: pytest.fail("loaded the body model"))
    code = main(["render-model", "-o", str(tmp_path / "g.png"), *flags])
    lines = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(lines) == 1 and words in lines[0] and list(tmp_path.iterdir()) == []
