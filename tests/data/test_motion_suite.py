"""Still bodies drawn from the motion suite (``SyntheticOptions.poses = "motions"``)."""
from __future__ import annotations

import numpy as np
import torch

from mvspin.body import BodyModel


def test_sampled_motion_bodies_are_people_doing_things():
    """Still bodies from the motions: deterministic per seed, pelvis where sample_bodies puts it,
    upright heads, and poses that are not a prior draw (knees bend forward only)."""
    from mvspin.data.motion_suite import sample_motion_bodies
    from mvspin.data.synthetic_keypoints import PELVIS_HEIGHT

    body = BodyModel.free("low")
    a = sample_motion_bodies(body, 12, np.random.default_rng(3), jitter=0.0)
    b = sample_motion_bodies(body, 12, np.random.default_rng(3), jitter=0.0)
    torch.testing.assert_close(a.body_pose, b.body_pose)
    joints = body.keypoints("h36m17", a.body_pose, a.betas, a.global_orient, a.transl)
    pelvis = joints[:, 0]
    assert torch.allclose(pelvis[:, 1], torch.full((12,), PELVIS_HEIGHT), atol=0.03)  # H36M pelvis: near the root
    assert pelvis[:, [0, 2]].abs().max() <= 0.3 + 0.03
    head_above_pelvis = joints[:, 10, 1] - pelvis[:, 1]  # h36m17 head top
    assert head_above_pelvis.min() > 0.3  # no one upside down (a sit-to-stand still leans)
    # knee flexion (free model: +x) is never hyperextension beyond a few degrees
    knees = a.body_pose.reshape(12, 23, 3)[:, [3, 4], 0]
    assert knees.min() > -0.2
    other = sample_motion_bodies(body, 12, np.random.default_rng(4), jitter=0.0)
    assert (other.body_pose - a.body_pose).abs().max() > 0.3



def test_suite_rig_places_cameras_at_given_azimuths():
    """``azimuths_deg``: two tripods at right angles (seen from above, about the target); the
    other draws (distance, height) are those of the default rig with the same generator."""
    import math

    import pytest

    from mvspin.data.motion_suite import suite_rig

    rig = suite_rig(("tripod", "tripod"), np.random.default_rng(3), azimuths_deg=(0.0, 90.0))
    even = suite_rig(("tripod", "tripod"), np.random.default_rng(3))
    a, b = (np.asarray(c.center)[[0, 2]] for c in rig)  # horizontal positions; the target is above the origin
    assert abs(math.degrees(math.acos(a @ b / np.linalg.norm(a) / np.linalg.norm(b))) - 90.0) < 1e-6
    for placed, default in zip(rig, even):
        p, d = np.asarray(placed.center), np.asarray(default.center)
        assert abs(np.linalg.norm(p[[0, 2]]) - np.linalg.norm(d[[0, 2]])) < 1e-9 and abs(p[1] - d[1]) < 1e-9
    with pytest.raises(ValueError, match="azimuths_deg"):
        suite_rig(("tripod", "tripod"), np.random.default_rng(3), azimuths_deg=(0.0,))
