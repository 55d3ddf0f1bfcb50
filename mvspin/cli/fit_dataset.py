"""``mvspin fit-dataset``: static MV-SMPLify fits of every training bundle, written as a fits store
(a thin shell over :func:`mvspin.apps.fit_dataset.run`; shardable with torchrun).

    mvspin fit-dataset --config configs/mvspin_h36m_3dhp.yaml --set data.files=[h36m.h5] -o fits.h5
"""
from __future__ import annotations

import argparse

from mvspin.apps.fit_dataset import FitDatasetConfig
from mvspin.cli.options import add_config_options, config_from_args


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "fit-dataset", help="fit every training bundle once (MV-SMPLify) and write the fits store",
        description="Fit every bundle of the config's training files with MV-SMPLify (fits.fitting.mode: per_view, "
                    "or calibrated on the stored cameras), started from model.init_checkpoint's predictions, else "
                    "the body model's mean (per_view) or triangulated keypoints (calibrated), and write the fits "
                    "store that `mvspin train` starts from (--set fits.store=FILE). The training config (--config) "
                    "is the one of mvspin train. "
                    "Sharded over processes with torchrun --nproc-per-node N -m mvspin fit-dataset ...",
    )
    add_config_options(p, FitDatasetConfig)
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    from mvspin.apps.fit_dataset import run as fit_dataset
    from mvspin.cli.common import TqdmProgress, log

    config = config_from_args(FitDatasetConfig, args)
    with TqdmProgress(unit="batch", enabled=not args.no_progress) as progress:
        s = fit_dataset(config, progress)
    if not s.is_main:
        return 0
    stats = ", ".join(f"{k} {v:.3g}" for k, v in s.store.items())
    log.info("%s: %d bundles fitted in %.1f s on %d process(es); %s", s.path, s.num_bundles, s.wall_seconds,
             s.world_size, stats)
    return 0
