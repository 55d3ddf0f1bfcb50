"""Synthetic multi-camera keypoint captures with known ground truth.

Builds what a capture would give a fitter, with every quantity known exactly:

- bodies: poses from the pose prior (:func:`sample_bodies`), or a smooth motion over frames
  (:func:`smooth_motion`), in a Y-up world with the pelvis about 1 m above the origin;
- rigs of V cameras around the subject (:func:`random_rig`), OpenCV cameras
  (:class:`calibration.Camera`), image pixels;
- 2D keypoints of any named set, projected with Gaussian pixel noise, dropped keypoints
  (confidence 0) and optional outlier views holding another person's keypoints
  (:func:`make_capture`);
- what a SPIN-style regressor would see per view: square crop boxes around the keypoints,
  crop-pixel keypoints, the ground truth in each view's crop camera frame and noisy "network"
  estimates around it (:class:`~mvspin.fitting.PerViewEstimate`).

The image-rendering generator reuses the same rigs, bodies and crop boxes (render the meshes
instead of only projecting keypoints). Everything is seeded: one ``seed`` gives the same capture
on every machine (CPU arithmetic).
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, Optional, Sequence

import numpy as np
import torch
from torch import Tensor

from calibration import Camera, CameraTensors, Rig, stack_rigs
from mvspin.body import BodyModel, FreePosePrior
from mvspin.data.synthetic_options import SyntheticOptions
from mvspin.fitting.result import PerViewEstimate
from mvspin.geometry import (
    SPIN_CROP_SIZE,
    SPIN_FOCAL_LENGTH,
    SPIN_SCALE_UNIT,
    axis_angle_to_matrix,
    crop_camera_rotation,
    image_to_crop_points,
    keypoint_crop_boxes,
    matrix_to_axis_angle,
    perspective_projection,
    points_inside_image,
    translation_to_crop_cam,
)

__all__ = [
    "SyntheticOptions", "SyntheticCapture", "BodyParams", "random_rig", "sample_bodies", "smooth_motion",
    "make_capture", "crop_frame_params", "rest_pelvis", "PELVIS_HEIGHT",
]

PELVIS_HEIGHT = 1.0
"""World height (metres, +Y up) of the subjects' pelvis."""


@dataclass
class BodyParams:
    """SMPL parameters of N bodies in the world frame (axis-angle, SMPL/AMASS names).

    Attributes:
        global_orient: ``(N, 3)``. body_pose: ``(N, 69)``. betas: ``(N, num_betas)``.
        transl: ``(N, 3)`` metres.
    """

    global_orient: Tensor
    body_pose: Tensor
    betas: Tensor
    transl: Tensor

    def __len__(self) -> int:
        return int(self.betas.shape[0])

    def index(self, idx: Tensor | Sequence[int] | slice) -> "BodyParams":
        return BodyParams(self.global_orient[idx], self.body_pose[idx], self.betas[idx], self.transl[idx])

    def as_dict(self) -> dict[str, Any]:
        return {k: getattr(self, k).detach().cpu().numpy() for k in ("global_orient", "body_pose", "betas", "transl")}


@dataclass
class SyntheticCapture:
    """B bundles of V views with ground truth.

    Attributes:
        options: how it was made.
        body_model: name of the body model that generated it.
        rigs: one :class:`calibration.Rig` per bundle (the same object when shared).
        cameras: the rigs as tensors with leading dims ``(B, V)``.
        gt: world-frame ground truth (:class:`BodyParams`, B bodies).
        keypoints: ``(B, V, K, 3)`` image-pixel keypoints (x, y, confidence) as a detector gives.
        keypoints_clean: ``(B, V, K, 3)`` exact projections, confidence 1 where inside the image.
        outlier_views: ``(B, V)`` bool, views holding another person's keypoints.
        crop_center: ``(B, V, 2)`` SPIN crop centres, image pixels.
        crop_scale: ``(B, V)`` SPIN crop scales (box side / 200 px).
        crop_keypoints: ``(B, V, K, 3)`` keypoints in crop pixels.
        crop_orient: ``(B, V, 3, 3)`` ground-truth root orientation in each view's crop camera frame.
        crop_transl: ``(B, V, 3)`` ground-truth SMPL translation in each crop camera frame.
        estimate: simulated per-view regressor output around the crop-frame ground truth.
    """

    options: SyntheticOptions
    body_model: str
    rigs: list[Rig]
    cameras: CameraTensors
    gt: BodyParams
    keypoints: Tensor
    keypoints_clean: Tensor
    outlier_views: Tensor
    crop_center: Tensor
    crop_scale: Tensor
    crop_keypoints: Tensor
    crop_orient: Tensor
    crop_transl: Tensor
    estimate: PerViewEstimate = field(repr=False)

    @property
    def batch_size(self) -> int:
        return int(self.keypoints.shape[0])

    @property
    def num_views(self) -> int:
        return int(self.keypoints.shape[1])

    def camera_orient(self) -> Tensor:
        """Ground-truth root orientation in each real camera's frame ``(B, V, 3, 3)``."""
        return self.cameras.R @ axis_angle_to_matrix(self.gt.global_orient)[:, None]


