"""SMPLify as SPIN runs it in its training loop: one image, two stages, batched.

Stage 1 fits the root orientation and the crop-camera translation on the torso keypoints with
SPIN's depth anchor; stage 2 fits body pose, betas and orientation with the camera fixed
(``stage2_translation=False``). ``SMPLifyConfig.preset("spin")`` gives SPIN's exact energy. Initial estimates come from the regressor (SPIN's choice: its
camera, not SMPLify's similar-triangles heuristic). It is MV-SMPLify's per-view fit with one
view, so both share every line of the energy and the optimisation loop.
"""
from __future__ import annotations

from typing import Optional

from torch import Tensor

from mvspin.body import BodyModel
from mvspin.errors import check_shape
from mvspin.fitting.config import SMPLifyConfig
from mvspin.fitting.engine import FittingEngine
from mvspin.fitting.result import FitResult, PerViewEstimate

__all__ = ["SMPLify"]


class SMPLify(FittingEngine):
    """Single-view SMPLify (SPIN's variant).

    Args:
        body: the body model; its device and dtype are used.
        config: weights, iterations and optimiser (SPIN's values by default).
        keypoint_set: the keypoint convention of the inputs.

    Example:
        >>> import torch
        >>> smplify = SMPLify(BodyModel.free("low"), SMPLifyConfig(stage1_iterations=2, stage2_iterations=2))
        >>> keypoints = torch.rand(2, 25, 3) * torch.tensor([224.0, 224.0, 1.0])  # crop pixels, confidence
        >>> rotmat, cam = torch.eye(3).expand(2, 24, 3, 3), torch.tensor([[0.9, 0.0, 0.0]] * 2)
        >>> result = smplify.fit(keypoints, rotmat, torch.zeros(2, 10), cam)
        >>> result.body_pose.shape, result.global_orient.shape  # a view axis of length 1
        (torch.Size([2, 23, 3, 3]), torch.Size([2, 1, 3, 3]))
    """

    def __init__(self, body: BodyModel, config: Optional[SMPLifyConfig] = None,
                 keypoint_set: str = "openpose25") -> None:
        super().__init__(body, config if config is not None else SMPLifyConfig(), keypoint_set)

    def fit(self, keypoints: Tensor, rotmat: Tensor, betas: Tensor, cam: Tensor, *,
            return_meshes: bool = False) -> FitResult:
        """Fit each image's body to its keypoints.

        Args:
            keypoints: ``(B, K, 3)`` crop-pixel keypoints (x, y, confidence).
            rotmat: ``(B, 24, 3, 3)`` initial rotations (joint 0: orientation in the crop camera).
            betas: ``(B, num_betas)`` initial shape.
            cam: ``(B, 3)`` initial crop camera ``[s, tx, ty]``.
            return_meshes: also compute vertices and joints (once, at the end).

        Returns:
            :class:`FitResult` with a view axis of length 1 (``global_orient (B, 1, 3, 3)``, ...).
        """
        b = check_shape(f"{self.keypoint_set} keypoints (x, y, confidence)", keypoints,
                        ["B", self.targets.num_data_keypoints, 3])
        check_shape("rotmat", rotmat, ["B", 24, 3, 3], b)
        check_shape("betas", betas, ["B", self.body.num_betas], b)
        check_shape("cam", cam, ["B", 3], b)
        init = PerViewEstimate(rotmat=rotmat[:, None], betas=betas[:, None], cam=cam[:, None])
        return self.fit_crop_cameras(keypoints[:, None], init, mode="smplify", return_meshes=return_meshes)
