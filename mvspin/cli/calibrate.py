"""``mvspin calibrate``: a rig from board recordings; intrinsics per camera; extrinsics from a
person walking; print a board; convert a file. A thin shell over :mod:`mvspin.apps.calibrate`
(``run``, ``run_intrinsics``, ``run_board_image``, ``run_convert``) and
:mod:`mvspin.apps.calibrate_person` (``run_person``); a refused
calibration prints its per-camera table and exits non-zero.
"""
from __future__ import annotations

import argparse

from mvspin.apps.calibrate import (
    BoardImageConfig,
    CalibrateConfig,
    ConvertConfig,
    IntrinsicsConfig,
)
from mvspin.apps.calibrate_person import PersonCalibrateConfig
from mvspin.cli.options import add_config_options, config_from_args

_EXAMPLES = """\
examples:
  mvspin calibrate --board board.yaml --videos cam1.mp4 cam2.mp4 cam3.mp4 -o rig.toml
  mvspin calibrate --board board.yaml --images cam1/ cam2/ cam3/ -o rig.toml --floor-frames 120 300
  mvspin calibrate intrinsics --board board.yaml --images cam01_int/ cam02_int/ -o intrinsics.toml
  mvspin calibrate --intrinsics intrinsics.toml --board board.yaml --videos cam01.mp4 cam02.mp4 -o rig.toml
  mvspin calibrate person --intrinsics Calib.qca.txt --keypoints keypoints/ --person-height 1.75 -o rig.toml
  mvspin calibrate board-image --board board.yaml -o board.png --dpi 300
  mvspin calibrate convert session.qca.txt rig.toml        # any supported format to any other
  mvspin calibrate convert session.qca.txt rig.toml --world-up z   # and label its world Z-up, floor origin

board file (YAML or TOML; anipose's config.toml [calibration] table works too):
  type: charuco        # or checkerboard
  squares: [7, 5]      # or inner_corners: [6, 4] (the same board; either way up is found)
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

    i = csub.add_parser("intrinsics", help="calibrate each camera's intrinsics from its own board stills or video",
                        description="OpenCV calibration per camera (sub-pixel corners, views that do not fit dropped, "
                                    "a report per image); cameras are not synchronised.")
    add_config_options(i, IntrinsicsConfig, skip=("images",))
    i.add_argument("--images", "--videos", dest="images", nargs="+", metavar="SOURCE", default=argparse.SUPPRESS,
                   required=True, help="one image folder or video per camera, each calibrated on its own")
    i.set_defaults(run=run_intrinsics)

    q = csub.add_parser("person", help="extrinsics from a person walking through the volume (no board)",
                        description="Pairwise essential matrices of confident keypoints, chained, then a robust "
                                    "bundle adjustment; floor from the feet, scale from the person's height.")
    add_config_options(q, PersonCalibrateConfig)
    q.set_defaults(run=run_person)

    c = csub.add_parser("convert", help="convert a calibration file to another format",
                        description="Read a calibration in any supported format (detected from the file) and "
                                    "write it in another (from the output name, or --format).")
    add_config_options(c, ConvertConfig, positional=("input", "out"))
    c.set_defaults(run=run_convert)


def _tabled(job, *args):  # type: ignore[no-untyped-def]
    """Run ``job``; a refused calibration prints its per-camera table before the error line."""
    from mvspin.errors import CalibrationRefusedError

    try:
        return job(*args)
    except CalibrationRefusedError as err:
        if err.table:
            print(err.table)
        raise


def run_calibrate(args: argparse.Namespace) -> int:
    from mvspin.apps.calibrate import run
    from mvspin.cli.common import TqdmProgress

    config = config_from_args(CalibrateConfig, args)
    with TqdmProgress(unit="frame", enabled=not args.no_progress) as progress:
        report = _tabled(run, config, progress)
    print(report.calibration.table())
    print(f"wrote {report.path} ({report.format}, {len(report.rig)} cameras, metres)")
    return 0


def run_intrinsics(args: argparse.Namespace) -> int:
    from mvspin.apps.calibrate import run_intrinsics as intrinsics

    report = _tabled(intrinsics, config_from_args(IntrinsicsConfig, args))
    print(report.table())
    print(f"wrote {report.path} ({len(report.rig)} cameras' intrinsics)")
    return 0


def run_person(args: argparse.Namespace) -> int:
    from mvspin.apps.calibrate_person import run_person as person

    report = _tabled(person, config_from_args(PersonCalibrateConfig, args))
    print(report.calibration.table())
    if report.comparison is not None:
        print(report.comparison.table())
    if report.held_out:
        print(report.held_out_table())
    print(f"wrote {report.path} ({len(report.rig)} cameras, metres)")
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
