"""Running a trained regressor on images: batched crops -> SMPL bodies in full-image cameras.

:class:`Predictor` cuts SPIN's crops, runs them through an :class:`HMRRegressor` in batches, poses
the body model, and re-expresses the network's crop camera as a perspective camera of the
original image (:func:`crop_camera_to_image_camera`).

Full-image camera. The network predicts a weak-perspective crop camera ``[s, tx, ty]``; SPIN
reads it as a pinhole camera with focal length ``f = 5000`` px and principal point at the centre
of the ``c = 224`` px crop, the body translated by ``t = [tx, ty, 2 f / (c s)]``. The crop is the
square box of side ``b = scale * 200`` image pixels around ``center``, scaled by ``c / b``; so a
crop pixel ``q = f X_xy / X_z + c/2`` lands on the image pixel

    p = (q - c/2) b / c + center = (f b / c) X_xy / X_z + center,

which is a pinhole camera of the *original image* with focal ``F = f b / c`` and principal point
at the box centre, seeing the body at the same translation ``t``. This camera reproduces the
network's crop projection in the image exactly, for every vertex at every depth.

The common alternative (4D-Humans' ``cam_full``) puts the principal point at the image centre and
shifts the translation by ``2 (center - image_centre) / (s b)``; that agrees only at the root's
depth: a point ``dz`` metres nearer or farther moves by ``|center - image_centre| dz / t_z``
pixels (several pixels for a person near the border of a large image), so it is not used here.

Example:
    >>> body = BodyModel.free("low")  # doctest: +SKIP
    >>> predictor = Predictor(model, body, batch_size=16)  # doctest: +SKIP
    >>> pred = predictor.predict_images([image], [center], [scale])  # doctest: +SKIP
    >>> pred.K[0], pred.transl[0]  # full-image intrinsics and translation  # doctest: +SKIP
"""
from __future__ import annotations

import time
from collections.abc import Iterator, MutableMapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, fields
from typing import TYPE_CHECKING

import numpy as np
import torch
from torch import Tensor

from mvspin.fitting.view_estimates import fuse_view_predictions  # its home is fitting; re-exported here
from mvspin.geometry import (
    SPIN_CROP_SIZE,
    SPIN_FOCAL_LENGTH,
    SPIN_SCALE_UNIT,
    crop_cam_to_translation,
    image_to_crop_points,
    matrix_to_axis_angle,
)
from mvspin.regressor.hmr import HMRRegressor
from mvspin.regressor.preprocess import PREPROCESSING_MODES, crop_for_network, normalize_crop

if TYPE_CHECKING:
    from mvspin.body import BodyModel
    from mvspin.fitting import MVSMPLifyConfig, SMPLifyConfig

__all__ = [
    "Prediction",
    "Predictor",
    "crop_camera_to_image_camera",
    "fuse_view_predictions",
    "posed_prediction",
    "refine_views_with_mvsmplify",
    "refine_with_smplify",
    "timed",
    "whole_image_box",
]


def crop_camera_to_image_camera(
    cam: Tensor, center: Tensor, scale: Tensor, focal_length: float = SPIN_FOCAL_LENGTH,
    crop_size: int = SPIN_CROP_SIZE, scale_unit: float = SPIN_SCALE_UNIT,
) -> tuple[Tensor, Tensor]:
    """Express SPIN's crop camera as a perspective camera of the full image (see module doc).

    Args:
        cam: (*, 3) weak-perspective crop cameras ``[s, tx, ty]``.
        center: (*, 2) crop box centres, image pixels.
        scale: (*) box sides / ``scale_unit``.
        focal_length: the crop camera's focal length (SPIN: 5000 px).
        crop_size: crop side the camera refers to (SPIN: 224 px).
        scale_unit: pixels per unit of ``scale`` (SPIN: 200).

    Returns:
        ``(K (*, 3, 3), transl (*, 3))``: intrinsics with focal ``focal_length * box / crop_size``
        and principal point ``center``, and the body translation (metres, camera frame). A body
        posed with ``transl`` and projected with ``K`` lands exactly where the crop projection,
        mapped back to the image, puts it.
    """
    if cam.shape[-1:] != (3,) or center.shape[-1:] != (2,) or center.shape[:-1] != cam.shape[:-1] \
            or scale.shape != cam.shape[:-1]:
        raise ValueError(f"expected cam (*, 3), center (*, 2) and scale (*) with equal leading dims, "
                         f"got {tuple(cam.shape)}, {tuple(center.shape)}, {tuple(scale.shape)}")
    transl = crop_cam_to_translation(cam, focal_length, crop_size)
    focal = focal_length * scale * scale_unit / crop_size
    K = torch.zeros(*cam.shape[:-1], 3, 3, dtype=cam.dtype, device=cam.device)
    K[..., 0, 0] = focal
    K[..., 1, 1] = focal
    K[..., :2, 2] = center.to(cam.dtype)
    K[..., 2, 2] = 1.0
    return K, transl


