import multiprocessing
import pickle

import cv2
import h5py
import numpy as np
import pytest

from mvspin.body.keypoint_sets import get_keypoint_set
from mvspin.data.bundle_format import (
    FORMAT_VERSION,
    SCHEMA,
    BundleFile,
    BundleFormatError,
    BundleWriter,
    validate_bundle_file,
)

V = 3
K = len(get_keypoint_set("coco17"))
K3 = len(get_keypoint_set("h36m17"))


def _rotation(rng):
    q, _ = np.linalg.qr(rng.normal(size=(3, 3)))
    return q * np.sign(np.linalg.det(q))


def _image(rng, h=12, w=16):
    return rng.integers(0, 256, size=(h, w, 3), dtype=np.uint8)


def make_bundle(rng, index, *, images="bytes", cameras=True, smpl=True, joints=True):
    b = {
        "image_size": np.array([[16, 12]] * V, dtype=np.int32),
        "center": rng.uniform(0, 16, size=(V, 2)),
        "scale": rng.uniform(0.1, 2.0, size=V),
        "keypoints_2d": np.concatenate([rng.uniform(0, 16, size=(V, K, 2)), rng.uniform(0, 1, size=(V, K, 1))], -1),
        "subject": f"S{index % 3}",
        "sequence": f"seq ü {index // 4}",  # non-ASCII survives the round trip
        "frame": 10 * index,
        "camera_names": [f"cam{v}" for v in range(V)],
    }
    if images == "bytes":
        b["_raw"] = [_image(rng) for _ in range(V)]
        b["images"] = [cv2.imencode(".png", im)[1] for im in b["_raw"]]  # PNG: lossless
    if joints:
        b["joints_3d"] = np.concatenate([rng.normal(size=(K3, 3)), np.ones((K3, 1))], -1)
    if cameras:
        b["camera_K"] = np.stack([np.array([[900.0 + v, 0, 8], [0, 901.0, 6], [0, 0, 1]]) for v in range(V)])
        b["camera_dist"] = rng.normal(scale=1e-2, size=(V, 5))
        b["camera_R"] = np.stack([_rotation(rng) for _ in range(V)])
        b["camera_t"] = rng.normal(size=(V, 3))
    if smpl:
        b["smpl_global_orient"] = rng.normal(size=3)
        b["smpl_body_pose"] = rng.normal(size=69)
        b["smpl_betas"] = rng.normal(size=10)
        b["smpl_transl"] = rng.normal(size=3)
        b["smpl_gender"] = ("neutral", "male", "female")[index % 3]
        b["has_smpl"] = index % 2 == 0
    return b


def write_file(path, bundles, **kwargs):
    opts = dict(dataset="unit", split="train", num_views=V, keypoint_set="coco17",
                joints_3d_keypoint_set="h36m17", cameras=True, smpl=True, chunk_bundles=4)
    opts.update(kwargs)
    with BundleWriter(path, **opts) as w:
        for b in bundles:
            w.append({k: v for k, v in b.items() if not k.startswith("_")})
    return path


@pytest.fixture
def bundles():
    rng = np.random.default_rng(0)
    return [make_bundle(rng, i) for i in range(10)]  # 10 = two full chunks of 4 and a partial one


@pytest.fixture
def valid_file(tmp_path, bundles):
    return write_file(tmp_path / "b.h5", bundles)


