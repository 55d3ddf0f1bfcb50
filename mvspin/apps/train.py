"""The ``train`` job: the MV-SPIN collaborative training loop (:func:`mvspin.learning.trainer.train`).

:class:`TrainJobConfig` is a :class:`~mvspin.learning.train_config.TrainConfig` (the YAML files
under ``configs/`` are its sections) plus where the run goes and whether it continues or
replaces a run already there. A folder that holds a run is refused unless ``resume`` or
``overwrite`` says what to do with it.

Example:
    >>> from mvspin.apps.train import TrainJobConfig, run  # doctest: +SKIP
    >>> from mvspin.config import load_config  # doctest: +SKIP
    >>> config = load_config(TrainJobConfig, "configs/synthetic_cpu.yaml", ["data.files=[train.h5]", "out=runs/a"])  # doctest: +SKIP
    >>> summary = run(config)  # doctest: +SKIP
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from pathlib import Path
from typing import Optional

from mvspin.atomic import output_folder
from mvspin.config import ConfigError
from mvspin.learning.train_config import TrainConfig, validate_train_config
from mvspin.learning.trainer import TrainSummary
from mvspin.progress import Progress, no_progress

__all__ = ["TrainJobConfig", "TrainSummary", "run", "train_config_of"]


@dataclass
class TrainJobConfig(TrainConfig):
    """Everything ``mvspin train`` needs: the training config's sections and the run's folder."""

    out: Optional[Path] = None
    """Output folder: checkpoints (with their fits stores and configs), metrics.jsonl, TensorBoard logs."""
    resume: bool = False
    """Continue from the newest checkpoint in out."""
    overwrite: bool = False
    """out may hold an earlier run: delete its checkpoints, metrics and logs first."""

    def __post_init__(self) -> None:
        if self.out is not None:
            self.out = Path(self.out)
        if self.resume and self.overwrite:
            raise ConfigError("resume and overwrite exclude each other: continue the run in out, or replace it",
                              field="overwrite")
        validate_train_config(self, check_files=False)


def train_config_of(config: TrainConfig) -> TrainConfig:
    """The plain :class:`TrainConfig` part of a job config (what is saved beside each checkpoint)."""
    return TrainConfig(**{f.name: getattr(config, f.name) for f in dataclasses.fields(TrainConfig)})


def run(config: TrainJobConfig, progress: Progress = no_progress) -> TrainSummary:
    """Train into ``config.out``; see :func:`mvspin.learning.trainer.train` for what is written.

    Raises:
        ConfigError: no ``out``, a bad setting or a missing file; ``out`` holds a run and neither
            ``resume`` nor ``overwrite`` is set (all before any work).
        TrainingError: ``resume`` with no checkpoint; a NaN loss.
        OutputLocationError: ``out`` cannot be written (before any work).
    """
    from mvspin.learning.trainer import train

    if config.out is None:
        raise ConfigError("out is required: the folder the run writes to", field="out")
    with output_folder(config.out, what="out"):  # a run refused before its first file leaves no folder
        return train(train_config_of(config), config.out, resume=config.resume, progress=progress,
                     overwrite=config.overwrite)
