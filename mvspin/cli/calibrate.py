"""``mvspin calibrate``: calibrate a camera rig from board recordings; print a board.

    mvspin calibrate --board board.yaml --videos cam1.mp4 cam2.mp4 cam3.mp4 -o rig.toml
    mvspin calibrate --board board.yaml --images cam1/ cam2/ cam3/ -o rig.toml --floor-frames 120 300
    mvspin calibrate board-image --board board.yaml -o board.png --dpi 300
    mvspin calibrate convert session.qca.txt rig.toml

A thin shell over :func:`calibration.board_calibration.calibrate_rig` and
:func:`calibration.boards.write_board_png` (and :func:`calibration.load_rig` /
:func:`calibration.save_rig` for ``convert``).
"""
from __future__ import annotations

import argparse
import json
import logging
from pathlib import Path

from mvspin.atomic import check_output_location, write_bytes_atomic

log = logging.getLogger("mvspin")

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
    p.add_argument("--board", type=Path, help="board description file (.yaml or .toml)")
    p.add_argument("--videos", "--images", dest="sources", nargs="+", type=Path, metavar="SOURCE",
                   help="one video file or image folder per camera, in rig order (frame i of each is the same moment)")
    p.add_argument("-o", "--output", type=Path, help="calibration file to write (format from the suffix)")
    p.add_argument("--format", default=None, help="output format instead of the suffix's: anipose, easymocap, "
                                                   "qualisys, h36m, mpi_inf_3dhp")
    p.add_argument("--names", nargs="+", default=None, help="camera names (default: the video or folder names)")
    p.add_argument("--every-nth", type=int, default=1, help="use every n-th frame (default 1: all)")
    p.add_argument("--floor-frames", type=int, nargs="+", default=(), metavar="FRAME",
                   help="frames in which the board lies on the floor: the world becomes --up-up with its "
                        "origin on the floor (default: the first camera's frame)")
    p.add_argument("--up", choices=("z", "y"), default="z", help="world up axis with --floor-frames (default z)")
    p.add_argument("--report", type=Path, default=None, help="also write the report as JSON here")
    p.add_argument("--no-progress", action="store_true", help="no progress bars")
    p.set_defaults(run=run_calibrate)

    csub = p.add_subparsers(dest="calibrate_command", metavar="SUBCOMMAND")
    b = csub.add_parser("board-image", help="write a printable board image (PNG)",
                        description="Render the board of a description file as a PNG that records its DPI, so "
                                    "printing at 100% gives squares of the described size.")
    b.add_argument("--board", type=Path, required=True, help="board description file (.yaml or .toml)")
    b.add_argument("-o", "--output", type=Path, required=True, help="PNG file to write")
    b.add_argument("--dpi", type=float, default=300.0, help="print resolution, dots per inch (default 300)")
    b.set_defaults(run=run_board_image)

    c = csub.add_parser("convert", help="convert a calibration file to another format",
                        description="Read a calibration in any supported format (detected from the file) and "
                                    "write it in another (from the output name, or --format).")
    c.add_argument("input", type=Path, help="calibration file (EasyMocap: its folder or intri.yml)")
    c.add_argument("output", type=Path, help="file to write (.toml, folder or intri.yml, .qca.txt, .json/.h5, "
                                             ".calibration)")
    c.add_argument("--format", dest="convert_format", default=None, help="output format instead of the suffix's")
    c.add_argument("--subject", default=None, help="Human3.6M input files: which subject's cameras")
    c.add_argument("--world-up", choices=("z", "y"), default=None,
                   help="the input's world is z-up (or y-up) with its origin on the floor: for inputs that cannot "
                        "record it (Qualisys, Human3.6M, MPI-INF-3DHP), so the output (.toml, EasyMocap) keeps it")
    c.set_defaults(run=run_convert)


def run_calibrate(args: argparse.Namespace) -> int:
    from tqdm import tqdm

    from calibration.board_calibration import calibrate_rig
    from calibration.boards import load_board
    from calibration.formats import format_for_output, save_rig
    from calibration.formats.easymocap import easymocap_paths

    missing = [flag for flag, value in (("--board", args.board), ("--videos", args.sources), ("-o", args.output))
               if not value]
    if missing:
        raise ValueError(f"missing {', '.join(missing)} (see mvspin calibrate --help)")
    board = load_board(args.board)
    fmt = args.format or format_for_output(args.output)  # fail on a bad output name before the long work
    # ... and on an unwritable place (this also removes temporaries a killed run left there)
    check_output_location(easymocap_paths(args.output)[0] if fmt == "easymocap" else args.output, what="-o")
    if args.report is not None:
        check_output_location(args.report, what="--report")
    log.info("board: %s %d x %d squares of %.1f mm; %d cameras", board.type, board.squares_x, board.squares_y,
             board.square_length * 1000, len(args.sources))
    bars: dict[str, tqdm] = {}

    def progress(stage: str, done: int, total: int) -> None:
        if args.no_progress:
            return
        if stage not in bars:
            bars[stage] = tqdm(total=total or None, desc=stage, unit="frame", leave=False)
        bars[stage].update(done - bars[stage].n)

    try:
        rig, report = calibrate_rig(board, args.sources, names=args.names, every_nth=args.every_nth,
                                    floor_frames=args.floor_frames, up=args.up, progress=progress)
    finally:
        for bar in bars.values():
            bar.close()
    path = save_rig(rig, args.output, format=fmt)
    print(report.table())
    if args.report is not None:
        write_bytes_atomic(args.report, json.dumps(report.to_dict(), indent=1).encode())
    print(f"wrote {path} ({fmt}, {len(rig)} cameras, metres)")
    return 0


def run_board_image(args: argparse.Namespace) -> int:
    from calibration.boards import load_board, write_board_png

    board = load_board(args.board)
    path, (w, h) = write_board_png(board, args.output, dpi=args.dpi)
    print(f"wrote {path}: {board.type} {board.squares_x} x {board.squares_y}, print at 100% on "
          f"{w * 100:.1f} x {h * 100:.1f} cm ({args.dpi:g} dpi) for {board.square_length * 1000:.1f} mm squares")
    return 0


def run_convert(args: argparse.Namespace) -> int:
    from calibration import WorldFrame, detect_format, load_rig, save_rig

    world = None if args.world_up is None else WorldFrame(up=args.world_up, origin="floor")
    rig = load_rig(args.input, subject=args.subject, world=world)
    path = save_rig(rig, args.output, format=args.convert_format)
    print(f"read {args.input} ({detect_format(args.input)}, {len(rig)} cameras: {', '.join(rig.names)}); wrote {path}")
    return 0