# --- rigs ------------------------------------------------------------------------------------


def random_rig(
    num_views: int,
    rng: np.random.Generator,
    image_size: tuple[int, int] = (1000, 1000),
    focal: float = 1000.0,
    distance: tuple[float, float] = (3.5, 5.0),
    height: tuple[float, float] = (0.8, 2.0),
    target: Sequence[float] = (0.0, PELVIS_HEIGHT, 0.0),
) -> Rig:
    """V cameras spread around ``target`` (azimuths evenly spaced, jittered by +-20 degrees),
    each looking at a point near it, upright (world +Y up), focal within 3% of ``focal``.
    """
    if num_views < 1:
        raise ValueError(f"num_views must be >= 1, got {num_views}")
    target_ = np.asarray(target, dtype=np.float64)
    start = rng.uniform(0, 2 * np.pi)
    cams = []
    for i in range(num_views):
        az = start + 2 * np.pi * i / num_views + rng.uniform(-1, 1) * np.radians(20)
        d = rng.uniform(*distance)
        eye = target_ + np.array([d * np.sin(az), 0.0, d * np.cos(az)])
        eye[1] = rng.uniform(*height)
        look = target_ + rng.normal(scale=0.1, size=3)
        cams.append(Camera.look_at(eye, look, focal=focal * rng.uniform(0.97, 1.03), image_size=image_size,
                                   name=f"cam{i}"))
    return Rig(cams)


# --- bodies ------------------------------------------------------------------------------------


def rest_pelvis(body: BodyModel, betas: Tensor) -> Tensor:
    """``(N, 3)`` rest-pose pelvis joint (metres, CPU) of ``betas (N, B)``: SMPL rotates about it."""
    return body.rest_joints(betas.to(body.J_template.device))[:, 0].cpu()


def sample_bodies(body: BodyModel, n: int, generator: torch.Generator, pose_spread: float = 0.35,
                  betas_std: float = 1.0) -> BodyParams:
    """N random upright bodies: poses from the free prior, random heading, pelvis at
    (0, PELVIS_HEIGHT, 0) plus up to 0.3 m of horizontal offset."""
    pose = FreePosePrior().sample(n, generator=generator, spread=pose_spread)
    betas = betas_std * torch.randn(n, body.num_betas, generator=generator)
    yaw = torch.rand(n, generator=generator) * 2 * math.pi
    tilt = torch.randn(n, 2, generator=generator) * math.radians(5)
    orient = _yaw_tilt(yaw, tilt)
    offset = (torch.rand(n, 3, generator=generator) - 0.5) * 0.6 * torch.tensor([1.0, 0.0, 1.0])
    pelvis = torch.tensor([0.0, PELVIS_HEIGHT, 0.0]) + offset
    return BodyParams(orient, pose, betas, pelvis - rest_pelvis(body, betas))


def _yaw_tilt(yaw: Tensor, tilt: Tensor) -> Tensor:
    """Axis-angle ``(N, 3)`` of a heading about +Y after a small lean (x, z components)."""
    r_yaw = axis_angle_to_matrix(torch.stack([torch.zeros_like(yaw), yaw, torch.zeros_like(yaw)], -1))
    r_tilt = axis_angle_to_matrix(torch.stack([tilt[:, 0], torch.zeros_like(yaw), tilt[:, 1]], -1))
    return matrix_to_axis_angle(r_yaw @ r_tilt)


