"""``mvspin train``: the MV-SPIN collaborative training loop (a thin shell over
:func:`mvspin.apps.train.run`). Runs under ``torchrun --nproc-per-node N -m mvspin train``.

    mvspin train --config configs/synthetic_cpu.yaml --set data.files=[train.h5] -o runs/a
    mvspin train --config configs/synthetic_cpu.yaml --set data.files=[train.h5] -o runs/a --resume
"""
from __future__ import annotations

import argparse

from mvspin.apps.train import TrainJobConfig
from mvspin.cli.options import add_config_options, config_from_args


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "train", help="train the regressor with the MV-SPIN loop (in-the-loop MV-SMPLify, fits store)",
        description="Train the HMR regressor on multi-view bundle files: per-view predictions initialise "
                    "MV-SMPLify, the best fit per bundle is kept in a fits store and supervises every view. "
                    "Writes checkpoints (with their fits store and config), metrics.jsonl and TensorBoard logs "
                    "under -o. A folder that holds a run needs --resume (continue it) or --overwrite (replace "
                    "it). The training config (--config, e.g. configs/synthetic_cpu.yaml) has sections data, "
                    "model, loss, fits and optim, reached with --set (e.g. --set optim.max_steps=100). "
                    "Multi-process: torchrun --nproc-per-node N -m mvspin train ...",
    )
    add_config_options(p, TrainJobConfig)
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    from mvspin.apps.train import run as train
    from mvspin.cli.common import TqdmProgress, log

    config = config_from_args(TrainJobConfig, args)
    with TqdmProgress(unit="step", enabled=not args.no_progress) as progress:
        s = train(config, progress)
    if not s.is_main:
        return 0
    losses = ", ".join(f"{k} {v:.4g}" for k, v in sorted(s.final_losses.items()))
    store = ", ".join(f"{k} {v:.3g}" for k, v in s.store.items())
    log.info("step %d (epoch %d) in %.1f s (%d steps this run)\n  losses: %s\n  fits store: %s\n  checkpoint: %s",
             s.final_step, s.epoch, s.wall_seconds, s.steps_run, losses, store, s.checkpoint)
    return 0
