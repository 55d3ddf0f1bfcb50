"""The fits store: augmentation frames, keep-the-better updates, files and dataset identity."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from mvspin.geometry import axis_angle_to_matrix
from mvspin.learning.augment import augment_global_orient, camera_augmentation_matrix, flip_smpl_pose
from mvspin.learning.fits_store import FitsStore, FitsStoreError, flip_body_pose, from_augmented, to_augmented


def _rotations(rng, *shape):
    return axis_angle_to_matrix(torch.as_tensor(rng.normal(scale=0.8, size=(*shape, 3)), dtype=torch.float64))


def _sources(n=(3, 2), views=2, tag="a"):
    return [{"name": f"{tag}{i}.h5", "dataset": "synthetic", "split": "train", "num_bundles": k, "num_views": views,
             "boxes_sha1": f"{tag}{i}"} for i, k in enumerate(n)]


def test_augmentation_round_trip_matches_the_dataset_convention():
    rng = np.random.default_rng(0)
    b, v = 3, 2
    orient, pose = _rotations(rng, b, v), _rotations(rng, b, 23)
    flip = torch.tensor([False, True, True])
    M = torch.stack([torch.stack([torch.as_tensor(camera_augmentation_matrix(float(rng.uniform(-20, 20)), bool(f)))
                                  for _ in range(v)]) for f in flip])
    o_aug, p_aug = to_augmented(orient, pose, M, flip)
    for i in range(b):
        for j in range(v):  # the training dataset's map of ground-truth SMPL
            ref = augment_global_orient(orient[i, j].numpy(), M[i, j].numpy(), bool(flip[i]))
            np.testing.assert_allclose(o_aug[i, j].numpy(), ref, atol=1e-12)
        ref_pose = flip_smpl_pose(pose[i].numpy()) if flip[i] else pose[i].numpy()
        np.testing.assert_allclose(p_aug[i].numpy(), ref_pose, atol=1e-12)
    back_o, back_p = from_augmented(o_aug, p_aug, M, flip)
    np.testing.assert_allclose(back_o.numpy(), orient.numpy(), atol=1e-12)
    np.testing.assert_allclose(back_p.numpy(), pose.numpy(), atol=1e-12)
    # Mirroring twice is the identity; every augmented root stays a proper rotation.
    torch.testing.assert_close(flip_body_pose(flip_body_pose(pose)), pose)
    np.testing.assert_allclose(torch.linalg.det(o_aug).numpy(), 1.0, atol=1e-12)


def test_update_keeps_the_lower_error_and_files_round_trip(tmp_path):
    store = FitsStore.empty(_sources(), num_views=2)
    assert len(store) == 5 and np.isinf(store.error).all() and (store.step == -1).all()
    flat = store.flat_index(np.array([0, 1, 1]), np.array([2, 0, 0]))
    np.testing.assert_array_equal(flat, [2, 3, 3])
    rng = np.random.default_rng(1)
    pose = rng.normal(size=(3, 23, 3, 3)).astype(np.float32)
    betas = rng.normal(size=(3, 10)).astype(np.float32)
    orient = rng.normal(size=(3, 2, 3, 3)).astype(np.float32)
    # Bundle 3 appears twice: the second (error 2.0) beats the first (5.0).
    replaced = store.update(flat, pose, betas, orient, np.array([4.0, 5.0, 2.0]), error_px=np.array([0.4, 0.5, 0.2]),
                            step=7)
    np.testing.assert_array_equal(replaced, [True, True, True])
    assert store.error[3] == 2.0 and np.array_equal(store.betas[3], betas[2]) and store.step[3] == 7
    # A worse fit, and an unfitted one (inf), change nothing.
    replaced = store.update(np.array([2, 4]), pose[:2], betas[:2], orient[:2], np.array([4.5, np.inf]),
                            error_px=np.array([0.1, 0.1]), step=8)
    assert not replaced.any() and store.error[2] == 4.0 and np.isinf(store.error[4])
    stats = store.statistics(reject_loss=3.0)
    assert stats == pytest.approx({"fitted_share": 0.4, "mean_error": 3.0, "mean_error_px": 0.3, "accepted_share": 0.2})
    path = store.save(tmp_path / "fits.h5")
    again = FitsStore.load(path, _sources())
    assert again.equal(store)
    read = again.read(np.array([3]))
    torch.testing.assert_close(read["betas"][0], torch.as_tensor(betas[2]))


def test_a_store_of_another_dataset_or_a_damaged_file_is_refused(tmp_path):
    path = FitsStore.empty(_sources(), num_views=2).save(tmp_path / "fits.h5")
    with pytest.raises(FitsStoreError, match="another dataset.*boxes_sha1"):
        FitsStore.load(path, _sources(tag="b"))
    with pytest.raises(FitsStoreError, match="another dataset"):
        FitsStore.load(path, _sources(n=(3,)))
    (tmp_path / "junk.h5").write_bytes(b"not hdf5")
    with pytest.raises(FitsStoreError, match="unreadable"):
        FitsStore.load(tmp_path / "junk.h5")
    with pytest.raises(FileNotFoundError):
        FitsStore.load(tmp_path / "missing.h5")
