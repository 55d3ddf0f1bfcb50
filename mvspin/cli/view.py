"""``mvspin view``: argv -> :class:`~mvspin.apps.view.ViewConfig` -> :func:`~mvspin.apps.view.run`."""
from __future__ import annotations

import argparse

from mvspin.apps.view import ViewConfig
from mvspin.cli.options import add_config_options, config_from_args


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "view", help="look at a fitted recording in the browser (mvspin[view])",
        description="Serve a fit-rig output folder on 127.0.0.1 (viser, offline): the bodies playing in the rig's "
                    "world, the cameras with each one's detections and the fit's projections for the current frame, "
                    "a timeline with the per-frame error and a jump to the worst frames. --save scene.viser writes "
                    "a static recording instead.")
    add_config_options(p, ViewConfig, positional=("fit",))
    p.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    from mvspin.apps.view import run as view
    from mvspin.cli.common import log

    config = config_from_args(ViewConfig, args)
    saved = view(config)
    if saved is not None:
        log.info("wrote %s", saved)
    return 0
