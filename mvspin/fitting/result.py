"""Inputs and outputs of the fitters: per-view network estimates and fit results.

Rotations are matrices inside; :meth:`FitResult.smpl_params` gives axis-angle with SMPL/AMASS
key names for files, and :meth:`FitResult.numpy` axis-angle under the plain names (matrices as
``*_rotmat``). Per-view quantities keep the view axis ``(B, V, ...)``; shared ones are
``(B, ...)``. Per-view parameters are always in that view's camera frame (the crop camera in
the per-view mode, the real camera in the calibrated mode), so ``body(body_pose, betas,
global_orient[:, v], transl[:, v])`` is the body as camera ``v`` sees it.
"""
from __future__ import annotations

from dataclasses import dataclass, fields, replace
from typing import TYPE_CHECKING, Any, Optional

import numpy as np
import torch
from torch import Tensor

from mvspin.errors import check_shape
from mvspin.geometry import matrix_to_axis_angle, rot6d_to_matrix

if TYPE_CHECKING:
    from mvspin.body import BodyModel

__all__ = ["PerViewEstimate", "FitResult"]


@dataclass
class PerViewEstimate:
    """Per-view estimates of a SPIN-style regressor, one per image of each bundle.

    Attributes:
        rotmat: ``(B, V, 24, 3, 3)`` rotations; joint 0 is the root orientation in the view's
            (crop) camera frame, joints 1..23 the body pose.
        betas: ``(B, V, num_betas)``.
        cam: ``(B, V, 3)`` SPIN crop cameras ``[s, tx, ty]``; None when unknown (the calibrated
            mode does not need it).
        crop_center: ``(B, V, 2)`` centres of the crops the estimates were made from, image
            pixels. Optional; the calibrated mode uses it to turn each crop camera's orientation
            into the real camera's (see :func:`~mvspin.fitting.crop_camera_rotation`).
    """

    rotmat: Tensor
    betas: Tensor
    cam: Optional[Tensor] = None
    crop_center: Optional[Tensor] = None

    @classmethod
    def mean(cls, body: "BodyModel", batch: int, views: int,
             device: torch.device | str | None = None) -> "PerViewEstimate":
        """The body model's mean parameters (SPIN's ``smpl_mean_params``: pose, shape, crop
        camera) in every view of ``batch`` bundles of ``views``: the start of a fit without a
        network (``fit-dataset`` without ``model.init_checkpoint``). float32."""
        mean = body.mean_params_tensors(device)
        rot = rot6d_to_matrix(mean["pose"].float().view(24, 6))
        return cls(rotmat=rot.expand(batch, views, 24, 3, 3).clone(),
                   betas=mean["shape"].float().expand(batch, views, -1).clone(),
                   cam=mean["cam"].float().expand(batch, views, 3).clone())

    def check(self, batch: int, views: int, num_betas: int, need_cam: bool) -> None:
        """Raise :class:`~mvspin.errors.ShapeError` (a ValueError) naming the expected and actual
        shapes, ValueError for NaN or inf."""
        expected = {"rotmat": (batch, views, 24, 3, 3), "betas": (batch, views, num_betas), "cam": (batch, views, 3),
                    "crop_center": (batch, views, 2)}
        for name, shape in expected.items():
            value = getattr(self, name)
            if value is None:
                if name == "cam" and need_cam:
                    raise ValueError("the per-view mode needs the estimate's crop cameras cam (B, V, 3)")
                continue
            check_shape(f"estimate {name}", value, shape)
            if not bool(torch.isfinite(value).all()):
                raise ValueError(f"estimate {name} contains NaN or inf")


