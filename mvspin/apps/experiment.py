"""``mvspin experiment table7``: the synthetic protocol of the paper's Table 7 (full loop vs no
fitting) as one call; :mod:`mvspin.learning.synthetic_protocol` does the work.

Example:
    >>> from mvspin.apps.experiment import Table7Config, run_table7
    >>> results = run_table7(Table7Config(out="table7", quick=True))  # doctest: +SKIP
    >>> print(results.table())  # doctest: +SKIP
"""
from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

from mvspin.config import check_range
from mvspin.learning.synthetic_protocol import QUICK, ProtocolResults, SyntheticProtocolConfig
from mvspin.progress import Progress, no_progress

__all__ = ["Table7Config", "run_table7"]

log = logging.getLogger("mvspin")


@dataclass(kw_only=True)
class Table7Config(SyntheticProtocolConfig):
    """Every setting of ``mvspin experiment table7``: the protocol's sizes, seeds and training
    configs, and where its data, runs and results go."""

    out: Path = Path("mvspin_table7")
    """Output folder: data/, one run folder per arm and seed, results.json and the plot."""
    quick: bool = False
    """A few-minute smoke run (fewer bundles and steps, one seed): checks that the protocol runs,
    proves nothing about the method."""
    resume: bool = False
    """Continue an interrupted protocol in ``out`` (same settings): finished runs are kept, a run
    stopped part-way continues from its newest checkpoint."""

    def __post_init__(self) -> None:
        self.out = Path(self.out)
        if self.quick:  # the smoke run's sizes replace the protocol's
            for name, value in QUICK.items():
                setattr(self, name, list(value) if isinstance(value, list) else value)
        for name in ("train_bundles", "val_bundles", "test_bundles"):
            check_range(name, getattr(self, name), 1, 1_000_000, integer=True)
        check_range("num_views", self.num_views, 1, 64, integer=True)
        check_range("image_size", self.image_size, 16, 4096, integer=True)
        check_range("partial_3d_share", self.partial_3d_share, 0.0, 1.0)
        check_range("parallel_arms", self.parallel_arms, 1, 64, integer=True)
        check_range("static_fit_iterations", self.static_fit_iterations, 0, 100_000, integer=True)


def run_table7(config: Table7Config, progress: Progress = no_progress) -> ProtocolResults:
    """Run the synthetic protocol into ``config.out``; returns its results (also in
    ``results.json``). ``progress`` reports the data rendering."""
    from mvspin.atomic import output_folder
    from mvspin.learning.synthetic_protocol import run

    if config.quick:
        log.info("quick run: a smoke test of the protocol, too small to show anything about the method")
    with output_folder(config.out, what="out"):
        return run(config.out, config, log=log.info, progress=progress, resume=config.resume)
