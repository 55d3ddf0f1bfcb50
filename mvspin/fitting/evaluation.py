"""3D accuracy of fitted bodies against ground truth (the Human3.6M protocol joints).

Joints: the 14 LSP joints of the body's ``h36m17`` keypoints, centred on the Human3.6M pelvis,
as SPIN evaluates Human3.6M and 3DPW. MPJPE compares pelvis-centred joints in a common frame
(so it includes the root orientation); PA-MPJPE aligns each sample by a similarity transform
first (pose and shape only).
"""
from __future__ import annotations

from typing import Optional

import torch
from torch import Tensor

from mvspin.body import BodyModel
from mvspin.body.keypoint_sets import H36M17_TO_LSP14
from mvspin.geometry import mpjpe, pa_mpjpe

__all__ = ["evaluation_joints", "pose_errors"]

EVAL_SET = "h36m17"
_PELVIS = 0  # index of the pelvis in h36m17


def evaluation_joints(body: BodyModel, body_pose: Tensor, betas: Tensor, global_orient: Tensor) -> Tensor:
    """Pelvis-centred LSP-14 joints ``(N, 14, 3)`` (metres) of N bodies.

    Args:
        body_pose: ``(N, 23, 3, 3)`` or ``(N, 69)``. betas: ``(N, num_betas)``.
        global_orient: ``(N, 3, 3)`` rotation matrices: the frame the joints are expressed in
            (matrices only: a batch of three axis-angle vectors would look like one matrix).
    """
    if global_orient.ndim != 3 or global_orient.shape[1:] != (3, 3):
        raise ValueError(f"global_orient must be (N, 3, 3) rotation matrices, got {tuple(global_orient.shape)}")
    dev, dt = body.J_template.device, body.J_template.dtype
    with torch.no_grad():
        kp = body.keypoints(EVAL_SET, body_pose.to(dev, dt), betas.to(dev, dt), global_orient.to(dev, dt))
    kp = kp - kp[:, _PELVIS:_PELVIS + 1]
    return kp[:, list(H36M17_TO_LSP14)]


def pose_errors(
    body: BodyModel,
    pred_body_pose: Tensor,
    pred_betas: Tensor,
    pred_orient: Tensor,
    gt_body_pose: Tensor,
    gt_betas: Tensor,
    gt_orient: Optional[Tensor] = None,
) -> tuple[Tensor, Tensor]:
    """MPJPE and PA-MPJPE in millimetres, one value per sample ``(N,)``.

    Predicted and ground-truth orientations must be in the same frame (world, or the same
    camera); ``gt_orient=None`` uses ``pred_orient`` for both (PA-MPJPE is unaffected).
    """
    gt_orient = pred_orient if gt_orient is None else gt_orient
    pred = evaluation_joints(body, pred_body_pose, pred_betas, pred_orient)
    gt = evaluation_joints(body, gt_body_pose, gt_betas, gt_orient)
    return mpjpe(pred, gt), pa_mpjpe(pred, gt)
