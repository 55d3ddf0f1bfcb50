"""``mvspin data``: make bundle files (synthetic captures, dataset builders) and inspect them.

    mvspin data synthetic --out synth.h5 --bundles 1000 --seed 0 num_views=4
    mvspin data build h36m /data/human36m --out h36m_train.h5 --split train
    mvspin data info synth.h5 --validate
"""
from __future__ import annotations

import argparse
import inspect
import json
from pathlib import Path
from typing import Any

from mvspin.cli.common import add_body_model_args, atomic_write_bytes, check_output, check_range


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("data", help="make bundle files (synthetic captures, dataset builders) and inspect them",
                       description="Make and inspect multi-view bundle files (HDF5).")
    dsub = p.add_subparsers(dest="data_command", metavar="DATA_COMMAND")
    p.set_defaults(run=lambda args: (p.print_help(), 2)[1])

    s = dsub.add_parser("synthetic", help="render a synthetic multi-camera capture with ground truth",
                        description="Render bundles of V views of random bodies (free pose prior, random "
                                    "betas) seen by random camera rigs, with 2D keypoints, 3D joints, SMPL "
                                    "parameters and cameras. Deterministic for a seed.")
    s.add_argument("--out", type=Path, required=True, help="output bundle file (.h5)")
    s.add_argument("--bundles", type=int, required=True, help="number of bundles N")
    s.add_argument("--seed", type=int, default=0, help="seed (bundle i depends only on seed and i)")
    s.add_argument("--config", type=Path, default=None,
                   help="YAML file of SyntheticOptions fields (mvspin.data.synthetic_options)")
    s.add_argument("overrides", nargs="*", metavar="KEY=VALUE",
                   help="option overrides, given together (e.g. at the end): num_views=4 "
                        "image_size=[320,240] noise_px=2 colors=parts "
                        "(preset=capture, the default, or preset=keypoints; the resolved options are "
                        "saved in the file's 'options' attribute)")
    add_body_model_args(s)
    s.set_defaults(run=run_synthetic)

    b = dsub.add_parser("build", help="build a bundle file from a dataset's raw files",
                        description="Convert Human3.6M, MPI-INF-3DHP or 3DPW (or SPIN's preprocessed "
                                    "Human3.6M npz) into a bundle file; prints what was written and skipped.")
    b.add_argument("dataset", help="h36m, h36m_spin_npz, mpi_inf_3dhp or 3dpw")
    b.add_argument("root", type=Path, help="the dataset's root folder (h36m_spin_npz: the .npz file)")
    b.add_argument("--out", type=Path, required=True, help="output bundle file (.h5)")
    b.add_argument("--split", default=None, help="train or test (builder default: train; 3DPW: test)")
    b.add_argument("--every-nth", type=int, default=None, help="frame step (default: the dataset protocol's)")
    b.add_argument("--subjects", nargs="+", default=None, help="subjects to include (default: the split's)")
    b.add_argument("--sequences", nargs="+", default=None, help="sequences to include")
    b.add_argument("--cameras", nargs="+", default=None, help="cameras forming the views, in order")
    b.add_argument("--image-storage", choices=("bytes", "paths"), default=None,
                   help="embed encoded frames (bytes, default) or write image files and store paths")
    b.add_argument("--frames-dir", type=Path, default=None, help="where image files go with --image-storage paths")
    b.add_argument("--jpeg-quality", type=int, default=None, help="JPEG quality of stored frames")
    b.add_argument("--bbox-scale-factor", type=float, default=None, help="crop box enlargement (default 1.2)")
    b.add_argument("--report", type=Path, default=None, help="also write the build report as JSON here")
    b.set_defaults(run=run_build)

    i = dsub.add_parser("info", help="describe a bundle file", description="Print a bundle file's layout.")
    i.add_argument("file", type=Path)
    i.add_argument("--validate", action="store_true",
                   help="read the whole file as training does: every field, every value, every image "
                        "decoded (embedded or the file each path names)")
    i.set_defaults(run=run_info)


