"""``mvspin sync``: per-camera frame offsets of unsynchronised recordings, from 2D keypoints.

A thin shell over :func:`mvspin.apps.sync.run`.
"""
from __future__ import annotations

import argparse

from mvspin.apps.sync import SyncConfig
from mvspin.cli.options import add_config_options, config_from_args

_EXAMPLES = """\
examples:
  mvspin sync --keypoints keypoints/ -o offsets.json              # from the keypoints alone
  mvspin sync --keypoints keypoints/ --intrinsics Calib.toml -o offsets.json   # with known intrinsics
  mvspin sync --keypoints keypoints/ --rig rig.toml -o offsets.json   # with a calibration
  mvspin fit-rig --rig rig.toml --keypoints keypoints/ --offsets offsets.json -o fit/
"""


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "sync", help="frame offsets of unsynchronised cameras from 2D keypoints",
        description="Estimate each camera's frame offset (sub-frame) from one person's 2D keypoints: from "
                    "the epipolar geometry the keypoints imply (with intrinsics: essential matrices), or "
                    "with a calibration by minimising the triangulation error; writes a JSON file that "
                    "fit-rig --offsets and calibrate person --offsets use.",
        epilog=_EXAMPLES, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_config_options(p, SyncConfig)
    p.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    from mvspin.apps.sync import run as sync
    from mvspin.cli.common import TqdmProgress

    config = config_from_args(SyncConfig, args)
    with TqdmProgress(unit="camera") as progress:
        report = sync(config, progress)
    print(report.table())
    print(f"wrote {report.path}")
    return 0
