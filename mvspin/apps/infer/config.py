"""The settings of one inference run (``mvspin infer``), as a typed dataclass checked on construction."""
from __future__ import annotations

from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Optional

from mvspin.body.config import BodyModelConfig
from mvspin.config import ConfigError, check_range
from mvspin.data.keypoint_files import parse_person_choice
from mvspin.fitting.config import PRESETS, MVSMPLifyConfig, SMPLifyConfig, validate_config
from mvspin.regressor.preprocess import PREPROCESSING_MODES

__all__ = ["BACKBONES", "MESH_FORMATS", "InferConfig"]

BACKBONES: dict[str, int] = {"resnet18": 18, "resnet34": 34, "resnet50": 50, "resnet101": 101, "resnet152": 152}
"""Regressor backbone names -> ResNet depth (SPIN: resnet50)."""
MESH_FORMATS = ("obj", "ply")


@dataclass
class InferConfig:
    """Every setting of one inference run: what to read, which network, where to write.

    Checked on construction (a bad value raises :class:`~mvspin.config.ConfigError` naming the
    field); the files it names are checked by :func:`mvspin.apps.infer.run` before any work.

    Example:
        >>> config = InferConfig(inputs=[Path("photo.jpg")], checkpoint=Path("model_checkpoint.pt"),
        ...                      out=Path("results"))
        >>> config.fit.stage2_iterations  # SMPLify's iterations (SPIN's 100), used with refine
        100
    """

    inputs: list[Path] = field(default_factory=list)
    """Image files, folders of images and videos, and videos; with views: the images of one person
    seen by several cameras at one moment."""
    out: Path = Path("mvspin_infer")
    """Output folder."""
    checkpoint: Optional[Path] = None
    """Regressor checkpoint (SPIN's model_checkpoint.pt or one written by mvspin)."""
    allow_untrained: bool = False
    """Run a randomly initialised network when no checkpoint is given (for tests only: its bodies
    are meaningless)."""
    backbone: Optional[str] = field(default=None, metadata={"choices": tuple(BACKBONES)})
    """Expected architecture (default: read from the checkpoint; resnet50 when untrained)."""
    bbox: Optional[Path] = None
    """Box file {"bbox": [x, y, w, h]} for every input, or a folder of them matched by image stem
    (<stem>.json or <stem>_bbox.json); videos: one file for all frames, or a folder with one file
    per frame."""
    openpose: Optional[Path] = None
    """OpenPose JSON for every input, or a folder matched by image stem (<stem>_keypoints.json or
    <stem>.json); videos: a folder with one file per frame (frame = last number in the name). Gives
    the crop box unless bbox is given, and the keypoints for refine."""
    person: str = "largest"
    """Which OpenPose person: largest, most_confident, an index, or all (one output each; images
    only)."""
    views: bool = False
    """The inputs are views of one person at one moment: fuse them into one body (rotation mean
    of the body pose, mean betas)."""
    refine: bool = False
    """Refine each prediction with SMPLify on the openpose keypoints (MV-SMPLify with views)."""
    fit: MVSMPLifyConfig = field(default_factory=MVSMPLifyConfig)
    """SMPLify settings of refine (mvspin.fitting.SMPLifyConfig's fields; with views, MV-SMPLify's
    per_view mode); default: the mvspin preset (SPIN's weights and iterations, configs/fitting.yaml)."""
    fit_preset: Optional[str] = field(default=None, metadata={"choices": tuple(PRESETS)})
    """Start refine's settings from a named fitting preset (configs/fitting.yaml lists them); the
    fit settings that differ from the defaults apply on top."""
    mesh_format: str = field(default="obj", metadata={"choices": MESH_FORMATS})
    """Mesh files: obj (text, opens everywhere) or ply (binary, ~15x faster to write for the full
    free model)."""
    batch_size: int = 16
    """Crops per network call."""
    render: bool = True
    """Write overlays and side views (open3d rendering)."""
    smooth: int = 0
    """Videos: smooth the per-frame bodies over this many frames (a Savitzky-Golay filter on the
    rotations in 6D, the shape and the translation; odd, e.g. 9 at 30 fps); 0: off."""
    seed: int = 0
    """Weight initialisation seed with allow_untrained."""
    device: Optional[str] = None
    """Torch device, e.g. cpu or cuda:0 (default: cuda if available, else cpu)."""
    body: BodyModelConfig = field(default_factory=BodyModelConfig)
    """The body model the regressor was trained with."""
    preprocessing: Optional[str] = field(default=None, metadata={"choices": PREPROCESSING_MODES})
    """How crops are cut: exact (mvspin's sub-pixel crop) or spin (SPIN's own crop, contrast
    stretch and OpenPose box centring); default: spin for SPIN's own checkpoints, exact for
    mvspin's."""

    def __post_init__(self) -> None:
        self.inputs = [Path(p) for p in self.inputs]
        self.out = Path(self.out)
        for name in ("checkpoint", "bbox", "openpose"):
            if getattr(self, name) is not None:
                setattr(self, name, Path(getattr(self, name)))
        if not self.inputs:
            raise ConfigError("inputs is empty: give image files, folders or videos", field="inputs")
        if self.checkpoint is None and not self.allow_untrained:
            raise ConfigError("no checkpoint given: an untrained network predicts meaningless bodies; set it to "
                              "model_checkpoint.pt (SPIN's released one or an HMR checkpoint saved by mvspin)",
                              field="checkpoint")
        for name, allowed in (("backbone", tuple(BACKBONES)), ("preprocessing", PREPROCESSING_MODES)):
            value = getattr(self, name)
            if value is not None and value not in allowed:
                raise ConfigError(f"{name} must be one of {', '.join(allowed)}, got {value!r}", field=name)
        if self.mesh_format not in MESH_FORMATS:
            raise ConfigError(f"mesh_format must be obj or ply, got {self.mesh_format!r}", field="mesh_format")
        check_range("batch_size", self.batch_size, 1, 4096, integer=True)
        check_range("smooth", self.smooth, 0, 1001, integer=True)
        if self.smooth and self.smooth < 5:
            raise ConfigError(f"smooth must be 0 (off) or at least 5 frames, got {self.smooth}", field="smooth")
        try:
            person = parse_person_choice(self.person)
        except ValueError as err:
            raise ConfigError(str(err), field="person") from None
        if person == "all" and self.bbox is not None:
            raise ConfigError("person all takes every person from openpose; bbox gives one box per image",
                              field="person")
        if self.views and person == "all":
            raise ConfigError("views takes one person per view; choose person largest, most_confident or an index",
                              field="views")
        if self.refine and self.openpose is None:
            raise ConfigError("refine fits SMPLify to 2D keypoints: give them with openpose", field="refine")
        if not self.refine and (self.fit != MVSMPLifyConfig() or self.fit_preset is not None):
            raise ConfigError("the fit settings set up refine, which is not on", field="refine")
        if self.fit_preset is not None:
            if self.fit_preset not in PRESETS:
                raise ConfigError(f"fit_preset must be one of {', '.join(PRESETS)}, got {self.fit_preset!r}",
                                  field="fit_preset")
            # Applying it again to its own result changes nothing: a saved config reads back equal.
            default = MVSMPLifyConfig()
            changed = {f.name: getattr(self.fit, f.name) for f in fields(MVSMPLifyConfig)
                       if getattr(self.fit, f.name) != getattr(default, f.name)}
            self.fit = MVSMPLifyConfig.preset(self.fit_preset, **changed)
        try:
            validate_config(self.fit)
        except ValueError as err:
            raise ConfigError(f"fit.{err}", field=None) from None
        if self.views and self.fit.mode != "per_view":
            raise ConfigError(f"fit.mode must be per_view with views (cameras without calibration), "
                              f"got {self.fit.mode}", field="fit.mode")

    def single_view_fit(self) -> SMPLifyConfig:
        """The SMPLify settings of ``fit`` (refinement of single images and video frames)."""
        return SMPLifyConfig(**{f.name: getattr(self.fit, f.name) for f in fields(SMPLifyConfig)})
