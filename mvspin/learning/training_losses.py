"""The training losses of MV-SPIN (section 3.5) / SPIN (section 3).

MV-SPIN: Li, Oskarsson, Heyden, *3D Human Pose and Shape Estimation Through Collaborative
Learning and Multi-view Model-fitting*, WACV 2021. SPIN: Kolotouros, Pavlakos, Black, Daniilidis,
*Learning to Reconstruct 3D Human Pose and Shape via Model-fitting in the Loop*, ICCV 2019.

All terms are mean squared errors over a batch of ``N = B * V`` crops (views flattened):

- ``keypoints_2d``: confidence-weighted, in SPIN's normalised crop coordinates ``2 x / S - 1``,
  the network's keypoints projected through its own crop camera (focal 5000 px, principal point
  at the crop centre), every view;
- ``keypoints_3d``: confidence-weighted, both sides centred on the mid-hip point (SPIN; the
  pelvis when a set has no hips), crops whose 3D joints are known;
- ``pose``: rotation matrices (each view's root orientation and the shared body pose) against
  the target (the accepted fit, or ground-truth SMPL);
- ``betas``: against the target's;
- ``mesh``: per-vertex positions of the network's and the target's meshes (both without
  translation, each under its own root orientation);
- ``camera``: SPIN's penalty ``exp(-10 s)^2`` on the crop-camera scale.

Masked terms are means over the valid crops. Under DistributedDataParallel each process sees part
of the batch and gradients are averaged, so a masked mean divides the process's sum by the count
over **all** processes (times the number of processes): the gradient equals one process's on the
whole batch. :func:`global_count` does that sum with ``torch.distributed``.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

import torch
import torch.distributed as dist
from torch import Tensor

from mvspin.body.keypoint_sets import get_keypoint_set
from mvspin.geometry import crop_cam_to_translation, crop_intrinsics, perspective_projection
from mvspin.learning.train_config import LossWeights

__all__ = ["LossInputs", "training_losses", "global_count", "centre_index"]


def global_count(count: Tensor) -> tuple[Tensor, int]:
    """``(sum of count over all processes, number of processes)``; the input itself outside DDP."""
    if dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1:
        total = count.detach().clone()
        dist.all_reduce(total)
        return total, dist.get_world_size()
    return count.detach(), 1


def _masked_mean(values: Tensor, weight: Tensor) -> Tensor:
    """Sum of ``values * weight`` over the valid entries divided by the global element count.

    ``values (N, ...)``, ``weight (N,)`` 0/1 per crop; the element count is the number of valid
    crops times the elements per crop, summed over processes.
    """
    per_item = values[0].numel() if values.shape[0] else 1
    total, world = global_count(weight.sum() * per_item)
    num = (values * weight.view(-1, *([1] * (values.ndim - 1)))).sum()
    return num * world / total.clamp(min=1)


def centre_index(set_name: str) -> list[int]:
    """Indices averaged to centre 3D joints: both hips (SPIN) or the pelvis."""
    names = list(get_keypoint_set(set_name).names)
    if "left_hip" in names and "right_hip" in names:
        return [names.index("left_hip"), names.index("right_hip")]
    if "pelvis" in names:
        return [names.index("pelvis")]
    raise ValueError(f"keypoint set {set_name} has neither hips nor a pelvis to centre 3D joints on")


@dataclass
class LossInputs:
    """Flattened ``(N, ...)`` inputs of :func:`training_losses` (``N = B * V`` crops).

    Attributes:
        pred_keypoints_2d_3d: ``(N, K, 3)`` network keypoints of the 2D set, camera-frame offsets
            without translation (body at the origin), metres.
        pred_joints_3d: ``(N, K3, 3)`` network keypoints of the 3D set (same frame).
        pred_rotmat: ``(N, 24, 3, 3)``; pred_betas ``(N, 10)``; pred_cam ``(N, 3)`` ``[s, tx, ty]``.
        pred_vertices: ``(N, P, 3)`` or None when the mesh term is off.
        keypoints_2d: ``(N, K, 3)`` targets, crop pixels + confidence.
        joints_3d: ``(N, K3, 4)`` targets, metres + confidence.
        target_rotmat: ``(N, 24, 3, 3)``; target_betas ``(N, 10)``; target_vertices ``(N, P, 3)`` or None.
        target_valid: ``(N,)`` float 0/1, crops whose target supervises (accepted fit or ground truth).
    """

    pred_keypoints_2d_3d: Tensor
    pred_joints_3d: Tensor
    pred_rotmat: Tensor
    pred_betas: Tensor
    pred_cam: Tensor
    pred_vertices: Optional[Tensor]
    keypoints_2d: Tensor
    joints_3d: Tensor
    target_rotmat: Tensor
    target_betas: Tensor
    target_vertices: Optional[Tensor]
    target_valid: Tensor


def training_losses(x: LossInputs, weights: LossWeights, crop_size: int, joints_3d_set: str,
                    focal_length: float = 5000.0) -> tuple[Tensor, dict[str, Tensor]]:
    """Weighted total and every term (unweighted, detached) of the MV-SPIN losses.

    Returns:
        ``(total, terms)`` with ``total = weights.scale * sum_i w_i L_i`` (a scalar with
        gradient) and ``terms`` the unweighted ``L_i`` keyed ``keypoints_2d``, ``keypoints_3d``,
        ``pose``, ``betas``, ``mesh``, ``camera``.
    """
    terms: dict[str, Tensor] = {}
    half = crop_size / 2.0
    # 2D: SPIN projects with its crop camera and compares in [-1, 1] crop coordinates.
    t = crop_cam_to_translation(x.pred_cam, focal_length, crop_size)
    K = crop_intrinsics(focal_length, crop_size, dtype=x.pred_cam.dtype, device=x.pred_cam.device)
    uv = perspective_projection(x.pred_keypoints_2d_3d + t[:, None], K)
    pred_2d = uv / half - 1.0
    gt_2d = x.keypoints_2d[..., :2] / half - 1.0
    conf = x.keypoints_2d[..., 2:]
    terms["keypoints_2d"] = (conf * (pred_2d - gt_2d) ** 2).mean()

    # 3D: centred on the hips; only crops with a known centre count.
    idx = centre_index(joints_3d_set)
    gt = x.joints_3d[..., :3]
    conf3 = x.joints_3d[..., 3:]
    has_3d = (x.joints_3d[:, idx, 3] > 0).all(-1).to(gt.dtype)
    gt_c = gt - gt[:, idx].mean(1, keepdim=True)
    pred_c = x.pred_joints_3d - x.pred_joints_3d[:, idx].mean(1, keepdim=True)
    terms["keypoints_3d"] = _masked_mean(conf3 * (pred_c - gt_c) ** 2, has_3d)

    valid = x.target_valid.to(x.pred_rotmat.dtype)
    terms["pose"] = _masked_mean((x.pred_rotmat - x.target_rotmat) ** 2, valid)
    terms["betas"] = _masked_mean((x.pred_betas - x.target_betas) ** 2, valid)
    if x.pred_vertices is not None and x.target_vertices is not None:
        terms["mesh"] = _masked_mean((x.pred_vertices - x.target_vertices) ** 2, valid)
    else:
        terms["mesh"] = x.pred_cam.new_zeros(())
    terms["camera"] = (torch.exp(-10.0 * x.pred_cam[:, 0]) ** 2).mean()

    total = sum(getattr(weights, k) * v for k, v in terms.items() if getattr(weights, k))
    if not isinstance(total, Tensor):  # every weight zero
        total = x.pred_cam.sum() * 0.0
    return weights.scale * total, {k: v.detach() for k, v in terms.items()}
