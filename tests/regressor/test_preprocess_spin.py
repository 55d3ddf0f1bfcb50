"""SPIN-exact preprocessing against a transcription of SPIN's own crop (utils/imutils.py) and box
placement (demo.py), written here from the reference's definitions."""
import numpy as np
import pytest
from PIL import Image

from mvspin.geometry import keypoint_crop_box
from mvspin.regressor.preprocess import (
    crop_for_network,
    crop_image,
    preprocessing_for_checkpoint,
    spin_crop,
    spin_openpose_center_scale,
)


# -- the reference, transcribed -----------------------------------------------------------------
def ref_get_transform(center, scale, res):
    h = 200 * scale
    t = np.zeros((3, 3))
    t[0, 0] = float(res[1]) / h
    t[1, 1] = float(res[0]) / h
    t[0, 2] = res[1] * (-float(center[0]) / h + 0.5)
    t[1, 2] = res[0] * (-float(center[1]) / h + 0.5)
    t[2, 2] = 1
    return t


def ref_transform(pt, center, scale, res, invert=0):
    t = ref_get_transform(center, scale, res)
    if invert:
        t = np.linalg.inv(t)
    new_pt = np.dot(t, np.array([pt[0] - 1, pt[1] - 1, 1.0]).T)
    return new_pt[:2].astype(int) + 1


def ref_bytescale(data, high=255, low=0):  # scipy.misc.bytescale (scipy < 1.2)
    cmin, cmax = data.min(), data.max()
    cscale = cmax - cmin
    if cscale == 0:
        cscale = 1
    scale = float(high - low) / cscale
    bytedata = (data - cmin) * scale + low
    return (bytedata.clip(low, high) + 0.5).astype(np.uint8)


def ref_imresize(arr, size):  # scipy.misc.imresize(arr, size) with its default interp='bilinear'
    im = Image.fromarray(ref_bytescale(arr), "RGB")  # toimage() on a float (H, W, 3) array
    return np.array(im.resize((size[1], size[0]), resample=Image.BILINEAR))


def ref_crop(img, center, scale, res):  # SPIN's crop() with rot=0
    ul = np.array(ref_transform([1, 1], center, scale, res, invert=1)) - 1
    br = np.array(ref_transform([res[0] + 1, res[1] + 1], center, scale, res, invert=1)) - 1
    new_shape = [br[1] - ul[1], br[0] - ul[0], img.shape[2]]
    new_img = np.zeros(new_shape)
    new_x = max(0, -ul[0]), min(br[0], len(img[0])) - ul[0]
    new_y = max(0, -ul[1]), min(br[1], len(img)) - ul[1]
    old_x = max(0, ul[0]), min(len(img[0]), br[0])
    old_y = max(0, ul[1]), min(len(img), br[1])
    new_img[new_y[0]:new_y[1], new_x[0]:new_x[1]] = img[old_y[0]:old_y[1], old_x[0]:old_x[1]]
    return ref_imresize(new_img, res)


def ref_bbox_from_openpose(keypoints, rescale=1.2, detection_thresh=0.2):
    valid = keypoints[:, -1] > detection_thresh
    valid_keypoints = keypoints[valid][:, :-1]
    center = valid_keypoints.mean(axis=0)
    bbox_size = (valid_keypoints.max(axis=0) - valid_keypoints.min(axis=0)).max()
    return center, bbox_size / 200.0 * rescale


# -- real-looking test images -------------------------------------------------------------------
def photo(seed, height=360, width=480, low=0, high=255):
    """A photo-like RGB image: lit gradient background, textured floor, a person-sized figure,
    sensor noise; values squeezed into [low, high] (a dim or washed-out picture)."""
    import cv2

    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:height, 0:width].astype(np.float64)
    img = np.stack([90 + 60 * xx / width, 110 + 40 * yy / height, 140 - 50 * xx / width], -1)
    img[int(0.7 * height):] = rng.normal(120, 25, (height - int(0.7 * height), width, 1)) * [0.8, 0.7, 0.6]
    img = np.clip(img, 0, 255).astype(np.uint8)
    cx, cy = int(width * rng.uniform(0.35, 0.65)), int(height * 0.55)
    cv2.ellipse(img, (cx, cy), (35, 95), 0, 0, 360, tuple(int(v) for v in rng.integers(20, 240, 3)), -1)
    cv2.circle(img, (cx, cy - 120), 24, (205, 170, 150), -1)
    for _ in range(30):
        p = rng.integers(0, [width, height])
        cv2.circle(img, (int(p[0]), int(p[1])), int(rng.integers(3, 15)), tuple(int(v) for v in rng.integers(0, 255, 3)), -1)
    img = cv2.GaussianBlur(img, (3, 3), 0).astype(np.float64) + rng.normal(0, 4, img.shape)
    img = low + (high - low) * (np.clip(img, 0, 255) / 255.0)
    return np.clip(img + 0.5, 0, 255).astype(np.uint8)


CASES = [  # image seed, value range, centre, scale: inside, at the border, larger than the image, dim
    (0, (0, 255), (240.3, 180.7), 1.37),
    (1, (0, 255), (30.5, 300.2), 1.9),
    (2, (0, 255), (240.0, 180.0), 2.6),
    (3, (35, 190), (251.6, 170.4), 1.21),
    (4, (60, 140), (200.9, 200.1), 0.83),
    (5, (0, 255), (250.0, 200.0), 1.0),  # corners on exact integers
]


