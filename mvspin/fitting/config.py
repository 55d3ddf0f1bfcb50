"""Configuration of SMPLify and MV-SMPLify (typed dataclasses; see :func:`mvspin.config.load_config`).

Defaults follow SPIN's SMPLify (nkolot/SPIN ``smplify/smplify.py``, ``smplify/losses.py``) and
the MV-SPIN paper (Li et al., section 3.3: Adam, learning rate 0.01, at most 100 iterations).
Every prior weight is stored squared, as it multiplies the energy (SPIN writes ``w ** 2``).
``configs/fitting.yaml`` lists the same fields with their sources.
"""
from __future__ import annotations

from dataclasses import dataclass, field

__all__ = ["SMPLifyConfig", "MVSMPLifyConfig", "validate_config", "OPTIMIZERS", "CAMERA_MODES", "CALIBRATED_INITS"]

OPTIMIZERS = ("adam", "lbfgs")
CAMERA_MODES = ("per_view", "calibrated")
CALIBRATED_INITS = ("auto", "network", "triangulation")


@dataclass
class SMPLifyConfig:
    """SPIN's two-stage SMPLify: stage 1 fits root orientation and camera translation on the
    torso keypoints, stage 2 the body (pose, betas, orientation)."""

    # --- energy ---------------------------------------------------------------------------
    sigma: float = 100.0
    """Geman-McClure scale in pixels of the keypoint frame (SPIN: GMoF rho = 100)."""
    pose_prior_weight: float = 4.78**2
    """Pose prior weight (SPIN: 4.78^2 on the GMM prior; on the free model it weighs the free
    prior, whose energy is of the same order for plausible poses)."""
    angle_prior_weight: float = 15.2**2
    """Elbow/knee hyper-extension prior weight (SPIN: 15.2^2)."""
    shape_prior_weight: float = 5.0**2
    """Shape prior weight on |betas|^2 (SPIN: 5^2)."""
    depth_anchor_weight: float = 100.0**2
    """Stage 1 pull of the camera depth towards the network's, per metre^2 (SPIN: 100^2)."""
    detector_hip_weight: float = 0.0
    """Weight of detector-style hips (OpenPose/COCO/HALPE, which sit higher and wider than
    SMPL's hip joints) in stage 2 (SPIN: 0, its ``ign_joints``). Stage 1 uses them fully."""
    keypoint_weights: dict[str, float] = field(default_factory=dict)
    """Per-keypoint weight by the data keypoint set's names, e.g. ``{"nose": 0.5}`` (default 1)."""
    min_confidence: float = 0.0
    """Keypoints with confidence at or below this are treated as missing."""
    # --- optimisation ---------------------------------------------------------------------
    optimizer: str = "adam"
    """``adam`` (SPIN, MV-SPIN) or ``lbfgs`` (strong-Wolfe line search)."""
    lr: float = 1e-2
    """Adam learning rate (SPIN and MV-SPIN: 0.01)."""
    stage1_iterations: int = 100
    """Iterations of stage 1 (SPIN: 100)."""
    stage2_iterations: int = 100
    """Iterations of stage 2 (SPIN: 100; MV-SPIN: at most 100)."""
    lbfgs_lr: float = 1.0
    """L-BFGS step scale (torch default; the line search picks the step)."""
    lbfgs_history: int = 10
    """L-BFGS memory (torch default)."""
    rel_tol: float = 1e-6
    """Early stop when the relative energy change stays below this ..."""
    patience: int = 5
    """... for this many consecutive iterations (0 disables early stopping)."""
    stage2_translation: bool = False
    """Also optimise the crop-camera translations in stage 2 (SPIN and MV-SPIN keep them fixed;
    on the synthetic 4-view benchmark freeing them lowers the reprojection error but not the 3D
    error). The calibrated mode always refines its world translation: it is part of the body."""
    focal_length: float = 5000.0
    """Crop camera focal length in pixels (SPIN constants.FOCAL_LENGTH)."""
    crop_size: int = 224
    """Crop side in pixels; the principal point is its centre (SPIN constants.IMG_RES)."""


