"""BodyModel.from_smpl_dir on a fabricated SMPL directory in the official file formats."""

import numpy as np
import pytest
import torch

from mvspin.body import BodyModel, BodyModelFilesError, KeypointSetUnavailable
from mvspin.geometry import axis_angle_to_matrix
from tests.body.fake_smpl import N_VERTS, make_arrays, write_official_pkl, write_smpl_dir


@pytest.fixture(scope="module")
def smpl_dir(tmp_path_factory):
    root = tmp_path_factory.mktemp("smpl")
    write_smpl_dir(root)
    return root


@pytest.fixture(scope="module")
def body(smpl_dir):
    return BodyModel.from_smpl_dir(smpl_dir, dtype=torch.float64)


def test_loads_without_chumpy_and_matches_arrays(body):
    arrays = make_arrays()
    assert body.name == "smpl-neutral" and body.num_vertices == N_VERTS
    assert body.has_pose_blendshapes
    out = body(betas=torch.zeros(1, 10, dtype=torch.float64))
    np.testing.assert_allclose(out.vertices[0].numpy(), arrays["v_template"], atol=1e-6)  # smplx stores model arrays as float32
    np.testing.assert_allclose(out.joints[0].numpy(), arrays["J_regressor"] @ arrays["v_template"], atol=1e-6)  # smplx stores model arrays as float32


def test_spin_regressor_sets_available(body):
    assert {"h36m17", "lsp14", "spin49", "openpose25", "coco17"} <= set(body.available_keypoint_sets)
    reg = np.load(body.source.replace("SMPL_NEUTRAL.pkl", "J_regressor_h36m.npy"))
    out = body(betas=torch.zeros(1, 10, dtype=torch.float64), keypoints="h36m17")
    np.testing.assert_allclose(out.keypoints[0].numpy(), reg @ out.vertices[0].numpy(), atol=1e-6)  # smplx stores model arrays as float32


@pytest.mark.parametrize("set_name", ["spin49", "h36m17", "openpose25", "smpl24"])
def test_fast_path_with_pose_blendshapes_equals_full_forward(body, set_name):
    g = torch.Generator().manual_seed(0)
    pose = 0.4 * torch.randn(5, 69, generator=g, dtype=torch.float64)
    betas = torch.randn(5, 10, generator=g, dtype=torch.float64)
    orient = torch.randn(5, 3, generator=g, dtype=torch.float64)
    transl = torch.randn(5, 3, generator=g, dtype=torch.float64)
    full = body(pose, betas, orient, transl, keypoints=set_name).keypoints
    fast = body.keypoints(set_name, pose, betas, orient, transl)
    assert (fast - full).abs().max() < 1e-10


def test_missing_spin_files_name_the_file(tmp_path):
    write_smpl_dir(tmp_path, spin_files=False)
    body = BodyModel.from_smpl_dir(tmp_path)
    assert "h36m17" not in body.available_keypoint_sets
    with pytest.raises(KeypointSetUnavailable, match="J_regressor_h36m.npy"):
        body.keypoint_map("h36m17")
    with pytest.raises(KeypointSetUnavailable, match="J_regressor_extra.npy"):
        body.keypoint_map("lsp14")
    assert body.keypoint_map("coco17").vertex_ids.size == 5  # SMPL's own face vertex ids
    assert "free" in body.mean_params_source  # falls back to the shipped mean pose


def test_missing_directory_and_file_errors(tmp_path):
    with pytest.raises(BodyModelFilesError, match="does not exist"):
        BodyModel.from_smpl_dir(tmp_path / "nope")
    with pytest.raises(BodyModelFilesError) as err:
        BodyModel.from_smpl_dir(tmp_path, gender="female")
    msg = str(err.value)
    assert "SMPL_FEMALE.pkl" in msg and "smpl.is.tue.mpg.de" in msg and "\n" not in msg


def test_incomplete_model_file_names_the_missing_array(tmp_path):
    arrays = make_arrays()
    del arrays["weights"]
    write_official_pkl(tmp_path / "SMPL_NEUTRAL.pkl", arrays)
    with pytest.raises(BodyModelFilesError, match="missing weights"):
        BodyModel.from_smpl_dir(tmp_path)


def test_npz_model_file(tmp_path):
    arrays = make_arrays(seed=5)
    np.savez(tmp_path / "SMPL_MALE.npz", **{k: v for k, v in arrays.items() if isinstance(v, np.ndarray)})
    body = BodyModel.from_smpl_dir(tmp_path, gender="male", dtype=torch.float64)
    rot = axis_angle_to_matrix(torch.tensor([[0.0, 0.3, 0.0]], dtype=torch.float64))
    out = body(global_orient=rot)
    assert out.vertices.shape == (1, N_VERTS, 3)


