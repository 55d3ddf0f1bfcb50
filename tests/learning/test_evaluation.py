"""Evaluation protocols: metrics on constructed predictions equal hand-computed values; joint
selection and frame sampling on small files in the real formats (the builders' fixtures)."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from mvspin.body import BodyModel
from mvspin.data.builders import build
from mvspin.data.bundle_format import BundleFile
from mvspin.geometry import axis_angle_to_matrix
from mvspin.learning.evaluation import (
    PROTOCOLS,
    EvaluationDataError,
    evaluate_predictions,
    predicted_joints,
    protocol_errors,
    select_samples,
)

# The builders' fixtures (tiny raw datasets in their real formats) and their helpers.
from tests.data.conftest import fab  # noqa: F401  (fixture)
from tests.data.test_builder_h36m import RAW_INDEX, h36m_root  # noqa: F401
from tests.data.test_builder_mpi_inf_3dhp import mpi_test_root  # noqa: F401
from tests.data.test_builder_pw3d import pw3d_root  # noqa: F401

# SPIN's constants.py, written out here as an independent reference.
SPIN_H36M_TO_J14 = [6, 5, 4, 1, 2, 3, 16, 15, 14, 11, 12, 13, 8, 10]
SPIN_H36M_TO_J17 = [6, 5, 4, 1, 2, 3, 16, 15, 14, 11, 12, 13, 8, 10, 0, 7, 9]
LSP14_H36M_NAMES = ["right_ankle", "right_knee", "right_hip", "left_hip", "left_knee", "left_ankle", "right_wrist",
                    "right_elbow", "right_shoulder", "left_shoulder", "left_elbow", "left_wrist", "thorax", "head"]


@pytest.fixture(scope="module")
def body() -> BodyModel:
    return BodyModel.free("low", dtype=torch.float64)


def _random_rotation(rng: np.random.Generator) -> np.ndarray:
    q, r = np.linalg.qr(rng.normal(size=(3, 3)))
    q = q * np.sign(np.diag(r))
    return q if np.linalg.det(q) > 0 else -q


# --- metrics on constructed predictions ------------------------------------------------------------

@pytest.mark.parametrize("name", ["h36m-p1", "h36m-p2", "3dpw", "synthetic"])
def test_lsp14_protocols_metrics_equal_hand_computed(name):
    rng = np.random.default_rng(1)
    gt = rng.normal(scale=0.3, size=(3, 14, 3))
    pred = gt.copy()
    pred[0, 4] += [0.03, 0.04, 0.0]  # one joint 50 mm off
    R = _random_rotation(rng)
    pred[1] = 1.3 * gt[1] @ R.T + [0.2, -0.1, 0.5]  # a similarity transform of the truth
    pred[2] = gt[2] + rng.normal(scale=0.02, size=(14, 3))
    errors = protocol_errors(torch.from_numpy(pred), torch.from_numpy(gt), name)
    assert set(errors) == {"mpjpe", "pa_mpjpe"}
    expected_mpjpe = 1000 * np.linalg.norm(pred - gt, axis=-1).mean(-1)
    assert errors["mpjpe"][0].item() == pytest.approx(50.0 / 14)
    np.testing.assert_allclose(errors["mpjpe"].numpy(), expected_mpjpe, rtol=1e-12)
    assert errors["pa_mpjpe"][1].item() == pytest.approx(0.0, abs=1e-9)
    # sample 2: hand-rolled Umeyama in numpy as the reference
    x, y = pred[2] - pred[2].mean(0), gt[2] - gt[2].mean(0)
    U, S, Vt = np.linalg.svd(y.T @ x)
    D = np.diag([1, 1, np.sign(np.linalg.det(U @ Vt))])
    Rr = U @ D @ Vt
    s = np.trace(np.diag(S) @ D) / (x ** 2).sum()
    aligned = s * x @ Rr.T + gt[2].mean(0)
    assert errors["pa_mpjpe"][2].item() == pytest.approx(1000 * np.linalg.norm(aligned - gt[2], axis=-1).mean(), rel=1e-9)
    assert errors["pa_mpjpe"][2] < errors["mpjpe"][2]


def test_mpi_inf_3dhp_metrics_equal_hand_computed():
    p = PROTOCOLS["mpi-inf-3dhp"]
    assert p.num_joints == 17 and p.root_index == 14  # the dataset's pelvis
    rng = np.random.default_rng(2)
    gt = rng.normal(scale=0.3, size=(2, 17, 3))
    gt -= gt[:, 14:15]
    # sample 0: joint k off by d_k along x; the pelvis exact (both sides are 0 after centring)
    d_mm = np.array([0, 12, 33, 47, 61, 88, 102, 127, 149, 151, 163, 178, 204, 222, 0, 243, 262], float)  # off the 5-mm grid
    pred = gt.copy()
    pred[0, :, 0] += d_mm / 1000
    R = _random_rotation(rng)
    pred[1] = 0.8 * gt[1] @ R.T + [0.1, 0.0, -0.2]
    errors = protocol_errors(torch.from_numpy(pred), torch.from_numpy(gt), "mpi-inf-3dhp")
    assert errors["mpjpe"][0].item() == pytest.approx(d_mm.mean())  # 17 joints, pelvis included (SPIN)
    non_root = np.delete(d_mm, 14)
    assert errors["pck_unaligned"][0].item() == pytest.approx(np.mean(non_root < 150))  # 9 of 16 (0 .. 149 mm)
    assert errors["pck_unaligned"][0].item() == pytest.approx(9 / 16)
    thresholds = np.arange(0, 151, 5)
    auc = np.mean([np.mean(non_root < t) for t in thresholds])
    assert errors["auc_unaligned"][0].item() == pytest.approx(auc)
    # aligned PCK/AUC: a similarity transform of the truth is perfect; AUC's 0-mm threshold scores 0
    assert errors["pck"][1].item() == pytest.approx(1.0)
    assert errors["auc"][1].item() == pytest.approx(30 / 31)
    assert errors["pa_mpjpe"][1].item() == pytest.approx(0.0, abs=1e-9)
    assert errors["pck_unaligned"][1].item() < 1.0  # unaligned, the rotated body misses


def test_metrics_reject_wrong_joint_count():
    with pytest.raises(ValueError, match=r"\(N, 17, 3\)"):
        protocol_errors(torch.zeros(2, 14, 3), torch.zeros(2, 14, 3), "mpi-inf-3dhp")


def test_joint_selection_is_spins(body):
    """The protocols' joints are SPIN's H36M_TO_J14 / H36M_TO_J17 rows, pelvis-centred on row 0."""
    assert list(PROTOCOLS["h36m-p1"].h36m_rows) == SPIN_H36M_TO_J14
    assert sorted(PROTOCOLS["mpi-inf-3dhp"].h36m_rows) == sorted(SPIN_H36M_TO_J17)
    rng = np.random.default_rng(3)
    rotmat = axis_angle_to_matrix(torch.from_numpy(rng.normal(scale=0.3, size=(2, 24, 3))))
    betas = torch.from_numpy(rng.normal(size=(2, 10)))
    kp = body(body_pose=rotmat[:, 1:], betas=betas, global_orient=rotmat[:, 0], keypoints="h36m17").keypoints
    kp = (kp - kp[:, :1]).double()
    np.testing.assert_allclose(predicted_joints(body, rotmat, betas, "h36m-p1").numpy(),
                               kp[:, SPIN_H36M_TO_J14].numpy(), atol=1e-9)
    mpi = predicted_joints(body, rotmat, betas, "mpi-inf-3dhp")
    # MPI-INF-3DHP's own order: head_top = H36M head (10), pelvis = H36M pelvis (0) at 14
    np.testing.assert_allclose(mpi[:, 0].numpy(), kp[:, 10].numpy(), atol=1e-9)
    assert torch.all(mpi[:, 14] == 0)


# --- frame sampling and joint selection on builder files -------------------------------------------

def test_h36m_protocols_on_builder_file(h36m_root, tmp_path):  # noqa: F811
    root, raw, cams = h36m_root
    out = tmp_path / "h36m_test.h5"
    build("h36m", root, out, split="test", every_nth=1)  # every frame of S9 Eating
    bundles = BundleFile(out)
    assert sorted(set(bundles.read_field("frame").tolist())) == list(range(12))

    p1 = select_samples(bundles, "h36m-p1")
    assert len(p1) == 3 * 4  # frames 0, 5, 10 (every 5th) x all four cameras
    assert sorted(set(p1.frame.tolist())) == [0, 5, 10] and set(p1.subject.tolist()) == {"S9"}
    p2 = select_samples(bundles, "h36m-p2")
    assert p2.frame.tolist() == [0, 5, 10] and set(p2.camera.tolist()) == {"60457274"}
    assert set(p2.view.tolist()) == {3}
    # ground truth: raw joints in the camera frame (x_cam = R (X - C)), pelvis-centred, LSP order
    for i in range(len(p1)):
        R, C = cams[p1.view[i]]
        joints = raw["S9", "Eating"][p1.frame[i]]
        cam = (joints - C) @ R.T
        expected = np.stack([cam[RAW_INDEX[n]] - cam[RAW_INDEX["pelvis"]] for n in LSP14_H36M_NAMES])
        np.testing.assert_allclose(p1.gt_joints[i].numpy(), expected, atol=1e-5)

    train = tmp_path / "h36m_train.h5"
    build("h36m", root, train, split="train")
    with pytest.raises(EvaluationDataError, match="no sample matches protocol h36m-p1.*S9, S11"):
        select_samples(BundleFile(train), "h36m-p1")
    with pytest.raises(EvaluationDataError, match="is a 'h36m' bundle file.*'3dpw'"):
        select_samples(bundles, "3dpw")


def test_mpi_inf_3dhp_protocol_on_builder_file(mpi_test_root, tmp_path):  # noqa: F811
    root, _, truth = mpi_test_root
    out = tmp_path / "mpi_test.h5"
    report = build("mpi-inf-3dhp", root, out, split="test")
    samples = select_samples(BundleFile(out), "mpi-inf-3dhp")
    assert len(samples) == report.num_bundles == 7 and set(samples.view.tolist()) == {0}
    for i in range(len(samples)):
        univ = truth[samples.subject[i]][1][samples.frame[i]] / 1000  # univ_annot3, mm -> m
        np.testing.assert_allclose(samples.gt_joints[i].numpy(), univ - univ[14], atol=1e-6)


def test_3dpw_protocol_uses_gendered_bodies(pw3d_root, tmp_path, body):  # noqa: F811
    root, data = pw3d_root
    out = tmp_path / "pw3d.h5"
    build("3dpw", root, out)
    bundles = BundleFile(out)
    female = BodyModel.free("full", dtype=torch.float64)  # stands in for SMPL's female model
    samples = select_samples(bundles, "3dpw", body, gt_bodies={"female": female})
    assert len(samples) == len(bundles)
    for i in range(len(samples)):
        person = int(samples.subject[i][-1])
        frame = samples.frame[i]
        model = female if data["genders"][person] == "f" else body
        pose = torch.from_numpy(np.asarray(data["poses"][person][frame], float))[None]
        R = torch.from_numpy(data["cam_poses"][frame][:3, :3])[None]
        out_kp = model(body_pose=pose[:, 3:], betas=torch.from_numpy(data["betas"][person][:10])[None],
                       global_orient=R @ axis_angle_to_matrix(pose[:, :3]), keypoints="h36m17").keypoints[0]
        expected = (out_kp - out_kp[0])[SPIN_H36M_TO_J14]
        np.testing.assert_allclose(samples.gt_joints[i].numpy(), expected.numpy(), atol=1e-5)
    # both genders are present, and the models differ, so the gender choice is what the test checks
    assert set(data["genders"]) == {"m", "f"}
    with pytest.raises(EvaluationDataError, match="'3dpw' bundle file.*mpi_inf_3dhp"):
        select_samples(bundles, "mpi-inf-3dhp")


def test_evaluate_predictions_of_ground_truth_bodies(pw3d_root, tmp_path, body):  # noqa: F811
    """Predicting the ground-truth body gives zero error; a bent elbow gives the hand-computed error."""
    root, data = pw3d_root
    out = tmp_path / "pw3d.h5"
    build("3dpw", root, out)
    bundles = BundleFile(out)
    samples = select_samples(bundles, "3dpw", body)
    pose = torch.from_numpy(bundles.read_field("smpl_body_pose")[samples.bundle].astype(np.float64)).view(-1, 23, 3)
    orient = torch.from_numpy(bundles.read_field("smpl_global_orient")[samples.bundle].astype(np.float64))
    R = torch.from_numpy(bundles.read_field("camera_R")[samples.bundle, 0])
    rotmat = torch.cat([(R @ axis_angle_to_matrix(orient))[:, None], axis_angle_to_matrix(pose)], 1)
    betas = torch.from_numpy(bundles.read_field("smpl_betas")[samples.bundle].astype(np.float64))
    errors, pred = evaluate_predictions(rotmat, betas, samples, body, "3dpw")
    assert float(errors["mpjpe"].abs().max()) < 1e-6 and float(errors["pa_mpjpe"].abs().max()) < 1e-4
    moved = rotmat.clone()
    moved[:, 19] = axis_angle_to_matrix(torch.tensor([0.0, 0.0, 1.2], dtype=torch.float64)) @ moved[:, 19]
    errors, pred = evaluate_predictions(moved, betas, samples, body, "3dpw")
    expected = 1000 * torch.linalg.norm(pred - samples.gt_joints, dim=-1).mean(-1)
    np.testing.assert_allclose(errors["mpjpe"].numpy(), expected.numpy(), rtol=1e-12)
    assert float(errors["mpjpe"].min()) > 1.0  # the right wrist moved


def test_h36m_protocol_on_spin_npz_file(tmp_path):
    """SPIN's preprocessed Human3.6M files: root-centred S, its J24_TO_J14 slots are the ground truth."""
    import cv2

    rng = np.random.default_rng(9)
    (tmp_path / "images").mkdir()
    frames1 = (1, 4, 6, 11)  # 1-based; 0-based 0, 3, 5, 10: frame 3 is not in the every-5th protocol
    names = []
    for frame1 in frames1:
        for cam in ("54138969", "60457274"):
            names.append(f"images/S9_Eating.{cam}_{frame1:06d}.jpg")
            cv2.imwrite(str(tmp_path / names[-1]), np.full((48, 64, 3), 50, np.uint8))
    n = len(names)
    S = np.concatenate([rng.normal(size=(n, 24, 3)), np.ones((n, 24, 1))], -1)
    np.savez(tmp_path / "h36m_valid.npz", imgname=np.array(names), center=np.full((n, 2), 30.0),
             scale=np.full(n, 0.2), part=np.ones((n, 24, 3)), S=S)
    frontal = tmp_path / "p2.h5"
    build("h36m_spin_npz", tmp_path / "h36m_valid.npz", frontal, cameras=["60457274"], split="test")
    samples = select_samples(BundleFile(frontal), "h36m-p2")
    assert samples.frame.tolist() == [0, 5, 10]
    rows = [names.index(f"images/S9_Eating.60457274_{f + 1:06d}.jpg") for f in (0, 5, 10)]
    spin_j24_to_j14 = [0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 18]
    np.testing.assert_allclose(samples.gt_joints.numpy(), S[rows][:, spin_j24_to_j14, :3], rtol=1e-6)
    two_views = tmp_path / "p1.h5"
    build("h36m_spin_npz", tmp_path / "h36m_valid.npz", two_views, cameras=["54138969", "60457274"], split="test")
    with pytest.raises(EvaluationDataError, match="view 0's camera only"):
        select_samples(BundleFile(two_views), "h36m-p1")