@dataclass
class MVSMPLifyConfig(SMPLifyConfig):
    """MV-SMPLify: one shared body pose and betas per bundle.

    ``per_view`` (the paper): per-view root orientation and crop-camera translation.
    ``calibrated`` (rigs): one body in the world frame seen by known cameras.
    """

    mode: str = "per_view"
    """``per_view`` (MV-SPIN, crop cameras) or ``calibrated`` (known cameras, image pixels)."""
    calibrated_init: str = "auto"
    """Calibrated mode start: ``network`` (per-view estimates mapped through the camera
    rotations), ``triangulation`` (mean pose oriented on triangulated torso keypoints), or
    ``auto`` (network when estimates are given, else triangulation)."""
    triangulation_fit_iterations: int = 100
    """Calibrated mode without a network: iterations fitting the body to the triangulated
    keypoints in 3D before the two 2D stages (stage 0; 0 skips it). Not in SPIN/MV-SPIN, which
    always start from a network estimate: from the mean pose, 100 Adam steps at lr 0.01 cannot
    rotate the limbs far enough."""
    triangulation_fit_lr: float = 0.1
    """Adam learning rate of stage 0: the 3D fit is well conditioned and starts far away
    (with ``optimizer="lbfgs"`` the line search sets the step instead)."""
    triangulation_threshold_px: float = 30.0
    """Inlier threshold of the robust triangulation used to initialise the calibrated mode."""
    outlier_view_fraction: float = 0.5
    """Calibrated mode: a view whose keypoints agree with the triangulated consensus for less
    than this fraction of its confident keypoints is treated as a wrong detection (another
    person) and ignored; 0 disables the check."""


def validate_config(config: SMPLifyConfig) -> None:
    """Raise ValueError naming the field when a value is outside its allowed range or set."""
    if config.optimizer not in OPTIMIZERS:
        raise ValueError(f"optimizer must be one of {', '.join(OPTIMIZERS)}, got {config.optimizer!r}")
    for name in ("sigma", "lr", "lbfgs_lr", "focal_length"):
        if not getattr(config, name) > 0:
            raise ValueError(f"{name} must be positive, got {getattr(config, name)}")
    for name in ("pose_prior_weight", "angle_prior_weight", "shape_prior_weight", "depth_anchor_weight",
                 "detector_hip_weight", "rel_tol", "min_confidence"):
        if getattr(config, name) < 0:
            raise ValueError(f"{name} must be non-negative, got {getattr(config, name)}")
    for name in ("stage1_iterations", "stage2_iterations", "patience", "crop_size", "lbfgs_history"):
        if getattr(config, name) < 0:
            raise ValueError(f"{name} must be a non-negative integer, got {getattr(config, name)}")
    bad = {k: v for k, v in config.keypoint_weights.items() if v < 0}
    if bad:
        raise ValueError(f"keypoint_weights must be non-negative, got {bad}")
    if isinstance(config, MVSMPLifyConfig):
        if config.mode not in CAMERA_MODES:
            raise ValueError(f"mode must be one of {', '.join(CAMERA_MODES)}, got {config.mode!r}")
        if config.calibrated_init not in CALIBRATED_INITS:
            raise ValueError(f"calibrated_init must be one of {', '.join(CALIBRATED_INITS)}, "
                             f"got {config.calibrated_init!r}")
        if not config.triangulation_fit_lr > 0:
            raise ValueError(f"triangulation_fit_lr must be positive, got {config.triangulation_fit_lr}")
        if config.triangulation_fit_iterations < 0:
            raise ValueError(f"triangulation_fit_iterations must be >= 0, got {config.triangulation_fit_iterations}")
        if not config.triangulation_threshold_px > 0:
            raise ValueError(f"triangulation_threshold_px must be positive, got {config.triangulation_threshold_px}")
        if not 0 <= config.outlier_view_fraction <= 1:
            raise ValueError(f"outlier_view_fraction must be in [0, 1], got {config.outlier_view_fraction}")
