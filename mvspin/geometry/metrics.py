"""3D pose metrics: MPJPE, PA-MPJPE, PCK and AUC.

Inputs are joints in **metres**, shape ``(*, N, 3)``; errors are returned in **millimetres**,
one value per sample (shape ``(*)``). Joints are compared as given: centre them first with
:func:`root_align` where the protocol asks for pelvis-centred joints.

``mask`` (shape ``(*, N)``, bool or float) selects joints: bool/0-1 masks exclude joints,
other non-negative floats act as weights in the per-sample mean. A sample with no selected
joint returns NaN (undefined), so that it cannot pass silently as a perfect or a failed sample;
reduce with ``torch.nanmean`` if such samples may occur.
"""
from __future__ import annotations

from typing import Optional, Sequence, Union

import torch
from torch import Tensor

from calibration.procrustes import similarity_procrustes
from mvspin.errors import check_shape

__all__ = [
    "MPI_INF_3DHP_AUC_THRESHOLDS_MM",
    "root_align",
    "joint_errors",
    "mpjpe",
    "pa_mpjpe",
    "pck",
    "auc",
]

_M_TO_MM = 1000.0
# MPI-INF-3DHP protocol (mpii_compute_3d_pck.m of the test set release): PCK at 150 mm, AUC as
# the mean PCK over the thresholds 0, 5, ..., 150 mm (31 values).
MPI_INF_3DHP_AUC_THRESHOLDS_MM: tuple[float, ...] = tuple(5.0 * i for i in range(31))


def root_align(joints: Tensor, root_indices: Union[int, Sequence[int]]) -> Tensor:
    r"""Centre joints on a root: the joint ``root_indices`` or the mean of several joints.

    Args:
        joints: joints of shape :math:`(*, N, 3)`.
        root_indices: index of the root joint or indices whose mean is the root. SPIN's
            3DPW and MPI-INF-3DHP evaluation centres on the pelvis, row 0 of ``J_regressor_h36m``
            (index 0 of ``h36m17``), for prediction and ground truth alike, not on the mean of
            the hips.

    Returns:
        root-relative joints of shape :math:`(*, N, 3)`.

    Example:
        >>> j = torch.tensor([[1., 1., 1.], [3., 1., 1.], [2., 5., 1.]])
        >>> root_align(j, [0, 1])
        tensor([[-1.,  0.,  0.],
                [ 1.,  0.,  0.],
                [ 0.,  4.,  0.]])
    """
    check_shape("root_align: joints", joints, ["*", None, 3])
    indices = [root_indices] if isinstance(root_indices, int) else list(root_indices)
    n = joints.shape[-2]
    if not indices or any(not -n <= i < n for i in indices):
        raise ValueError(
            f"root_align: root_indices {root_indices} must be non-empty and within {n} joints"
        )
    root = joints[..., indices, :].mean(dim=-2, keepdim=True)
    return joints - root


def _mask_weights(mask: Optional[Tensor], errors: Tensor, func: str) -> Optional[Tensor]:
    if mask is None:
        return None
    check_shape(f"{func}: mask", mask, list(errors.shape))
    return mask.to(errors.dtype)


def _masked_mean(values: Tensor, weights: Optional[Tensor]) -> Tensor:
    """Mean over the last axis; weighted if weights are given, NaN where they sum to zero."""
    if weights is None:
        return values.mean(dim=-1)
    # 0/0 = NaN on purpose: a sample without any valid joint has no error.
    return (values * weights).sum(dim=-1) / weights.sum(dim=-1)


def _check_pair(pred: Tensor, target: Tensor, func: str) -> None:
    check_shape(f"{func}: pred", pred, ["*", None, 3])
    check_shape(f"{func}: target (pred's shape)", target, list(pred.shape))


def joint_errors(pred: Tensor, target: Tensor) -> Tensor:
    r"""Per-joint Euclidean error in millimetres.

    Args:
        pred: predicted joints of shape :math:`(*, N, 3)`, metres.
        target: ground-truth joints of shape :math:`(*, N, 3)`, metres.

    Returns:
        errors of shape :math:`(*, N)`, millimetres.
    """
    _check_pair(pred, target, "joint_errors")
    return torch.linalg.vector_norm(pred - target, dim=-1) * _M_TO_MM