def test_round_trip_every_field(valid_file, bundles):
    bf = BundleFile(valid_file)
    assert len(bf) == 10 and bf.num_views == V
    assert bf.keypoint_set == "coco17" and bf.joints_3d_keypoint_set == "h36m17"
    assert bf.joints_3d_frame == "world" and bf.has_cameras and bf.has_smpl
    assert bf.attrs["format_version"] == FORMAT_VERSION and bf.attrs["dataset"] == "unit"
    assert set(bf.fields) == set(SCHEMA) - {"image_paths"}
    for i, src in enumerate(bundles):
        got = bf[i]
        for name in bf.fields:
            spec = SCHEMA[name]
            if name == "images":
                assert [g.tobytes() for g in got[name]] == [s.tobytes() for s in src[name]]
            elif spec.dtype == "str":
                assert np.array_equal(np.asarray(got[name]), np.asarray(src[name])), name
            elif spec.dtype in ("float32", "float64"):
                assert got[name].dtype == np.dtype(spec.dtype), name
                np.testing.assert_array_equal(got[name], np.asarray(src[name]).astype(spec.dtype), err_msg=name)
            else:
                assert got[name] == src[name] if np.ndim(src[name]) == 0 else np.array_equal(got[name], src[name])
        decoded = bf.load_images(i)
        for v in range(V):
            np.testing.assert_array_equal(decoded[v], cv2.cvtColor(src["_raw"][v], cv2.COLOR_BGR2RGB))
    assert bf[-1]["frame"] == 90
    np.testing.assert_array_equal(bf.read_field("frame"), 10 * np.arange(10))
    assert list(bf.read_field("subject")[:3]) == ["S0", "S1", "S2"]
    assert bf.read_bundle(3, fields=["scale"]).keys() == {"scale"}
    with pytest.raises(IndexError):
        bf[10]
    bf.close()


def test_image_paths_round_trip(tmp_path):
    rng = np.random.default_rng(1)
    (tmp_path / "imgs").mkdir()
    bundles = []
    for i in range(3):
        b = make_bundle(rng, i, images="paths", cameras=False, smpl=False, joints=False)
        b["image_paths"] = []
        b["_raw"] = []
        for v in range(V):
            im = _image(rng)
            cv2.imwrite(str(tmp_path / "imgs" / f"{i}_{v}.png"), im)
            b["image_paths"].append(f"{i}_{v}.png")
            b["_raw"].append(im)
        bundles.append(b)
    path = write_file(tmp_path / "p.h5", bundles, joints_3d_keypoint_set=None, cameras=False, smpl=False,
                      image_storage="paths", image_root="imgs")
    bf = BundleFile(path)
    assert bf.image_storage == "paths" and not bf.has_cameras and bf.joints_3d_keypoint_set is None
    assert list(bf[2]["image_paths"]) == ["2_0.png", "2_1.png", "2_2.png"]
    expected = cv2.cvtColor(bundles[2]["_raw"][1], cv2.COLOR_BGR2RGB)
    np.testing.assert_array_equal(bf.load_images(2, views=[1])[0], expected)
    (tmp_path / "imgs" / "0_0.png").unlink()
    with pytest.raises(FileNotFoundError, match="0_0.png"):
        bf.load_images(0)


def _read_in_child(bf, queue):
    queue.put(float(bf[1]["scale"][0]))


def test_reader_pickles_without_handle_and_reads_in_worker(valid_file, bundles):
    bf = BundleFile(valid_file)
    bf[0]  # opens the handle in this process
    clone = pickle.loads(pickle.dumps(bf))
    assert clone._h5 is None
    np.testing.assert_array_equal(clone[2]["center"], bf[2]["center"])
    ctx = multiprocessing.get_context("fork")
    queue = ctx.Queue()
    proc = ctx.Process(target=_read_in_child, args=(bf, queue))  # inherits an open handle via fork
    proc.start()
    value = queue.get(timeout=30)
    proc.join(timeout=30)
    assert proc.exitcode == 0
    assert value == pytest.approx(float(np.float32(bundles[1]["scale"][0])))


def test_empty_file_is_valid(tmp_path):
    path = write_file(tmp_path / "e.h5", [])
    bf = BundleFile(path)
    assert len(bf) == 0 and bf.read_field("frame").shape == (0,)


# --- validation on open --------------------------------------------------------------------
def _expect_error(path, field, match=None):
    with pytest.raises(BundleFormatError) as err:
        BundleFile(path)
    msg = str(err.value)
    assert str(path) in msg
    if field is not None:
        assert f"'{field}'" in msg, msg
    if match is not None:
        assert match in msg, msg
    return msg


def _replace(f, name, data):
    attrs = dict(f[name].attrs)
    del f[name]
    f[name] = data
    f[name].attrs.update(attrs)


