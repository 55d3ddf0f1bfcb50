"""Typed configuration of the collaborative training loop (``mvspin train``, ``mvspin fit-dataset``).

One dataclass per section, merged with YAML and ``key=value`` overrides by
:func:`mvspin.config.load_config` (``load_train_config`` here adds the checks that need the file
system, so a bad path fails before any work). Every number the papers set is a field with the
paper's value as default and its source in a comment: MV-SPIN = Li, Oskarsson, Heyden, *3D Human
Pose and Shape Estimation Through Collaborative Learning and Multi-view Model-fitting*, WACV 2021,
section 3; SPIN = Kolotouros, Pavlakos, Black, Daniilidis, *Learning to Reconstruct 3D Human Pose
and Shape via Model-fitting in the Loop*, ICCV 2019, and its code (https://github.com/nkolot/SPIN,
``train/trainer.py``).
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional, Sequence

from mvspin.config import ConfigError, load_config
from mvspin.data.bundle_format import BundleFile
from mvspin.fitting.config import MVSMPLifyConfig, validate_config
from mvspin.learning.fit_acceptance import EXTREME_BETAS
from mvspin.learning.training_dataset import DataConfig
from mvspin.regressor.backbone import RESNET_DEPTHS

__all__ = ["ModelConfig", "LossWeights", "FitsConfig", "OptimConfig", "TrainConfig", "load_train_config",
           "validate_train_config"]


@dataclass
class ModelConfig:
    """The regressor and the body model it predicts."""

    depth: int = 50
    """ResNet depth of the HMR regressor (SPIN / MV-SPIN: ResNet-50)."""
    init_checkpoint: Optional[str] = None
    """Start from these regressor weights (an mvspin or SPIN checkpoint, same depth); None: fresh."""
    imagenet_weights: Optional[str] = None
    """torchvision ResNet weights file for a fresh trunk (SPIN starts from ImageNet); None: random."""
    dropout: float = 0.5
    """Dropout probability of the head's drop1/drop2 (SPIN: ``nn.Dropout()``, p = 0.5)."""
    freeze_batchnorm: bool = False
    """Keep BatchNorm layers in eval mode (running statistics) while training. SPIN trains them;
    frozen, a sample's prediction does not depend on its batch (small batches, exact DDP parity)."""
    smpl_dir: Optional[str] = None
    """Official SMPL files; None: the bundled free model."""
    body_resolution: str = "full"
    """Free model resolution, ``full`` or ``low`` (ignored with ``smpl_dir``)."""


@dataclass
class LossWeights:
    """Weights of the training losses (all mean squared errors, as the MV-SPIN paper states).

    The paper's text gives ``(L2D, L3D, L_Theta, L_M) = (5.0, 5.0, 1.0, 0.001)``; those are the
    defaults of ``keypoints_2d``, ``keypoints_3d``, ``pose`` and ``mesh``. ``betas`` and
    ``camera`` follow SPIN's code (MV-SPIN's code too: betas 0.001, camera-scale penalty
    ``exp(-10 s)^2`` with weight 1, everything times 60).
    """

    keypoints_2d: float = 5.0
    """2D keypoints of every view, normalised crop coordinates (MV-SPIN: 5.0)."""
    keypoints_3d: float = 5.0
    """Pelvis-centred 3D joints where ground truth exists (MV-SPIN: 5.0)."""
    pose: float = 1.0
    """Rotation matrices (each view's orientation and the shared body) against the fit (MV-SPIN: 1.0)."""
    betas: float = 0.001
    """Betas against the fit (SPIN / MV-SPIN code: 0.001)."""
    mesh: float = 0.001
    """Per-vertex positions against the fit's mesh (MV-SPIN paper: 0.001; its code used 0)."""
    camera: float = 1.0
    """SPIN's camera-scale penalty ``exp(-10 s)^2`` (SPIN / MV-SPIN code: 1)."""
    scale: float = 60.0
    """Factor on the total (SPIN / MV-SPIN code: 60)."""


