"""``mvspin info``: versions, device and which body model is found, from where (a thin shell over
:func:`mvspin.apps.info.run`)."""
from __future__ import annotations

import argparse
import json

from mvspin.apps.info import InfoConfig
from mvspin.cli.options import add_config_options, config_from_args


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("info", help="versions, device and the body model in use",
                       description="Print versions, the compute device and which body model mvspin finds.")
    add_config_options(p, InfoConfig, flatten=("body",))
    p.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    from mvspin.apps.info import run as info

    config = config_from_args(InfoConfig, args)
    report = info(config)
    print(json.dumps(report.data, indent=2) if config.json else "\n".join(report.lines()))
    return 0
