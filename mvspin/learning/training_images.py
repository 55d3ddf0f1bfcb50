"""The trainer's picture of a bundle: per view, input crop | network mesh | target (fit) mesh."""
from __future__ import annotations

import numpy as np
import torch
from torch import Tensor

from mvspin import rendering
from mvspin.body import BodyModel
from mvspin.geometry import crop_cam_to_translation, crop_intrinsics
from mvspin.regressor.hmr import RegressorOutput
from mvspin.regressor.preprocess import IMAGENET_MEAN, IMAGENET_STD

__all__ = ["training_image_grid"]

_NETWORK_COLOR = (0.65, 0.74, 0.86)
_FIT_COLOR = (0.90, 0.70, 0.45)


def _crop_rgb(image: Tensor) -> np.ndarray:
    """ImageNet-normalised ``(3, S, S)`` -> uint8 ``(S, S, 3)``."""
    x = image.detach().cpu().numpy().transpose(1, 2, 0) * np.asarray(IMAGENET_STD) + np.asarray(IMAGENET_MEAN)
    return np.clip(x * 255.0 + 0.5, 0, 255).astype(np.uint8)


@torch.no_grad()
def training_image_grid(body: BodyModel, batch: dict[str, Tensor], pred: RegressorOutput, target_rotmat: Tensor,
                        target_betas: Tensor, crop_size: int, focal_length: float = 5000.0,
                        bundle: int = 0) -> np.ndarray:
    """One row per view of ``bundle``: the crop, the network's mesh and the target's mesh over it,
    both placed with the network's crop camera. Returns ``(H, W, 3)`` uint8.

    Args:
        batch: the training batch (``images (B, V, 3, S, S)``).
        pred: network output with leading dims ``(B, V)``.
        target_rotmat: ``(B, V, 24, 3, 3)``; target_betas ``(B, 10)``.
    """
    v = pred.rotmat.shape[1]
    rot, betas, cam = pred.rotmat[bundle], pred.betas[bundle], pred.cam[bundle]
    t = crop_cam_to_translation(cam, focal_length, crop_size)
    net = body(rot[:, 1:], betas, rot[:, 0], t).vertices
    trot = target_rotmat[bundle]
    fit = body(trot[:, 1:], target_betas[bundle].expand(v, -1), trot[:, 0], t).vertices
    K = crop_intrinsics(focal_length, crop_size).numpy()
    tiles = []
    for view in range(v):
        crop = _crop_rgb(batch["images"][bundle, view])
        tiles.append(crop)
        for verts, color in ((net[view], _NETWORK_COLOR), (fit[view], _FIT_COLOR)):
            r = rendering.render_mesh(verts.cpu().numpy(), body.faces, K, crop_size, crop_size, color=color)
            tiles.append(rendering.overlay(crop, r))
    return rendering.image_grid(tiles, cols=3)
