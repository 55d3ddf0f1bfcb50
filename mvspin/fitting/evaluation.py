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
from mvspin.fitting.result import FitResult
from mvspin.geometry import mpjpe, pa_mpjpe

__all__ = ["evaluation_joints", "pose_errors", "fit_pose_errors", "view_pose_errors"]

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


def view_pose_errors(body: BodyModel, body_pose: Tensor, betas: Tensor, orient: Tensor, gt_body_pose: Tensor,
                     gt_betas: Tensor, gt_view_orient: Tensor) -> tuple[Tensor, Tensor]:
    """Per-frame MPJPE and PA-MPJPE (mm) of bodies seen in each view's camera, mean over views.

    Args:
        body_pose: ``(B, V, 23, 3, 3)`` per view, or ``(B, 23, 3, 3)`` shared by the views.
        betas: ``(B, V, n)`` or ``(B, n)``.
        orient: ``(B, V, 3, 3)`` root orientation in each view's camera frame.
        gt_body_pose: ``(B, 23, 3, 3)`` or ``(B, 69)``. gt_betas: ``(B, n)``.
        gt_view_orient: ``(B, V, 3, 3)`` ground-truth root orientation in each view's camera.

    Returns:
        ``(mpjpe (B,), pa_mpjpe (B,))``.
    """
    b, v = orient.shape[:2]
    if body_pose.ndim == 4:  # shared by the views
        body_pose, betas = body_pose[:, None].expand(b, v, *body_pose.shape[1:]), betas[:, None].expand(b, v, -1)
    rep = lambda x: x.repeat_interleave(v, 0)  # noqa: E731
    m, pa = pose_errors(body, body_pose.flatten(0, 1), betas.flatten(0, 1), orient.flatten(0, 1),
                        rep(gt_body_pose), rep(gt_betas), gt_view_orient.flatten(0, 1).to(betas))
    return m.view(b, v).mean(1), pa.view(b, v).mean(1)


def fit_pose_errors(body: BodyModel, result: FitResult, gt_body_pose: Tensor, gt_betas: Tensor,
                    gt_world_orient: Optional[Tensor] = None,
                    gt_view_orient: Optional[Tensor] = None) -> tuple[Tensor, Tensor]:
    """Per-bundle MPJPE and PA-MPJPE (mm) of a fit against the ground truth, in the fit's frames.

    A calibrated fit (it has a world frame) is compared in the world frame (``gt_world_orient
    (B, 3, 3)``); a per-view fit in each view's crop camera frame (``gt_view_orient (B, V, 3, 3)``,
    mean over views); a single-view SMPLify fit of all ``B*V`` crops (``result.batch_size ==
    B*V``) likewise, view by view.
    """
    if result.world_orient is not None:
        if gt_world_orient is None:
            raise ValueError("a calibrated fit is compared in the world frame: give gt_world_orient (B, 3, 3)")
        return pose_errors(body, result.body_pose, result.betas, result.world_orient, gt_body_pose, gt_betas,
                           gt_world_orient)
    if gt_view_orient is None:
        raise ValueError("a crop-camera fit is compared view by view: give gt_view_orient (B, V, 3, 3)")
    b, v = gt_view_orient.shape[:2]
    if result.batch_size == b:  # per-view: one shared body per bundle
        return view_pose_errors(body, result.body_pose, result.betas, result.global_orient, gt_body_pose, gt_betas,
                                gt_view_orient)
    if result.batch_size != b * v:
        raise ValueError(f"a fit of {result.batch_size} bundles matches neither B={b} nor B*V={b * v}")
    return view_pose_errors(body, result.body_pose.view(b, v, 23, 3, 3), result.betas.view(b, v, -1),
                            result.global_orient.reshape(b, v, 3, 3), gt_body_pose, gt_betas, gt_view_orient)
