"""``mvspin eval``: score a regressor checkpoint on a single-image evaluation protocol.

    mvspin eval --checkpoint model_checkpoint.pt --dataset h36m-p1 --data h36m_test.h5 --out eval/

Prints a table of the mean metrics and writes ``eval_<dataset>.json`` and
``eval_<dataset>_samples.npz`` (per-sample errors, ids, joints) under ``--out``. The protocols
are described in :mod:`mvspin.learning.evaluation`.
"""
from __future__ import annotations

import argparse
from pathlib import Path

from mvspin.cli.common import add_body_model_args, add_device_arg, load_body_model, log, resolve_device


def add_parser(sub: argparse._SubParsersAction) -> None:
    from mvspin.learning.evaluation import PROTOCOLS

    p = sub.add_parser("eval", help="score a regressor checkpoint on an evaluation protocol (single image)",
                       description="Evaluate a regressor checkpoint on Human3.6M (p1, p2), MPI-INF-3DHP, 3DPW or a "
                                   "synthetic test file, one image at a time, with SPIN's protocols: MPJPE and "
                                   "PA-MPJPE (mm), plus PCK@150mm and AUC on MPI-INF-3DHP.")
    p.add_argument("--checkpoint", type=Path, required=True, help="regressor checkpoint (SPIN or mvspin layout)")
    p.add_argument("--dataset", required=True, choices=list(PROTOCOLS), help="evaluation protocol")
    p.add_argument("--data", type=Path, required=True, help="bundle file of the protocol's dataset (mvspin data)")
    p.add_argument("--out", type=Path, default=None, help="folder for the JSON summary and per-sample .npz")
    p.add_argument("--batch-size", type=int, default=32, help="crops per network call (default: %(default)s)")
    p.add_argument("--input-size", type=int, default=None,
                   help="network input crop side in pixels (default: the checkpoint's, else 224)")
    p.add_argument("--max-samples", type=int, default=None, help="evaluate only the first N samples")
    add_device_arg(p)
    add_body_model_args(p)
    p.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    from mvspin.body import BodyModel
    from mvspin.data.bundle_format import BundleFile
    from mvspin.learning.evaluation import check_protocol_file, evaluate
    from mvspin.regressor.checkpoint import checkpoint_input_size, load_regressor_checkpoint

    if args.batch_size < 1:
        raise ValueError(f"--batch-size must be >= 1, got {args.batch_size}")
    device = resolve_device(args.device)
    # Every input is checked before the network runs: data file first (cheap), then checkpoint.
    bundles = BundleFile(args.data)
    protocol = check_protocol_file(bundles, args.dataset)
    model, meta = load_regressor_checkpoint(args.checkpoint, map_location=device)
    body = load_body_model(args, device)
    input_size = args.input_size or checkpoint_input_size(meta, body, args.checkpoint)
    gt_bodies = None
    if protocol.gendered and args.smpl_dir is not None:
        gt_bodies = {g: BodyModel.from_smpl_dir(args.smpl_dir, g, device=device) for g in ("male", "female")}
    elif protocol.gendered:
        log.info("ground truth posed with %s for both genders (the free model has none; give --smpl-dir for "
                 "SPIN's male/female SMPL)", body.name)
    log.info("evaluating %s: %s (%d bundles) with %s, %d px crops", protocol.name, bundles.path, len(bundles),
             args.checkpoint, input_size)

    from tqdm import tqdm

    bar = tqdm(desc=f"eval {protocol.name}", unit="image")

    def progress(done: int, total: int) -> None:
        bar.total = total
        bar.update(done - bar.n)

    try:
        result = evaluate(model, body, bundles, protocol, gt_bodies=gt_bodies, device=device,
                          batch_size=args.batch_size, input_size=input_size, max_samples=args.max_samples,
                          checkpoint=str(args.checkpoint), progress=progress)
    finally:
        bar.close()
    print(result.table())
    if args.out is not None:
        json_path, npz_path = result.save(args.out, prefix=f"eval_{protocol.name}")
        print(f"wrote {json_path} and {npz_path}")
    return 0
