"""Configuration of SMPLify and MV-SMPLify (typed dataclasses; see :func:`mvspin.config.load_config`).

Weights follow SPIN's SMPLify (nkolot/SPIN ``smplify/smplify.py``, ``smplify/losses.py``) and
the MV-SPIN paper (Li et al., section 3.3: Adam, learning rate 0.01, at most 100 iterations).
Every prior weight is stored squared, as it multiplies the energy (SPIN writes ``w ** 2``).
``configs/fitting.yaml`` lists the same fields with their sources.

Presets (:data:`PRESETS`, :meth:`SMPLifyConfig.preset`, or ``preset: NAME`` in a YAML file /
``preset=NAME`` override read by :func:`mvspin.config.load_config`):

- ``mvspin`` (the defaults): SPIN's weights with this project's changes: a Geman-McClure torso
  stage weighted by confidence squared, early stopping, only the detector hips ignored in stage
  2, and (calibrated mode) views that disagree with the others ignored.
- ``spin``: SMPLify as SPIN runs it: stage 1 is SPIN's plain squared error on the four torso
  points (the detector's when all four are detected, else the ground-truth ones), stage 2
  ignores OpenPose's neck and hips and the ground-truth hips, exactly 100 + 100 iterations.
- ``mvspin_paper``: the published MV-SMPLify (leezhongguo/MVSPIN_NEW ``mvsmplify/``): SPIN's
  stage 1, no joint ignored in stage 2, the camera translations optimised in stage 2, exactly
  100 + 100 Adam iterations.
"""
from __future__ import annotations

from dataclasses import dataclass, field, fields, replace
from typing import Any, Optional, TypeVar

from mvspin.body import KEYPOINT_SETS

__all__ = ["SMPLifyConfig", "MVSMPLifyConfig", "validate_config", "PRESETS", "OPTIMIZERS", "CAMERA_MODES",
           "CALIBRATED_INITS", "KEYPOINT_BACKENDS", "STAGE1_LOSSES", "DETECTOR_HIP_POINTS", "SPIN_IGNORED_POINTS"]

OPTIMIZERS = ("adam", "lbfgs", "lm")
CAMERA_MODES = ("per_view", "calibrated")
CALIBRATED_INITS = ("auto", "network", "triangulation")
KEYPOINT_BACKENDS = ("fast", "full")
STAGE1_LOSSES = ("gmof", "squared")

DETECTOR_HIP_POINTS: tuple[str, ...] = ("left_hip", "right_hip")
"""Anatomical points of a 2D detector's hips (OpenPose, COCO, HALPE), which sit higher and wider
than SMPL's hip joints."""

SPIN_IGNORED_POINTS: tuple[str, ...] = ("neck", "right_hip", "left_hip", "lsp_right_hip", "lsp_left_hip")
"""SPIN's ``ign_joints`` (``OP Neck``, ``OP RHip``, ``OP LHip``, ``Right Hip``, ``Left Hip``) as
anatomical points: on ``spin49`` exactly those five keypoints, on ``openpose25`` the neck and
hips."""

PRESETS: dict[str, dict[str, Any]] = {
    "mvspin": {},
    "spin": {
        "optimizer": "adam", "stage1_loss": "squared", "stage2_ignored_points": list(SPIN_IGNORED_POINTS), "patience": 0,
        "stage1_iterations": 100, "stage2_iterations": 100, "stage2_translation": False,
        "outlier_view_fraction": 0.0,
    },
    "mvspin_paper": {
        "optimizer": "adam", "stage1_loss": "squared", "stage2_ignored_points": [], "patience": 0,
        "stage1_iterations": 100, "stage2_iterations": 100, "stage2_translation": True,
        "outlier_view_fraction": 0.0,
    },
}
"""Field values of each named preset over the defaults (``mvspin``); see the module docstring."""

