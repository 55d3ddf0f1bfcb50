"""``mvspin fit-rig``: argv -> :class:`~mvspin.apps.rig.FitRigConfig` -> :func:`~mvspin.apps.rig.fit_rig` -> summary."""
from __future__ import annotations

import argparse

from mvspin.apps.rig.fit_rig import FitRigConfig
from mvspin.cli.options import add_config_options, config_from_args


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "fit-rig", help="fit SMPL bodies to a calibrated rig recording's 2D keypoints",
        description="Associate each subject's detections across cameras and frames, fit one body per frame in "
                    "the rig's world frame (one shape per subject, temporally smooth) and write per subject an "
                    "AMASS-keyed .npz and an animated .glb, plus report.json / report.png. Fitting settings "
                    "(association.*, sequence.*: see configs/fit_rig.yaml) are set with --config or --set.")
    add_config_options(p, FitRigConfig, flatten=("body",))
    p.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    from mvspin.apps.rig import fit_rig
    from mvspin.apps.rig.outputs import summary_table
    from mvspin.cli.common import TqdmProgress

    config = config_from_args(FitRigConfig, args)
    with TqdmProgress(unit="frame") as progress:
        report = fit_rig(config, progress)
    print(summary_table(report.summary))
    print(f"wrote {len(report.files)} files to {report.out}")
    return 0
