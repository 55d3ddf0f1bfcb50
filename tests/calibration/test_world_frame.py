"""World-frame alignment: floor plane to z = 0 (or y = 0), same pixels, saved with the rig."""
import numpy as np
import pytest

from calibration import (
    CalibrationError,
    Camera,
    Rig,
    WorldFrame,
    align_world,
    load_rig,
    save_rig,
    set_up_axis,
    transform_rig,
)


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


@pytest.mark.parametrize("name, fmt", [("rig.qca.txt", "qualisys"), ("cams.json", "h36m"), ("cams.h5", "h36m"),
                                       ("camera.calibration", "mpi_inf_3dhp")])
def test_formats_without_a_world_label_store_the_frame_and_say_so(tmp_path, caplog, name, fmt):
    rig, floor, _ = _tilted_rig_and_floor()
    z_up = align_world(rig, floor, up="z")
    feet = np.array([[0.3, -0.2, 0.0], [-0.5, 0.4, 0.0], [0.0, 0.0, 1.7]])  # on the floor, and a head 1.7 m up
    with caplog.at_level("INFO", logger="calibration"):
        path = save_rig(z_up, tmp_path / name)
    lines = [r for r in caplog.records if r.name == "calibration"]
    assert len(lines) == 1 and lines[0].levelname == "INFO"  # Z-up suits every one of these formats
    assert name in lines[0].getMessage() and f"z-up world (origin: floor), but a {fmt} file cannot" in lines[0].getMessage()
    back = load_rig(path)
    assert back.world is None  # the file holds the frame, not its name
    # The file is in the chosen frame itself: floor heights are z = 0 in it, camera heights 2.5 m.
    np.testing.assert_allclose(back.project(feet), z_up.project(feet), atol=1e-6)
    np.testing.assert_allclose([c.center[2] for c in back], 2.5, atol=1e-9)
    labelled = load_rig(path, world=WorldFrame(up="z"))
    assert labelled.world == z_up.world and labelled.names == z_up.names


def test_y_up_rig_to_a_z_up_format_is_written_as_is_with_a_warning(tmp_path, caplog):
    rig, floor, _ = _tilted_rig_and_floor()
    y_up = align_world(rig, floor, up="y")
    with caplog.at_level("INFO", logger="calibration"):
        save_rig(y_up, tmp_path / "rig.qca.txt")
    warnings = [r.getMessage() for r in caplog.records if r.levelname == "WARNING"]
    assert warnings == [f"{tmp_path / 'rig.qca.txt'}: qualisys tools expect a z-up world and this rig is y-up; "
                        "convert it first with calibration.set_up_axis(rig, 'z') if they are to read it"]
    back = load_rig(tmp_path / "rig.qca.txt")
    np.testing.assert_allclose([c.center[1] for c in back], 2.5, atol=1e-9)  # not re-oriented behind the user's back
    caplog.clear()
    with caplog.at_level("INFO", logger="calibration"):
        save_rig(y_up, tmp_path / "rig.toml")  # a format that keeps the label: nothing to say
    assert [r for r in caplog.records if r.name == "calibration"] == []
    with pytest.raises(CalibrationError, match=r"rig.toml: the file records a y-up world \(origin: floor\), not the "
                                               r"z-up world"):
        load_rig(tmp_path / "rig.toml", world=WorldFrame(up="z"))
    assert load_rig(tmp_path / "rig.toml", world=WorldFrame(up="y")).world == y_up.world


def test_convert_command_restores_the_world_label(tmp_path, capsys):
    from mvspin.cli.main import main

    rig, floor, _ = _tilted_rig_and_floor()
    z_up = align_world(rig, floor, up="z")
    save_rig(z_up, tmp_path / "rig.qca.txt")
    assert main(["calibrate", "convert", str(tmp_path / "rig.qca.txt"), str(tmp_path / "rig.toml"), "--world-up", "z"]) == 0
    back = load_rig(tmp_path / "rig.toml")
    assert back.world == WorldFrame(up="z", origin="floor")
    np.testing.assert_allclose([c.center for c in back], [c.center for c in z_up], atol=1e-9)
    capsys.readouterr()
    assert main(["calibrate", "convert", str(tmp_path / "rig.toml"), str(tmp_path / "b.toml"), "--world-up", "y"]) == 2
    assert "rig.toml: the file records a z-up world (origin: floor), not the y-up world" in capsys.readouterr().err