def run_synthetic(args: argparse.Namespace) -> int:
    from mvspin.cli.common import load_body_model
    from mvspin.config import load_config
    from mvspin.data.synthetic_capture import generate_capture_file
    from mvspin.data.synthetic_options import SyntheticOptions

    options = load_config(SyntheticOptions, args.config, args.overrides, default_preset="capture")
    if args.bundles < 1:
        raise ValueError(f"--bundles must be >= 1, got {args.bundles}")
    check_output(args.out, "--out")  # before the body model and the renderer start
    body = load_body_model(args)
    report = generate_capture_file(args.out, args.bundles, seed=args.seed, options=options, body=body, progress=True)
    print(report.summary())
    return 0


# CLI option -> builder keyword argument.
_BUILD_OPTIONS = {
    "split": "split", "every_nth": "every_nth", "subjects": "subjects", "sequences": "sequences",
    "cameras": "cameras", "image_storage": "image_storage", "frames_dir": "frames_dir",
    "jpeg_quality": "jpeg_quality", "bbox_scale_factor": "bbox_scale_factor",
}


def _builder_function(name: str) -> Any:
    """The builder function a dataset name (or alias) selects, or None when unknown."""
    from mvspin.data.builders import resolve_builder

    try:
        return resolve_builder(name)
    except ValueError:
        return None


def run_build(args: argparse.Namespace) -> int:
    from mvspin.data.builders import build

    func = _builder_function(args.dataset)
    opts: dict[str, Any] = {}
    if func is not None:
        params = inspect.signature(func).parameters
        for opt, kw in _BUILD_OPTIONS.items():
            value = getattr(args, opt)
            if value is None:
                continue
            if kw not in params:
                raise ValueError(f"--{opt.replace('_', '-')} is not an option of the {args.dataset} builder "
                                 f"(it takes: {', '.join(p for p in params if p not in ('root', 'out_path', 'npz_path'))})")
            if kw == "cameras":
                default = params[kw].default
                # MPI-INF-3DHP numbers its cameras; Human3.6M names them by id strings.
                if isinstance(default, (tuple, list)) and default and isinstance(default[0], int):
                    try:
                        value = [int(c) for c in value]
                    except ValueError:
                        raise ValueError(f"--cameras: {args.dataset} cameras are integers, got {value}") from None
            opts[kw] = value
        if "progress" in params:
            opts["progress"] = True
    check_range("--every-nth", args.every_nth, 1)
    check_range("--jpeg-quality", args.jpeg_quality, 0, 100)
    check_range("--bbox-scale-factor", args.bbox_scale_factor, 0, low_open=True)
    if not args.root.exists():
        raise FileNotFoundError(2, "dataset root does not exist", str(args.root))
    check_output(args.out, "--out")
    if args.report is not None:
        check_output(args.report, "--report")
    if args.frames_dir is not None:
        check_output(args.frames_dir, "--frames-dir", kind="folder")
    report = build(args.dataset, args.root, args.out, **opts)
    print(report.summary())
    if args.report is not None:
        atomic_write_bytes(args.report, json.dumps(report.to_dict(), indent=2).encode("utf-8"))
        print(f"report: {args.report}")
    if report.num_bundles == 0:
        from mvspin.errors import MvspinError

        raise MvspinError(f"no bundle could be built from {args.root} ({len(report.skipped)} items skipped, "
                          f"see above); {args.out} was not written")
    return 0


def run_info(args: argparse.Namespace) -> int:
    from mvspin.data.bundle_format import BundleFile, validate_bundle_contents

    bundles = BundleFile(args.file)
    checked = validate_bundle_contents(args.file, progress=True) if args.validate else 0
    print(repr(bundles))
    print(f"  fields: {', '.join(bundles.fields)}")
    print(f"  2D keypoints: {bundles.keypoint_set}; 3D joints: {bundles.joints_3d_keypoint_set or 'none'}"
          + (f" ({bundles.joints_3d_frame})" if bundles.joints_3d_frame else ""))
    print(f"  images: {bundles.image_storage}; cameras: {'yes' if bundles.has_cameras else 'no'}; "
          f"SMPL: {'yes' if bundles.has_smpl else 'no'}")
    for key, value in sorted(bundles.attrs.items()):
        if key in ("format", "format_version", "dataset", "split", "num_views"):
            continue
        text = str(value)
        print(f"  {key}: {text if len(text) <= 100 else text[:97] + '...'}")
    if args.validate:
        print(f"  values: valid ({checked} bundles: every field read, every image decoded)")
    return 0
