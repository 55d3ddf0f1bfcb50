"""The synthetic protocol's data: different bodies per set, no SMPL in training, partial 3D joints."""
from __future__ import annotations

import numpy as np
import pytest

from mvspin.body import BodyModel
from mvspin.data.bundle_format import BundleFile
from mvspin.data.derived_files import derive_bundle_file
from mvspin.learning.synthetic_protocol import SyntheticProtocolConfig, make_protocol_data


@pytest.fixture(scope="module")
def protocol_data(tmp_path_factory):
    config = SyntheticProtocolConfig(train_bundles=4, val_bundles=1, test_bundles=2, num_views=2, image_size=64,
                                     partial_3d_share=0.5)
    out = tmp_path_factory.mktemp("protocol") / "data"
    body = BodyModel.free("low")
    return make_protocol_data(out, config, body, data_seed=1), config, body, out


def test_training_sets_have_no_smpl_and_the_partial_set_a_share_of_3d(protocol_data):
    files, config, _, _ = protocol_data
    rendered = BundleFile(files["train"].with_name("synthetic_train_rendered_d1.h5"))
    train, partial = BundleFile(files["train"]), BundleFile(files["train_partial_3d"])
    assert rendered.has_smpl and not train.has_smpl and not partial.has_smpl
    assert not any(f.startswith("smpl_") or f == "has_smpl" for f in train.fields)
    assert len(train) == len(partial) == config.train_bundles
    # everything else is copied unchanged: images, keypoints, cameras, 3D joints
    for name in ("keypoints_2d", "joints_3d", "camera_R", "center", "scale"):
        np.testing.assert_array_equal(train.read_field(name), rendered.read_field(name))
    assert train[3]["images"][1].tobytes() == rendered[3]["images"][1].tobytes()
    conf = partial.read_field("joints_3d")[..., 3]  # (N, K)
    with_3d = (conf > 0).any(axis=1)
    assert with_3d.sum() == 2  # round(0.5 * 4) bundles keep their 3D joints
    np.testing.assert_array_equal(partial.read_field("joints_3d")[with_3d], rendered.read_field("joints_3d")[with_3d])
    assert np.all(conf[~with_3d] == 0)


def test_sets_come_from_different_seeds_and_bodies(protocol_data):
    files, config, body, _ = protocol_data
    val, test = BundleFile(files["val"]), BundleFile(files["test"])
    rendered = BundleFile(files["train"].with_name("synthetic_train_rendered_d1.h5"))
    assert val.has_smpl and test.has_smpl and test.attrs["split"] == "test"
    seeds = {int(f.attrs["seed"]) for f in (rendered, val, test)}
    assert seeds == {config.train_data_seed + 1, config.val_data_seed, config.test_data_seed + 1} and len(seeds) == 3
    betas = [f.read_field("smpl_betas") for f in (rendered, val, test)]
    # no body of the test set is one of the training bodies
    assert min(np.abs(b - betas[0][:, None]).sum(-1).min() for b in betas[1:]) > 0.5


def test_data_is_reused_when_settings_match(protocol_data):
    files, config, body, out = protocol_data
    stamps = {k: v.stat().st_mtime_ns for k, v in files.items()}
    again = make_protocol_data(out, config, body, data_seed=1)
    assert {k: v.stat().st_mtime_ns for k, v in again.items()} == stamps


def test_a_second_data_seed_renders_other_training_and_test_sets_and_shares_validation(protocol_data):
    files, config, body, out = protocol_data
    other = make_protocol_data(out, config, body, data_seed=2)
    assert other["val"] == files["val"]
    assert other["train"] != files["train"] and other["test"] != files["test"]
    betas = [BundleFile(f[k]).read_field("smpl_betas") for f in (files, other) for k in ("test",)]
    assert np.abs(betas[0] - betas[1]).max() > 0.5
    assert int(BundleFile(other["test"]).attrs["seed"]) == config.test_data_seed + 2


def test_derive_rejects_bad_share(protocol_data, tmp_path):
    files, _, _, _ = protocol_data
    with pytest.raises(ValueError, match=r"joints_3d_share must be in \[0, 1\]"):
        derive_bundle_file(files["val"], tmp_path / "x.h5", joints_3d_share=1.5)
    assert not (tmp_path / "x.h5").exists()


def test_static_fits_of_an_older_store_version_are_made_again(tmp_path):
    """A store an older mvspin wrote (another version) is not reused as the protocol's static fits."""
    import h5py

    from mvspin.learning.fits_store import FitsStore
    from mvspin.learning.synthetic_protocol import _readable_store

    path = tmp_path / "fits.h5"
    FitsStore.empty([{"name": "a.h5", "num_bundles": 3}], num_views=2).save(path)
    assert _readable_store(path)
    with h5py.File(path, "r+") as f:
        f.attrs["version"] = 1
    assert not _readable_store(path)


def test_static_fits_of_another_fitting_config_are_not_reused(tmp_path):
    """The static fits' file is named by the fitting config: another solver or energy gets its own
    (the name used to hold only the iteration count, so an LM protocol reused Adam's fits), while
    compiling (the same fits to float rounding) does not."""
    from dataclasses import replace

    from mvspin.config import load_config
    from mvspin.learning.synthetic_protocol import static_fits_path
    from mvspin.learning.train_config import TrainConfig

    config = SyntheticProtocolConfig()
    train = tmp_path / "train.h5"
    tc = load_config(TrainConfig, config.full_config)
    path = static_fits_path(tc, train, 100)
    assert path.parent == tmp_path and path.name.startswith("train_static_fits_100it_")
    assert static_fits_path(load_config(TrainConfig, config.full_config, ["optim.seed=1"]), train, 100) == path
    for change in ({"optimizer": "adam"}, {"shape_prior_weight": 5.0}, {"mode": "calibrated"}):
        tc2 = load_config(TrainConfig, config.full_config)
        tc2.fits.fitting = replace(tc2.fits.fitting, **change)
        assert static_fits_path(tc2, train, 100) != path, change
    tc2.fits.fitting = replace(tc.fits.fitting, compile=not tc.fits.fitting.compile)
    assert static_fits_path(tc2, train, 100) == path
    assert static_fits_path(tc, train, 50) != path