def smooth_motion(body: BodyModel, num_frames: int, generator: torch.Generator, num_keyposes: int = 4,
                  pose_spread: float = 0.3, betas_std: float = 1.0, radius: float = 0.6) -> BodyParams:
    """A deterministic moving body: ``num_frames`` frames blending between prior key poses
    (geodesic interpolation per joint, smoothstep timing), one subject (one betas), walking
    along a circular arc of ``radius`` metres while turning with it."""
    if num_frames < 1 or num_keyposes < 1:
        raise ValueError(f"num_frames and num_keyposes must be >= 1, got {num_frames}, {num_keyposes}")
    keys = FreePosePrior().sample(num_keyposes, generator=generator, spread=pose_spread)
    keys = axis_angle_to_matrix(keys.view(-1, 23, 3))
    betas = (betas_std * torch.randn(1, body.num_betas, generator=generator)).expand(num_frames, -1).clone()
    s = torch.linspace(0, num_keyposes - 1, num_frames) if num_keyposes > 1 else torch.zeros(num_frames)
    i0 = s.floor().long().clamp(max=max(num_keyposes - 2, 0))
    i1 = (i0 + 1).clamp(max=num_keyposes - 1)
    u = (s - i0).clamp(0, 1)
    u = u * u * (3 - 2 * u)  # ease in and out of each key pose
    r0, r1 = keys[i0], keys[i1]
    rel = matrix_to_axis_angle(r0.transpose(-1, -2) @ r1)  # (T, 23, 3)
    pose = matrix_to_axis_angle(r0 @ axis_angle_to_matrix(u[:, None, None] * rel)).reshape(num_frames, 69)
    phase = torch.linspace(0, 1, num_frames) * math.pi * 0.8
    start = float(torch.rand(1, generator=generator)) * 2 * math.pi
    ang = start + phase
    bob = 0.03 * torch.sin(6 * phase)  # a little up and down, as in walking
    pelvis = torch.stack([radius * torch.sin(ang), PELVIS_HEIGHT + bob, radius * torch.cos(ang)], -1)
    heading = ang + math.pi / 2  # facing along the arc
    orient = _yaw_tilt(heading, torch.zeros(num_frames, 2))
    return BodyParams(orient, pose, betas, pelvis - rest_pelvis(body, betas))


# --- projection and crops ---------------------------------------------------------------------


def _world_keypoints(body: BodyModel, params: BodyParams, set_name: str) -> Tensor:
    dev, dt = body.J_template.device, body.J_template.dtype
    with torch.no_grad():
        # rotation matrices: a (3, 3) axis-angle batch of 3 bodies would read as one matrix
        orient = axis_angle_to_matrix(params.global_orient.to(dev, dt))
        kp = body.keypoints(set_name, params.body_pose.to(dev, dt), params.betas.to(dev, dt), orient,
                            params.transl.to(dev, dt))
    return kp.cpu()


def _project(points: Tensor, cameras: CameraTensors) -> tuple[Tensor, Tensor]:
    """World points ``(B, K, 3)`` -> pixels ``(B, V, K, 2)`` and visibility (in front, inside)."""
    uv = perspective_projection(points[:, None], cameras.K, cameras.R, cameras.t, cameras.dist)
    depth = torch.einsum("bvij,bkj->bvki", cameras.R, points)[..., 2] + cameras.t[..., 2:3]
    inside = points_inside_image(uv, cameras.image_size[..., None, :]) & (depth > 0.1)
    return uv, inside


def crop_frame_params(
    body: BodyModel, params: BodyParams, cameras: CameraTensors, center: Tensor, scale: Tensor,
    focal_length: float = SPIN_FOCAL_LENGTH, crop_size: int = SPIN_CROP_SIZE,
) -> tuple[Tensor, Tensor]:
    """Ground truth as SPIN's crop camera of each view sees it: orientation ``(B, V, 3, 3)`` and
    SMPL translation ``(B, V, 3)``.

    The crop camera looks along the ray through the crop centre (a virtual camera rotated from
    the real one about its centre). Its focal length (5000 px over a 224 px crop) is much longer
    than the real one over the crop, so the same body sits ``kappa = 5000 h / (224 f)`` times
    deeper; lateral offsets are unchanged, which keeps the pelvis on the same crop pixel.
    """
    K = cameras.K
    R_vc = crop_camera_rotation(center, K)  # rows: crop camera axes in the real camera frame
    orient = R_vc @ cameras.R @ axis_angle_to_matrix(params.global_orient)[:, None]
    pelvis_w = rest_pelvis(body, params.betas) + params.transl  # SMPL rotates about the rest pelvis
    pelvis_c = torch.einsum("bvij,bj->bvi", cameras.R, pelvis_w) + cameras.t
    pelvis_v = torch.einsum("bvij,bvj->bvi", R_vc, pelvis_c)
    kappa = focal_length * scale * SPIN_SCALE_UNIT / (crop_size * K[..., 0, 0])
    pelvis_crop = torch.cat([pelvis_v[..., :2], pelvis_v[..., 2:] * kappa[..., None]], -1)
    return orient, pelvis_crop - rest_pelvis(body, params.betas)[:, None]


def _rotation_noise(shape: tuple[int, ...], deg: float, generator: torch.Generator) -> Tensor:
    return axis_angle_to_matrix(torch.randn(*shape, 3, generator=generator) * math.radians(deg))


