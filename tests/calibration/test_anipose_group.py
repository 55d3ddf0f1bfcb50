"""Rig <-> aniposelib CameraGroup: same pixels both ways, order and world frame kept."""
import numpy as np

from calibration import Camera, Rig, WorldFrame, from_camera_group, to_camera_group


def test_camera_group_round_trip_projects_the_same():
    cams = [Camera.look_at(eye=(3 * np.cos(a), 3 * np.sin(a), 1.5), target=(0, 0, 1), up=(0, 0, 1), focal=800 + 50 * i,
                           image_size=(640, 480), dist=(0.02 * i, -0.01, 0.001, 0.0, 0.003), name=f"cam_{i}")
            for i, a in enumerate(np.linspace(0, 6, 11))]
    rig = Rig(cams, world=WorldFrame(up="z"))
    group = to_camera_group(rig)
    pts = np.random.default_rng(0).normal(size=(30, 3)) * 0.4 + [0, 0, 1]
    ani = np.stack([c.project(pts)[:, 0] for c in group.cameras])
    np.testing.assert_allclose(ani, rig.project(pts), atol=1e-8)
    assert group.get_names() == rig.names
    back = from_camera_group(group)
    assert back.names == rig.names and back.world == rig.world
    np.testing.assert_allclose(back.project(pts), rig.project(pts), atol=1e-9)
    assert [c.image_size for c in back] == [(640, 480)] * 11
