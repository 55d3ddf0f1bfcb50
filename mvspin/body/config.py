"""Which body model a job loads: the one config every job that poses bodies nests (``body``)."""
from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Literal, Optional

if TYPE_CHECKING:
    import torch

    from mvspin.body.model import BodyModel

__all__ = ["BodyModelConfig"]

log = logging.getLogger("mvspin")


@dataclass
class BodyModelConfig:
    """The body model of a job: official SMPL files when a folder is named, else the free model.

    Example:
        >>> BodyModelConfig(resolution="low").resolution
        'low'
    """

    smpl_dir: Optional[Path] = None
    """Folder with official SMPL files (SMPL_NEUTRAL.pkl, ...) and optionally SPIN's
    J_regressor_*.npy, smpl_mean_params.npz, gmm_08.pkl; default: $MVSPIN_SMPL_DIR, else the
    bundled free model."""
    gender: Literal["neutral", "male", "female"] = "neutral"
    """SMPL model gender (with smpl_dir)."""
    resolution: Literal["full", "low"] = "full"
    """Free model resolution: full (12,272 vertices) or low (1,229)."""

    def __post_init__(self) -> None:
        from mvspin.config import ConfigError

        if self.gender not in ("neutral", "male", "female"):
            raise ConfigError(f"gender must be neutral, male or female, got {self.gender!r}", field="gender")
        if self.resolution not in ("full", "low"):
            raise ConfigError(f"resolution must be full or low, got {self.resolution!r}", field="resolution")
        if self.smpl_dir is not None:
            self.smpl_dir = Path(self.smpl_dir)

    def load(self, device: "torch.device | str | None" = None) -> "BodyModel":
        """Load the model (and log which one it is: every job says which body model it uses)."""
        from mvspin.body.model import BodyModel

        body = BodyModel.load(self.smpl_dir, gender=self.gender, resolution=self.resolution, device=device)
        log.info("body model: %s (%s)", body.name, body.source)
        return body