def make_capture(
    body: BodyModel,
    params: BodyParams,
    num_views: int = 4,
    seed: int = 0,
    options: Optional[SyntheticOptions] = None,
    rigs: Optional[Sequence[Rig]] = None,
) -> SyntheticCapture:
    """Project ground-truth bodies into rigs of cameras, with detector-like corruption.

    Args:
        body: the body model that places the keypoints.
        params: B world-frame bodies (e.g. from :func:`sample_bodies` or :func:`smooth_motion`).
        num_views: V, cameras per bundle (ignored when ``rigs`` is given).
        seed: seeds rigs, noise, drops, outliers and estimates.
        options: see :class:`SyntheticOptions`.
        rigs: B rigs (or one, shared) instead of random ones.
    """
    opt = options or SyntheticOptions()
    b = len(params)
    rng = np.random.default_rng(seed)
    gen = torch.Generator().manual_seed(seed)
    if rigs is None:
        if opt.shared_rig:
            rig = random_rig(num_views, rng, opt.image_size, opt.focal, opt.distance, opt.height)
            rigs = [rig] * b
        else:
            rigs = [random_rig(num_views, rng, opt.image_size, opt.focal, opt.distance, opt.height) for _ in range(b)]
    rigs = list(rigs)
    if len(rigs) == 1 and b > 1:
        rigs = rigs * b
    if len(rigs) != b:
        raise ValueError(f"expected {b} rigs (one per bundle) or one, got {len(rigs)}")
    cams = stack_rigs(rigs)
    v = cams.K.shape[1]

    world = _world_keypoints(body, params, opt.keypoint_set)  # (B, K, 3)
    uv, inside = _project(world, cams)
    k = uv.shape[2]
    clean = torch.cat([uv, inside[..., None].float()], -1)

    # Outlier views: another person (another pose, 1.5-2.5 m away) stands where the detector looked.
    outlier = torch.zeros(b, v, dtype=torch.bool)
    if opt.outlier_views:
        if not 0 < opt.outlier_views < v:
            raise ValueError(f"outlier_views must be in 1..{v - 1}, got {opt.outlier_views}")
        other = sample_bodies(body, b, gen, opt.pose_spread, opt.betas_std)
        ang = torch.rand(b, generator=gen) * 2 * math.pi
        dist = 1.5 + torch.rand(b, generator=gen)
        other.transl = other.transl + torch.stack([dist * torch.cos(ang), torch.zeros(b), dist * torch.sin(ang)], -1)
        other_uv, other_inside = _project(_world_keypoints(body, other, opt.keypoint_set), cams)
        order = torch.argsort(torch.rand(b, v, generator=gen), dim=1)[:, : opt.outlier_views]
        outlier.scatter_(1, order, True)
        uv = torch.where(outlier[..., None, None], other_uv, uv)
        inside = torch.where(outlier[..., None], other_inside, inside)

    noisy = uv + opt.noise_px * torch.randn(uv.shape, generator=gen)
    keep = inside & (torch.rand(b, v, k, generator=gen) >= opt.drop_rate)
    keypoints = torch.cat([noisy, torch.ones(b, v, k, 1)], -1) * keep[..., None]

    center, scale, _ = keypoint_crop_boxes(keypoints, scale_factor=opt.crop_margin)
    crop_xy = image_to_crop_points(keypoints[..., :2], center, scale)
    crop_kp = torch.cat([crop_xy, keypoints[..., 2:]], -1) * keep[..., None]
    orient_crop, transl_crop = crop_frame_params(body, params, cams, center, scale)

    # A regressor's estimate: the crop-frame truth with rotation, shape and camera noise.
    body_rot = axis_angle_to_matrix(params.body_pose.view(b, 23, 3))[:, None].expand(b, v, 23, 3, 3)
    est_body = body_rot @ _rotation_noise((b, v, 23), opt.estimate_pose_deg, gen)
    est_orient = orient_crop @ _rotation_noise((b, v), opt.estimate_orient_deg, gen)
    est_betas = params.betas[:, None] + opt.estimate_betas_std * torch.randn(b, v, body.num_betas, generator=gen)
    cam = translation_to_crop_cam(transl_crop)
    cam = cam * torch.cat([1 + opt.estimate_scale_rel * torch.randn(b, v, 1, generator=gen),
                           torch.ones(b, v, 2)], -1)
    cam = cam + torch.cat([torch.zeros(b, v, 1), opt.estimate_trans_m * torch.randn(b, v, 2, generator=gen)], -1)
    estimate = PerViewEstimate(rotmat=torch.cat([est_orient[:, :, None], est_body], 2), betas=est_betas, cam=cam,
                               crop_center=center)
    return SyntheticCapture(
        options=opt, body_model=body.name, rigs=rigs, cameras=cams, gt=params, keypoints=keypoints,
        keypoints_clean=clean, outlier_views=outlier, crop_center=center, crop_scale=scale,
        crop_keypoints=crop_kp, crop_orient=orient_crop, crop_transl=transl_crop, estimate=estimate,
    )
