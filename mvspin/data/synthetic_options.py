"""The one typed configuration of synthetic data: keypoint-only captures
(:func:`mvspin.data.synthetic_keypoints.make_capture`) and rendered bundle files
(:func:`mvspin.data.synthetic_capture.generate_capture_file`, ``mvspin data synthetic``).

Two presets name the two settings the project uses (:meth:`SyntheticOptions.preset`):

- ``"keypoints"`` (the dataclass defaults): the fitting tests' 4-camera setting, 1000 x 1000 px,
  focal 1000 px, OpenPose keypoints with 2 px noise and 10% dropped;
- ``"capture"``: rendered network-sized images, 224 x 224 px, focal 360 px (a standing body at
  3.5-5 m fills about 120-180 px), Human3.6M keypoints with 1 px noise and 5% dropped; the
  default of ``mvspin data synthetic``.

Merge with YAML and ``key=value`` overrides through :func:`mvspin.config.load_config`
(``preset=capture`` selects a preset there).
"""
from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any

from mvspin.body.keypoint_sets import KEYPOINT_SETS
from mvspin.config import ConfigError, check_range
from mvspin.geometry import SPIN_BBOX_SCALE_FACTOR

__all__ = ["SyntheticOptions", "PRESETS"]

PRESETS = ("keypoints", "capture")

MAX_VIEWS = 64
"""The most cameras per bundle (``num_views``): every view is rendered, stored and read per
bundle; real rigs have up to a few dozen."""


