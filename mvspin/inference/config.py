"""The settings of one inference run (``mvspin infer``), as a typed dataclass."""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional

__all__ = ["BACKBONES", "MESH_FORMATS", "InferConfig"]

BACKBONES: dict[str, int] = {"resnet18": 18, "resnet34": 34, "resnet50": 50, "resnet101": 101, "resnet152": 152}
"""Regressor backbone names -> ResNet depth (SPIN: resnet50)."""
MESH_FORMATS = ("obj", "ply")


@dataclass
class InferConfig:
    """What to run and where to write it; every field has the ``mvspin infer`` option of the same name.

    Attributes:
        checkpoint: regressor checkpoint (SPIN's ``model_checkpoint.pt`` or one saved by mvspin).
        allow_untrained: run a randomly initialised network when no checkpoint is given (tests).
        backbone: expected architecture (``resnet18`` ... ``resnet152``); None: the checkpoint's
            (``resnet50`` untrained).
        bbox: SPIN box file ``{"bbox": [x, y, w, h]}`` for every input, or a folder matched by stem.
        openpose: OpenPose JSON for every input, or a folder matched by stem / frame number.
        person: ``largest``, ``most_confident``, an index, or ``all`` (images only).
        views: the inputs are views of one person at one moment: one fused body.
        refine: SMPLify (MV-SMPLify with ``views``) on the OpenPose keypoints.
        fit_config: YAML of SMPLify / MV-SMPLify settings for ``refine``.
        fit: ``key=value`` overrides of those settings.
        out: output folder.
        mesh_format: ``obj`` or ``ply``.
        batch_size: crops per network call.
        render: write overlays and side views (open3d).
        seed: weight initialisation seed with ``allow_untrained``.
        device: torch device name; None: CUDA when available, else CPU.
        smpl_dir, gender, resolution: the body model (:meth:`mvspin.body.BodyModel.load`).
        preprocessing: ``exact`` or ``spin`` (:mod:`mvspin.regressor.preprocess`); None: ``spin``
            for SPIN's own checkpoints, ``exact`` for mvspin's.
    """

    checkpoint: Optional[Path] = None
    allow_untrained: bool = False
    backbone: Optional[str] = None
    bbox: Optional[Path] = None
    openpose: Optional[Path] = None
    person: str = "largest"
    views: bool = False
    refine: bool = False
    fit_config: Optional[Path] = None
    fit: list[str] = field(default_factory=list)
    out: Path = Path("mvspin_infer")
    mesh_format: str = "obj"
    batch_size: int = 16  # crops per network call
    render: bool = True
    seed: int = 0
    device: Optional[str] = None
    smpl_dir: Optional[Path] = None
    gender: str = "neutral"
    resolution: str = "full"
    preprocessing: Optional[str] = None
