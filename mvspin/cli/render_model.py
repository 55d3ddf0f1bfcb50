"""``mvspin render-model``: a PNG grid of the body model in several poses and shapes (a thin shell
over :func:`mvspin.apps.render_model.run`)."""
from __future__ import annotations

import argparse

from mvspin.apps.render_model import RenderModelConfig
from mvspin.cli.options import add_config_options, config_from_args


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "render-model", help="save a PNG grid of the body model in several poses and shapes",
        description="Render the body model (free by default) in its rest pose, its mean pose, poses sampled "
                    "from the pose prior and along the first shape directions, as one PNG grid.",
    )
    add_config_options(p, RenderModelConfig, flatten=("body",))
    p.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    from mvspin.apps.render_model import run as render
    from mvspin.cli.common import TqdmProgress, log

    config = config_from_args(RenderModelConfig, args)
    with TqdmProgress(unit="panel") as progress:
        report = render(config, progress)
    log.info("wrote %s (%d panels, %dx%d)", report.path, report.panels, *report.pixels)
    return 0
