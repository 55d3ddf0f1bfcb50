"""The ``fit-dataset`` job: one static MV-SMPLify fit per training bundle, written as a fits store
(:func:`mvspin.learning.dataset_fits.fit_dataset`; shardable with torchrun).

:class:`FitDatasetConfig` is a :class:`~mvspin.learning.train_config.TrainConfig` (the same YAML
files as ``mvspin train``: data, model, fitting and rejection settings are used) plus the store
to write. The store's location is checked before the first fit.

Example:
    >>> from mvspin.apps.fit_dataset import FitDatasetConfig, run  # doctest: +SKIP
    >>> summary = run(FitDatasetConfig(out=Path("fits.h5")))  # doctest: +SKIP
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Optional

from mvspin.apps.train import train_config_of
from mvspin.atomic import check_output_location, removed_if_unused
from mvspin.config import ConfigError, check_range
from mvspin.learning.dataset_fits import FitDatasetSummary
from mvspin.learning.train_config import TrainConfig, validate_train_config
from mvspin.progress import Progress, no_progress

__all__ = ["FitDatasetConfig", "FitDatasetSummary", "run"]


@dataclass
class FitDatasetConfig(TrainConfig):
    """Everything ``mvspin fit-dataset`` needs: the training config's sections and the store to write."""

    out: Optional[Path] = None
    """Fits store to write (.h5); mvspin train starts from it with fits.store=FILE."""
    batch_size: Optional[int] = None
    """Bundles per fitting batch per process (default: optim.batch_size)."""

    def __post_init__(self) -> None:
        if self.out is not None:
            self.out = Path(self.out)
        check_range("batch_size", self.batch_size, 1, 65536, integer=True)
        validate_train_config(self, check_files=False)


def run(config: FitDatasetConfig, progress: Progress = no_progress) -> FitDatasetSummary:
    """Fit every bundle of ``config.data.files`` and write the fits store ``config.out``.

    Raises:
        ConfigError: no ``out``, a bad setting or a missing file. OutputLocationError: ``out``
            cannot be written. Both before the first fit.
    """
    from mvspin.learning.dataset_fits import fit_dataset

    if config.out is None:
        raise ConfigError("out is required: the fits store (.h5) to write", field="out")
    with removed_if_unused(config.out.parent):
        check_output_location(config.out, what="out")
        return fit_dataset(train_config_of(config), config.out, batch_size=config.batch_size, progress=progress)