def whole_image_box(width: int, height: int) -> tuple[np.ndarray, float]:
    """(center, scale) of the square box centred on the image that covers all of it.

    Pixel centres are at integer coordinates (the convention of :func:`crop_image`), so the
    image spans ``[-0.5, width - 0.5]`` and its centre is ``((width - 1) / 2, (height - 1) / 2)``.
    """
    if width < 1 or height < 1:
        raise ValueError(f"image size must be positive, got {width}x{height}")
    return np.array([(width - 1) / 2.0, (height - 1) / 2.0]), max(width, height) / SPIN_SCALE_UNIT


@dataclass
class Prediction:
    """Regressor output for N crops, posed and placed in each full image's camera.

    Attributes:
        rotmat: (N, 24, 3, 3) joint rotations, joint 0 = global orientation (camera frame).
        betas: (N, 10) shape coefficients.
        cam_crop: (N, 3) SPIN crop camera ``[s, tx, ty]``.
        center: (N, 2) crop box centres, image pixels.
        scale: (N,) box sides / 200.
        K: (N, 3, 3) full-image intrinsics (principal point at the box centre, module doc).
        transl: (N, 3) body translation in that camera, metres.
        joints: (N, 24, 3) posed joints in the camera frame (translation included).
        vertices: (N, V, 3) posed mesh in the camera frame, or None when not requested.
    """

    rotmat: Tensor
    betas: Tensor
    cam_crop: Tensor
    center: Tensor
    scale: Tensor
    K: Tensor
    transl: Tensor
    joints: Tensor
    vertices: Tensor | None = None

    def __len__(self) -> int:
        return int(self.rotmat.shape[0])

    @property
    def global_orient(self) -> Tensor:
        """(N, 3) root rotation, axis-angle."""
        return matrix_to_axis_angle(self.rotmat[:, 0])

    @property
    def body_pose(self) -> Tensor:
        """(N, 69) body joint rotations, axis-angle, SMPL order."""
        return matrix_to_axis_angle(self.rotmat[:, 1:]).reshape(len(self), 69)

    def select(self, index: slice | Sequence[int] | Tensor) -> Prediction:
        """The predictions at ``index`` (a slice or indices), as a new :class:`Prediction`."""
        return Prediction(**{f.name: None if getattr(self, f.name) is None else getattr(self, f.name)[index]
                             for f in fields(self)})

    @staticmethod
    def concatenate(parts: Sequence[Prediction]) -> Prediction:
        """Join predictions along N (vertices kept only if every part has them)."""
        if not parts:
            raise ValueError("nothing to concatenate")
        out = {}
        for f in fields(Prediction):
            values = [getattr(p, f.name) for p in parts]
            out[f.name] = None if any(v is None for v in values) else torch.cat(values)
        return Prediction(**out)

    def to(self, device: torch.device | str) -> Prediction:
        """A copy with every tensor on ``device``."""
        return Prediction(**{f.name: None if getattr(self, f.name) is None else getattr(self, f.name).to(device)
                             for f in fields(self)})


@contextmanager
def timed(timings: MutableMapping[str, float] | None, stage: str,
          device: torch.device | str | None = None) -> Iterator[None]:
    """Add the wall time of the block, in seconds, to ``timings[stage]``; nothing when
    ``timings`` is None. On a CUDA ``device`` queued GPU work is waited for before and after, so
    the seconds are the block's own.

    Example:
        >>> seconds: dict[str, float] = {}
        >>> with timed(seconds, "crop"):
        ...     pass
        >>> list(seconds)
        ['crop']
    """
    if timings is None:
        yield
        return
    cuda = device is not None and torch.device(device).type == "cuda"
    if cuda:
        torch.cuda.synchronize(device)
    start = time.perf_counter()
    try:
        yield
    finally:
        if cuda:
            torch.cuda.synchronize(device)
        timings[stage] = timings.get(stage, 0.0) + time.perf_counter() - start


