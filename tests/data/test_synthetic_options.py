"""The one synthetic-data config: presets, YAML and key=value overrides, checks."""
import pytest

from mvspin.config import ConfigError, load_config
from mvspin.data import synthetic_capture, synthetic_keypoints
from mvspin.data.synthetic_options import SyntheticOptions


def test_one_class_for_keypoints_and_rendered_captures():
    assert synthetic_keypoints.SyntheticOptions is SyntheticOptions is synthetic_capture.SyntheticOptions
    assert not hasattr(synthetic_capture, "CaptureOptions")


def test_presets():
    keypoints = SyntheticOptions.preset("keypoints")
    assert keypoints == SyntheticOptions()
    assert (keypoints.image_size, keypoints.focal, keypoints.noise_px, keypoints.drop_rate, keypoints.keypoint_set) \
        == ((1000, 1000), 1000.0, 2.0, 0.1, "openpose25")
    capture = SyntheticOptions.preset("capture", num_views=2)
    assert (capture.image_size, capture.focal, capture.noise_px, capture.drop_rate, capture.keypoint_set,
            capture.num_views) == ((224, 224), 360.0, 1.0, 0.05, "h36m17", 2)
    assert capture.crop_margin == 1.2 and capture.distance == (3.5, 5.0)
    with pytest.raises(ValueError, match="known presets: keypoints, capture"):
        SyntheticOptions.preset("video")


def test_yaml_and_overrides_resolve_in_order(tmp_path):
    yaml = tmp_path / "s.yaml"
    yaml.write_text("focal: 500\nimage_size: [320, 240]\nnoise_px: 3\n")
    opts = load_config(SyntheticOptions, yaml, ["noise_px=0.5", "colors=parts"], default_preset="capture")
    # capture preset < YAML < overrides
    assert (opts.focal, opts.image_size, opts.noise_px, opts.colors, opts.drop_rate) == (500.0, (320, 240), 0.5,
                                                                                         "parts", 0.05)
    # a preset named in the YAML or the overrides replaces the default one
    opts = load_config(SyntheticOptions, None, ["preset=keypoints"], default_preset="capture")
    assert opts == SyntheticOptions()
    with pytest.raises(ConfigError, match="Did you mean: 'num_views'"):
        load_config(SyntheticOptions, None, ["views=3"])


@pytest.mark.parametrize("change, message", [
    ({"num_views": 0}, "num_views must be in 1..64, got 0"),
    ({"image_size": (8, 100)}, "image_size must be at least 16"),
    ({"height": (2.0, 1.0)}, r"height must be \(min, max\)"),
    ({"distance": (0.2, 1.0)}, "distance must stay above 0.5 m"),
    ({"drop_rate": 1.0}, r"drop_rate must be in \[0, 1\)"),
    ({"noise_px": -1.0}, "noise_px must be >= 0"),
    ({"num_views": 2, "outlier_views": 2}, r"outlier_views must be in 0\.\.1"),
    ({"crop_margin": 0.0}, "crop_margin must be positive"),
    ({"background": "sky"}, "background must be"),
    ({"image_format": ".bmp"}, "image_format must be"),
    ({"jpeg_quality": 101}, r"jpeg_quality must be in 0\.\.100"),
])
def test_checks_name_the_option(change, message):
    with pytest.raises(ValueError, match=message):
        SyntheticOptions(**change)
