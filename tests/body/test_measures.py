"""mvspin.body.rest_measurements: standing height and chest depth of rest shapes."""
import torch

from mvspin.body import BodyModel, rest_measurements
from mvspin.body.measures import CHEST_BAND_M, CHEST_JOINT


def test_height_and_chest_depth_of_rest_shapes():
    body = BodyModel.free("low")
    g = torch.Generator().manual_seed(0)
    betas = torch.cat([torch.zeros(1, body.num_betas), torch.randn(5, body.num_betas, generator=g)])
    height, depth = rest_measurements(body, betas)
    assert height.shape == depth.shape == (6,)
    # one at a time: the same numbers (no measurement mixes the bodies of a batch)
    for i in range(6):
        h, d = rest_measurements(body, betas[i:i + 1])
        assert torch.allclose(h, height[i:i + 1]) and torch.allclose(d, depth[i:i + 1])
    # the mean body: an adult (1.5-1.9 m) with a chest 15-35 cm deep, and the depth is the
    # front-to-back extent of the vertices at the chest joint's height, computed here directly
    assert 1.5 < float(height[0]) < 1.9 and 0.15 < float(depth[0]) < 0.35
    with torch.no_grad():
        verts = body(betas=betas[:1]).vertices[0]
        chest_y = body.rest_joints(betas[:1])[0, CHEST_JOINT, 1]
    band = verts[(verts[:, 1] - chest_y).abs() < CHEST_BAND_M]
    assert abs(float(band[:, 2].max() - band[:, 2].min()) - float(depth[0])) < 1e-6
    assert abs(float(verts[:, 1].max() - verts[:, 1].min()) - float(height[0])) < 1e-6
    # the shapes differ: heights spread by centimetres across the prior
    assert float(height.max() - height.min()) > 0.02
