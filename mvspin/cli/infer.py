"""``mvspin infer``: SMPL bodies from images, folders, videos or a set of views, with a checkpoint.

argv -> :class:`mvspin.apps.infer.InferConfig` (flags from its fields) -> one
:func:`mvspin.apps.infer.run` call -> summary. The outputs are documented in :mod:`mvspin.apps.infer`.
"""
from __future__ import annotations

import argparse
import sys

from mvspin.apps.infer.config import InferConfig
from mvspin.cli.options import add_config_options, config_from_args


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "infer", help="SMPL bodies from images, folders, videos or views with a trained regressor",
        description="Run a trained HMR regressor on images, folders of images, videos, or (--views) several "
                    "views of one person, and write SMPL parameters (.npz, AMASS keys, full-image camera), "
                    "meshes (.obj) and overlays (.png/.mp4). SMPLify settings of --refine: --set fit.NAME=VALUE "
                    "(e.g. --set fit.stage2_iterations=50).",
    )
    add_config_options(p, InferConfig, positional=("inputs",), flatten=("body",))
    p.set_defaults(run=run)


def _print_summary(report, config: InferConfig) -> None:
    from rich.console import Console
    from rich.table import Table

    from mvspin.apps.infer import STAGES

    console = Console(stderr=False)
    done = report.images + report.frames
    console.print(f"mvspin infer: {report.images} images ({report.people} people), {report.videos} videos "
                  f"({report.frames} frames); {len(report.files)} files written to {config.out}")
    table = Table(title="time per stage")
    table.add_column("stage")
    table.add_column("total s", justify="right")
    table.add_column("ms per image/frame", justify="right")
    for stage in STAGES:
        if stage == "refine" and not config.refine:
            continue
        seconds = report.timings.get(stage, 0.0)
        table.add_row(stage, f"{seconds:.2f}", f"{1000 * seconds / done:.1f}" if done else "-")
    total = report.seconds + report.load_seconds
    table.add_row("all (incl. loading)", f"{total:.2f}", f"{1000 * total / done:.1f}" if done else "-")
    console.print(table)
    if report.frames_without_box:
        console.print(f"{report.frames_without_box} video frames had no box or detection of their own and reused "
                      f"the previous frame's box (box_detected in the .npz)")
    if report.failures:
        print(f"{len(report.failures)} input(s) failed:", file=sys.stderr)
        for path, why in report.failures:
            print(f"  {path}: {why.removeprefix(f'{path}: ')}", file=sys.stderr)


def run(args: argparse.Namespace) -> int:
    from mvspin.apps.infer import run as infer
    from mvspin.cli.common import TqdmProgress

    config = config_from_args(InferConfig, args)
    with TqdmProgress(unit="image") as progress:
        report = infer(config, progress)
    _print_summary(report, config)
    return 1 if report.failures else 0
