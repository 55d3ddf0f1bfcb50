"""Synthetic rig recordings: one calibrated rig, a subject moving over many frames, detector-like
trouble (noise, dropped joints, left/right flips, outlier detections, a bystander), ground truth.

What a capture practitioner's 2D detector would give a rig fitter, with every quantity known:
detections come as ``(T, V, P, K, 3)`` per frame, camera and detected person, zero-padded where
a camera lists fewer people (a missing person or joint is ``0, 0, 0``, as OpenPose writes).
The world is Z-up (floor at z = 0) or Y-up.

Example:
    >>> rec = make_rig_recording(BodyModel.free("low"), RecordingOptions(num_frames=10))
    >>> rec.detections.shape            # (T, V, P, 25, 3)
    torch.Size([10, 4, 2, 25, 3])
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional

import numpy as np
import torch
from torch import Tensor

from calibration import Camera, Rig
from mvspin.body import BodyModel, get_keypoint_set
from mvspin.data.synthetic_keypoints import BodyParams, random_rig, smooth_motion
from mvspin.geometry import axis_angle_to_matrix, matrix_to_axis_angle, points_inside_image

__all__ = ["RecordingOptions", "SyntheticRecording", "make_rig_recording", "Y_UP_TO_Z_UP", "rotate_world",
           "write_openpose_folders", "write_recording_videos"]

Y_UP_TO_Z_UP = np.array([[1.0, 0.0, 0.0], [0.0, 0.0, -1.0], [0.0, 1.0, 0.0]])
"""World rotation taking a Y-up world (the synthetic generators') to a Z-up one (+Y becomes +Z)."""


@dataclass
class RecordingOptions:
    """How a synthetic rig recording is made (defaults: the rig-fitting test's hard case).

    Attributes:
        num_frames: T.
        num_views: V cameras.
        keypoint_set: the detector's keypoint convention.
        z_up: Z-up world (else Y-up, as :mod:`mvspin.data.synthetic_keypoints`).
        noise_px: range of per-camera Gaussian pixel noise (each camera draws one value).
        drop_rate: share of the subject's keypoints dropped at random.
        flip_view: camera whose detections are left/right swapped in ``flip_rate`` of the
            frames (None: no flips).
        outlier_view: camera whose subject detection is an outlier in ``outlier_rate`` of the
            frames: about half its joints displaced by 40-150 px (None: none).
        bystander_rate: share of the frames (one contiguous stretch) in which a second person
            stands 1.5-2.5 m from the subject; 0 for none.
        bystander_first_views: cameras that list the bystander first (before the subject).
        image_size, focal, distance, height: the rig (see :func:`random_rig`).
    """

    num_frames: int = 120
    num_views: int = 4
    keypoint_set: str = "openpose25"
    z_up: bool = True
    noise_px: tuple[float, float] = (2.0, 4.0)
    drop_rate: float = 0.1
    flip_view: Optional[int] = 1
    flip_rate: float = 0.2
    outlier_view: Optional[int] = 2
    outlier_rate: float = 0.2
    bystander_rate: float = 0.5
    bystander_first_views: tuple[int, ...] = (0, 3)
    image_size: tuple[int, int] = (1000, 1000)
    focal: float = 1000.0
    distance: tuple[float, float] = (3.5, 5.0)
    height: tuple[float, float] = (0.8, 2.0)


@dataclass
class SyntheticRecording:
    """A synthetic rig recording with ground truth.

    Attributes:
        options: how it was made.
        rig: the V cameras (world frame Z-up when ``options.z_up``).
        gt: the subject's world-frame SMPL parameters, T frames (one betas).
        detections: ``(T, V, P, K, 3)`` image pixels and confidence per detected person
            (zero rows where a camera lists fewer people).
        subject_index: ``(T, V)`` where the subject sits in each camera's list (-1: not detected).
        flipped: ``(T, V)`` bool, the subject's detection is left/right swapped.
        outlier: ``(T, V)`` bool, the subject's detection is an outlier detection.
        bystander: ``(T,)`` bool, a bystander is in the frame.
    """

    options: RecordingOptions
    rig: Rig
    gt: BodyParams
    detections: Tensor
    subject_index: Tensor
    flipped: Tensor
    outlier: Tensor
    bystander: Tensor = field(repr=False)

    @property
    def num_frames(self) -> int:
        return int(self.detections.shape[0])

    def subject_keypoints(self) -> Tensor:
        """``(T, V, K, 3)``: the subject's detection in every camera and frame (zeros where the
        camera did not detect it), wherever it sits in the camera's list."""
        t, v, _, k, c = self.detections.shape
        slot = self.subject_index.clamp_min(0)[..., None, None, None].expand(t, v, 1, k, c)
        kp = torch.gather(self.detections, 2, slot)[:, :, 0]
        return kp * (self.subject_index >= 0)[..., None, None].to(kp.dtype)


def rotate_world(body: BodyModel, params: BodyParams, rig: Rig, rotation: np.ndarray) -> tuple[BodyParams, Rig]:
    """The same scene in a rotated world frame (``x' = rotation @ x``): bodies re-oriented about
    their rest pelvis, cameras re-expressed (``R' = R @ rotation^T``, same centres' images)."""
    Rw = torch.as_tensor(rotation, dtype=torch.float32)
    pelvis_rest = body.rest_joints(params.betas.to(body.J_template.device))[:, 0].cpu()
    orient = matrix_to_axis_angle(Rw @ axis_angle_to_matrix(params.global_orient))
    pelvis = (params.transl + pelvis_rest) @ Rw.T
    new_params = BodyParams(orient, params.body_pose.clone(), params.betas.clone(), pelvis - pelvis_rest)
    cams = [Camera(K=c.K, R=c.R @ rotation.T, t=c.t, dist=c.dist, image_size=c.image_size, name=c.name)
            for c in rig]
    return new_params, Rig(cams)


def _world_keypoints(body: BodyModel, params: BodyParams, set_name: str) -> Tensor:
    with torch.no_grad():
        return body.keypoints(set_name, params.body_pose, params.betas, axis_angle_to_matrix(params.global_orient),
                              params.transl)


def make_rig_recording(body: BodyModel, options: Optional[RecordingOptions] = None, seed: int = 0,
                       motion: Optional[BodyParams] = None, bystander_motion: Optional[BodyParams] = None,
                       rig: Optional[Rig] = None) -> SyntheticRecording:
    """Project a moving subject (and a bystander) into one rig, with detector-like corruption.

    Seeded: one ``seed`` gives the same recording on every machine.

    Args:
        motion: the subject's motion (Y-up world, ``options.num_frames`` frames); default a
            :func:`smooth_motion` (:mod:`mvspin.data.motion_suite` makes others).
        bystander_motion: the bystander's motion, placed as given (default: another smooth
            motion 1.5-2.5 m from the subject's path).
        rig: the cameras (Y-up world); default :func:`random_rig` from the options.
    """
    opt = options or RecordingOptions()
    for name, given in (("motion", motion), ("bystander_motion", bystander_motion)):
        if given is not None and len(given) != opt.num_frames:
            raise ValueError(f"{name} has {len(given)} frames but options.num_frames is {opt.num_frames}")
    if rig is not None and len(rig) != opt.num_views:
        raise ValueError(f"rig has {len(rig)} cameras but options.num_views is {opt.num_views}")
    if opt.num_frames < 1 or opt.num_views < 2:
        raise ValueError(f"need num_frames >= 1 and num_views >= 2, got {opt.num_frames}, {opt.num_views}")
    for name in ("flip_view", "outlier_view"):
        view = getattr(opt, name)
        if view is not None and not 0 <= view < opt.num_views:
            raise ValueError(f"{name} must be in 0..{opt.num_views - 1}, got {view}")
    rng = np.random.default_rng(seed)
    gen = torch.Generator().manual_seed(seed)
    t, v = opt.num_frames, opt.num_views
    drawn_rig = random_rig(v, rng, opt.image_size, opt.focal, opt.distance, opt.height)
    rig = drawn_rig if rig is None else rig
    drawn = smooth_motion(body, t, gen, num_keyposes=max(2, t // 40))
    subject = drawn if motion is None else motion
    # The bystander: another motion, moved 1.5-2.5 m away from the subject's path.
    other = smooth_motion(body, t, gen, num_keyposes=max(2, t // 60), radius=0.2)
    ang = float(rng.uniform(0, 2 * math.pi))
    dist = float(rng.uniform(1.5, 2.5))
    other.transl = other.transl + torch.tensor([dist * math.cos(ang), 0.0, dist * math.sin(ang)])
    if bystander_motion is not None:
        other = bystander_motion
    if opt.z_up:
        subject, rig_z = rotate_world(body, subject, rig, Y_UP_TO_Z_UP)
        other, _ = rotate_world(body, other, rig, Y_UP_TO_Z_UP)
        rig = rig_z
    cams = rig.to_torch()
    kset = get_keypoint_set(opt.keypoint_set)
    k = len(kset)

    def project(params: BodyParams) -> Tensor:
        from mvspin.geometry import perspective_projection
        world = _world_keypoints(body, params, opt.keypoint_set)  # (T, K, 3)
        uv = perspective_projection(world[:, None], cams.K, cams.R, cams.t, cams.dist)  # (T, V, K, 2)
        depth = torch.einsum("vij,tkj->tvki", cams.R, world)[..., 2] + cams.t[:, None, 2]
        inside = points_inside_image(uv, cams.image_size[:, None, :]) & (depth > 0.1)
        return torch.cat([uv, inside[..., None].float()], -1)

    noise = torch.as_tensor(rng.uniform(*opt.noise_px, size=v), dtype=torch.float32)  # per camera
    subj = project(subject)
    subj[..., :2] += noise[None, :, None, None] * torch.randn(t, v, k, 2, generator=gen)
    keep = torch.rand(t, v, k, generator=gen) >= opt.drop_rate
    subj = subj * keep[..., None]

    flipped = torch.zeros(t, v, dtype=torch.bool)
    if opt.flip_view is not None and opt.flip_rate > 0:
        flipped[:, opt.flip_view] = torch.rand(t, generator=gen) < opt.flip_rate
        perm = torch.tensor(kset.flip_permutation)
        subj = torch.where(flipped[..., None, None], subj[:, :, perm], subj)
    outlier = torch.zeros(t, v, dtype=torch.bool)
    if opt.outlier_view is not None and opt.outlier_rate > 0:
        outlier[:, opt.outlier_view] = torch.rand(t, generator=gen) < opt.outlier_rate
        hit = outlier[..., None] & (torch.rand(t, v, k, generator=gen) < 0.5)
        theta = torch.rand(t, v, k, generator=gen) * 2 * math.pi
        radius = 40 + 110 * torch.rand(t, v, k, generator=gen)
        shift = torch.stack([radius * torch.cos(theta), radius * torch.sin(theta)], -1)
        subj[..., :2] = torch.where(hit[..., None] & (subj[..., 2:] > 0), subj[..., :2] + shift, subj[..., :2])

    bystander = torch.zeros(t, dtype=torch.bool)
    n_by = int(round(opt.bystander_rate * t))
    if n_by:
        start = int(rng.integers(0, t - n_by + 1))
        bystander[start:start + n_by] = True
    other_kp = project(other)
    other_kp[..., :2] += noise[None, :, None, None] * torch.randn(t, v, k, 2, generator=gen)
    other_kp = other_kp * (torch.rand(t, v, k, generator=gen) >= opt.drop_rate)[..., None]
    other_kp = other_kp * bystander[:, None, None, None]

    p = 2 if n_by else 1
    det = torch.zeros(t, v, p, k, 3)
    subject_index = torch.zeros(t, v, dtype=torch.long)
    det[:, :, 0] = subj
    if n_by:
        first = torch.zeros(t, v, dtype=torch.bool)
        for view in opt.bystander_first_views:
            if 0 <= view < v:
                first[:, view] = bystander
        det[:, :, 1] = other_kp
        det = torch.where(first[..., None, None, None], det.flip(2), det)
        subject_index = first.long()
    seen = (det[:, :, :, :, 2] > 0).any(-1)  # a camera that sees nobody lists nobody
    det = det * seen[..., None, None]
    subject_index = torch.where(torch.gather(seen, 2, subject_index[..., None])[..., 0], subject_index,
                                torch.full_like(subject_index, -1))
    return SyntheticRecording(opt, rig, subject, det, subject_index, flipped, outlier, bystander)


def write_openpose_folders(detections: Tensor | np.ndarray, camera_names: list[str], folder: str | Path,
                           stem: str = "frame") -> list[Path]:
    """Write ``(T, V, P, K, 3)`` detections as OpenPose JSON, one folder per camera and one file
    per frame (``<folder>/<camera>/<stem>_000000000012_keypoints.json``), people with no
    keypoint left out, missing joints ``0, 0, 0`` as OpenPose writes them."""
    import json

    from mvspin.atomic import write_bytes_atomic

    det = np.asarray(detections, dtype=np.float64)
    folder = Path(folder)
    written = []
    for v, name in enumerate(camera_names):
        for t in range(det.shape[0]):
            people = [{"person_id": [-1], "pose_keypoints_2d": [round(float(x), 3) for x in person.reshape(-1)],
                       "face_keypoints_2d": [], "hand_left_keypoints_2d": [], "hand_right_keypoints_2d": []}
                      for person in det[t, v] if (person[:, 2] > 0).any()]
            path = folder / name / f"{stem}_{t:012d}_keypoints.json"
            written.append(write_bytes_atomic(path, json.dumps({"version": 1.3, "people": people}).encode()))
    return written


def write_recording_videos(body: BodyModel, recording: SyntheticRecording, folder: str | Path, fps: float = 25.0,
                           background: int = 90) -> list[Path]:
    """Render the subject of a recording into one video per camera, ``<folder>/<camera>.mp4``
    (the body mesh coloured by body part on a grey background, lit by a sun; the bystander is
    not drawn). Frame ``n`` shows the recording's frame ``n``. Needs offscreen rendering
    (open3d); the rig's lens distortion is not rendered (:func:`make_rig_recording` makes none).

    Returns:
        the video paths, in the rig's camera order.
    """
    from mvspin.data.synthetic_capture import _part_palette, part_labels, render_views
    from mvspin.io_outputs import VideoWriter

    rig = recording.rig
    sizes = {tuple(c.image_size) for c in rig}
    if len(sizes) != 1:
        raise ValueError(f"write_recording_videos renders cameras of one image size, got {sorted(sizes)}")
    width, height = sizes.pop()
    cams = rig.to_torch(torch.float64)
    colours = _part_palette()[part_labels(body)]
    g = recording.gt
    folder = Path(folder)
    writers = [VideoWriter(folder / f"{cam.name}.mp4", fps) for cam in rig]
    try:
        for t0 in range(0, recording.num_frames, 32):
            sl = slice(t0, min(recording.num_frames, t0 + 32))
            with torch.no_grad():
                verts = body(body_pose=g.body_pose[sl], betas=g.betas[sl], global_orient=g.global_orient[sl],
                             transl=g.transl[sl]).vertices.double().cpu().numpy()
            for vert in verts:
                images, masks, _ = render_views(vert, body.faces, colours, cams.K.numpy(), cams.R.numpy(),
                                                cams.t.numpy(), (width, height))
                for writer, image, mask in zip(writers, images, masks):
                    writer.write(np.where(mask[..., None], image, np.uint8(background)))
        for writer in writers:
            writer.close()
    except BaseException:
        for writer in writers:
            writer.abort()
        raise
    return [w.path for w in writers]
