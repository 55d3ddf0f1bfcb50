"""``mvspin experiment table7``: argv -> :class:`~mvspin.apps.experiment.Table7Config` -> one call -> table."""
from __future__ import annotations

import argparse

from mvspin.apps.experiment import Table7Config
from mvspin.cli.options import add_config_options, config_from_args


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("experiment", help="the paper's experiments on synthetic data (table7)",
                       description="Experiments of the MV-SPIN paper that run without licensed data.")
    kinds = p.add_subparsers(dest="experiment", metavar="EXPERIMENT", required=True)
    t = kinds.add_parser(
        "table7", help="full loop vs no-fitting ablation on synthetic bundles (the paper's Table 7)",
        description="Render training, validation and test bundles, train the full MV-SPIN loop and the no-fitting "
                    "ablation for each training seed (and the partial-3D variant), evaluate every network on the "
                    "test set and write results.json and a plot. Hours on a 2-core CPU; --quick is a smoke run.")
    add_config_options(t, Table7Config)
    t.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    return _run(config_from_args(Table7Config, args))


def run_table7_from(args: argparse.Namespace) -> int:
    """``mvspin demo --train [--quick]``: the same protocol into the demo's ``--out``."""
    out = getattr(args, "out", None)
    return _run(Table7Config(quick=bool(args.quick), **({"out": out} if out is not None else {})))


def _run(config: Table7Config) -> int:
    from mvspin.apps.experiment import run_table7
    from mvspin.cli.common import TqdmProgress

    with TqdmProgress(unit="bundle") as progress:
        results = run_table7(config, progress)
    print(results.table())
    print(f"wrote {config.out / 'results.json'} and {results.plot}")
    return 0