def test_spin49_h36m_points_come_from_j_regressor_extra(body, smpl_dir):
    # SPIN's JOINT_MAP: 'Spine (H36M)': 51, 'Jaw (H36M)': 52, 'Head (H36M)': 53, i.e. rows 6-8 of
    # J_regressor_extra (SMPL's 45 joints come first); spin49 lists them at 41-43. Evaluation
    # (h36m17) uses J_regressor_h36m's rows 7, 9, 10 for the same anatomical points.
    extra = np.load(smpl_dir / "J_regressor_extra.npy")
    h36m = np.load(smpl_dir / "J_regressor_h36m.npy")
    g = torch.Generator().manual_seed(3)
    pose = 0.3 * torch.randn(2, 69, generator=g, dtype=torch.float64)
    out = body(pose, keypoints="spin49")
    verts = out.vertices.numpy()
    spin49 = out.keypoints.numpy()
    names = body.keypoint_map("spin49").keypoint_set.names
    assert [names.index(n) for n in ("spine_h36m", "jaw_h36m", "head_h36m")] == [41, 42, 43]
    np.testing.assert_allclose(spin49[:, 41:44], np.einsum("rv,bvc->brc", extra[6:9], verts), atol=1e-6)
    # the rest of J_regressor_extra: LSP hips, neck, head top (27, 28, 37, 38), MPII pelvis, thorax
    np.testing.assert_allclose(spin49[:, [27, 28, 37, 38, 39, 40]],
                               np.einsum("rv,bvc->brc", extra[:6], verts), atol=1e-6)
    h17 = body(pose, keypoints="h36m17").keypoints.numpy()
    np.testing.assert_allclose(h17[:, [7, 9, 10]], np.einsum("rv,bvc->brc", h36m[[7, 9, 10]], verts), atol=1e-6)
    assert np.abs(spin49[:, 41:44] - h17[:, [7, 9, 10]]).min() > 1e-4  # the two regressions differ


@pytest.mark.parametrize("key, value, message", [
    ("shapedirs", lambda a: a["shapedirs"][:100], r"shapedirs has shape \(100, 3, 10\), expected \(6890, 3, B\)"),
    ("weights", lambda a: a["weights"][:, :23], r"weights has shape \(6890, 23\), expected \(6890, 24\)"),
    ("J_regressor", lambda a: a["J_regressor"][:, :6000], r"J_regressor has shape \(24, 6000\), expected \(24, 6890\)"),
    ("posedirs", lambda a: a["posedirs"][..., :200], r"posedirs has shape \(6890, 3, 200\)"),
    ("f", lambda a: a["f"] + 7000, r"f holds vertex ids from \d+ to \d+, but v_template has 6890 vertices"),
    ("v_template", lambda a: np.where(np.arange(6890)[:, None] == 5, np.nan, a["v_template"]),
     "v_template contains NaN"),
])
def test_model_arrays_that_do_not_fit_together_name_file_and_array(tmp_path, key, value, message):
    arrays = make_arrays()
    arrays[key] = value(arrays)
    write_official_pkl(tmp_path / "SMPL_NEUTRAL.pkl", arrays)
    with pytest.raises(BodyModelFilesError, match=message) as err:
        BodyModel.from_smpl_dir(tmp_path)
    assert str(tmp_path / "SMPL_NEUTRAL.pkl") in str(err.value) and "\n" not in str(err.value)


def test_corrupt_model_and_regressor_files_are_one_line_cli_errors(tmp_path, capsys):
    from mvspin.cli.main import main

    (tmp_path / "SMPL_NEUTRAL.pkl").write_bytes(b"\x80\x02}q\x00(X")  # a cut pickle
    with pytest.raises(BodyModelFilesError, match="SMPL_NEUTRAL.pkl is not a readable SMPL model file"):
        BodyModel.from_smpl_dir(tmp_path)
    rc = main(["render-model", "--smpl-dir", str(tmp_path), "--out", str(tmp_path / "m.png")])
    err = capsys.readouterr().err.strip()
    assert rc == 2 and err.startswith("mvspin render-model: error: ") and "SMPL_NEUTRAL.pkl" in err
    assert len(err.splitlines()) == 1
    write_smpl_dir(tmp_path)
    (tmp_path / "J_regressor_h36m.npy").write_bytes(b"\x93NUMPY garbage")
    with pytest.raises(BodyModelFilesError, match="J_regressor_h36m.npy is not a readable .npy"):
        BodyModel.from_smpl_dir(tmp_path)