def mpjpe(pred: Tensor, target: Tensor, mask: Optional[Tensor] = None) -> Tensor:
    r"""Mean per-joint position error in millimetres, per sample.

    Args:
        pred: predicted joints of shape :math:`(*, N, 3)`, metres.
        target: ground-truth joints of shape :math:`(*, N, 3)`, metres.
        mask: optional joint mask/weights of shape :math:`(*, N)`.

    Returns:
        MPJPE of shape :math:`(*)`, millimetres.

    Example:
        >>> mpjpe(torch.zeros(1, 2, 3), torch.tensor([[[0.01, 0., 0.], [0., 0.03, 0.]]]))
        tensor([20.])
    """
    errors = joint_errors(pred, target)
    return _masked_mean(errors, _mask_weights(mask, errors, "mpjpe"))


def pa_mpjpe(pred: Tensor, target: Tensor, mask: Optional[Tensor] = None) -> Tensor:
    r"""MPJPE after per-sample similarity Procrustes alignment of ``pred`` to ``target``
    (reconstruction error), millimetres.

    Masked joints are excluded from the alignment as well as from the mean.

    Args:
        pred: predicted joints of shape :math:`(*, N, 3)`, metres.
        target: ground-truth joints of shape :math:`(*, N, 3)`, metres.
        mask: optional joint mask/weights of shape :math:`(*, N)`.

    Returns:
        PA-MPJPE of shape :math:`(*)`, millimetres.
    """
    _check_pair(pred, target, "pa_mpjpe")
    weights = _mask_weights(mask, pred[..., 0], "pa_mpjpe")
    aligned, _, _, _ = similarity_procrustes(pred, target, weights)
    return _masked_mean(joint_errors(aligned, target), weights)


def _pck_curve(errors: Tensor, thresholds_mm: Tensor, weights: Optional[Tensor]) -> Tensor:
    """(*, T) share of joints with error strictly below each threshold."""
    # Strict '<' as in the MPI-INF-3DHP evaluation script.
    correct = (errors.unsqueeze(-2) < thresholds_mm.unsqueeze(-1)).to(errors.dtype)  # (*, T, N)
    return _masked_mean(correct, None if weights is None else weights.unsqueeze(-2))


def pck(
    pred: Tensor, target: Tensor, threshold_mm: float = 150.0, mask: Optional[Tensor] = None
) -> Tensor:
    r"""Percentage of correct keypoints (as a share in [0, 1]): joints with error strictly
    below ``threshold_mm``, per sample.

    Args:
        pred: predicted joints of shape :math:`(*, N, 3)`, metres.
        target: ground-truth joints of shape :math:`(*, N, 3)`, metres.
        threshold_mm: error threshold in millimetres (MPI-INF-3DHP: 150).
        mask: optional joint mask/weights of shape :math:`(*, N)`.

    Returns:
        PCK of shape :math:`(*)`, in [0, 1].

    Example:
        >>> pck(torch.zeros(1, 2, 3), torch.tensor([[[0.1, 0., 0.], [0.2, 0., 0.]]]))
        tensor([0.5000])
    """
    errors = joint_errors(pred, target)
    weights = _mask_weights(mask, errors, "pck")
    threshold = torch.tensor([threshold_mm], dtype=errors.dtype, device=errors.device)
    return _pck_curve(errors, threshold, weights)[..., 0]


def auc(
    pred: Tensor,
    target: Tensor,
    thresholds_mm: Optional[Union[Sequence[float], Tensor]] = None,
    mask: Optional[Tensor] = None,
) -> Tensor:
    r"""Area under the PCK curve: mean PCK over ``thresholds_mm``, per sample, in [0, 1].

    Default thresholds are MPI-INF-3DHP's 0, 5, ..., 150 mm (31 values), as in its evaluation
    script; the threshold 0 always scores 0, so a perfect prediction gets 30/31.

    Args:
        pred: predicted joints of shape :math:`(*, N, 3)`, metres.
        target: ground-truth joints of shape :math:`(*, N, 3)`, metres.
        thresholds_mm: thresholds in millimetres, shape :math:`(T,)`.
        mask: optional joint mask/weights of shape :math:`(*, N)`.

    Returns:
        AUC of shape :math:`(*)`, in [0, 1].
    """
    errors = joint_errors(pred, target)
    weights = _mask_weights(mask, errors, "auc")
    if thresholds_mm is None:
        thresholds_mm = MPI_INF_3DHP_AUC_THRESHOLDS_MM
    thresholds = torch.as_tensor(thresholds_mm, dtype=errors.dtype, device=errors.device)
    check_shape("auc: thresholds_mm", thresholds, ["T"])
    return _pck_curve(errors, thresholds, weights).mean(dim=-1)
