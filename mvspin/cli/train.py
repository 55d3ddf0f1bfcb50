"""``mvspin train``: the MV-SPIN collaborative training loop (thin shell over
:func:`mvspin.learning.trainer.train`). Runs under ``torchrun --nproc-per-node N -m mvspin train``."""
from __future__ import annotations

import argparse
from pathlib import Path

from mvspin.cli.common import log


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "train", help="train the regressor with the MV-SPIN loop (in-the-loop MV-SMPLify, fits store)",
        description="Train the HMR regressor on multi-view bundle files: per-view predictions initialise "
                    "MV-SMPLify, the best fit per bundle is kept in a fits store and supervises every view. "
                    "Writes checkpoints (with their fits store and config), metrics.jsonl and TensorBoard logs "
                    "under --out. Multi-process: torchrun --nproc-per-node N -m mvspin train ...",
    )
    p.add_argument("--config", nargs="+", required=True, metavar=("FILE", "key=value"),
                   help="training config YAML (e.g. configs/synthetic_cpu.yaml), then optional key=value overrides")
    p.add_argument("overrides", nargs="*", metavar="key=value",
                   help="config overrides, dotted keys (e.g. optim.max_steps=100 data.files=[a.h5])")
    p.add_argument("--out", type=Path, required=True, help="output folder")
    p.add_argument("--resume", action="store_true", help="continue from the newest checkpoint in --out")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    from mvspin.learning.train_config import load_train_config
    from mvspin.learning.trainer import train

    config = load_train_config(args.config[0], [*args.config[1:], *args.overrides])
    s = train(config, args.out, resume=args.resume, progress=not args.no_progress)
    if not s.is_main:
        return 0
    losses = ", ".join(f"{k} {v:.4g}" for k, v in sorted(s.final_losses.items()))
    store = ", ".join(f"{k} {v:.3g}" for k, v in s.store.items())
    log.info("step %d (epoch %d) in %.1f s (%d steps this run)\n  losses: %s\n  fits store: %s\n  checkpoint: %s",
             s.final_step, s.epoch, s.wall_seconds, s.steps_run, losses, store, s.checkpoint)
    return 0
