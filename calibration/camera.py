"""Pinhole cameras with OpenCV lens distortion, and rigs of several cameras.

Conventions (the same as OpenCV's): pixels in 2D with the origin at the centre of the top-left
pixel, the camera frame has x right, y down, z forward; extrinsics map world to camera,
``x_cam = R @ x_world + t``; distortion coefficients ``(k1, k2, p1, p2[, k3[, k4, k5, k6]])``.
World units are whatever ``t`` is in (metres everywhere in mvspin).

:class:`Camera` and :class:`Rig` hold numpy arrays (what calibration files store);
:meth:`Rig.to_torch` stacks them into :class:`CameraTensors` with a view axis for batched
projection and fitting. This package knows cameras, not bodies (it imports no mvspin layer).
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Iterator, NamedTuple, Optional, Sequence

import numpy as np
import torch
from numpy.typing import ArrayLike
from torch import Tensor

from calibration.projection import DISTORTION_SIZES, MIN_DEPTH, project_points
from mvspin.errors import ShapeError, check_shape

if TYPE_CHECKING:
    from calibration.world_frame import WorldFrame

__all__ = ["Camera", "Rig", "CameraTensors", "stack_rigs", "look_at", "DISTORTION_SIZES"]

# Rotation matrices read from files are rounded; beyond this they are not rotations at all.
_ROTATION_TOL = 1e-4


def look_at(
    eye: ArrayLike, target: ArrayLike, up: ArrayLike = (0.0, 1.0, 0.0)
) -> tuple[np.ndarray, np.ndarray]:
    """World-to-camera ``R (3, 3)``, ``t (3,)`` (OpenCV axes, float64) of a camera at ``eye``
    looking at ``target``, with the world direction ``up`` pointing up in the image.

    The rows of ``R`` are the camera axes in world coordinates: ``z`` towards the target,
    ``x = z x up`` (right), ``y = z x x`` (down); ``t = -R @ eye``.

    Example:
        >>> R, t = look_at(eye=(0, 1, 4), target=(0, 1, 0))
        >>> R @ np.array([0.0, 1.0, 0.0]) + t  # the target lies on the optical axis, 4 m ahead
        array([0., 0., 4.])
    """
    eye_, target_, up_ = (np.asarray(v, dtype=np.float64) for v in (eye, target, up))
    z = target_ - eye_
    norm = np.linalg.norm(z)
    if norm < 1e-12:
        raise ValueError("look_at: eye and target coincide")
    z /= norm
    x = np.cross(z, up_)  # right = forward x up, so that image y (= forward x right) points down
    if np.linalg.norm(x) < 1e-9:
        raise ValueError("look_at: viewing direction is parallel to up")
    x /= np.linalg.norm(x)
    R = np.stack([x, np.cross(z, x), z])
    return R, -R @ eye_


class CameraTensors(NamedTuple):
    """Camera parameters as tensors with shared leading dims ``(*, )``: usually ``(V,)`` for
    one rig or ``(B, V)`` for one rig per bundle.

    Attributes:
        K: ``(*, 3, 3)`` intrinsics, pixels.
        R: ``(*, 3, 3)`` world-to-camera rotations.
        t: ``(*, 3)`` world-to-camera translations (world units, metres in mvspin).
        dist: ``(*, D)`` OpenCV distortion, D in {4, 5, 8}, or None when no camera has any.
        image_size: ``(*, 2)`` (width, height) in pixels, int64.
    """

    K: Tensor
    R: Tensor
    t: Tensor
    dist: Optional[Tensor]
    image_size: Tensor

    @property
    def num_views(self) -> int:
        """Size of the last leading axis (the view axis)."""
        return int(self.K.shape[-3])

    def to(self, device: torch.device | str | None = None, dtype: Optional[torch.dtype] = None) -> "CameraTensors":
        """Move (and for floating tensors cast) every tensor."""
        def move(x: Optional[Tensor], floating: bool = True) -> Optional[Tensor]:
            if x is None:
                return None
            return x.to(device=device, dtype=dtype if floating else None)
        return CameraTensors(move(self.K), move(self.R), move(self.t), move(self.dist),
                             move(self.image_size, floating=False))


@dataclass
class Camera:
    """One calibrated camera.

    Attributes:
        K: ``(3, 3)`` intrinsics ``[[fx, s, cx], [0, fy, cy], [0, 0, 1]]``, pixels.
        R: ``(3, 3)`` world-to-camera rotation.
        t: ``(3,)`` world-to-camera translation.
        dist: ``(D,)`` OpenCV distortion coefficients, D in {0, 4, 5, 8}.
        image_size: ``(width, height)`` in pixels.
        name: camera name (file conventions keep cameras by name).

    Example:
        >>> cam = Camera.look_at(eye=(0, 1, 4), target=(0, 1, 0), focal=1000, image_size=(1000, 1000))
        >>> cam.project(np.array([[0.0, 1.0, 0.0]]))
        array([[499.5, 499.5]])
    """

    K: np.ndarray
    R: np.ndarray
    t: np.ndarray
    dist: np.ndarray = field(default_factory=lambda: np.zeros(0))
    image_size: tuple[int, int] = (0, 0)
    name: str = "cam"

    def __post_init__(self) -> None:
        self.K = np.asarray(self.K, dtype=np.float64)
        self.R = np.asarray(self.R, dtype=np.float64)
        self.t = np.asarray(self.t, dtype=np.float64).reshape(-1)
        self.dist = np.asarray(self.dist, dtype=np.float64).reshape(-1)
        self.image_size = (int(self.image_size[0]), int(self.image_size[1]))
        where = f"camera {self.name!r}"
        check_shape(f"{where}: K", self.K, [3, 3])
        check_shape(f"{where}: R", self.R, [3, 3])
        check_shape(f"{where}: t", self.t, [3])
        if not np.allclose(self.K[2], (0.0, 0.0, 1.0)) or self.K[1, 0] != 0:
            raise ValueError(f"{where}: K must be upper triangular with last row [0, 0, 1], "
                             f"got {self.K.tolist()}")
        if self.K[0, 0] <= 0 or self.K[1, 1] <= 0:
            raise ValueError(f"{where}: focal lengths must be positive, got fx={self.K[0, 0]}, fy={self.K[1, 1]}")
        if (not np.allclose(self.R @ self.R.T, np.eye(3), atol=_ROTATION_TOL)
                or abs(np.linalg.det(self.R) - 1.0) > _ROTATION_TOL):
            raise ValueError(f"{where}: R is not a rotation matrix (R R^T != I or det != 1)")
        if self.dist.shape[0] not in DISTORTION_SIZES:
            raise ShapeError(f"{where}: distortion must have one of {DISTORTION_SIZES} coefficients, "
                             f"got {self.dist.shape[0]}")
        if not all(np.isfinite(a).all() for a in (self.K, self.R, self.t, self.dist)):
            raise ValueError(f"{where}: parameters contain NaN or inf")
        if min(self.image_size) < 0:
            raise ValueError(f"{where}: image_size must be non-negative (width, height), got {self.image_size}")

    @classmethod
    def look_at(
        cls,
        eye: ArrayLike,
        target: ArrayLike,
        focal: float,
        image_size: tuple[int, int],
        up: Sequence[float] = (0.0, 1.0, 0.0),
        dist: Optional[Sequence[float]] = None,
        name: str = "cam",
    ) -> "Camera":
        """A camera at ``eye`` looking at ``target`` with ``up`` pointing up in the image.

        The principal point is the image centre ``((w - 1) / 2, (h - 1) / 2)`` (pixel-centre
        origin), square pixels, focal length ``focal`` in pixels.
        """
        R, t = look_at(eye, target, up)
        w, h = image_size
        K = np.array([[focal, 0.0, (w - 1) / 2.0], [0.0, focal, (h - 1) / 2.0], [0.0, 0.0, 1.0]])
        return cls(K=K, R=R, t=t, dist=np.zeros(0) if dist is None else np.asarray(dist),
                   image_size=(w, h), name=name)

    @property
    def center(self) -> np.ndarray:
        """Camera centre in world coordinates ``(3,)``: ``-R^T t``."""
        return -self.R.T @ self.t

    @property
    def projection_matrix(self) -> np.ndarray:
        """``(3, 4)`` matrix ``K [R | t]`` (ignores distortion)."""
        return self.K @ np.concatenate([self.R, self.t[:, None]], axis=1)

    def project(self, points: np.ndarray) -> np.ndarray:
        """Project world points ``(..., 3)`` to pixels ``(..., 2)`` with lens distortion.

        Same model as ``cv2.projectPoints`` (:func:`calibration.projection.project_points`, in
        float64). Points at or behind the camera plane (depth below 1 mm) are divided by 1 mm,
        which keeps them finite (and far outside the image).
        """
        pts = np.asarray(points, dtype=np.float64)
        check_shape("Camera.project: points", pts, ["*", 3])
        uv = project_points(torch.from_numpy(pts.reshape(-1, 3)), torch.from_numpy(self.K), torch.from_numpy(self.R),
                            torch.from_numpy(self.t), torch.from_numpy(self.dist), MIN_DEPTH)
        return uv.numpy().reshape(pts.shape[:-1] + (2,))

    def scaled(self, factor: float) -> "Camera":
        """The same camera for an image resized by ``factor`` (e.g. 0.5 for half size).

        Pixel centres map as ``u' = factor * (u + 0.5) - 0.5`` (OpenCV's ``resize`` geometry).
        """
        if factor <= 0:
            raise ValueError(f"Camera.scaled: factor must be positive, got {factor}")
        K = self.K.copy()
        K[:2, :2] *= factor
        K[:2, 2] = factor * (K[:2, 2] + 0.5) - 0.5
        size = (int(round(self.image_size[0] * factor)), int(round(self.image_size[1] * factor)))
        return Camera(K=K, R=self.R.copy(), t=self.t.copy(), dist=self.dist.copy(), image_size=size, name=self.name)

    def to_torch(self, dtype: torch.dtype = torch.float32, device: torch.device | str | None = None) -> CameraTensors:
        """This camera as :class:`CameraTensors` without a view axis (``K (3, 3)``, ...)."""
        ct = Rig([self]).to_torch(dtype, device)
        return CameraTensors(ct.K[0], ct.R[0], ct.t[0], None if ct.dist is None else ct.dist[0], ct.image_size[0])


@dataclass
class Rig:
    """An ordered set of cameras sharing one world frame.

    Attributes:
        cameras: the cameras, in view order (the order of the view axis everywhere).
        world: how the world frame was chosen (up axis, origin), None when it is the calibration's
            own (see :mod:`calibration.world_frame`); saved with the rig where the format can.
    """

    cameras: list[Camera]
    world: Optional["WorldFrame"] = None

    def __post_init__(self) -> None:
        self.cameras = list(self.cameras)
        if not self.cameras:
            raise ValueError("a rig needs at least one camera")
        for c in self.cameras:
            if not isinstance(c, Camera):
                raise TypeError(f"Rig cameras must be Camera objects, got {type(c).__name__}")
        names = [c.name for c in self.cameras]
        if len(set(names)) != len(names):
            raise ValueError(f"camera names must be unique, got {names}")

    def __len__(self) -> int:
        return len(self.cameras)

    def __iter__(self) -> Iterator[Camera]:
        return iter(self.cameras)

    def __getitem__(self, index: int) -> Camera:
        return self.cameras[index]

    @property
    def names(self) -> list[str]:
        return [c.name for c in self.cameras]

    def subset(self, indices: Sequence[int]) -> "Rig":
        """A rig of the cameras at ``indices``, in that order."""
        return Rig([self.cameras[i] for i in indices], world=self.world)

    def scaled(self, factor: float) -> "Rig":
        """Every camera for images resized by ``factor`` (see :meth:`Camera.scaled`)."""
        return Rig([c.scaled(factor) for c in self.cameras], world=self.world)

    def project(self, points: np.ndarray) -> np.ndarray:
        """Project world points ``(..., N, 3)`` into every camera: ``(..., V, N, 2)`` pixels
        (float64, one batched :func:`calibration.projection.project_points` call)."""
        pts = np.asarray(points, dtype=np.float64)
        check_shape("Rig.project: points", pts, ["*", None, 3])
        cams = self.to_torch(torch.float64)
        return project_points(torch.from_numpy(pts).unsqueeze(-3), cams.K, cams.R, cams.t, cams.dist).numpy()

    def to_torch(self, dtype: torch.dtype = torch.float32, device: torch.device | str | None = None) -> CameraTensors:
        """Stacked tensors with a leading view axis: ``K (V, 3, 3)``, ``R (V, 3, 3)``, ``t (V, 3)``,
        ``dist (V, D)`` (zero-padded to the longest; None if no camera has distortion),
        ``image_size (V, 2)``."""
        width = max(c.dist.size for c in self.cameras)
        dist = None
        if width and any(np.any(c.dist != 0) for c in self.cameras):
            d = np.zeros((len(self), width))
            for i, c in enumerate(self.cameras):
                d[i, : c.dist.size] = c.dist
            dist = torch.as_tensor(d, dtype=dtype, device=device)
        as_t = lambda a: torch.as_tensor(np.stack(a), dtype=dtype, device=device)  # noqa: E731
        return CameraTensors(
            K=as_t([c.K for c in self.cameras]),
            R=as_t([c.R for c in self.cameras]),
            t=as_t([c.t for c in self.cameras]),
            dist=dist,
            image_size=torch.as_tensor([c.image_size for c in self.cameras], dtype=torch.int64, device=device),
        )


def stack_rigs(rigs: Sequence[Rig], dtype: torch.dtype = torch.float32,
               device: torch.device | str | None = None) -> CameraTensors:
    """One rig per bundle, stacked to ``(B, V, ...)`` tensors (all rigs need the same V)."""
    if not rigs:
        raise ValueError("stack_rigs needs at least one rig")
    counts = {len(r) for r in rigs}
    if len(counts) != 1:
        raise ValueError(f"all rigs must have the same number of cameras, got {sorted(counts)}")
    parts = [r.to_torch(dtype, device) for r in rigs]
    dist = None
    if any(p.dist is not None for p in parts):
        width = max(p.dist.shape[-1] for p in parts if p.dist is not None)
        v = parts[0].K.shape[0]
        dist = torch.stack([
            torch.nn.functional.pad(p.dist, (0, width - p.dist.shape[-1])) if p.dist is not None
            else torch.zeros(v, width, dtype=dtype, device=device)
            for p in parts
        ])
    return CameraTensors(
        K=torch.stack([p.K for p in parts]), R=torch.stack([p.R for p in parts]),
        t=torch.stack([p.t for p in parts]), dist=dist,
        image_size=torch.stack([p.image_size for p in parts]),
    )