@dataclass
class FitsConfig:
    """The in-the-loop fits (MV-SMPLify) and the fits store."""

    enabled: bool = True
    """Fit in the loop (the method). False: no fitting, no pose/betas/mesh supervision from fits
    (the paper's Table 7 baseline when the SMPL weights are zero too)."""
    store: Optional[str] = None
    """Initial fits store (``mvspin fit-dataset``); None: every bundle starts without a fit (the
    model's mean, SPIN's start without static fits)."""
    fitting: MVSMPLifyConfig = field(default_factory=lambda: MVSMPLifyConfig(optimizer="lm"))
    """MV-SMPLify settings, for the in-loop fits and ``fit-dataset``'s static fits. ``mode``:
    ``per_view`` (the paper: crop cameras) or ``calibrated`` (one world-frame body on the stored
    cameras, every training file must carry them; :mod:`mvspin.learning.calibrated_targets`).
    ``optimizer``: ``lm`` by default, the batched Levenberg-Marquardt solver, about 3x cheaper
    than MV-SPIN's Adam (lr 0.01, 100 + 100 iterations), which ``configs/mvspin_h36m_3dhp.yaml``
    keeps, as the paper. Chosen on the synthetic protocol's validation pair (training data seed
    11, validation seed 12; ``configs/synthetic_cpu.yaml``, 3,000 steps, training seeds 0-2), by a
    criterion set before the runs: the mean over the last three checkpoints' validation PA-MPJPE
    within 2 mm of Adam's. LM 109.6 mm, Adam 108.8 (paired per seed +4.3 / -1.6 / -0.5), training
    17% less CPU."""
    reject_loss: float = 100.0
    """A fit whose SPIN fitting loss is not below this supervises no pose / betas / mesh term (the
    keypoint losses still apply). The loss: mean over keypoints of ``conf^2 * GMoF(residual,
    sigma)`` summed over x, y, in pixels of the 224 px fitting crop, mean over the bundle's used
    views (:mod:`mvspin.learning.fit_acceptance`; both fitting modes). SPIN: ``smplify_threshold = 100``."""
    max_abs_beta: float = 3.0
    """Bound on a fit's ``|beta|`` (SPIN: 3); what happens beyond it: ``extreme_betas``."""
    extreme_betas: str = "zero"
    """A fit with any ``|beta| > max_abs_beta``: ``zero`` keeps it as a target with zero betas
    (SPIN's code: ``opt_betas[(opt_betas.abs() > 3).any(dim=-1)] = 0.``); ``reject`` makes it
    supervise nothing."""
    use_ground_truth_smpl: bool = True
    """Where a bundle carries SMPL ground truth, it replaces the fit as target (SPIN: has_smpl)."""
    calibrated_agreement_deg: float = 45.0
    """Calibrated mode: a bundle starts from the network's estimates when every view's estimate,
    taken to the world frame, lies within this angle of the views' mean orientation; otherwise
    from its triangulated keypoints (an untrained network's views do not describe one body).
    Not in the papers (MV-SPIN fits per view); 180: always the network."""

    @property
    def rejecting_beta_bound(self) -> Optional[float]:
        """``max_abs_beta`` when it rejects fits (``extreme_betas="reject"``), else None (SPIN's
        zeroing leaves the fit accepted): the bound for :meth:`FitsStore.statistics`."""
        return self.max_abs_beta if self.extreme_betas == "reject" else None