@pytest.mark.parametrize(
    "mutate, field, match",
    [
        (lambda f: f.__delitem__("center"), "center", "required field is missing"),
        (lambda f: _replace(f, "scale", np.ones((10, V, 2), np.float32)), "scale", "expected shape (N, V)"),
        (lambda f: _replace(f, "scale", np.ones((9, V), np.float32)), "scale", "9 bundles (N)"),
        (lambda f: _replace(f, "camera_t", np.ones((10, V + 1, 3))), "camera_t", "views (V"),
        (lambda f: _replace(f, "center", np.ones((10, V, 2), np.float64)), "center", "dtype float32"),
        (lambda f: f["keypoints_2d"].attrs.__setitem__("keypoint_set", "nonsense"), "keypoints_2d", "nonsense"),
        (lambda f: f["joints_3d"].attrs.__setitem__("keypoint_set", "lsp14"), "joints_3d", "joints of set 'lsp14'"),
        (lambda f: f["joints_3d"].attrs.__setitem__("coordinate_frame", "pelvis"), "joints_3d", "coordinate_frame"),
        (lambda f: f.__delitem__("camera_R"), "camera_R", "all-or-none"),
        (lambda f: f.__delitem__("has_smpl"), "has_smpl", "all-or-none"),
        (lambda f: f.__delitem__("images"), "images", "exactly one"),
        (lambda f: f.create_dataset("keypoints", data=np.zeros(3)), "keypoints", "unknown field"),
        (lambda f: f.attrs.__setitem__("format_version", FORMAT_VERSION + 1), None, "format_version"),
        (lambda f: f.attrs.__setitem__("format", "something-else"), None, "not an mvspin bundle file"),
    ],
)
def test_validation_names_file_and_field(valid_file, mutate, field, match):
    with h5py.File(valid_file, "r+") as f:
        mutate(f)
    _expect_error(valid_file, field, match)