class Predictor:
    """Batched single-image inference: crops -> regressor -> body model -> full-image camera.

    Args:
        model: the regressor (put in eval mode here; its mean parameters are its own).
        body: the body model the regressor was trained with.
        device: where the network and body model run (default: the model's device).
        batch_size: crops per network call.
        input_size: side of the network input crops in pixels (SPIN: 224). The camera geometry
            always refers to SPIN's 224-px crop, so a different input size only changes the
            resampling.
        focal_length: the crop camera's focal length (SPIN: 5000 px).
        preprocessing: how crops are cut (:data:`mvspin.regressor.preprocess.PREPROCESSING_MODES`):
            ``"exact"`` (mvspin's sub-pixel crop) or ``"spin"`` (SPIN's own crop and contrast
            stretch, for SPIN's checkpoints; see :func:`~mvspin.regressor.preprocess.spin_crop`).
    """

    def __init__(self, model: HMRRegressor, body: BodyModel, device: torch.device | str | None = None,
                 batch_size: int = 16, input_size: int = SPIN_CROP_SIZE,
                 focal_length: float = SPIN_FOCAL_LENGTH, preprocessing: str = "exact") -> None:
        if preprocessing not in PREPROCESSING_MODES:
            raise ValueError(f"preprocessing must be one of {', '.join(PREPROCESSING_MODES)}, got {preprocessing!r}")
        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
        if input_size < 32:
            raise ValueError(f"input_size must be >= 32 pixels, got {input_size}")
        self.device = torch.device(device) if device is not None else next(model.parameters()).device
        self.model = model.to(self.device).eval()
        self.body = body.to(self.device)
        self.batch_size = batch_size
        self.input_size = input_size
        self.focal_length = focal_length
        self.preprocessing = preprocessing

    def crop(self, image: np.ndarray, center: np.ndarray, scale: float) -> Tensor:
        """One network input (3, S, S): SPIN's crop of an (H, W, 3) uint8 RGB image, normalised."""
        crop, _ = crop_for_network(image, center, scale, mode=self.preprocessing, crop_size=self.input_size)
        return normalize_crop(crop)

    @torch.no_grad()
    def predict_crops(self, crops: Tensor, center: Tensor | np.ndarray, scale: Tensor | np.ndarray,
                      with_vertices: bool = True,
                      timings: MutableMapping[str, float] | None = None) -> Prediction:
        """Run normalised crops through the network and the body model, ``batch_size`` at a time.

        Args:
            crops: (N, 3, S, S) ImageNet-normalised crops (:meth:`crop`).
            center: (N, 2) box centres of the crops, image pixels.
            scale: (N,) box sides / 200.
            with_vertices: also return the posed mesh (else joints only, cheaper).
            timings: if given, seconds spent are added under ``"network"`` and ``"body model"``.

        Returns:
            :class:`Prediction` on the CPU (float32).
        """
        if crops.ndim != 4 or crops.shape[1] != 3:
            raise ValueError(f"expected crops (N, 3, S, S), got {tuple(crops.shape)}")
        n = crops.shape[0]
        center_t = torch.as_tensor(np.asarray(center, dtype=np.float64)).reshape(-1, 2)
        scale_t = torch.as_tensor(np.asarray(scale, dtype=np.float64)).reshape(-1)
        if center_t.shape[0] != n or scale_t.shape[0] != n:
            raise ValueError(f"{n} crops but {center_t.shape[0]} centres and {scale_t.shape[0]} scales")
        if not (torch.isfinite(scale_t).all() and (scale_t > 0).all() and torch.isfinite(center_t).all()):
            raise ValueError("crop centres must be finite and scales positive")
        parts = []
        for start in range(0, n, self.batch_size):
            stop = min(start + self.batch_size, n)
            with timed(timings, "network", self.device):
                out = self.model(crops[start:stop].to(self.device, torch.float32))
            with timed(timings, "body model", self.device):
                # The camera conversion in float64: the focal is ~5000 b/224 px and depths ~50 m.
                K, transl = crop_camera_to_image_camera(
                    out.cam.double(), center_t[start:stop].to(self.device),
                    scale_t[start:stop].to(self.device), self.focal_length)
                dtype = self.body.J_template.dtype
                posed = self.body(body_pose=out.rotmat[:, 1:].to(dtype), betas=out.betas.to(dtype),
                                  global_orient=out.rotmat[:, :1].to(dtype), transl=transl.to(dtype))
                parts.append(Prediction(
                    rotmat=out.rotmat.float().cpu(), betas=out.betas.float().cpu(),
                    cam_crop=out.cam.float().cpu(), center=center_t[start:stop].float(),
                    scale=scale_t[start:stop].float(), K=K.cpu(), transl=transl.float().cpu(),
                    joints=posed.joints.float().cpu(),
                    vertices=posed.vertices.float().cpu() if with_vertices else None))
        if not parts:
            raise ValueError("no crops given")
        return Prediction.concatenate(parts)

    def predict_images(self, images: Sequence[np.ndarray], centers: Sequence[np.ndarray] | np.ndarray,
                       scales: Sequence[float] | np.ndarray, with_vertices: bool = True,
                       timings: MutableMapping[str, float] | None = None) -> Prediction:
        """Crop each image at its box and predict (one person per entry; repeat an image for
        several people).

        Args:
            images: (H, W, 3) uint8 RGB images (sizes may differ).
            centers: (N, 2) box centres, image pixels.
            scales: (N,) box sides / 200.
            with_vertices: also return the posed meshes.
            timings: if given, seconds are added under ``"crop"``, ``"network"`` and
                ``"body model"``.
        """
        if len(images) != len(centers) or len(images) != len(scales):
            raise ValueError(f"{len(images)} images but {len(centers)} centres and {len(scales)} scales")
        with timed(timings, "crop", torch.device("cpu")):
            crops = torch.stack([self.crop(img, np.asarray(c), float(s))
                                 for img, c, s in zip(images, centers, scales)]) if len(images) else None
        if crops is None:
            raise ValueError("no images given")
        return self.predict_crops(crops, np.asarray(centers, dtype=np.float64),
                                  np.asarray(scales, dtype=np.float64), with_vertices, timings)


