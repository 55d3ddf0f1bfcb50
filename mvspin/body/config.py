"""Which body model a job uses: the one config every job that poses a body nests as ``body``."""
from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Optional

if TYPE_CHECKING:
    import torch

    from mvspin.body.model import BodyModel

__all__ = ["BodyModelConfig"]

log = logging.getLogger("mvspin")

GENDERS = ("neutral", "male", "female")
RESOLUTIONS = ("full", "low")


@dataclass
class BodyModelConfig:
    """The body model to load: official SMPL files from ``smpl_dir`` (or ``$MVSPIN_SMPL_DIR``),
    else the bundled free model at ``resolution``.

    Example:
        >>> BodyModelConfig().load().name  # doctest: +SKIP
        'free-full'
    """

    smpl_dir: Optional[Path] = None
    """Folder with official SMPL files (SMPL_NEUTRAL.pkl, ...) and optionally SPIN's
    J_regressor_*.npy, smpl_mean_params.npz, gmm_08.pkl; default: $MVSPIN_SMPL_DIR, else the
    bundled free model."""
    gender: str = field(default="neutral", metadata={"choices": GENDERS})
    """SMPL model gender (with smpl_dir)."""
    resolution: str = field(default="full", metadata={"choices": RESOLUTIONS})
    """Free model resolution: full (12,272 vertices) or low (1,229)."""

    def __post_init__(self) -> None:
        from mvspin.config import ConfigError

        if self.gender not in GENDERS:
            raise ConfigError(f"gender must be one of {', '.join(GENDERS)}, got {self.gender!r}", field="gender")
        if self.resolution not in RESOLUTIONS:
            raise ConfigError(f"resolution must be one of {', '.join(RESOLUTIONS)}, got {self.resolution!r}",
                              field="resolution")
        if self.smpl_dir is not None:
            self.smpl_dir = Path(self.smpl_dir).expanduser()

    def load(self, device: "torch.device | str | None" = None) -> "BodyModel":
        """Load the model (and log which one it is: every job says which body model it uses)."""
        from mvspin.body.model import BodyModel

        body = BodyModel.load(self.smpl_dir, gender=self.gender, resolution=self.resolution, device=device)
        log.info("body model: %s (%s)", body.name, body.source)
        return body
