"""World-frame alignment: floor plane to z = 0 (or y = 0), same pixels, saved with the rig."""
import numpy as np
import pytest

from calibration import CalibrationError, Camera, Rig, WorldFrame, align_world, load_rig, save_rig, set_up_axis, transform_rig


def _random_rotation(rng):
    q, r = np.linalg.qr(rng.normal(size=(3, 3)))
    q = q * np.sign(np.diag(r))
    return q if np.linalg.det(q) > 0 else -q


def _tilted_rig_and_floor():
    """Cameras 2.5 m above a floor in a Z-up frame, then everything moved by a random rigid motion
    (the frame a board calibration hands back). Returns (rig, floor points, motion)."""
    rng = np.random.default_rng(4)
    cams = [Camera.look_at(eye=(3 * np.cos(a), 3 * np.sin(a), 2.5), target=(0, 0, 1), up=(0, 0, 1), focal=900,
                           image_size=(640, 480), name=f"c{i}") for i, a in enumerate(np.linspace(0, 5, 4))]
    floor = np.column_stack([rng.uniform(-1, 1, 6) + 0.4, rng.uniform(-1, 1, 6) - 0.2, np.zeros(6)])
    Rm, tm = _random_rotation(rng), np.array([0.3, -1.2, 2.0])
    moved = transform_rig(Rig(cams), Rm, tm)
    return moved, floor @ Rm.T + tm, (Rm, tm)


def test_transform_rig_keeps_pixels():
    rig, _, (Rm, tm) = _tilted_rig_and_floor()
    pts = np.random.default_rng(0).normal(size=(20, 3)) * 0.3 + [0, 0, 1]
    moved = transform_rig(rig, Rm.T, -Rm.T @ tm * 1000.0, scale=1000.0)  # back, and into millimetres
    np.testing.assert_allclose(moved.project(pts * 1000.0), rig.project(pts @ Rm.T + tm), atol=1e-6)


@pytest.mark.parametrize("up, axis", [("z", 2), ("y", 1)])
def test_align_world_puts_floor_at_zero_and_cameras_above(up, axis):
    rig, floor, (Rm, tm) = _tilted_rig_and_floor()
    aligned = align_world(rig, floor, up=up)
    assert aligned.world == WorldFrame(up=up, origin="floor")
    # The same physical points project to the same pixels in both frames.
    old = np.random.default_rng(1).normal(size=(10, 3)) + floor.mean(axis=0)
    new = aligned[0].center + (old - rig[0].center) @ (aligned[0].R.T @ rig[0].R).T
    np.testing.assert_allclose(aligned.project(new), rig.project(old), atol=1e-6)
    heights = [c.center[axis] for c in aligned]
    np.testing.assert_allclose(heights, 2.5, atol=1e-9)  # cameras 2.5 m above the floor, on the up side
    floor_new = new[:0]  # floor points map onto the plane through the origin
    for p in floor:
        q = aligned[0].center + (p - rig[0].center) @ (aligned[0].R.T @ rig[0].R).T
        assert abs(q[axis]) < 1e-9
        floor_new = np.vstack([floor_new, q])
    np.testing.assert_allclose(floor_new.mean(axis=0), 0.0, atol=1e-9)  # origin below the floor points' centre


def test_up_axis_switch_and_saved_choice(tmp_path):
    rig, floor, _ = _tilted_rig_and_floor()
    z_up = align_world(rig, floor, up="z")
    y_up = set_up_axis(z_up, "y")
    for a, b in zip(z_up, y_up):
        x, y, z = a.center
        np.testing.assert_allclose(b.center, (x, z, -y), atol=1e-9)
    for name in ("rig.toml", "em"):
        save_rig(y_up, tmp_path / name)
        back = load_rig(tmp_path / name)
        assert back.world == WorldFrame(up="y", origin="floor")
        np.testing.assert_allclose(back.project(np.zeros((1, 3))), y_up.project(np.zeros((1, 3))), atol=1e-9)
    save_rig(rig, tmp_path / "plain.toml")
    assert load_rig(tmp_path / "plain.toml").world is None


def test_alignment_errors():
    rig, floor, _ = _tilted_rig_and_floor()
    with pytest.raises(CalibrationError, match="collinear"):
        align_world(rig, np.outer(np.arange(4.0), [1.0, 2.0, 0.5]))
    with pytest.raises(CalibrationError, match="floor_points must be"):
        align_world(rig, floor[:2])
    with pytest.raises(CalibrationError, match="up axis must be one of z, y"):
        align_world(rig, floor, up="x")
    with pytest.raises(CalibrationError, match="no known up axis"):
        set_up_axis(rig, "y")
