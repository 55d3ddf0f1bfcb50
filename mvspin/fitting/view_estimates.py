"""Per-view regressor estimates of one body, fused: across views, and into a rig's world frame.

Every view of a bundle (or rig frame) sees the same person at the same moment, so the 23
body-joint rotations (relative to their parents) and the betas are shared; only the root
orientation differs per camera. Rotations are averaged on SO(3) (Karcher mean,
:func:`mvspin.geometry.so3_mean`), never by averaging axis-angle vectors, and robustly
(:func:`robust_so3_mean`): a view whose estimate is far from the others' consensus (a regressor
that took the person's back for their front, 180 degrees off) is left out of the mean instead
of dragging it half way.

World frame. A regressor's root orientation ``R_net`` is relative to the camera of its crop: a
virtual camera at the real camera's centre looking along the ray through the crop centre
(:func:`mvspin.geometry.crop_camera_rotation` ``R_crop``, ``x_crop = R_crop x_real``). With the
camera's world-to-camera rotation ``R_v``, the body's world orientation seen from view ``v`` is
``R_v^T R_crop^T R_net``; the world estimate is the rotation mean of these over the views.

:class:`WorldEstimate` is what the calibrated fitter and the sequence fitter take as their start
(:meth:`mvspin.fitting.MVSMPLify.fit_calibrated`, :func:`mvspin.fitting.fit_sequence`).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Optional, Sequence

import torch
from torch import Tensor

from mvspin.errors import check_shape
from mvspin.geometry import crop_camera_rotation, so3_mean

__all__ = ["WorldEstimate", "fuse_view_predictions", "robust_so3_mean", "world_estimate_from_views"]

_INLIER_DEG = 45.0
"""A view's rotation farther than this from the consensus view's is left out of the mean:
per-view regressor errors are typically 10-30 degrees, a front/back confusion 180."""


def robust_so3_mean(R: Tensor, weights: Tensor, inlier_deg: float = _INLIER_DEG) -> Tensor:
    """Weighted SO(3) mean over views that leaves out views far from the consensus.

    The consensus view is the medoid: the view whose truncated squared geodesic distances
    (at ``inlier_deg``) to the other views, weighted, sum least; views farther than
    ``inlier_deg`` from it get weight 0, and the rest are averaged by
    :func:`~mvspin.geometry.so3_mean`. With one view 180 degrees off among three or more, the
    mean is that of the others; with two views that disagree, the heavier one (the first on
    a tie) is the answer rather than a rotation between them.

    Args:
        R: ``(B, V, *, 3, 3)`` rotations (views on axis 1, e.g. ``*`` = joints).
        weights: ``(B, V)`` non-negative view weights, positive sum per bundle.
        inlier_deg: the consensus radius, degrees.

    Returns:
        ``(B, *, 3, 3)``.
    """
    extra = R.ndim - 4
    w = weights.reshape(*weights.shape, *([1] * extra)).to(R.dtype)  # (B, V, *)
    rel = R[:, :, None].transpose(-1, -2) @ R[:, None]  # (B, V, V, *, 3, 3)
    cos = ((rel.diagonal(dim1=-2, dim2=-1).sum(-1) - 1) / 2).clamp(-1, 1)
    dist = torch.arccos(cos)  # (B, V, V, *) radians
    tau = torch.deg2rad(torch.tensor(inlier_deg, dtype=R.dtype))
    cost = (dist.clamp_max(tau).square() * w[:, None]).sum(2)  # (B, V, *)
    cost = torch.where(w > 0, cost, torch.full_like(cost, float("inf")))
    medoid = cost.argmin(1, keepdim=True)  # (B, 1, *)
    d_medoid = torch.gather(dist, 1, medoid[:, :, None].expand(-1, -1, dist.shape[2], *dist.shape[3:]))[:, 0]
    inlier_w = w * (d_medoid <= tau)
    return so3_mean(R, inlier_w.expand(R.shape[:-2]), dim=1)


@dataclass
class WorldEstimate:
    """Start of a body in a rig's world frame, per bundle (a recording's frame).

    Attributes:
        body_pose: ``(B, 23, 3, 3)`` body-joint rotations.
        betas: ``(B, num_betas)``.
        global_orient: ``(B, 3, 3)`` root orientation in the world frame.
        valid: ``(B,)`` bool: an estimate exists (False where no camera saw the body; the
            fitters start those bundles from triangulation instead).

    The translation is not part of it: the fitter solves it from the keypoints with this
    orientation and pose (a linear solve, as for its triangulation start).
    """

    body_pose: Tensor
    betas: Tensor
    global_orient: Tensor
    valid: Tensor

    def __len__(self) -> int:
        return int(self.global_orient.shape[0])

    def __getitem__(self, index: slice | Sequence[int] | Tensor) -> WorldEstimate:
        """The estimates of the bundles at ``index`` (a slice or indices)."""
        if not isinstance(index, (slice, Tensor)):
            index = torch.as_tensor(list(index), dtype=torch.long)
        return WorldEstimate(self.body_pose[index], self.betas[index], self.global_orient[index], self.valid[index])

    def to(self, device: torch.device | str, dtype: torch.dtype) -> WorldEstimate:
        """A copy with the rotations and betas in ``dtype`` on ``device``."""
        return WorldEstimate(self.body_pose.to(device, dtype), self.betas.to(device, dtype),
                             self.global_orient.to(device, dtype), self.valid.to(device))

    def check(self, batch: int, num_betas: int) -> None:
        """Raise :class:`~mvspin.errors.ShapeError` (a ValueError) on wrong shapes, ValueError
        on NaN or inf among the valid estimates."""
        check_shape("estimate body_pose", self.body_pose, (batch, 23, 3, 3))
        check_shape("estimate betas", self.betas, (batch, num_betas))
        check_shape("estimate global_orient", self.global_orient, (batch, 3, 3))
        check_shape("estimate valid", self.valid, (batch,))
        for name in ("body_pose", "betas", "global_orient"):
            value = getattr(self, name)[self.valid.to(torch.bool)]
            if not bool(torch.isfinite(value).all()):
                raise ValueError(f"estimate {name} contains NaN or inf")


def fuse_view_predictions(rotmat: Tensor, betas: Tensor,
                          weights: Tensor | None = None) -> tuple[Tensor, Tensor]:
    """Fuse per-view predictions of one body: robust rotation mean of the body pose
    (:func:`robust_so3_mean`, per joint), mean betas.

    Args:
        rotmat: (B, V, 24, 3, 3) per-view rotations (joint 0, the root, is ignored here).
        betas: (B, V, 10) per-view shapes.
        weights: optional (B, V) non-negative view weights.

    Returns:
        ``(body_rotmat (B, 23, 3, 3), betas (B, 10))``.

    Raises:
        ValueError: wrong shapes, negative weights, or a bundle whose weights sum to zero.
    """
    if rotmat.ndim != 5 or rotmat.shape[2:] != (24, 3, 3) or betas.ndim != 3 \
            or betas.shape[:2] != rotmat.shape[:2]:
        raise ValueError(f"expected rotmat (B, V, 24, 3, 3) and betas (B, V, 10), got "
                         f"{tuple(rotmat.shape)} and {tuple(betas.shape)}")
    if weights is None:
        weights = torch.ones(rotmat.shape[:2], dtype=rotmat.dtype, device=rotmat.device)
    if weights.shape != rotmat.shape[:2] or bool((weights < 0).any()) or bool((weights.sum(1) <= 0).any()):
        raise ValueError(f"weights must be (B, V) = {tuple(rotmat.shape[:2])}, non-negative, with a "
                         f"positive sum per bundle; got {tuple(weights.shape)}")
    body = robust_so3_mean(rotmat[:, :, 1:], weights)
    w = weights / weights.sum(1, keepdim=True)
    return body, (w[..., None] * betas).sum(1)


def world_estimate_from_views(
    rotmat: Tensor,
    betas: Tensor,
    R: Tensor,
    weights: Optional[Tensor] = None,
    crop_center: Optional[Tensor] = None,
    K: Optional[Tensor] = None,
) -> WorldEstimate:
    """Per-view camera-frame estimates of one body per bundle -> one world-frame estimate.

    Body pose and betas by :func:`fuse_view_predictions`; the root orientation of each view
    taken to the world (``R_v^T R_crop^T R_net``, module doc) and averaged on SO(3).

    Args:
        rotmat: ``(B, V, 24, 3, 3)`` per-view rotations, joint 0 the root in the view's (crop)
            camera frame.
        betas: ``(B, V, num_betas)``.
        R: ``(V, 3, 3)`` or ``(B, V, 3, 3)`` world-to-camera rotations of the cameras.
        weights: ``(B, V)`` non-negative view weights (0: the view did not see the body); a
            bundle whose weights sum to zero gets ``valid = False`` (its values are the
            unweighted means, finite but meaningless).
        crop_center: ``(B, V, 2)`` image pixels of the crop centres the estimates were made
            from; None when the orientations are already relative to the real cameras.
        K: ``(V, 3, 3)`` or ``(B, V, 3, 3)`` intrinsics (needed with ``crop_center``).

    Returns:
        :class:`WorldEstimate` with ``B`` bundles.

    Example (two views of a body whose world orientation is the identity):
        >>> Rv = torch.stack([torch.eye(3), torch.tensor([[0.0, 0, 1], [0, 1, 0], [-1, 0, 0]])])
        >>> rotmat = torch.eye(3).repeat(1, 2, 24, 1, 1)
        >>> rotmat[:, :, 0] = Rv  # each camera sees the world orientation R_v @ I
        >>> est = world_estimate_from_views(rotmat, torch.zeros(1, 2, 10), Rv)
        >>> torch.allclose(est.global_orient, torch.eye(3)[None], atol=1e-6), est.valid.tolist()
        (True, [True])
    """
    sizes = check_shape("rotmat", rotmat, ("B", "V", 24, 3, 3))
    check_shape("betas", betas, ("B", "V", None), sizes)
    b, v = sizes["B"], sizes["V"]
    if R.ndim == 3:
        check_shape("R", R, (v, 3, 3))
        R = R.expand(b, v, 3, 3)
    check_shape("R", R, (b, v, 3, 3))
    if weights is None:
        weights = torch.ones(b, v, dtype=rotmat.dtype, device=rotmat.device)
    check_shape("weights", weights, (b, v))
    weights = weights.to(rotmat.dtype)
    valid = weights.sum(1) > 0
    safe_w = torch.where(valid[:, None], weights, torch.ones_like(weights))
    body_pose, mean_betas = fuse_view_predictions(rotmat, betas, safe_w)
    view_orient = rotmat[:, :, 0]
    if crop_center is not None:
        if K is None:
            raise ValueError("crop_center needs the cameras' intrinsics K")
        check_shape("crop_center", crop_center, (b, v, 2))
        K = K.expand(b, v, 3, 3) if K.ndim == 3 else K
        view_orient = crop_camera_rotation(crop_center.to(rotmat.dtype), K.to(rotmat.dtype)).transpose(-1, -2) \
            @ view_orient
    orient = robust_so3_mean(R.to(rotmat.dtype).transpose(-1, -2) @ view_orient, safe_w)
    return WorldEstimate(body_pose, mean_betas, orient, valid)