@dataclass
class OptimConfig:
    """Optimisation, schedule, checkpoints and logging."""

    lr: float = 3e-5
    """Adam learning rate (MV-SPIN: 3e-5; SPIN 5e-5)."""
    lr_schedule: str = "constant"
    """``constant`` (SPIN, MV-SPIN) or ``cosine``: the rate falls from ``lr`` at the first step to
    ``lr * lr_final`` at the last (``max_steps`` or all epochs) along half a cosine. The rate is a
    function of the step alone, so a resumed run continues the same curve."""
    lr_final: float = 0.0
    """``cosine``: the last step's rate as a fraction of ``lr``."""
    weight_decay: float = 0.0
    """Adam weight decay (SPIN: 0)."""
    grad_clip: Optional[float] = None
    """Scale the gradient down to this global L2 norm where it is larger before each step (None:
    never, as SPIN). The logged ``grad_norm`` is the norm before clipping."""
    batch_size: int = 16
    """Bundles per step over all processes (MV-SPIN: 16 bundles x 4 views = 64 images)."""
    epochs: int = 20
    """Epochs (MV-SPIN: 20)."""
    max_steps: Optional[int] = None
    """Stop after this many steps (None: all epochs)."""
    num_workers: int = 0
    """DataLoader worker processes per training process."""
    fitting_threads: Optional[int] = 1
    """Torch CPU threads while MV-SMPLify runs (None: as for the network). Its tensors are small:
    one thread is fastest, by 10x and more on a loaded CPU (:mod:`mvspin.learning.threads`)."""
    seed: int = 0
    """Seeds the model initialisation, dropout and the data order."""
    device: str = "cpu"
    """``cpu``, ``cuda``, ``cuda:N`` or ``auto`` (CUDA when available); under torchrun each
    process uses ``cuda:LOCAL_RANK`` when CUDA is asked for."""
    checkpoint_every: int = 1000
    """Write a checkpoint (and the fits store) every this many steps, and at the end."""
    log_every: int = 10
    """Log scalars (TensorBoard and metrics.jsonl) every this many steps."""
    image_every: int = 0
    """Log an image grid (crop | network mesh | fit mesh) every this many steps (0: never)."""
    keep_fits: int = 2
    """Fits stores kept beside the newest checkpoints (older ones are deleted; the checkpoints
    themselves are all kept, for error-over-steps curves)."""


@dataclass
class TrainConfig:
    """Everything ``mvspin train`` needs; its resolved copy is saved beside each checkpoint."""

    data: DataConfig = field(default_factory=DataConfig)
    """Training bundle files, crops and augmentation."""
    model: ModelConfig = field(default_factory=ModelConfig)
    """The regressor and the body model it predicts."""
    loss: LossWeights = field(default_factory=LossWeights)
    """Loss weights (SPIN / MV-SPIN values)."""
    fits: FitsConfig = field(default_factory=FitsConfig)
    """In-the-loop fitting (MV-SMPLify), the fits store and fit rejection."""
    optim: OptimConfig = field(default_factory=OptimConfig)
    """Optimisation, schedule, checkpoints and logging."""


def learning_rate(optim: OptimConfig, step: int, total_steps: int) -> float:
    """Adam's rate for step ``step`` (0-based: the step about to be taken) of ``total_steps``
    under ``optim.lr_schedule``."""
    if optim.lr_schedule == "constant" or total_steps <= 1:
        return optim.lr
    progress = min(max(step, 0), total_steps - 1) / (total_steps - 1)
    return optim.lr * (optim.lr_final + (1 - optim.lr_final) * 0.5 * (1 + math.cos(math.pi * progress)))


