"""The files mvspin hands to other tools, read back the way those tools read them: the animated
``.glb`` (Khronos validator, normals, upright rest pose, the animation equal to the body model's
joints)."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from mvspin.body import SMPL_JOINT_NAMES, SMPL_PARENTS, BodyModel
from mvspin.geometry import axis_angle_to_matrix
from mvspin.io_outputs import Z_UP_TO_Y_UP, vertex_normals, write_animated_gltf
from tests.file_checks import Glb, assert_valid_gltf


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
