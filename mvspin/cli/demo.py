"""``mvspin demo``: argv -> :class:`~mvspin.apps.demo.DemoConfig` -> :func:`~mvspin.apps.demo.run` -> table.

``--train`` is an alias of ``mvspin experiment table7`` (the synthetic training protocol).
"""
from __future__ import annotations

import argparse

import numpy as np

from mvspin.apps.demo import DemoConfig
from mvspin.cli.options import add_config_options, config_from_args


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "demo", help="fit a synthetic multi-camera capture (MV-SMPLify both modes, SMPLify) and report accuracy",
        description="Make a synthetic capture of a moving body seen by a rig of cameras (keypoints with pixel "
                    "noise and dropped joints), fit it with MV-SMPLify in the calibrated and per-view modes and "
                    "with single-view SMPLify, and write meshes, parameters, overlays and metrics. Fitting uses "
                    "the fast keypoint path, whose cost does not depend on the mesh resolution, so the same model "
                    "(by default the free model at full resolution) is fitted and meshed.")
    add_config_options(p, DemoConfig, flatten=("body",))
    p.add_argument("--train", action="store_true",
                   help="instead: the synthetic training protocol, as `mvspin experiment table7` (into --out)")
    p.add_argument("--quick", action="store_true", help="with --train: a few-minute smoke run that proves nothing")
    p.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    if args.train:
        from mvspin.cli.experiment import run_table7_from

        return run_table7_from(args)
    from rich.console import Console
    from rich.table import Table

    from mvspin.apps.demo import run
    from mvspin.cli.common import TqdmProgress

    config = config_from_args(DemoConfig, args)
    with TqdmProgress() as progress:
        result = run(config, progress)
    m = result.metrics
    table = Table(title=f"mvspin demo: {config.frames} frames x {config.views} cameras, {m['body_model']}, "
                        f"noise {config.noise:g} px, {100 * config.drop:.0f}% dropped")
    for col in ("method", "MPJPE mm", "PA-MPJPE mm", "reproj px", "ms / frame", "fitted"):
        table.add_column(col, justify="left" if col == "method" else "right")
    for label, mpjpe, pa, rp, sec, fitted in result.rows:
        table.add_row(label, f"{np.mean(mpjpe):.1f}", f"{np.mean(pa):.1f}", "-" if rp is None else f"{np.mean(rp):.2f}",
                      "-" if sec is None else f"{1000 * sec / config.frames:.1f}", f"{fitted}/{config.frames}")
    console = Console(width=max(100, Console().width))
    console.print(table)
    console.print("calibrated: known cameras, no network (starts from the mean pose on triangulated keypoints); "
                  "per-view (the paper) and SMPLify (every view fitted on its own): SPIN crop cameras, started "
                  "from the simulated network's per-view estimates.")
    console.print("MPJPE/PA-MPJPE: 14 LSP joints, pelvis-centred, in the world (calibrated) or each view's crop "
                  "camera frame. Reprojection error in image pixels. Overlays: green = input keypoints, red = fitted.")
    overlays = sum(1 for f in result.files if f.parent.name == "overlays")
    console.print(f"wrote {config.out}/: meshes/ ({config.frames} .ply), params/ (.npz), "
                  f"{'overlays/ (' + str(overlays) + ' .png), ' if overlays else ''}"
                  f"rig.json, metrics.json, demo_config.yaml  [{result.seconds:.1f} s]")
    return 0
