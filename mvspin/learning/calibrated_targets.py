"""Calibrated MV-SMPLify in the training loop: one world-frame body per bundle from its cameras.

With ``fits.fitting.mode: calibrated`` (every training file carries cameras) the loop fits each
bundle with :meth:`~mvspin.fitting.MVSMPLify.fit_calibrated` on the stored cameras instead of
the per-view crop cameras. An augmented bundle is not a consistent rig (each view is rotated and
scaled on its own, a flip mirrors the subject), so the fit runs in the **un-augmented** image
frames and its result is brought back:

1. :func:`image_keypoints` recovers each view's image-pixel keypoints from the augmented crop
   keypoints: the inverse of the crop transform ``A`` (``crop_transform``, image px -> augmented
   crop px) and, for a flipped bundle, the left/right swap undone
   (:func:`~mvspin.learning.augment.swap_left_right`; a mirror swap is its own inverse).
2. :func:`network_start` brings the network's per-view estimates (augmented crop frames) to the
   un-augmented camera frames (:func:`~mvspin.learning.fits_store.from_augmented`); the fit
   takes ``R_v^T @ orient_v`` to the world and fuses the views (SO(3) means of the orientation
   and the body pose, mean betas); the translation comes from the fit's own linear solve. The
   estimates are used as the camera-frame orientations they are trained to be (the dataset's
   ground-truth orientation is ``R_v @ orient_world``, no crop-camera correction), so no
   ``crop_center`` is given.
3. The world fit becomes the fits store's entry: per view ``R_v @ orient_world`` (the
   un-augmented camera frame, the frame the store keeps), the shared body pose and betas.
4. Its error is comparable with the per-view mode's: the fitted body is projected through every
   real camera (distortion included) into image pixels, mapped by ``A`` into the augmented crop,
   and compared with the crop keypoints in the 224 px fitting crop (:mod:`mvspin.learning.fit_frame`);
   the residuals, taken back to the un-augmented crop, are scored exactly as in the per-view mode
   (:func:`mvspin.learning.fit_acceptance.score_residuals`: SPIN's fitting loss, which the store
   ranks by, and the mean pixel error, each the mean over the views the fit used).

Why the network and not the stored fit as the start: this is the loop's premise (MV-SPIN,
section 3.4: the network's estimates initialise MV-SMPLify, a better network gives better fits),
and it is what the per-view mode does; the store still keeps the better of the new and the
stored fit. One guard: a bundle whose views' estimates disagree about the body's world
orientation (:func:`world_start`, more than ``fits.calibrated_agreement_deg`` from their mean)
does not describe one body; an untrained network, which predicts about the same camera-frame
orientation in every view, is the typical case. Such a bundle starts from its triangulated
keypoints instead (the calibrated mode's start without a network), so a network trained from
scratch still gets fits. Measured on 4 tiny synthetic bundles, 3 + 3 iterations: the
mean-parameter network start leaves every fit unexplained (9-20 px in 64 px images), the
triangulated start 1.2-2.5 px.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

import numpy as np
import torch
from torch import Tensor

from calibration import CameraTensors
from mvspin.fitting import FitResult, MVSMPLify, PerViewEstimate, WorldEstimate, world_estimate_from_views
from mvspin.geometry import SPIN_SCALE_UNIT, geodesic_distance, perspective_projection
from mvspin.learning.augment import swap_left_right
from mvspin.learning.fit_acceptance import FitScores, score_residuals
from mvspin.learning.fit_frame import FIT_CROP_SIZE, to_fitting_frame
from mvspin.learning.fits_store import flip_body_pose, from_augmented

__all__ = ["CalibratedFit", "image_keypoints", "batch_cameras", "network_start", "to_crop_scale", "world_start",
           "crop_scores", "fit_calibrated_batch"]


@dataclass
class CalibratedFit:
    """A calibrated in-loop fit of B bundles, in the fits store's frame.

    Attributes:
        global_orient: ``(B, V, 3, 3)`` root orientation in each view's un-augmented camera frame
            (``R_v @ world_orient``).
        body_pose: ``(B, 23, 3, 3)`` shared body pose (the subject as recorded, not mirrored).
        betas: ``(B, num_betas)``.
        error: ``(B,)`` mean over used views of the crop-frame reprojection error, un-augmented
            pixels of the 224 px fitting crop (``inf`` where the fit failed).
        view_error: ``(B, V)`` the same per view (augmented crop pixels times the crop-scale factor).
        fit: the fitter's result (world frame, image pixels).
        scores: SPIN's fitting loss and the pixel errors from the same crop residuals
            (:func:`~mvspin.learning.fit_acceptance.score_residuals`, un-augmented 224 px crop):
            what the store keeps and ranks by (``scores.error_px`` is ``error``).
    """

    global_orient: Tensor
    body_pose: Tensor
    betas: Tensor
    error: Tensor
    view_error: Tensor
    fit: FitResult
    scores: Optional[FitScores] = None


def image_keypoints(keypoints_2d: Tensor, crop_transform: Tensor, flip: Tensor, keypoint_set: str) -> Tensor:
    """Un-augmented image keypoints ``(B, V, K, 3)`` (x, y in image pixels, confidence) of a batch.

    Inverts the training dataset's ``keypoints_2d = swap(A @ image keypoints)`` (float64 inside);
    keypoints with confidence 0 stay ``(0, 0, 0)``.

    Args:
        keypoints_2d: ``(B, V, K, 3)`` augmented crop keypoints (the dataset field).
        crop_transform: ``(B, V, 3, 3)`` ``A``, image pixels -> augmented crop pixels.
        flip: ``(B,)`` bool, the bundles' shared flip.
        keypoint_set: the name of the keypoints' set (its left/right swap rule).
    """
    kp = keypoints_2d.detach().to("cpu", torch.float64).numpy()
    a_inv = np.linalg.inv(crop_transform.detach().to("cpu", torch.float64).numpy())  # (B, V, 3, 3)
    xy = np.einsum("bvij,bvkj->bvki", a_inv[..., :2, :2], kp[..., :2]) + a_inv[:, :, None, :2, 2]
    out = np.concatenate([xy, kp[..., 2:3]], axis=-1)
    out[kp[..., 2] <= 0] = 0.0
    flipped = flip.detach().cpu().numpy().astype(bool)
    if flipped.any():
        out[flipped] = swap_left_right(out[flipped], keypoint_set)
    return torch.from_numpy(out).to(keypoints_2d.device, keypoints_2d.dtype)


def batch_cameras(batch: dict[str, Tensor]) -> CameraTensors:
    """The stored cameras of a batch as :class:`~calibration.CameraTensors` with leading dims
    ``(B, V)`` (fields ``camera_K``, ``camera_R``, ``camera_t``, ``camera_dist``, ``image_size``)."""
    dist = batch["camera_dist"]
    return CameraTensors(K=batch["camera_K"], R=batch["camera_R"], t=batch["camera_t"],
                         dist=dist if bool((dist != 0).any()) else None, image_size=batch["image_size"])


def network_start(rotmat: Tensor, betas: Tensor, camera_augmentation: Tensor, flip: Tensor) -> PerViewEstimate:
    """Per-view network estimates of augmented crops -> estimates in the un-augmented camera frames.

    Args:
        rotmat: ``(B, V, 24, 3, 3)`` (joint 0: orientation in the augmented crop frame).
        betas: ``(B, V, num_betas)``.
        camera_augmentation: ``(B, V, 3, 3)`` the bundles' ``M_v``.
        flip: ``(B,)`` bool.

    Returns:
        :class:`~mvspin.fitting.PerViewEstimate` (detached, no crop camera) whose orientations
        are in each view's stored camera frame and whose poses are un-mirrored.
    """
    rotmat = rotmat.detach()
    b, v = rotmat.shape[:2]
    pose = rotmat[:, :, 1:]
    orient, _ = from_augmented(rotmat[:, :, 0], pose[:, 0], camera_augmentation, flip)
    pose = torch.where(flip.view(b, 1, 1, 1, 1), flip_body_pose(pose), pose)
    return PerViewEstimate(rotmat=torch.cat([orient.unsqueeze(2), pose], dim=2), betas=betas.detach())


def to_crop_scale(keypoints: Tensor, cameras: CameraTensors, box_scale: Tensor,
                  crop_size: int = FIT_CROP_SIZE) -> tuple[Tensor, CameraTensors]:
    """Image keypoints and cameras rescaled per view so that each view's crop box is
    ``crop_size`` pixels: ``s_v = crop_size / (200 * scale_v)`` on x, y and on the first two
    rows of ``K`` (distortion acts before ``K``, so the scaled camera projects exactly onto the
    scaled keypoints).

    SMPLify's weights (priors against pixel residuals, Geman-McClure sigma 100 px) are tuned for a
    224 px crop; in image pixels the person's size, and with it the balance of data and priors,
    would depend on the image resolution. Measured on 4 clean synthetic bundles (96 px images,
    persons ~60 px, 3 views), 100 + 100 + 100 iterations from triangulation: PA-MPJPE
    42-52 mm in image pixels, 13-16 mm at 224 px crop scale (from the ground truth: 32-37 mm
    and 12-14 mm: in image pixels the priors pull the body away from exact keypoints).

    Args:
        keypoints: ``(B, V, K, 3)`` image pixels.
        cameras: leading dims ``(B, V)``.
        box_scale: ``(B, V)`` the crop boxes' ``scale`` (side / 200 px).
        crop_size: the fitting crop's side, pixels.
    """
    s = (crop_size / (SPIN_SCALE_UNIT * box_scale)).to(keypoints)  # (B, V)
    kp = keypoints.clone()
    kp[..., :2] = keypoints[..., :2] * s[..., None, None]
    K = cameras.K.clone()
    K[..., :2, :] = cameras.K[..., :2, :] * s[..., None, None].to(K)
    return kp, cameras._replace(K=K)


def world_start(start: PerViewEstimate, camera_R: Tensor, view_weight: Tensor, agreement_deg: float) -> WorldEstimate:
    """The network's per-view estimates fused into one world-frame start per bundle
    (:func:`~mvspin.fitting.world_estimate_from_views`: ``R_v^T @ orient_v`` averaged on SO(3),
    body pose by rotation mean, mean betas), valid only where the views agree.

    Args:
        start: :func:`network_start` estimates (orientations in the stored camera frames).
        camera_R: ``(B, V, 3, 3)`` world-to-camera rotations.
        view_weight: ``(B, V)`` views that count (e.g. those with a confident keypoint).
        agreement_deg: a bundle is ``valid`` when every counted view's world orientation lies
            within this angle (geodesic) of the views' mean; the others start from triangulation.
    """
    est = world_estimate_from_views(start.rotmat, start.betas, camera_R.to(start.rotmat), view_weight)
    world = camera_R.to(start.rotmat).transpose(-1, -2) @ start.rotmat[:, :, 0]
    angle = torch.rad2deg(geodesic_distance(est.global_orient[:, None], world))
    agree = (torch.where(view_weight > 0, angle, torch.zeros_like(angle)) <= agreement_deg).all(1)
    est.valid = est.valid & agree
    return est


def crop_scores(fitter: MVSMPLify, fit: FitResult, batch: dict[str, Tensor], crop_size: int) -> FitScores:
    """Scores of a world-frame fit in the batch's crops, comparable with the per-view mode's.

    The fitted body's keypoints are projected through each view's real camera (distortion
    included), mapped into the augmented crop by ``crop_transform`` and compared with the crop
    keypoints (left/right order undone for flipped bundles), both in the 224 px fitting crop
    (:func:`~mvspin.learning.fit_frame.to_fitting_frame`); the residuals, taken back to the
    un-augmented crop, give SPIN's fitting loss and the mean pixel error exactly as in the
    per-view mode (:func:`~mvspin.learning.fit_acceptance.score_residuals`).

    Args:
        crop_size: side of the batch's crops (``data.crop_size``), pixels.

    Returns:
        :class:`~mvspin.learning.fit_acceptance.FitScores` (``inf`` for bundles the fit reports
        unfitted).
    """
    dev, dt = fitter.device, fitter.dtype
    cams = batch_cameras(batch).to(dev, dt)
    # Image pixels -> augmented crop pixels of the 224 px fitting crop (a pure scale of the crop).
    A = batch["crop_transform"].to(dev, dt).clone()
    A[..., :2, :] = A[..., :2, :] * (FIT_CROP_SIZE / float(crop_size))
    with torch.no_grad():
        points = fitter.posed_keypoints(fit.body_pose, fit.betas, fit.world_orient[:, None],
                                        fit.world_transl[:, None])  # (B, 1, M, 3) world
        uv = perspective_projection(points, cams.K, cams.R, cams.t, cams.dist)  # (B, V, M, 2) image px
        uv = torch.einsum("bvij,bvmj->bvmi", A[..., :2, :2], uv) + A[:, :, None, :2, 2]
        crop = batch["keypoints_2d"]
        flip = batch["flip"].to(crop.device)
        if bool(flip.any()):
            unswapped = torch.from_numpy(swap_left_right(crop.detach().cpu().numpy(), fitter.keypoint_set))
            crop = torch.where(flip.view(-1, 1, 1, 1), unswapped.to(crop), crop)
        xy, conf = fitter.prepare_keypoints(to_fitting_frame(crop, crop_size))
        return score_residuals(fitter, uv - xy, conf, fit.view_used, fit.fitted, batch["camera_augmentation"],
                               batch["scale_factor"])


def fit_calibrated_batch(fitter: MVSMPLify, batch: dict[str, Tensor], start: PerViewEstimate | None,
                         crop_size: int, agreement_deg: float = 180.0,
                         fit_crop_size: Optional[int] = FIT_CROP_SIZE) -> CalibratedFit:
    """Fit every bundle of a training batch in the rig's world frame and express it in the store's frame.

    Args:
        fitter: an :class:`~mvspin.fitting.MVSMPLify` of the dataset's keypoint set.
        batch: a training batch (:class:`~mvspin.learning.training_dataset.TrainingDataset`
            fields, ``(B, V, ...)``), with cameras.
        start: :func:`network_start` of the network's estimates, or None (every bundle starts
            from its triangulated keypoints: static fits without a network).
        crop_size: side of the batch's crops (``data.crop_size``), pixels.
        agreement_deg: bundles whose views' estimates disagree by more than this
            (:func:`world_start`) start from triangulated keypoints; 180 keeps every network start.
        fit_crop_size: fit in each view's image scaled so its crop box is this many pixels
            (:func:`to_crop_scale`; SPIN's 224, the scale SMPLify's weights are tuned for);
            None: in image pixels.

    Returns:
        :class:`CalibratedFit`.

    Raises:
        CameraMismatchError: the stored cameras cannot describe the keypoints.
        ValueError: a bundle without cameras.
    """
    if not bool(batch["has_camera"].all()):
        raise ValueError("the calibrated fit needs cameras on every bundle (has_camera is False for some)")
    keypoints = image_keypoints(batch["keypoints_2d"], batch["crop_transform"], batch["flip"], fitter.keypoint_set)
    cameras = batch_cameras(batch)
    if fit_crop_size is not None:
        keypoints, cameras = to_crop_scale(keypoints, cameras, batch["scale"], fit_crop_size)
    init = None
    if start is not None:
        seen = (batch["keypoints_2d"][..., 2] > 0).any(-1).to(start.rotmat)
        init = world_start(start, batch["camera_R"], seen, agreement_deg)
    fit = fitter.fit_calibrated(keypoints, cameras, init)
    scores = crop_scores(fitter, fit, batch, crop_size)
    return CalibratedFit(global_orient=fit.global_orient, body_pose=fit.body_pose, betas=fit.betas,
                         error=scores.error_px, view_error=scores.view_error_px, fit=fit, scores=scores)
