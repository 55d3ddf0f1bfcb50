"""``mvspin calibrate``: calibrate a camera rig from board recordings; print a board; convert a file.

    mvspin calibrate --board board.yaml --videos cam1.mp4 cam2.mp4 cam3.mp4 -o rig.toml
    mvspin calibrate --board board.yaml --images cam1/ cam2/ cam3/ -o rig.toml --floor-frames 120 300
    mvspin calibrate board-image --board board.yaml -o board.png --dpi 300
    mvspin calibrate convert session.qca.txt rig.toml

A thin shell over :mod:`mvspin.apps.calibrate` (``run``, ``run_board_image``, ``run_convert``).
"""
from __future__ import annotations

import argparse

from mvspin.apps.calibrate import BoardImageConfig, CalibrateConfig, ConvertConfig
from mvspin.cli.options import add_config_options, config_from_args

_EXAMPLES = """\
examples:
  mvspin calibrate --board board.yaml --videos cam1.mp4 cam2.mp4 cam3.mp4 -o rig.toml
  mvspin calibrate --board board.yaml --images cam1/ cam2/ cam3/ -o rig.toml --floor-frames 120 300
  mvspin calibrate board-image --board board.yaml -o board.png --dpi 300
  mvspin calibrate convert session.qca.txt rig.toml        # any supported format to any other
  mvspin calibrate convert session.qca.txt rig.toml --world-up z   # and label its world Z-up, floor origin

board file (YAML or TOML; anipose's config.toml [calibration] table works too):
  type: charuco        # or checkerboard
  squares_x: 7
  squares_y: 5
  square_length: 0.08  # metres (or set unit: mm / cm)
  marker_length: 0.06  # ChArUco only
  marker_bits: 4       # ChArUco only: DICT_4X4_50
  dictionary_size: 50

output formats by suffix: .toml (anipose), a folder or intri.yml (EasyMocap), .qca.txt (Qualisys),
.json/.h5 (Human3.6M), .calibration (MPI-INF-3DHP)
"""


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "calibrate", help="calibrate a camera rig from ChArUco/checkerboard videos; print a board",
        description="Calibrate a rig (intrinsics, extrinsics, bundle adjustment with aniposelib) from "
                    "synchronised recordings of a calibration board, one video or image folder per camera, "
                    "and write it in any supported calibration format with a per-camera reprojection report. "
                    "'mvspin calibrate board-image' writes a printable board.",
        epilog=_EXAMPLES, formatter_class=argparse.RawDescriptionHelpFormatter)
    # Optional here so that `calibrate board-image ...` parses; CalibrateConfig requires them.
    add_config_options(p, CalibrateConfig, skip=("videos",), defaults={"board": None, "videos": None, "out": None})
    p.add_argument("--videos", "--images", dest="videos", nargs="+", metavar="SOURCE", default=argparse.SUPPRESS,
                   help="one video file or image folder per camera, in rig order (frame i of each is the same moment)")
    p.add_argument("--no-progress", action="store_true", help="no progress bars")
    p.set_defaults(run=run_calibrate)

    csub = p.add_subparsers(dest="calibrate_command", metavar="SUBCOMMAND")
    b = csub.add_parser("board-image", help="write a printable board image (PNG)",
                        description="Render the board of a description file as a PNG that records its DPI, so "
                                    "printing at 100% gives squares of the described size.")
    add_config_options(b, BoardImageConfig)
    b.set_defaults(run=run_board_image)

    c = csub.add_parser("convert", help="convert a calibration file to another format",
                        description="Read a calibration in any supported format (detected from the file) and "
                                    "write it in another (from the output name, or --format).")
    add_config_options(c, ConvertConfig, positional=("input", "out"))
    c.set_defaults(run=run_convert)


def run_calibrate(args: argparse.Namespace) -> int:
    from mvspin.apps.calibrate import run
    from mvspin.cli.common import TqdmProgress

    config = config_from_args(CalibrateConfig, args)
    with TqdmProgress(unit="frame", enabled=not args.no_progress) as progress:
        report = run(config, progress)
    print(report.calibration.table())
    print(f"wrote {report.path} ({report.format}, {len(report.rig)} cameras, metres)")
    return 0


def run_board_image(args: argparse.Namespace) -> int:
    from mvspin.apps.calibrate import run_board_image as board_image

    config = config_from_args(BoardImageConfig, args)
    r = board_image(config)
    w, h = r.page_m
    print(f"wrote {r.path}: {r.board.type} {r.board.squares_x} x {r.board.squares_y}, print at 100% on "
          f"{w * 100:.1f} x {h * 100:.1f} cm ({config.dpi:g} dpi) for {r.board.square_length * 1000:.1f} mm squares")
    return 0


def run_convert(args: argparse.Namespace) -> int:
    from mvspin.apps.calibrate import run_convert as convert

    config = config_from_args(ConvertConfig, args)
    r = convert(config)
    print(f"read {config.input} ({r.input_format}, {len(r.rig)} cameras: {', '.join(r.rig.names)}); wrote {r.path}")
    return 0