@pytest.mark.parametrize("seed, value_range, center, scale", CASES)
def test_spin_crop_matches_spin(seed, value_range, center, scale):
    image = photo(seed, low=value_range[0], high=value_range[1])
    ours, M = spin_crop(image, np.array(center), scale)
    ref = ref_crop(image, np.array(center), scale, (224, 224))
    assert ours.shape == ref.shape == (224, 224, 3) and ours.dtype == np.uint8
    diff = np.abs(ours.astype(np.float64) - ref)
    assert diff.mean() < 1.0 and diff.max() <= 1
    # M maps the box corners onto the crop's edges (pixel centres at integers).
    ul = np.array(ref_transform([1, 1], center, scale, (224, 224), invert=1)) - 1
    np.testing.assert_allclose(M[:, :2] @ (ul - 0.5) + M[:, 2], [-0.5, -0.5], atol=1e-9)


def test_spin_mode_differs_from_the_exact_mode_where_spin_stretches_contrast():
    image = photo(3, low=35, high=190)  # a dim picture: SPIN stretches it to 0..255
    center, scale = np.array([251.6, 170.4]), 1.21
    spin, _ = crop_for_network(image, center, scale, mode="spin")
    exact, _ = crop_for_network(image, center, scale, mode="exact")
    ref = ref_crop(image, center, scale, (224, 224)).astype(np.float64)
    assert np.abs(spin - ref).mean() < 1.0
    assert np.abs(exact - ref).mean() > 10.0  # the default mode keeps the picture's own range
    assert exact.min() >= 30 and spin.min() < 15 and spin.max() > 240  # stretched, then filtered
    np.testing.assert_array_equal(exact, crop_image(image, center, scale)[0])
    with pytest.raises(ValueError, match="preprocessing must be one of exact, spin"):
        crop_for_network(image, center, scale, mode="pil")


def test_spin_openpose_box_is_centred_on_the_keypoint_mean():
    rng = np.random.default_rng(7)
    kp = np.column_stack([rng.uniform(100, 300, 25), rng.uniform(50, 400, 25), rng.uniform(0, 1, 25)])
    kp[:5, :2] = kp[0, :2] + rng.normal(0, 3, (5, 2))  # the face's many points pull the mean
    kp[:5, 2] = 0.9
    kp[20, 2] = 0.15  # below SPIN's 0.2 threshold, above mvspin's default 0.1
    center, scale = spin_openpose_center_scale(kp)
    ref_center, ref_scale = ref_bbox_from_openpose(kp)
    np.testing.assert_allclose(center, ref_center, atol=1e-12)
    assert scale == pytest.approx(ref_scale, rel=1e-12)
    box_center, _ = keypoint_crop_box(kp)  # the exact mode: middle of the box
    assert np.linalg.norm(box_center - ref_center) > 5.0


def test_default_mode_follows_the_checkpoint():
    assert preprocessing_for_checkpoint({"epoch": 3, "optimizer": {}}) == "spin"  # SPIN's own file
    assert preprocessing_for_checkpoint({}) == "spin"  # a bare state dict
    assert preprocessing_for_checkpoint({"mvspin": {"depth": 50, "version": "0.1"}}) == "exact"
    assert preprocessing_for_checkpoint({"mvspin": {"preprocessing": "spin"}}) == "spin"
    assert preprocessing_for_checkpoint(None) == "exact"


def test_absurd_boxes_are_refused_not_allocated():
    image = photo(0, 48, 64)
    with pytest.raises(ValueError, match="far larger than any image"):
        spin_crop(image, (30.0, 20.0), 1e4)


def test_inference_uses_spin_preprocessing_for_spin_checkpoints(tmp_path):
    import torch

    from mvspin.apps.infer import InferConfig, InferSession
    from mvspin.body import BodyModel
    from mvspin.regressor.checkpoint import save_regressor_checkpoint
    from mvspin.regressor.hmr import HMRRegressor
    from mvspin.regressor.predictor import Predictor
    from mvspin.regressor.preprocess import normalize_crop

    body = BodyModel.free("low")
    model = HMRRegressor(18, mean_params=body.mean_params)
    spin_file = tmp_path / "model_checkpoint.pt"
    torch.save({"model": model.state_dict(), "epoch": 1}, spin_file)  # SPIN's layout, no mvspin entry
    ours = save_regressor_checkpoint(tmp_path / "ours.pt", model)
    kinds = {}
    for name, checkpoint, forced in (("spin", spin_file, None), ("ours", ours, None), ("forced", spin_file, "exact")):
        session = InferSession(InferConfig(inputs=[tmp_path / "a.png"], checkpoint=checkpoint, out=tmp_path / name,
                                           render=False, device="cpu", preprocessing=forced), body=body)
        kinds[name] = session.predictor.preprocessing
    assert kinds == {"spin": "spin", "ours": "exact", "forced": "exact"}

    image = photo(3, low=35, high=190)
    center, scale = np.array([251.6, 170.4]), 1.21
    crop = Predictor(model, body, preprocessing="spin").crop(image, center, scale)
    expected = normalize_crop(ref_crop(image, center, scale, (224, 224)))
    assert (crop - expected).abs().mean() < 1.0 / 255 / 0.225  # below one grey level
    with pytest.raises(ValueError, match="preprocessing must be one of"):
        Predictor(model, body, preprocessing="pil")
