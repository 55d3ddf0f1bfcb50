"""``mvspin eval``: score a regressor checkpoint on a single-image evaluation protocol.

    mvspin eval --checkpoint model_checkpoint.pt --dataset h36m-p1 --data h36m_test.h5 -o eval/

Prints a table of the mean metrics and writes ``eval_<dataset>.json`` and
``eval_<dataset>_samples.npz`` (per-sample errors, ids, joints) under ``-o``. A thin shell over
:func:`mvspin.apps.evaluate.run`.
"""
from __future__ import annotations

import argparse

from mvspin.apps.evaluate import EvalConfig
from mvspin.cli.options import add_config_options, config_from_args


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("eval", help="score a regressor checkpoint on an evaluation protocol (single image)",
                       description="Evaluate a regressor checkpoint on Human3.6M (p1, p2), MPI-INF-3DHP, 3DPW or a "
                                   "synthetic test file, one image at a time, with SPIN's protocols: MPJPE and "
                                   "PA-MPJPE (mm), plus PCK@150mm and AUC on MPI-INF-3DHP.")
    add_config_options(p, EvalConfig, flatten=("body",))
    p.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    from mvspin.apps.evaluate import run as evaluate
    from mvspin.cli.common import TqdmProgress

    config = config_from_args(EvalConfig, args)
    with TqdmProgress(unit="image") as progress:
        report = evaluate(config, progress)
    print(report.result.table())
    if report.files:
        print(f"wrote {' and '.join(map(str, report.files))}")
    return 0
