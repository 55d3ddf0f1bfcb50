"""SPIN's HMR regressor: a ResNet trunk and an iterative error-feedback head.

Parameter names are SPIN's (``models/hmr.py``): the ResNet layers sit directly on the module
(``conv1.weight``, ``layer1.0.conv1.weight``, ...), then ``fc1``, ``fc2``, ``decpose``,
``decshape``, ``deccam`` and the buffers ``init_pose``, ``init_shape``, ``init_cam``; a SPIN
``model_checkpoint.pt`` therefore loads strictly (331 keys for ResNet-50), see
:mod:`mvspin.regressor.checkpoint`.

Outputs: 24 rotation matrices in SMPL's joint order (joint 0 = global orientation), 10 betas and
SPIN's weak-perspective crop camera ``[s, tx, ty]``
(``mvspin.geometry.crop_cam_to_translation`` turns it into a translation for focal length 5000).
The 6D pose uses SPIN's convention (``mvspin.geometry.rot6d_to_matrix``).

Example:
    >>> import torch
    >>> model = HMRRegressor(depth=18).eval()
    >>> out = model(torch.zeros(2, 3, 128, 128))
    >>> out.rotmat.shape, out.betas.shape, out.cam.shape
    (torch.Size([2, 24, 3, 3]), torch.Size([2, 10]), torch.Size([2, 3]))
"""
from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, fields

import numpy as np
import torch
from torch import nn

from mvspin.geometry import rot6d_to_matrix
from mvspin.regressor.backbone import ResNet

__all__ = [
    "DEFAULT_INIT_CAM",
    "HMRRegressor",
    "N_BETAS",
    "N_CAM",
    "N_JOINTS",
    "N_POSE_6D",
    "RegressorOutput",
    "default_mean_params",
]

N_JOINTS = 24  # SMPL joints, global orientation first
N_POSE_6D = 6 * N_JOINTS  # 144
N_BETAS = 10
N_CAM = 3  # weak perspective [s, tx, ty]
HIDDEN = 1024  # SPIN's fc1/fc2 width
# Camera used when no mean-parameter file is given; SPIN's smpl_mean_params.npz has s close to 0.9
# and zero translation.
DEFAULT_INIT_CAM = (0.9, 0.0, 0.0)


@dataclass(frozen=True)
class RegressorOutput:
    """Regressor prediction. Leading dims are (N,) from ``forward`` and (B, V) from
    ``forward_views``.

    Attributes:
        rotmat: (..., 24, 3, 3) joint rotations, SMPL order, joint 0 = global orientation.
        betas: (..., 10) shape coefficients.
        cam: (..., 3) weak-perspective crop camera [s, tx, ty] (SPIN).
        pose_6d: (..., 144) the raw 6D pose (SPIN convention) that ``rotmat`` decodes.
    """

    rotmat: torch.Tensor
    betas: torch.Tensor
    cam: torch.Tensor
    pose_6d: torch.Tensor

    def reshape_leading(self, *leading: int) -> RegressorOutput:
        """Replace the leading batch dims of every field, e.g. (B*V,) -> (B, V)."""
        trailing = {"rotmat": 3, "betas": 1, "cam": 1, "pose_6d": 1}
        return RegressorOutput(**{
            f.name: getattr(self, f.name).reshape(
                *leading, *getattr(self, f.name).shape[-trailing[f.name]:])
            for f in fields(self)})


def default_mean_params() -> dict[str, np.ndarray]:
    """Initial estimate used without a mean-parameter file: identity rotations, zero betas,
    camera ``DEFAULT_INIT_CAM``. Keys/shapes as SPIN's ``smpl_mean_params.npz``:
    ``pose (144,)``, ``shape (10,)``, ``cam (3,)``."""
    # Identity in SPIN's 6D layout: per joint the 3x2 row-major matrix [[1,0],[0,1],[0,0]].
    identity_6d = np.array([1.0, 0.0, 0.0, 1.0, 0.0, 0.0], dtype=np.float32)
    return {"pose": np.tile(identity_6d, N_JOINTS),
            "shape": np.zeros(N_BETAS, dtype=np.float32),
            "cam": np.asarray(DEFAULT_INIT_CAM, dtype=np.float32)}


def _mean_param_row(mean_params: Mapping[str, np.ndarray | torch.Tensor], key: str,
                    size: int) -> torch.Tensor:
    if key not in mean_params:
        raise KeyError(f"mean parameters lack key {key!r}; expected keys 'pose' (144,), "
                       f"'shape' (10,), 'cam' (3,), got {sorted(mean_params)}")
    raw = mean_params[key]
    value = (raw.detach().cpu() if isinstance(raw, torch.Tensor)
             else torch.from_numpy(np.asarray(raw, dtype=np.float64)))
    if value.numel() != size or value.ndim > 2 or (value.ndim == 2 and value.shape[0] != 1):
        raise ValueError(f"mean parameter {key!r} must have shape ({size},) or (1, {size}), "
                         f"got {tuple(value.shape)}")
    value = value.to(torch.float32).reshape(1, size)
    if not torch.isfinite(value).all():
        raise ValueError(f"mean parameter {key!r} contains non-finite values")
    return value