def validate_train_config(config: TrainConfig, check_files: bool = True) -> None:
    """Check values and (with ``check_files``) paths before any work; raise
    :class:`~mvspin.config.ConfigError` naming the key."""
    if check_files:
        if not config.data.files:
            raise ConfigError("data.files is empty: give the training bundle files (.h5)", field="data.files")
        for i, f in enumerate(config.data.files):
            if not Path(f).is_file():
                raise ConfigError(f"data.files[{i}]: bundle file {f} does not exist", field="data.files")
    if config.model.depth not in RESNET_DEPTHS:
        raise ConfigError(f"model.depth must be one of {sorted(RESNET_DEPTHS)}, got {config.model.depth}")
    for key in ("init_checkpoint", "imagenet_weights", "smpl_dir"):
        value = getattr(config.model, key)
        if check_files and value is not None and not Path(value).exists():
            raise ConfigError(f"model.{key}: {value} does not exist", field=f"model.{key}")
    if config.model.body_resolution not in ("full", "low"):
        raise ConfigError(f"model.body_resolution must be 'full' or 'low', got {config.model.body_resolution!r}")
    if not 0.0 <= config.model.dropout < 1.0:
        raise ConfigError(f"model.dropout must be in [0, 1), got {config.model.dropout}")
    if check_files and config.fits.store is not None and not Path(config.fits.store).is_file():
        raise ConfigError(f"fits.store: fits store {config.fits.store} does not exist", field="fits.store")
    for name, value in vars(config.loss).items():
        if value < 0:
            raise ConfigError(f"loss.{name} must be >= 0, got {value}")
    o = config.optim
    if not o.lr > 0:
        raise ConfigError(f"optim.lr must be positive, got {o.lr}")
    if o.lr_schedule not in ("constant", "cosine"):
        raise ConfigError(f"optim.lr_schedule must be 'constant' or 'cosine', got {o.lr_schedule!r}")
    if not 0 <= o.lr_final <= 1:
        raise ConfigError(f"optim.lr_final must be in [0, 1], got {o.lr_final}")
    if o.grad_clip is not None and not o.grad_clip > 0:
        raise ConfigError(f"optim.grad_clip must be positive or null, got {o.grad_clip}")
    for name in ("batch_size", "epochs", "checkpoint_every", "log_every"):
        if getattr(o, name) < 1:
            raise ConfigError(f"optim.{name} must be >= 1, got {getattr(o, name)}")
    if o.fitting_threads is not None and o.fitting_threads < 1:
        raise ConfigError(f"optim.fitting_threads must be >= 1 or null, got {o.fitting_threads}")
    for name in ("num_workers", "image_every", "keep_fits"):
        if getattr(o, name) < 0:
            raise ConfigError(f"optim.{name} must be >= 0, got {getattr(o, name)}")
    if o.max_steps is not None and o.max_steps < 1:
        raise ConfigError(f"optim.max_steps must be >= 1, got {o.max_steps}")
    if not 0.0 <= config.fits.calibrated_agreement_deg <= 180.0:
        raise ConfigError(f"fits.calibrated_agreement_deg must be in [0, 180], got {config.fits.calibrated_agreement_deg}")
    if not config.fits.reject_loss > 0 or not config.fits.max_abs_beta > 0:
        raise ConfigError("fits.reject_loss and fits.max_abs_beta must be positive")
    if config.fits.extreme_betas not in EXTREME_BETAS:
        raise ConfigError(f"fits.extreme_betas must be one of {', '.join(EXTREME_BETAS)}, got {config.fits.extreme_betas!r}")
    try:
        validate_config(config.fits.fitting)
    except ValueError as err:
        raise ConfigError(f"fits.fitting: {err}") from None
    if check_files and config.fits.fitting.mode == "calibrated":
        # The calibrated fit projects into the stored cameras: every file must carry them.
        for i, f in enumerate(config.data.files):
            if not BundleFile(f).has_cameras:
                raise ConfigError(f"fits.fitting.mode=calibrated needs cameras in every training file, but "
                                  f"data.files[{i}] ({f}) has none; use fits.fitting.mode=per_view")


def load_train_config(yaml_path: Optional[str | Path] = None, overrides: Sequence[str] = ()) -> TrainConfig:
    """:class:`TrainConfig` from a YAML file and ``key=value`` overrides, validated (paths included).

    Raises:
        ConfigError: an unknown key, a wrong type, a value out of range, a missing file (one line).
    """
    config = load_config(TrainConfig, yaml_path, overrides)
    validate_train_config(config)
    return config