def test_truncated_file_is_a_format_error(valid_file):
    data = valid_file.read_bytes()
    valid_file.write_bytes(data[: len(data) // 2])
    msg = _expect_error(valid_file, None, "not a readable HDF5 file")
    assert "Traceback" not in msg
    garbage = valid_file.with_name("garbage.h5")
    garbage.write_bytes(b"this is not hdf5" * 10)
    _expect_error(garbage, None, "not a readable HDF5 file")


def test_deep_value_check_finds_nan(valid_file):
    with h5py.File(valid_file, "r+") as f:
        f["keypoints_2d"][4, 1, 2, 0] = np.nan
    BundleFile(valid_file)  # structure is fine
    with pytest.raises(BundleFormatError, match=r"field 'keypoints_2d': bundle 4: non-finite"):
        validate_bundle_file(valid_file, check_values=True)


# --- writer checks and atomicity -----------------------------------------------------------
@pytest.mark.parametrize(
    "change, field, match",
    [
        (lambda b: b.pop("center"), "center", "missing"),
        (lambda b: b.update(scale=np.ones(V + 1)), "scale", "expected shape (3,)"),
        (lambda b: b.update(keypoints_2d=np.full((V, K, 3), np.nan)), "keypoints_2d", "non-finite"),
        (lambda b: b.update(keypoints_2d=np.full((V, K, 3), 2.0)), "keypoints_2d", "confidences"),
        (lambda b: b.update(camera_R=np.ones((V, 3, 3))), "camera_R", "not a rotation"),
        (lambda b: b.update(scale=-np.ones(V)), "scale", "positive"),
        (lambda b: b.update(smpl_gender="robot"), "smpl_gender", "robot"),
        (lambda b: b.update(images=b["images"][:1]), "images", "expected 3 encoded images"),
        (lambda b: b.update(image_paths=["a"] * V), "image_paths", "not stored in this file"),
    ],
)
def test_writer_rejects_bad_bundles(tmp_path, change, field, match):
    rng = np.random.default_rng(2)
    b = make_bundle(rng, 0)
    b.pop("_raw")
    change(b)
    path = tmp_path / "w.h5"
    with pytest.raises(BundleFormatError) as err:
        write_file(path, [b])
    assert f"'{field}'" in str(err.value) and match in str(err.value) and str(path) in str(err.value)
    assert list(tmp_path.iterdir()) == []  # nothing published, temporary file removed


def test_failed_write_keeps_existing_file(valid_file):
    before = valid_file.read_bytes()
    with pytest.raises(RuntimeError, match="interrupted"):
        with BundleWriter(valid_file, dataset="unit", split="train", num_views=V, keypoint_set="coco17") as w:
            raise RuntimeError("interrupted")
    assert valid_file.read_bytes() == before
    assert [p.name for p in valid_file.parent.iterdir()] == [valid_file.name]
    assert w.num_bundles == 0


def test_writer_argument_errors(tmp_path):
    with pytest.raises(BundleFormatError, match="unknown keypoint_set 'bogus'"):
        BundleWriter(tmp_path / "x.h5", dataset="d", split="s", num_views=1, keypoint_set="bogus")
    with pytest.raises(ValueError, match="needs cameras=True"):
        BundleWriter(tmp_path / "x.h5", dataset="d", split="s", num_views=1, keypoint_set="coco17",
                     joints_3d_keypoint_set="h36m17")
    assert list(tmp_path.iterdir()) == []


# -- deep validation: a file called valid is one training can read ----------------------------
from mvspin.data.bundle_format import decode_image, validate_bundle_contents  # noqa: E402


def test_deep_validation_decodes_every_image(tmp_path, bundles):
    assert validate_bundle_contents(write_file(tmp_path / "ok.h5", bundles)) == len(bundles)
    rng = np.random.default_rng(4)
    jpg = cv2.imencode(".jpg", _image(rng, 120, 160))[1].tobytes()
    broken = [dict(b) for b in bundles]
    broken[7]["images"] = list(broken[7]["images"])
    broken[7]["images"][2] = np.frombuffer(jpg[: len(jpg) // 2], np.uint8)  # a cut JPEG
    path = write_file(tmp_path / "cut.h5", broken)
    validate_bundle_file(path, check_values=True)  # the value checks alone call it valid
    with pytest.raises(BundleFormatError, match=r"cut.h5.*bundle 7 view 2: truncated JPEG"):
        validate_bundle_contents(path)
    wrong = [dict(b) for b in bundles]
    wrong[3]["image_size"] = np.array([[16, 12], [16, 12], [20, 12]], dtype=np.int32)
    with pytest.raises(BundleFormatError, match=r"bundle 3 view 2: image is 16x12, image_size says 20x12"):
        validate_bundle_contents(write_file(tmp_path / "size.h5", wrong))


def test_deep_validation_follows_every_path(tmp_path):
    rng = np.random.default_rng(1)
    (tmp_path / "imgs").mkdir()
    bundles = []
    for i in range(2):
        b = make_bundle(rng, i, images="paths", cameras=False, smpl=False, joints=False)
        b["image_paths"] = [f"{i}_{v}.png" for v in range(V)]
        for v in range(V):
            cv2.imwrite(str(tmp_path / "imgs" / f"{i}_{v}.png"), _image(rng))
        bundles.append(b)
    path = write_file(tmp_path / "p.h5", bundles, joints_3d_keypoint_set=None, cameras=False, smpl=False,
                      image_storage="paths", image_root="imgs")
    assert validate_bundle_contents(path) == 2
    (tmp_path / "imgs" / "1_2.png").write_bytes(b"not a png")
    with pytest.raises(BundleFormatError, match=r"bundle 1: .*1_2.png: not a decodable image"):
        validate_bundle_contents(path)
    (tmp_path / "imgs" / "1_2.png").unlink()
    with pytest.raises(FileNotFoundError, match="1_2.png"):
        validate_bundle_contents(path)


def test_truncated_jpeg_is_not_decodable():
    rng = np.random.default_rng(2)
    img = np.clip(rng.normal(128, 20, (64, 64, 3)), 0, 255).astype(np.uint8)
    jpg = cv2.imencode(".jpg", img)[1].tobytes()
    assert decode_image(jpg).shape == (64, 64, 3)
    for cut in (len(jpg) - 2, len(jpg) * 3 // 4):
        with pytest.raises(ValueError, match="truncated JPEG"):
            decode_image(jpg[:cut], "frame.jpg")


def test_writer_without_bundles_keeps_the_old_file(tmp_path):
    target = tmp_path / "b.h5"
    target.write_bytes(b"a good old file")
    with BundleWriter(target, dataset="d", split="s", num_views=1, keypoint_set="coco17", allow_empty=False) as w:
        pass
    assert not w.written and target.read_bytes() == b"a good old file"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["b.h5"]