@dataclass
class FitResult:
    """What a fit returns.

    Attributes:
        mode: ``"smplify"``, ``"per_view"`` or ``"calibrated"``.
        body_model: name of the body model fitted.
        keypoint_set: the data's keypoint set.
        body_pose: ``(B, 23, 3, 3)`` shared body pose.
        betas: ``(B, num_betas)`` shared shape.
        global_orient: ``(B, V, 3, 3)`` root orientation in each view's camera frame.
        transl: ``(B, V, 3)`` SMPL translation in each view's camera frame, metres.
        world_orient: ``(B, 3, 3)`` root orientation in the rig's world frame (calibrated only).
        world_transl: ``(B, 3)`` SMPL translation in the world frame (calibrated only).
        cam: ``(B, V, 3)`` crop cameras ``[s, tx, ty]`` (per-view and single-view modes only).
        reprojection_error: ``(B,)`` confidence-weighted mean keypoint distance over all views
            used, pixels of the keypoint frame; ``inf`` for an unfitted bundle.
        view_reprojection_error: ``(B, V)`` the same per view (over every view, also ignored
            ones, with their keypoints as given); ``inf`` where a view has no keypoint.
        energy: ``(B,)`` final stage-2 energy; ``inf`` for an unfitted bundle.
        fitted: ``(B,)`` bool; False where no view had a confident keypoint (the parameters
            are then the initial ones, unchanged, and the errors ``inf``), or, in the calibrated
            mode, where the fit does not explain the keypoints (mean error above
            ``max_relative_reprojection_error`` of the person's image size; the errors say by
            how much).
        view_used: ``(B, V)`` bool: views that contributed (confident keypoints, not rejected
            as another person's).
        iterations: iterations run in stage 1 and stage 2 (early stopping may end a stage sooner).
        iterations_3d: iterations of the calibrated mode's 3D fit to triangulated keypoints
            (stage 0, only without network estimates).
        vertices: ``(B, V, N, 3)`` meshes in each view's camera frame, when asked for.
        joints: ``(B, V, 24, 3)`` SMPL joints in each view's camera frame, when asked for.
        world_vertices: ``(B, N, 3)`` world-frame meshes (calibrated, when asked for).
        world_joints: ``(B, 24, 3)`` world-frame joints (calibrated, when asked for).
    """

    mode: str
    body_model: str
    keypoint_set: str
    body_pose: Tensor
    betas: Tensor
    global_orient: Tensor
    transl: Tensor
    reprojection_error: Tensor
    view_reprojection_error: Tensor
    energy: Tensor
    fitted: Tensor
    view_used: Tensor
    iterations: tuple[int, int]
    iterations_3d: int = 0
    world_orient: Optional[Tensor] = None
    world_transl: Optional[Tensor] = None
    cam: Optional[Tensor] = None
    vertices: Optional[Tensor] = None
    joints: Optional[Tensor] = None
    world_vertices: Optional[Tensor] = None
    world_joints: Optional[Tensor] = None

    @property
    def batch_size(self) -> int:
        return int(self.betas.shape[0])

    @property
    def num_views(self) -> int:
        return int(self.global_orient.shape[1])

    @property
    def body_pose_aa(self) -> Tensor:
        """``(B, 69)`` axis-angle body pose."""
        return matrix_to_axis_angle(self.body_pose).reshape(self.batch_size, 69)

    @property
    def global_orient_aa(self) -> Tensor:
        """``(B, V, 3)`` axis-angle per-view root orientation."""
        return matrix_to_axis_angle(self.global_orient)

    @property
    def rotmat(self) -> Tensor:
        """``(B, V, 24, 3, 3)``: per-view orientation and shared body pose, the regressor's layout
        (what the fit supervises)."""
        b, v = self.global_orient.shape[:2]
        pose = self.body_pose.unsqueeze(1).expand(b, v, 23, 3, 3)
        return torch.cat([self.global_orient.unsqueeze(2), pose], dim=2)

    def smpl_params(self, view: Optional[int] = None) -> dict[str, np.ndarray]:
        """Axis-angle parameters with SMPL/AMASS key names, one row per bundle.

        ``view=None`` gives the world frame (calibrated mode); an index gives that view's camera
        frame. Keys: ``global_orient (B, 3)``, ``body_pose (B, 69)``, ``betas (B, num_betas)``,
        ``transl (B, 3)``, ``poses (B, 72)``.
        """
        if view is None:
            if self.world_orient is None or self.world_transl is None:
                raise ValueError(f"a {self.mode} fit has no world frame: pass view= (0..{self.num_views - 1})")
            orient, transl = matrix_to_axis_angle(self.world_orient), self.world_transl
        else:
            if not -self.num_views <= view < self.num_views:
                raise ValueError(f"view must be in 0..{self.num_views - 1}, got {view}")
            orient, transl = matrix_to_axis_angle(self.global_orient[:, view]), self.transl[:, view]
        body_pose = self.body_pose_aa
        out = {
            "global_orient": orient, "body_pose": body_pose, "betas": self.betas, "transl": transl,
            "poses": torch.cat([orient, body_pose], dim=-1),
        }
        return {k: v.detach().cpu().numpy() for k, v in out.items()}

    def to(self, device: torch.device | str) -> "FitResult":
        """A copy with every tensor on ``device``."""
        values = {f.name: getattr(self, f.name) for f in fields(self)}
        moved: dict[str, Any] = {k: v.to(device) for k, v in values.items() if isinstance(v, Tensor)}
        return replace(self, **moved)

    def numpy(self) -> dict[str, np.ndarray]:
        """Every tensor field as a numpy array (for ``np.savez``), rotations as axis-angle.

        Files are axis-angle at every boundary: ``body_pose (B, 69)``, ``global_orient
        (B, V, 3)`` and ``world_orient (B, 3)`` are axis-angle (SMPL's convention); the rotation
        matrices are kept as ``body_pose_rotmat (B, 23, 3, 3)``, ``global_orient_rotmat
        (B, V, 3, 3)`` and ``world_orient_rotmat (B, 3, 3)``.
        """
        out: dict[str, np.ndarray] = {}
        rotations = {"body_pose": self.body_pose_aa, "global_orient": self.global_orient_aa}
        if self.world_orient is not None:
            rotations["world_orient"] = matrix_to_axis_angle(self.world_orient)
        for f in fields(self):
            value = getattr(self, f.name)
            if not isinstance(value, Tensor):
                continue
            if f.name in rotations:
                out[f.name + "_rotmat"] = value.detach().cpu().numpy()
                value = rotations[f.name]
            out[f.name] = value.detach().cpu().numpy()
        out["iterations"] = np.asarray(self.iterations)
        out["iterations_3d"] = np.asarray(self.iterations_3d)
        return out