def _crop_keypoints(pred: Prediction, keypoints: Tensor | np.ndarray, crop_size: int) -> Tensor:
    """Image-pixel keypoints (N, K, 3) -> the crop pixels SMPLify fits in (confidence kept;
    NaN coordinates or confidences count as missing)."""
    kp = torch.as_tensor(np.asarray(keypoints, dtype=np.float64))
    if kp.ndim != 3 or kp.shape[0] != len(pred) or kp.shape[2] != 3:
        raise ValueError(f"keypoints must be (N={len(pred)}, K, 3) (x, y, confidence), got {tuple(kp.shape)}")
    finite = torch.isfinite(kp).all(-1, keepdim=True)
    conf = torch.where(finite, kp[..., 2:], torch.zeros_like(kp[..., 2:])).clamp(min=0.0)
    xy = image_to_crop_points(torch.where(finite, kp[..., :2], torch.zeros_like(kp[..., :2])),
                              pred.center.double(), pred.scale.double(), crop_size)
    return torch.cat([xy, conf], dim=-1)


def posed_prediction(pred: Prediction, body: BodyModel, rotmat: Tensor, betas: Tensor,
                     transl: Tensor | None = None, cam_crop: Tensor | None = None,
                     focal_length: float = SPIN_FOCAL_LENGTH, crop_size: int = SPIN_CROP_SIZE) -> Prediction:
    """``pred``'s crops with new body parameters, posed, with meshes.

    The crop boxes (``pred.center``, ``pred.scale``) stay; the full-image intrinsics are those of
    ``cam_crop`` in the same boxes (:func:`crop_camera_to_image_camera`). Used for fitted
    parameters (SMPLify in the crop cameras) and for one body fused from several views.

    Args:
        pred: N predictions whose boxes the new parameters refer to.
        body: the body model.
        rotmat: (N, 24, 3, 3) joint rotations, joint 0 the root in each crop's camera frame.
        betas: (N, num_betas) shape coefficients.
        transl: (N, 3) body translations in each camera, metres (default ``pred.transl``).
        cam_crop: (N, 3) crop cameras ``[s, tx, ty]`` (default ``pred.cam_crop``).
        focal_length, crop_size: the crop camera's focal length (px) and crop side (px).

    Returns:
        A :class:`Prediction` on the CPU (float32 parameters, float64 ``K``), with vertices.
    """
    transl = pred.transl if transl is None else transl
    cam_crop = pred.cam_crop if cam_crop is None else cam_crop
    n = len(pred)
    for name, value, shape in (("rotmat", rotmat, (n, 24, 3, 3)), ("transl", transl, (n, 3)),
                               ("cam_crop", cam_crop, (n, 3))):
        if tuple(value.shape) != shape:
            raise ValueError(f"{name} must be {shape} for {n} predictions, got {tuple(value.shape)}")
    if betas.ndim != 2 or betas.shape[0] != n:
        raise ValueError(f"betas must be ({n}, num_betas), got {tuple(betas.shape)}")
    dtype, device = body.J_template.dtype, body.J_template.device
    with torch.no_grad():
        posed = body(body_pose=rotmat[:, 1:].to(device, dtype), betas=betas.to(device, dtype),
                     global_orient=rotmat[:, :1].to(device, dtype), transl=transl.to(device, dtype))
    K, _ = crop_camera_to_image_camera(cam_crop.double().cpu(), pred.center.double(), pred.scale.double(),
                                       focal_length, crop_size)
    return Prediction(rotmat=rotmat.float().cpu(), betas=betas.float().cpu(), cam_crop=cam_crop.float().cpu(),
                      center=pred.center, scale=pred.scale, K=K, transl=transl.float().cpu(),
                      joints=posed.joints.float().cpu(), vertices=posed.vertices.float().cpu())