_C = TypeVar("_C", bound="SMPLifyConfig")


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
    stage1_loss: str = "gmof"
    """Stage-1 torso term: ``gmof`` (Geman-McClure, confidence squared, every torso keypoint;
    robust to one wrong torso detection) or ``squared`` (SPIN's ``camera_fitting_loss``: plain
    squared pixel error on the detector's four torso keypoints when all four are detected, else
    the ground-truth ones, unweighted)."""
    stage2_ignored_points: list[str] = field(default_factory=lambda: list(DETECTOR_HIP_POINTS))
    """Anatomical points (``mvspin.body`` point names) given weight 0 in stage 2; stage 1 still
    uses them. Default: the detector hips (SPIN ignores them too). SPIN: also OpenPose's neck and
    the ground-truth hips (:data:`SPIN_IGNORED_POINTS`); the published MV-SMPLify: none."""
    keypoint_weights: dict[str, float] = field(default_factory=dict)
    """Per-keypoint weight by the data keypoint set's names, e.g. ``{"nose": 0.5}`` (default 1)."""
    min_confidence: float = 0.0
    """Keypoints with confidence at or below this are treated as missing."""
    # --- optimisation ---------------------------------------------------------------------
    optimizer: str = "adam"
    """``adam`` (SPIN, MV-SPIN; every preset), ``lbfgs`` (strong-Wolfe line search) or ``lm`` (batched
    Levenberg-Marquardt, :mod:`mvspin.fitting.lm`: each bundle its own damping and acceptance,
    stopping per bundle on ``lm_rel_tol``/``lm_step_tol``, at most ``lm_stage1_iterations`` /
    ``lm_stage2_iterations`` steps and never more than the stage's iteration count)."""
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
    lm_damping: float = 10.0
    """``lm``: initial Marquardt damping (times the Gauss-Newton matrix's diagonal; it falls 4x per
    accepted step, so the first few steps are short gradient steps and the rest Gauss-Newton).
    Chosen on validation batches (seeds 100-105, 16 x 4 each, full model) against 1e-3 and 1: the
    lowest energy from every start (the network's estimate, the mean pose, triangulation);
    from the mean pose 1e-3 stalled at 189k (per-view mode, seeds 103-105; Adam 100 + 100: 220k,
    10: 100k) and from triangulation it ended above Adam (26.5k vs 20.9k; 10: 18.3k)."""
    lm_stage1_iterations: int = 7
    """``lm``: most steps of stage 1 (also capped by ``stage1_iterations``)."""
    lm_stage2_iterations: int = 14
    """``lm``: most steps of stage 2 (and of the calibrated mode's stage 0), also capped by
    ``stage2_iterations`` (``triangulation_fit_iterations``). 7 + 14: the fewest caps tried (5 + 10
    to 10 + 20, validation seeds 100-105) that end below Adam's 100 + 100 energy from every start
    with a margin (per-view from the network's estimate 38.9k vs Adam's 41.4k, calibrated 18.7k
    vs 21.3k, from triangulation 18.5k vs 20.9k, per-view from the mean pose 127k vs 220k; 10 +
    20 gains 1-2% of energy there for 40% more time; from the mean pose it goes on to 100k; these
    figures are without ``lm_proximal_weight``). Plain LM's lower energy is not a better body from
    a good start: from the network's estimate Adam's few small steps regularise (PA-MPJPE 23.9 vs
    29.3 mm per-view); ``lm_proximal_weight`` does that on purpose. Every preset keeps Adam (the
    published methods' solver) and ``lm`` is opt-in."""
    lm_proximal_weight: float = 1.8
    """``lm``: weight of a proximal term in stage 2 that keeps the body near where the stage
    starts (:func:`~mvspin.fitting.lm.proximal_system`: ``w * sum_i sqrt(H_ii) (x_i - x0_i)^2``,
    ``H`` the Gauss-Newton matrix at the start); 0: plain LM on the SMPLify energy. From a good
    start the energy's own minimum is further from the true body than the start's neighbourhood,
    and Adam's 100 small steps stop on the way (see ``lm_stage2_iterations``): this term does the
    same on purpose. Chosen on validation batches (seeds 100-105, 16 x 4 each, full model;
    ``tools/fit_accuracy.py``) as the weight with the widest margins over Adam 100 + 100 in both
    energy and PA-MPJPE (mm): per-view from the network's estimate 40.3k / 22.1 (Adam 40.6k /
    24.6; 0: 37.0k / 30.0 on seeds 100-102), calibrated 20.4k / 7.9 (21.2k / 8.1), SMPLify 32.9k
    / 56.8 (36.4k / 58.2), per-view from the mean pose 114k / 105 (213k / 123), calibrated from
    triangulation 19.0k / 11.2 (20.7k / 11.5); 2.0 leaves per-view 0.3% below Adam's energy, 1.75
    calibrated 0.17 mm below its PA-MPJPE. The square-rooted metric beat the plain diagonal
    (Marquardt's scaling; calibrated 8.6 at Adam's energy) and the identity (per-view 25.4)."""
    lm_rel_tol: float = 1e-3
    """``lm``: a bundle stops at its first accepted step that lowers its energy by less than this
    fraction (its iteration counts are caps)."""
    lm_step_tol: float = 1e-6
    """``lm``: a bundle stops when its largest step component (radians, metres, betas) is below this."""
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
    keypoint_backend: str = "fast"
    """``fast`` (the body model's keypoint path: one body per bundle, per-view root transforms)
    or ``full`` (smplx's full forward of every view's body at every iteration, as the published
    code does: the same energy, many times slower; the reference for tests and benchmarks)."""
    compile: bool = False
    """``torch.compile`` the stage energies (``fast`` backend; forward and backward, most of an
    Adam iteration; with ``optimizer="lm"`` each stage's energy, gradient and Gauss-Newton
    matrix): a 16 x 4 fit 2-2.5x faster on one CPU thread once compiled, but the compile takes
    about 45 s the first time on a machine (about 4 s from inductor's cache) and again for each
    new batch shape, so it pays in training and long fits only (:mod:`mvspin.fitting.compiled`).
    Falls back to eager, with a warning, where compiling fails. Same energy, same minimiser."""

    @classmethod
    def preset(cls: type[_C], name: str, **overrides: Any) -> _C:
        """The config of a named preset (:data:`PRESETS`), with ``overrides`` on top.

        Example:
            >>> MVSMPLifyConfig.preset("spin", mode="calibrated").stage1_loss
            'squared'
        """
        if name not in PRESETS:
            raise ValueError(f"unknown fitting preset {name!r}; presets: {', '.join(PRESETS)}")
        names = {f.name for f in fields(cls)}
        values = {k: (list(v) if isinstance(v, list) else v) for k, v in PRESETS[name].items() if k in names}
        unknown = sorted(set(overrides) - names)
        if unknown:
            raise ValueError(f"{cls.__name__} has no field(s) {', '.join(unknown)}")
        return replace(cls(), **{**values, **overrides})


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
    triangulation_fit_optimizer: Optional[str] = None
    """Stage 0's optimiser (``adam``, ``lbfgs`` or ``lm``); None: ``optimizer``. With ``lm`` its
    steps are capped by ``lm_stage2_iterations`` too."""
    triangulation_fit_lr: float = 0.1
    """Adam learning rate of stage 0: the 3D fit is well conditioned and starts far away
    (with ``optimizer="lbfgs"`` the line search sets the step instead)."""
    triangulation_threshold_px: float = 30.0
    """Inlier threshold of the robust triangulation used to initialise the calibrated mode."""
    max_relative_reprojection_error: float = 0.1
    """Calibrated mode: a bundle whose final mean reprojection error exceeds this fraction of the
    person's size in the images (keypoint box diagonal) is reported unfitted (``fitted=False``):
    its cameras or keypoints do not describe one body. A good fit is a few pixels on a
    person hundreds of pixels tall (about 0.01); 0 disables."""
    outlier_view_fraction: float = 0.5
    """Calibrated mode: a view whose keypoints agree with the triangulated consensus for less
    than this fraction of its confident keypoints is treated as a wrong detection (another
    person) and ignored; 0 disables the check."""