@dataclass
class SyntheticOptions:
    """How synthetic data is made: the scene and keypoints, the simulated regressor estimates of
    :func:`make_capture`, and the rendering of bundle files (each field's docstring says which).

    Example:
        >>> SyntheticOptions().image_size, SyntheticOptions.preset("capture", num_views=2).image_size
        ((1000, 1000), (224, 224))
    """

    num_views: int = 4
    """Cameras per bundle V (rendered files; :func:`make_capture` takes V as an argument)."""
    keypoint_set: str = "openpose25"
    """2D keypoint set produced (e.g. h36m17, coco17, openpose25)."""
    joints_3d_set: str = "h36m17"
    """3D joint set stored in rendered files (world frame)."""
    image_size: tuple[int, int] = (1000, 1000)
    """Image width and height, pixels."""
    focal: float = 1000.0
    """Focal length, pixels (randomised by +-3% per camera)."""
    distance: tuple[float, float] = (3.5, 5.0)
    """Range of camera distances to the subject, metres."""
    height: tuple[float, float] = (0.8, 2.0)
    """Range of camera heights, metres (the floor is about y = 0)."""
    noise_px: float = 2.0
    """Standard deviation of the Gaussian pixel noise of 2D keypoints."""
    drop_rate: float = 0.1
    """Share of 2D keypoints dropped at random (confidence 0, coordinates 0)."""
    outlier_views: int = 0
    """Views per bundle whose keypoints are another person's (a bystander 1.5-2.5 m away, in
    another pose, not rendered)."""
    poses: str = "prior"
    """Where bundle poses come from: prior (FreePosePrior samples, ``pose_spread``) or motions
    (a random moment of the motion suite's walks, runs, jumps, kicks, arm swings, claps, squats
    and sit-to-stands, every joint jittered by ``pose_spread / 2`` rad: people doing things)."""
    pose_spread: float = 0.35
    """Spread of the free pose prior's samples (FreePosePrior.sample)."""
    betas_std: float = 1.0
    """Standard deviation of the betas."""
    crop_margin: float = SPIN_BBOX_SCALE_FACTOR
    """Crop side = margin x the keypoints' bounding-box side (SPIN: 1.2)."""
    shared_rig: bool = False
    """One rig for every bundle of a make_capture call (a recording)."""
    estimate_pose_deg: float = 6.0
    """Simulated regressor estimates: per-axis noise (degrees) of the body pose."""
    estimate_orient_deg: float = 8.0
    """Simulated regressor estimates: per-axis noise (degrees) of the per-view orientation."""
    estimate_betas_std: float = 0.3
    """Simulated regressor estimates: noise of the betas."""
    estimate_scale_rel: float = 0.05
    """Simulated regressor estimates: relative noise of the crop-camera scale."""
    estimate_trans_m: float = 0.02
    """Simulated regressor estimates: noise (metres) of the crop-camera x/y translation."""
    colors: str = "clothes"
    """Rendering: clothes (random skin/garment colours, stripes, shading noise) or parts (one
    fixed colour per SMPL part: left and right differ)."""
    background: str = "varied"
    """Rendering: varied (procedural, random per view) or plain."""
    background_color: tuple[float, float, float] = (0.5, 0.5, 0.5)
    """Rendering: RGB in [0, 1] of plain backgrounds."""
    light_intensity: tuple[float, float] = (60000.0, 120000.0)
    """Rendering: range of the sun's intensity (open3d units)."""
    ambient_intensity: tuple[float, float] = (15000.0, 35000.0)
    """Rendering: range of the ambient (image-based) light's intensity."""
    shadows: bool = False
    """Rendering: cast sun shadows on the body (about 2x slower)."""
    image_format: str = ".jpg"
    """Rendering: .jpg or .png (lossless)."""
    jpeg_quality: int = 92
    """Rendering: JPEG quality, 0..100."""
    split: str = "train"
    """Split name stored in the file."""

    @classmethod
    def preset(cls, name: str, **changes: Any) -> "SyntheticOptions":
        """The named preset (module docstring), with ``changes`` applied.

        Raises:
            ValueError: an unknown preset name (the message lists the known ones).
        """
        if name == "keypoints":
            base = cls()
        elif name == "capture":
            base = cls(keypoint_set="h36m17", image_size=(224, 224), focal=360.0, noise_px=1.0, drop_rate=0.05)
        else:
            raise ValueError(f"unknown synthetic preset {name!r}; known presets: {', '.join(PRESETS)}")
        return replace(base, **changes)

    def __post_init__(self) -> None:
        self.image_size = (int(self.image_size[0]), int(self.image_size[1]))
        self.distance = (float(self.distance[0]), float(self.distance[1]))
        self.height = (float(self.height[0]), float(self.height[1]))
        self.light_intensity = (float(self.light_intensity[0]), float(self.light_intensity[1]))
        self.ambient_intensity = (float(self.ambient_intensity[0]), float(self.ambient_intensity[1]))
        self.background_color = tuple(float(c) for c in self.background_color)  # type: ignore[assignment]
        check_range("num_views", self.num_views, 1, MAX_VIEWS, integer=True)
        if min(self.image_size) < 16:
            raise ConfigError(f"image_size must be at least 16 pixels per side, got {self.image_size}",
                              field="image_size")
        if not self.focal > 0:
            raise ConfigError(f"focal must be positive, got {self.focal}", field="focal")
        for name in ("distance", "height", "light_intensity", "ambient_intensity"):
            lo, hi = getattr(self, name)
            if hi < lo:
                raise ConfigError(f"{name} must be (min, max) with min <= max, got {(lo, hi)}", field=name)
        if self.distance[0] <= 0.5:
            raise ConfigError(f"distance must stay above 0.5 m (cameras inside the body), got {self.distance}", field="distance")
        for name in ("keypoint_set", "joints_3d_set"):
            if getattr(self, name) not in KEYPOINT_SETS:
                raise ConfigError(f"{name} must be one of {', '.join(KEYPOINT_SETS)}, got {getattr(self, name)!r}",
                                  field=name)
        if not 0.0 <= self.drop_rate < 1.0:
            raise ConfigError(f"drop_rate must be in [0, 1), got {self.drop_rate}", field="drop_rate")
        for name in ("noise_px", "pose_spread", "betas_std"):
            if getattr(self, name) < 0:
                raise ConfigError(f"{name} must be >= 0, got {getattr(self, name)}", field=name)
        if self.outlier_views and not 0 < self.outlier_views < self.num_views:
            raise ConfigError(f"outlier_views must be in 0..{self.num_views - 1}, got {self.outlier_views}", field="outlier_views")
        if self.crop_margin <= 0:
            raise ConfigError(f"crop_margin must be positive, got {self.crop_margin}", field="crop_margin")
        if self.poses not in ("prior", "motions"):
            raise ConfigError(f"poses must be 'prior' or 'motions', got {self.poses!r}", field="poses")
        if self.colors not in ("clothes", "parts"):
            raise ConfigError(f"colors must be 'clothes' or 'parts', got {self.colors!r}", field="colors")
        if self.background not in ("varied", "plain"):
            raise ConfigError(f"background must be 'varied' or 'plain', got {self.background!r}", field="background")
        if len(self.background_color) != 3 or not all(0.0 <= c <= 1.0 for c in self.background_color):
            raise ConfigError(f"background_color must be 3 values in [0, 1], got {self.background_color}", field="background_color")
        if self.image_format not in (".jpg", ".png"):
            raise ConfigError(f"image_format must be '.jpg' or '.png', got {self.image_format!r}", field="image_format")
        if not 0 <= self.jpeg_quality <= 100:
            raise ConfigError(f"jpeg_quality must be in 0..100, got {self.jpeg_quality}", field="jpeg_quality")