def refine_with_smplify(pred: Prediction, keypoints: Tensor | np.ndarray, body: BodyModel,
                        keypoint_set: str = "openpose25", config: SMPLifyConfig | None = None,
                        ) -> tuple[Prediction, Tensor]:
    """Refine each prediction with single-view SMPLify (SPIN's variant) on its 2D keypoints.

    The fit runs in the crop camera (focal 5000, 224 px crop) from the network's estimate, as in
    SPIN; since the crop box does not change, the refined translation goes with the same
    full-image ``K``. Rows whose keypoints are all at zero confidence keep the network's values.

    Args:
        pred: N network predictions (:meth:`Predictor.predict_crops`).
        keypoints: (N, K, 3) keypoints of ``keypoint_set`` in image pixels (x, y, confidence).
        body: the body model of the predictions (its device is used).
        keypoint_set: the keypoints' convention (OpenPose: ``openpose25``).
        config: SMPLify settings (SPIN's by default).

    Returns:
        ``(refined prediction with meshes, reprojection error (N,) in image pixels)`` (the
        confidence-weighted mean keypoint distance; ``inf`` where nothing was fitted).
    """
    from mvspin.fitting import SMPLify, SMPLifyConfig

    config = config if config is not None else SMPLifyConfig()
    device, dtype = body.J_template.device, body.J_template.dtype
    kp = _crop_keypoints(pred, keypoints, config.crop_size).to(device, dtype)
    fit = SMPLify(body, config, keypoint_set).fit(kp, pred.rotmat.to(device, dtype), pred.betas.to(device, dtype),
                                                  pred.cam_crop.to(device, dtype))
    rotmat = fit.rotmat[:, 0].detach()
    refined = posed_prediction(pred, body, rotmat, fit.betas.detach(), fit.transl[:, 0].detach(),
                                fit.cam[:, 0].detach(), config.focal_length, config.crop_size)
    # Crop pixels -> image pixels: the crop is the box resampled by 224 / box side.
    box = pred.scale.double() * SPIN_SCALE_UNIT / config.crop_size
    return refined, fit.reprojection_error.detach().double().cpu() * box


def refine_views_with_mvsmplify(pred: Prediction, keypoints: Tensor | np.ndarray, body: BodyModel,
                                keypoint_set: str = "openpose25", config: MVSMPLifyConfig | None = None,
                                ) -> tuple[Prediction, Tensor]:
    """Fit one body to V views of one moment with MV-SMPLify's per-view mode (the paper's).

    Shared body pose and betas start from the rotation mean / mean of the per-view predictions;
    each view keeps its root orientation and crop-camera translation.

    Args:
        pred: V predictions, one per view of the same person.
        keypoints: (V, K, 3) keypoints of ``keypoint_set`` in each view's image pixels.
        body: the body model.
        keypoint_set: the keypoints' convention (OpenPose: ``openpose25``).
        config: MV-SMPLify settings (``mode`` must be ``per_view``; paper's values by default).

    Returns:
        ``(V rows sharing body pose and betas, with meshes; reprojection error (V,) in each
        view's image pixels)``.
    """
    from mvspin.fitting import MVSMPLify, MVSMPLifyConfig, PerViewEstimate

    config = config if config is not None else MVSMPLifyConfig(mode="per_view")
    if config.mode != "per_view":
        raise ValueError(f"views without calibration need mode='per_view', got {config.mode!r}")
    device, dtype = body.J_template.device, body.J_template.dtype
    kp = _crop_keypoints(pred, keypoints, config.crop_size).to(device, dtype)
    init = PerViewEstimate(rotmat=pred.rotmat[None].to(device, dtype), betas=pred.betas[None].to(device, dtype),
                           cam=pred.cam_crop[None].to(device, dtype))
    fit = MVSMPLify(body, config, keypoint_set).fit_per_view(kp[None], init)
    v = len(pred)
    refined = posed_prediction(pred, body, fit.rotmat[0].detach(), fit.betas.detach().expand(v, -1),
                                fit.transl[0].detach(), fit.cam[0].detach(), config.focal_length, config.crop_size)
    box = pred.scale.double() * SPIN_SCALE_UNIT / config.crop_size
    return refined, fit.view_reprojection_error[0].detach().double().cpu() * box