def validate_config(config: SMPLifyConfig) -> None:
    """Raise ValueError naming the field when a value is outside its allowed range or set."""
    if config.optimizer not in OPTIMIZERS:
        raise ValueError(f"optimizer must be one of {', '.join(OPTIMIZERS)}, got {config.optimizer!r}")
    for name in ("sigma", "lr", "lbfgs_lr", "focal_length", "lm_damping"):
        if not getattr(config, name) > 0:
            raise ValueError(f"{name} must be positive, got {getattr(config, name)}")
    for name, allowed in (("keypoint_backend", KEYPOINT_BACKENDS), ("stage1_loss", STAGE1_LOSSES)):
        if getattr(config, name) not in allowed:
            raise ValueError(f"{name} must be one of {', '.join(allowed)}, got {getattr(config, name)!r}")
    for name in ("pose_prior_weight", "angle_prior_weight", "shape_prior_weight", "depth_anchor_weight",
                 "rel_tol", "min_confidence", "lm_step_tol", "lm_rel_tol", "lm_proximal_weight"):
        if getattr(config, name) < 0:
            raise ValueError(f"{name} must be non-negative, got {getattr(config, name)}")
    for name in ("stage1_iterations", "stage2_iterations", "patience", "crop_size", "lbfgs_history",
                 "lm_stage1_iterations", "lm_stage2_iterations"):
        if getattr(config, name) < 0:
            raise ValueError(f"{name} must be a non-negative integer, got {getattr(config, name)}")
    known = {p for s in KEYPOINT_SETS.values() for p in s.points}
    unknown = sorted(set(config.stage2_ignored_points) - known)
    if unknown:
        raise ValueError(f"stage2_ignored_points names unknown points {unknown}; points are the keypoint sets' "
                         "anatomical names (mvspin.body.get_keypoint_set(name).points)")
    bad = {k: v for k, v in config.keypoint_weights.items() if v < 0}
    if bad:
        raise ValueError(f"keypoint_weights must be non-negative, got {bad}")
    if isinstance(config, MVSMPLifyConfig):
        if config.mode not in CAMERA_MODES:
            raise ValueError(f"mode must be one of {', '.join(CAMERA_MODES)}, got {config.mode!r}")
        if config.calibrated_init not in CALIBRATED_INITS:
            raise ValueError(f"calibrated_init must be one of {', '.join(CALIBRATED_INITS)}, "
                             f"got {config.calibrated_init!r}")
        if config.triangulation_fit_optimizer not in (None, *OPTIMIZERS):
            raise ValueError(f"triangulation_fit_optimizer must be one of {', '.join(OPTIMIZERS)} or None, "
                             f"got {config.triangulation_fit_optimizer!r}")
        if not config.triangulation_fit_lr > 0:
            raise ValueError(f"triangulation_fit_lr must be positive, got {config.triangulation_fit_lr}")
        if config.triangulation_fit_iterations < 0:
            raise ValueError(f"triangulation_fit_iterations must be >= 0, got {config.triangulation_fit_iterations}")
        if not config.triangulation_threshold_px > 0:
            raise ValueError(f"triangulation_threshold_px must be positive, got {config.triangulation_threshold_px}")
        if config.max_relative_reprojection_error < 0:
            raise ValueError("max_relative_reprojection_error must be >= 0, got "
                             f"{config.max_relative_reprojection_error}")
        if not 0 <= config.outlier_view_fraction <= 1:
            raise ValueError(f"outlier_view_fraction must be in [0, 1], got {config.outlier_view_fraction}")
