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