class HMRRegressor(ResNet):
    """SPIN's HMR: ResNet trunk + 3-step iterative regression of SMPL pose, shape and camera.

    The head is ``fc1 (feat+157 -> 1024)``, ``drop1``, ``fc2 (1024 -> 1024)``, ``drop2`` with no
    non-linearity between them (as in SPIN), then residual decoders ``decpose (144)``,
    ``decshape (10)``, ``deccam (3)``. BatchNorm and Dropout follow ``train()``/``eval()``.

    Args:
        depth: ResNet depth (50 = SPIN; 18 for quick CPU work).
        mean_params: initial estimate, a mapping with ``pose`` (144,) in SPIN's 6D layout,
            ``shape`` (10,), ``cam`` (3,) (e.g. ``np.load('smpl_mean_params.npz')``); ``None``
            gives :func:`default_mean_params`. Stored as buffers, so checkpoints carry them.
    """

    init_pose: torch.Tensor
    init_shape: torch.Tensor
    init_cam: torch.Tensor

    def __init__(self, depth: int = 50,
                 mean_params: Mapping[str, np.ndarray | torch.Tensor] | None = None) -> None:
        super().__init__(depth)
        n_in = self.feature_dim + N_POSE_6D + N_BETAS + N_CAM
        self.fc1 = nn.Linear(n_in, HIDDEN)
        self.drop1 = nn.Dropout()
        self.fc2 = nn.Linear(HIDDEN, HIDDEN)
        self.drop2 = nn.Dropout()
        self.decpose = nn.Linear(HIDDEN, N_POSE_6D)
        self.decshape = nn.Linear(HIDDEN, N_BETAS)
        self.deccam = nn.Linear(HIDDEN, N_CAM)
        # Small decoder weights so the first predictions stay near the mean (SPIN/HMR init).
        for decoder in (self.decpose, self.decshape, self.deccam):
            nn.init.xavier_uniform_(decoder.weight, gain=0.01)
        params = default_mean_params() if mean_params is None else mean_params
        self.register_buffer("init_pose", _mean_param_row(params, "pose", N_POSE_6D))
        self.register_buffer("init_shape", _mean_param_row(params, "shape", N_BETAS))
        self.register_buffer("init_cam", _mean_param_row(params, "cam", N_CAM))

    def forward(self, images: torch.Tensor, n_iter: int = 3,  # type: ignore[override]  # the HMR head's inputs
                init_pose: torch.Tensor | None = None, init_shape: torch.Tensor | None = None,
                init_cam: torch.Tensor | None = None) -> RegressorOutput:
        """Regress SMPL parameters from normalised crops.

        Args:
            images: (N, 3, H, W) ImageNet-normalised RGB crops (224x224 as in SPIN; any size
                >= 32 works thanks to adaptive pooling).
            n_iter: refinement steps (SPIN: 3).
            init_pose, init_shape, init_cam: optional (N, 144) / (N, 10) / (N, 3) starting
                estimates; default to the mean-parameter buffers.

        Returns:
            :class:`RegressorOutput` with leading dim (N,).
        """
        if n_iter < 1:
            raise ValueError(f"n_iter must be >= 1, got {n_iter}")
        features = self.extract_features(images)
        n = features.shape[0]
        pose = self._start(init_pose, self.init_pose, n, "init_pose")
        shape = self._start(init_shape, self.init_shape, n, "init_shape")
        cam = self._start(init_cam, self.init_cam, n, "init_cam")
        for _ in range(n_iter):
            hidden = self.drop1(self.fc1(torch.cat([features, pose, shape, cam], dim=1)))
            hidden = self.drop2(self.fc2(hidden))
            pose = pose + self.decpose(hidden)
            shape = shape + self.decshape(hidden)
            cam = cam + self.deccam(hidden)
        rotmat = rot6d_to_matrix(pose.reshape(n, N_JOINTS, 6))
        return RegressorOutput(rotmat=rotmat, betas=shape, cam=cam, pose_6d=pose)

    @staticmethod
    def _start(given: torch.Tensor | None, buffer: torch.Tensor, n: int,
               name: str) -> torch.Tensor:
        if given is None:
            return buffer.expand(n, -1)
        if given.shape != (n, buffer.shape[1]):
            raise ValueError(f"{name} must have shape ({n}, {buffer.shape[1]}), "
                             f"got {tuple(given.shape)}")
        return given.to(buffer)

    def forward_views(self, images: torch.Tensor, n_iter: int = 3) -> RegressorOutput:
        """Run a batch of bundles: images (B, V, 3, H, W) -> outputs with leading dims (B, V).

        The views are flattened to (B*V) only for the network call, so BatchNorm in train mode
        sees all B*V crops, as SPIN/MV-SPIN's batch of 64 images does.
        """
        if images.ndim != 5:
            raise ValueError(f"expected images of shape (B, V, 3, H, W), got {tuple(images.shape)}")
        b, v = images.shape[:2]
        out = self(images.reshape(b * v, *images.shape[2:]), n_iter=n_iter)
        return out.reshape_leading(b, v)
