"""``mvspin data``: make bundle files (synthetic captures, dataset builders) and inspect them.

    mvspin data synthetic -o synth.h5 --bundles 1000 --seed 0 --num-views 4
    mvspin data build h36m /data/human36m -o h36m_train.h5 --split train
    mvspin data info synth.h5 --validate

A thin shell over :mod:`mvspin.apps.data` (``run_synthetic``, ``run_build``, ``run_info``).
"""
from __future__ import annotations

import argparse

from mvspin.apps.data import BuildDataConfig, DataInfoConfig, SyntheticDataConfig
from mvspin.cli.options import add_config_options, config_from_args


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("data", help="make bundle files (synthetic captures, dataset builders) and inspect them",
                       description="Make and inspect multi-view bundle files (HDF5).")
    dsub = p.add_subparsers(dest="data_command", metavar="DATA_COMMAND")
    p.set_defaults(run=lambda args: (p.print_help(), 2)[1])

    s = dsub.add_parser("synthetic", help="render a synthetic multi-camera capture with ground truth",
                        description="Render bundles of V views of random bodies (free pose prior, random "
                                    "betas) seen by random camera rigs, with 2D keypoints, 3D joints, SMPL "
                                    "parameters and cameras. Deterministic for a seed. The options start from "
                                    "SyntheticOptions' capture preset; the resolved options are saved in the "
                                    "file's 'options' attribute.")
    add_config_options(s, SyntheticDataConfig, flatten=("options", "body"))
    s.set_defaults(run=run_synthetic)

    b = dsub.add_parser("build", help="build a bundle file from a dataset's raw files",
                        description="Convert Human3.6M, MPI-INF-3DHP or 3DPW (or SPIN's preprocessed "
                                    "Human3.6M npz) into a bundle file; prints what was written and skipped.")
    add_config_options(b, BuildDataConfig, positional=("dataset", "root"))
    b.set_defaults(run=run_build)

    i = dsub.add_parser("info", help="describe a bundle file", description="Print a bundle file's layout.")
    add_config_options(i, DataInfoConfig, positional=("file",))
    i.set_defaults(run=run_info)


def run_synthetic(args: argparse.Namespace) -> int:
    from mvspin.apps.data import run_synthetic as synthetic
    from mvspin.cli.common import TqdmProgress

    config = config_from_args(SyntheticDataConfig, args)
    with TqdmProgress(unit="bundle") as progress:
        report = synthetic(config, progress)
    print(report.summary())
    return 0


def run_build(args: argparse.Namespace) -> int:
    from mvspin.apps.data import run_build as build
    from mvspin.cli.common import TqdmProgress
    from mvspin.errors import BuildDataError

    config = config_from_args(BuildDataConfig, args)
    try:
        with TqdmProgress(unit="item") as progress:
            report = build(config, progress)
    except BuildDataError as err:
        print(err.report.summary())  # what was skipped, and why, before the one-line error
        raise
    print(report.summary())
    if config.report is not None:
        print(f"report: {config.report}")
    return 0


def run_info(args: argparse.Namespace) -> int:
    from mvspin.apps.data import run_info as info
    from mvspin.cli.common import TqdmProgress

    config = config_from_args(DataInfoConfig, args)
    with TqdmProgress(unit="bundle") as progress:
        report = info(config, progress)
    print("\n".join(report.lines()))
    return 0
