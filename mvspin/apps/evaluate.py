"""The ``eval`` job: score a regressor checkpoint on a single-image evaluation protocol.

Inputs are a checkpoint and a bundle file of the protocol's dataset; outputs (with ``out``) are
``eval_<protocol>.json`` (the mean metrics) and ``eval_<protocol>_samples.npz`` (per-sample
errors, ids and joints). The protocols are :mod:`mvspin.learning.evaluation`'s.

Example:
    >>> from mvspin.apps.evaluate import EvalConfig, run  # doctest: +SKIP
    >>> report = run(EvalConfig(checkpoint=Path("model.pt"), dataset="synthetic", data=Path("test.h5")))  # doctest: +SKIP
    >>> print(report.result.table())  # doctest: +SKIP
"""
from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional

from mvspin.atomic import check_output_location, output_folder
from mvspin.body import BodyModelConfig
from mvspin.config import ConfigError, check_range, resolve_device
from mvspin.learning.evaluation import (
    MAX_BATCH_SIZE,
    MAX_INPUT_SIZE,
    MIN_INPUT_SIZE,
    PROTOCOLS,
    EvaluationResult,
)
from mvspin.progress import Progress, no_progress

__all__ = ["EvalConfig", "EvalReport", "run"]

log = logging.getLogger("mvspin")


@dataclass
class EvalConfig:
    """Everything ``mvspin eval`` needs."""

    checkpoint: Path
    """Regressor checkpoint (SPIN or mvspin layout)."""
    dataset: str = field(metadata={"choices": tuple(PROTOCOLS)})
    """Evaluation protocol: h36m-p1, h36m-p2, mpi-inf-3dhp, 3dpw or synthetic."""
    data: Path
    """Bundle file of the protocol's dataset (mvspin data)."""
    out: Optional[Path] = None
    """Folder for the JSON summary and the per-sample .npz (none: print the table only)."""
    batch_size: int = 32
    """Crops per network call."""
    input_size: Optional[int] = None
    """Network input crop side in pixels (default: the checkpoint's, else 224)."""
    max_samples: Optional[int] = None
    """Evaluate only the first N samples (default: all)."""
    device: Optional[str] = None
    """Torch device, e.g. cpu or cuda:0 (default: cuda if available, else cpu)."""
    body: BodyModelConfig = field(default_factory=BodyModelConfig)
    """The body model the checkpoint predicts for."""

    def __post_init__(self) -> None:
        if self.dataset not in PROTOCOLS:
            raise ConfigError(f"dataset must be one of {', '.join(PROTOCOLS)}, got {self.dataset!r}", field="dataset")
        check_range("batch_size", self.batch_size, 1, MAX_BATCH_SIZE, integer=True)
        check_range("input_size", self.input_size, MIN_INPUT_SIZE, MAX_INPUT_SIZE, integer=True)
        check_range("max_samples", self.max_samples, 1, integer=True)
        self.checkpoint, self.data = Path(self.checkpoint), Path(self.data)
        self.out = None if self.out is None else Path(self.out)


@dataclass
class EvalReport:
    """What :func:`run` did: the evaluation and the files written (empty without ``out``)."""

    result: EvaluationResult
    """Metrics, per-sample errors and joints (:class:`~mvspin.learning.evaluation.EvaluationResult`)."""
    input_size: int
    """The crop side the network ran at, pixels."""
    files: list[Path] = field(default_factory=list)
    """``eval_<protocol>.json`` and ``eval_<protocol>_samples.npz`` when ``out`` was given."""
    warnings: list[str] = field(default_factory=list)
    """What the numbers should be read with (e.g. the data file is a training split)."""


def output_files(config: EvalConfig) -> list[Path]:
    """The files :func:`run` writes under ``config.out`` (none without it)."""
    if config.out is None:
        return []
    prefix = f"eval_{PROTOCOLS[config.dataset].name}"
    return [config.out / f"{prefix}.json", config.out / f"{prefix}_samples.npz"]


def run(config: EvalConfig, progress: Progress = no_progress) -> EvalReport:
    """Evaluate ``config.checkpoint`` on ``config.data`` with protocol ``config.dataset``.

    Order: the output folder and file names are checked first, then the data file (cheap),
    the checkpoint and the body model; only then does the network run.

    Raises:
        OutputLocationError: ``out`` cannot receive the results (before any evaluation).
        EvaluationDataError: the data file does not fit the protocol.
        CheckpointError: the checkpoint cannot be read or was trained for another body model.

    An ``out`` folder made for this run is removed again when the run fails.
    """
    if config.out is None:
        return _run(config, progress)
    with output_folder(config.out, what="out"):
        return _run(config, progress)


def _run(config: EvalConfig, progress: Progress) -> EvalReport:
    from mvspin.body import BodyModel
    from mvspin.data.bundle_format import BundleFile
    from mvspin.learning.evaluation import check_protocol_file, evaluate
    from mvspin.regressor.checkpoint import checkpoint_input_size, load_regressor_checkpoint

    files = output_files(config)
    for path in files:  # no folder in the way of a result file
        check_output_location(path, what="out")
    device = resolve_device(config.device, what="device")
    bundles = BundleFile(config.data)
    protocol = check_protocol_file(bundles, config.dataset)
    warnings = []
    split = str(bundles.attrs.get("split", ""))
    if split == "train":  # scores on training data say little about the regressor: say so
        warnings.append(f"{bundles.path} is a training split: these are not test-set numbers")
        log.warning("warning: %s", warnings[-1])
    model, meta = load_regressor_checkpoint(config.checkpoint, map_location=device)
    body = config.body.load(device)
    input_size = config.input_size or checkpoint_input_size(meta, body, config.checkpoint)
    gt_bodies = None
    if protocol.gendered and config.body.smpl_dir is not None:
        gt_bodies = {g: BodyModel.from_smpl_dir(config.body.smpl_dir, g, device=device) for g in ("male", "female")}
    elif protocol.gendered:
        log.info("ground truth posed with %s for both genders (the free model has none; give smpl_dir for "
                 "SPIN's male/female SMPL)", body.name)
    log.info("evaluating %s: %s (%d bundles) with %s, %d px crops", protocol.name, bundles.path, len(bundles),
             config.checkpoint, input_size)
    result = evaluate(model, body, bundles, protocol, gt_bodies=gt_bodies, device=device,
                      batch_size=config.batch_size, input_size=input_size, max_samples=config.max_samples,
                      checkpoint=str(config.checkpoint), progress=progress)
    if config.out is not None:
        files = list(result.save(config.out, prefix=files[0].stem))
    return EvalReport(result=result, input_size=input_size, files=files, warnings=warnings)
