"""The files mvspin hands to other tools, read back the way those tools read them: the animated
``.glb`` (Khronos validator, normals, upright rest pose, the animation equal to the body model's
joints)."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from mvspin.body import SMPL_JOINT_NAMES, SMPL_PARENTS, BodyModel
from mvspin.geometry import axis_angle_to_matrix, matrix_to_axis_angle
from mvspin.io_outputs import Z_UP_TO_Y_UP, vertex_normals, write_animated_gltf
from tests.file_checks import Glb, assert_valid_gltf, bvh_joint_positions, read_trc


@pytest.fixture(scope="module")
def body() -> BodyModel:
    return BodyModel.free("low")


def _motion(body: BodyModel, frames: int = 6, seed: int = 0) -> dict[str, torch.Tensor]:
    """A Z-up world motion: the body stood up (its Y-up T-pose turned to Z-up), limbs moving."""
    g = torch.Generator().manual_seed(seed)
    body_pose = 0.3 * torch.randn(frames, 69, generator=g)
    stand = torch.as_tensor(Z_UP_TO_Y_UP.T, dtype=torch.float32)  # Y-up body -> Z-up world
    turn = axis_angle_to_matrix(torch.tensor([[0.0, 0.0, 1.0]]) * torch.linspace(0, 2, frames)[:, None])
    global_orient = turn @ stand
    transl = torch.stack([torch.linspace(0, 1, frames), torch.zeros(frames), torch.full((frames,), 0.9)], 1)
    betas = 0.5 * torch.randn(1, 10, generator=g)
    return {"body_pose": body_pose, "global_orient": global_orient, "transl": transl, "betas": betas}


def _write_glb(body: BodyModel, motion: dict[str, torch.Tensor], path, world=Z_UP_TO_Y_UP):
    with torch.no_grad():
        rest = body(betas=motion["betas"]).vertices[0].numpy()
        rest_joints = body.rest_joints(motion["betas"])[0].numpy()
        rots = torch.cat([motion["global_orient"][:, None],
                          axis_angle_to_matrix(motion["body_pose"].view(-1, 23, 3))], 1).numpy()
    root = motion["transl"].numpy() + rest_joints[0]
    return write_animated_gltf(path, rest_vertices=rest, faces=body.faces,
                               skin_weights=body.smpl.lbs_weights.numpy(), parents=SMPL_PARENTS,
                               rest_joints=rest_joints, joint_rotations=rots, root_translation=root, fps=30.0,
                               joint_names=SMPL_JOINT_NAMES, world_rotation=world, extras={"model": body.name})


def test_glb_validates_has_normals_stands_up_and_moves_like_the_body(body, tmp_path):
    motion = _motion(body)
    path = _write_glb(body, motion, tmp_path / "walk.glb")
    glb = Glb(path)
    # Normals: unit, on the front side of their triangles, and the triangles wound outwards
    # (positive enclosed volume), so viewers shade the outside smoothly
    normals = glb.attribute("NORMAL").astype(np.float64)
    verts = glb.attribute("POSITION").astype(np.float64)
    tris = glb.accessor(glb.doc.meshes[0].primitives[0].indices).reshape(-1, 3)
    np.testing.assert_allclose(np.linalg.norm(normals, axis=1), 1.0, atol=1e-5)
    a, b, c = verts[tris[:, 0]], verts[tris[:, 1]], verts[tris[:, 2]]
    face_n = np.cross(b - a, c - a)
    assert float(np.mean(np.sum(face_n * normals[tris].mean(1), axis=1) > 0)) > 0.97
    assert float(np.sum(a * np.cross(b, c))) / 6 > 0.03  # m^3: a body's volume, outward winding
    rest_joints = glb.joint_positions(None)
    # Zero weights carry joint index 0; the 4 weights sum to 1
    joints, w = glb.attribute("JOINTS_0"), glb.attribute("WEIGHTS_0")
    assert not joints[w == 0].any() and np.allclose(w.sum(1), 1.0, atol=1e-6)
    # The rest pose (no keys applied) stands up in glTF's Y-up: head above pelvis above ankles
    head, pelvis, ankles = rest_joints[15], rest_joints[0], rest_joints[[7, 8]]
    up = (head - pelvis) / np.linalg.norm(head - pelvis)
    assert up[1] > 0.95 and (ankles[:, 1] < pelvis[1] - 0.3).all()
    # Every frame's keys pose the skeleton where the body model puts its joints (turned to Y-up)
    with torch.no_grad():
        expected = body(body_pose=motion["body_pose"], betas=motion["betas"].expand(6, -1),
                        global_orient=motion["global_orient"], transl=motion["transl"]).joints.numpy()
    for frame in range(6):
        np.testing.assert_allclose(glb.joint_positions(frame), expected[frame] @ Z_UP_TO_Y_UP.T, atol=1e-4)  # 0.1 mm: float32 keys
    # The frame rate and the axis change travel in extras
    extras = glb.doc.animations[0].extras
    assert extras["fps"] == 30.0 and extras["frames"] == 6 and np.allclose(extras["world_rotation"], Z_UP_TO_Y_UP)
    assert glb.doc.asset.extras["model"] == body.name
    # The skinned mesh and the skeleton's root are the scene's root nodes; nothing else
    assert sorted(glb.doc.scenes[0].nodes) == [0, 24] and glb.doc.nodes[24].skin == 0
    assert_valid_gltf(path)


def test_glb_without_world_turn_and_bad_inputs(body, tmp_path):
    motion = _motion(body, frames=1)
    path = _write_glb(body, motion, tmp_path / "still.glb", world=None)
    glb = Glb(path)
    with torch.no_grad():
        expected = body(body_pose=motion["body_pose"], betas=motion["betas"],
                        global_orient=motion["global_orient"], transl=motion["transl"]).joints.numpy()[0]
    np.testing.assert_allclose(glb.joint_positions(0), expected, atol=1e-4)
    assert_valid_gltf(path)
    with pytest.raises(ValueError, match="world_rotation must be a"):
        _write_glb(body, motion, tmp_path / "bad.glb", world=np.diag([1.0, 1.0, -1.0]))
    assert not (tmp_path / "bad.glb").exists()


def test_vertex_normals_of_a_cube_corner():
    verts = np.array([[0, 0, 0], [1, 0, 0], [0, 1, 0], [0, 0, 1], [5, 5, 5]], dtype=float)
    faces = np.array([[0, 2, 1], [0, 1, 3], [0, 3, 2]])  # three faces facing out of the octant
    n = vertex_normals(verts, faces)
    np.testing.assert_allclose(n[0], -np.ones(3) / np.sqrt(3), atol=1e-12)
    np.testing.assert_allclose(n[4], [0.0, 1.0, 0.0])  # on no face: a unit default


# --- .npz read by AMASS tools -------------------------------------------------------------------


def _rodrigues(aa: np.ndarray) -> np.ndarray:
    """Axis-angle (3,) to a rotation matrix (fairmotion's conversions.A2R)."""
    angle = float(np.linalg.norm(aa))
    if angle < 1e-12:
        return np.eye(3)
    k = aa / angle
    skew = np.array([[0, -k[2], k[1]], [k[2], 0, -k[0]], [-k[1], k[0], 0]])
    return np.eye(3) + np.sin(angle) * skew + (1 - np.cos(angle)) * skew @ skew


def _amass_notebook_joints(path, body: BodyModel, num_betas: int = 10) -> tuple[np.ndarray, dict]:
    """AMASS's visualisation notebook: ``bdata = np.load(path)``; the body model gets
    ``root_orient = poses[:, :3]``, ``pose_body = poses[:, 3:66]``, ``pose_hand = poses[:, 66:]``,
    ``trans``, ``betas[:num_betas]`` repeated per frame and ``dmpls[:, :8]``; ``gender`` picks the
    model, ``mocap_framerate`` the playback rate. Its SMPL+H body joints are SMPL's 0-21 (the
    body model here is the file's own, with SMPL's hand joints at rest)."""
    bdata = np.load(path)
    time_length = len(bdata["trans"])
    parms = {"root_orient": bdata["poses"][:, :3], "pose_body": bdata["poses"][:, 3:66],
             "pose_hand": bdata["poses"][:, 66:], "trans": bdata["trans"],
             "betas": np.repeat(bdata["betas"][:num_betas][np.newaxis], repeats=time_length, axis=0),
             "dmpls": bdata["dmpls"][:, :8]}
    about = {"gender": str(bdata["gender"]), "fps": float(bdata["mocap_framerate"]),
             "hands": parms["pose_hand"], "dmpls": parms["dmpls"]}
    t = lambda a: torch.as_tensor(np.asarray(a), dtype=torch.float32)  # noqa: E731
    with torch.no_grad():
        out = body(body_pose=torch.cat([t(parms["pose_body"]), torch.zeros(time_length, 6)], 1), betas=t(parms["betas"]),
                   global_orient=t(parms["root_orient"]), transl=t(parms["trans"]))
    return out.joints[:, :22].numpy(), about


def _fairmotion_joints(path, body: BodyModel) -> tuple[np.ndarray, float]:
    """fairmotion's ``amass.load``: a 22-joint skeleton whose offsets are the rest joints of
    ``betas[:10]`` (``base_position[i] - base_position[parent]``; the root's offset is zero),
    ``fps = float(mocap_framerate)``; per frame the root's transform is ``(A2R(poses[:3]),
    trans)`` and joint j's rotation ``A2R(poses[3 * j: 3 * j + 3])`` from ``poses[:, 3:66]``.
    Returns the joints' world positions (forward kinematics of that skeleton) and the fps."""
    bdata = np.load(path)
    betas = torch.as_tensor(bdata["betas"][:10][np.newaxis], dtype=torch.float32)
    with torch.no_grad():
        base = body.rest_joints(betas)[0, :22].double().numpy()
    parents = SMPL_PARENTS[:22]
    fps = float(bdata["mocap_framerate"])
    root_orient, pose_body, trans = bdata["poses"][:, :3], bdata["poses"][:, 3:66], bdata["trans"][:, :3]
    frames = []
    for f in range(pose_body.shape[0]):
        world = [np.eye(4)] * 22
        for j in range(22):
            local = np.eye(4)
            if j == 0:
                local[:3, :3], local[:3, 3] = _rodrigues(root_orient[f].astype(np.float64)), trans[f]
                world[0] = local
            else:
                local[:3, :3] = _rodrigues(pose_body[f, (j - 1) * 3:(j - 1) * 3 + 3].astype(np.float64))
                offset = np.eye(4)
                offset[:3, 3] = base[j] - base[parents[j]]
                world[j] = world[parents[j]] @ offset @ local
        frames.append([w[:3, 3] for w in world])
    return np.array(frames), fps


def test_npz_reads_in_amass_loaders_to_the_same_joints(body, tmp_path):
    from mvspin.io_outputs import read_smpl_npz, write_smpl_npz

    motion = _motion(body, frames=5, seed=3)
    motion["body_pose"][:, 63:] = 0.4  # SMPL's hand joints: no place in SMPL+H, and they move no joint
    path = write_smpl_npz(tmp_path / "subject0.npz", global_orient=matrix_to_axis_angle(motion["global_orient"]).numpy(),
                          body_pose=motion["body_pose"].numpy(), betas=motion["betas"][0].numpy(),
                          transl=motion["transl"].numpy(), model=body.name, fps=50.0)
    own = read_smpl_npz(path)
    assert own["poses"].shape == (5, 156) and own["body_pose"].shape == (5, 69) and own["betas"].shape == (10,)
    assert "different body in SMPL" in str(own["betas_model"])
    assert str(own["betas_model"]).startswith(body.name) and str(own["model"]) == body.name
    with torch.no_grad():
        expected = body(body_pose=torch.as_tensor(own["body_pose"]), betas=torch.as_tensor(own["betas"])[None].expand(5, -1),
                        global_orient=torch.as_tensor(own["global_orient"]),
                        transl=torch.as_tensor(own["transl"])).joints[:, :22].numpy()
    notebook, about = _amass_notebook_joints(path, body)
    np.testing.assert_allclose(notebook, expected, atol=1e-5)
    assert about["gender"] == "neutral" and about["fps"] == 50.0
    assert not about["hands"].any() and about["hands"].shape == (5, 90) and not about["dmpls"].any()
    fair, fps = _fairmotion_joints(path, body)
    # fairmotion's skeleton has no offset at the root: its pelvis is at `trans`, SMPL's at
    # `trans` + the rest pelvis. Every joint is shifted by that one constant.
    pelvis = body.rest_joints(torch.as_tensor(own["betas"])[None])[0, 0].numpy()
    np.testing.assert_allclose(fair + pelvis, expected, atol=1e-5)
    assert fps == 50.0
    # The Meshcapade add-on reads poses[frame].reshape(-1, 3) for SMPL-H's 52 joints
    assert own["poses"][0].reshape(-1, 3).shape == (52, 3) and float(own["mocap_frame_rate"]) == 50.0


# --- BVH and TRC ------------------------------------------------------------------------------


def test_bvh_reads_back_to_the_body_models_joints(body, tmp_path):
    from mvspin.io_outputs import write_bvh

    motion = _motion(body, frames=8, seed=5)
    motion["body_pose"] *= 3  # large angles: Euler wrap-around and near-gimbal frames
    with torch.no_grad():
        rest_joints = body.rest_joints(motion["betas"])[0].numpy()
        rots = torch.cat([motion["global_orient"][:, None],
                          axis_angle_to_matrix(motion["body_pose"].view(-1, 23, 3))], 1).numpy()
        expected = body(body_pose=motion["body_pose"], betas=motion["betas"].expand(8, -1),
                        global_orient=motion["global_orient"], transl=motion["transl"]).joints.numpy()
    path = write_bvh(tmp_path / "s.bvh", parents=SMPL_PARENTS, rest_joints=rest_joints, joint_rotations=rots,
                     root_translation=motion["transl"].numpy() + rest_joints[0], fps=50.0,
                     joint_names=SMPL_JOINT_NAMES, world_rotation=Z_UP_TO_Y_UP)
    names, positions, frame_time = bvh_joint_positions(path)
    assert sorted(names) == sorted(SMPL_JOINT_NAMES) and frame_time == pytest.approx(0.02)
    order = [names.index(n) for n in SMPL_JOINT_NAMES]  # the file lists joints depth first
    back = positions[:, order] / 100.0 @ Z_UP_TO_Y_UP  # centimetres, Y-up -> metres in the Z-up world
    assert float(np.abs(back - expected).max()) < 1e-3  # 1 mm
    assert "End Site" in path.read_text() and path.read_text().count("CHANNELS 3 Zrotation Xrotation Yrotation") == 23
    with pytest.raises(ValueError, match="without spaces"):
        write_bvh(tmp_path / "bad.bvh", parents=SMPL_PARENTS, rest_joints=rest_joints, joint_rotations=rots,
                  root_translation=motion["transl"].numpy(), fps=50.0, joint_names=["a b"] + list(SMPL_JOINT_NAMES[1:]))


def test_trc_header_rules_and_values(tmp_path):
    from mvspin.io_outputs import pose2sim_marker_name, write_trc

    rng = np.random.default_rng(0)
    markers = rng.uniform(-1, 2, size=(4, 3, 3))
    markers[2, 1] = np.nan
    names = [pose2sim_marker_name(n) for n in ("right_big_toe", "mid_hip", "nose")]
    assert names == ["RBigToe", "MidHip", "Nose"]
    path = write_trc(tmp_path / "walk.trc", markers, names, 25.0, frame_numbers=[10, 11, 12, 13],
                     world_rotation=Z_UP_TO_Y_UP)
    header, back_names, times, values = read_trc(path)
    assert header["Units"] == "mm" and header["DataRate"] == "25" and header["OrigDataStartFrame"] == "11"
    assert back_names == names
    np.testing.assert_allclose(times, [0.4, 0.44, 0.48, 0.52])
    np.testing.assert_allclose(values / 1000.0, markers @ Z_UP_TO_Y_UP.T, atol=1e-7, equal_nan=True)
    assert np.isnan(values[2, 1]).all() and not np.isnan(values[2, 0]).any()
    with pytest.raises(ValueError, match="unique"):
        write_trc(tmp_path / "bad.trc", markers, ["a", "a", "b"], 25.0)
