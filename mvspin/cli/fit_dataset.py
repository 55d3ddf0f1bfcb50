"""``mvspin fit-dataset``: static MV-SMPLify fits of every training bundle, written as a fits store
(thin shell over :func:`mvspin.learning.dataset_fits.fit_dataset`; shardable with torchrun)."""
from __future__ import annotations

import argparse
from pathlib import Path

from mvspin.cli.common import log


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "fit-dataset", help="fit every training bundle once (MV-SMPLify) and write the fits store",
        description="Fit every bundle of the config's training files with MV-SMPLify (fits.fitting.mode: per_view, "
                    "or calibrated on the stored cameras), started "
                    "from model.init_checkpoint's predictions, else the body model's mean (per_view) or "
                    "triangulated keypoints (calibrated), and write the fits "
                    "store that `mvspin train` starts from (fits.store=FILE). "
                    "Sharded over processes with torchrun --nproc-per-node N -m mvspin fit-dataset ...",
    )
    p.add_argument("--config", nargs="+", required=True, metavar=("FILE", "key=value"),
                   help="training config YAML, then optional key=value overrides")
    p.add_argument("overrides", nargs="*", metavar="key=value", help="config overrides, dotted keys")
    p.add_argument("--out", type=Path, required=True, help="fits store to write (.h5)")
    p.add_argument("--batch-size", type=int, default=None, help="bundles per fitting batch (default: optim.batch_size)")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    from mvspin.learning.dataset_fits import fit_dataset
    from mvspin.learning.train_config import load_train_config

    config = load_train_config(args.config[0], [*args.config[1:], *args.overrides])
    s = fit_dataset(config, args.out, batch_size=args.batch_size, progress=not args.no_progress)
    if not s.is_main:
        return 0
    stats = ", ".join(f"{k} {v:.3g}" for k, v in s.store.items())
    log.info("%s: %d bundles fitted in %.1f s on %d process(es); %s", s.path, s.num_bundles, s.wall_seconds,
             s.world_size, stats)
    return 0
