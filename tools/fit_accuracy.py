#!/usr/bin/env python
"""3D accuracy of MV-SMPLify's solvers against their energies: Adam (the presets), Adam run
longer, and Levenberg-Marquardt, on synthetic bundles with ground truth.

Each row fits the same batches (B bundles x V views per seed; the fitting tests' setting:
1000x1000 px, focal 1000 px, 2 px noise, 10% of keypoints dropped, the network estimate the
truth perturbed by 6 degrees per joint) and prints the mean final energy, MPJPE and PA-MPJPE
(mm; :func:`mvspin.fitting.evaluation.fit_pose_errors`: per-view fits in each view's crop
camera, calibrated fits in the world), seconds per batch, and each row's PA-MPJPE against Adam
100 + 100's on the same bodies (mean paired difference +- its standard error over the fitted
bodies). ``start`` is the fits' start itself (no iteration), ``truth`` the energy at the ground truth (both modes' energies are evaluated by
a 0-iteration fit from an exact estimate). ``--start`` picks where the fits begin: the simulated
network estimate (``network``), the body model's mean parameters in every view (``mean``,
per-view mode: ``fit-dataset`` without a network) or triangulated keypoints (``triangulation``,
calibrated mode: ``fit-rig``'s key frames, ``fit-dataset`` without a network).

It answers whether a solver that reaches a lower energy fits better bodies: where Adam run for
longer and LM both reach lower energies than Adam 100 + 100 with larger errors, and the truth's
energy is above theirs, the energy's minimum (not the solver) is what lies further from the
truth, and Adam's fixed iteration count stops it on the way there.

Two LM rows: without the proximal term (``lm_proximal_weight=0``: the SMPLify energy's own
minimum, as far as 7 + 14 steps reach) and at its defaults (the term keeps stage 2 near its
start, as Adam's 100 steps do; ``MVSMPLifyConfig.lm_proximal_weight``). ``--mode smplify`` fits
every view alone (SMPLify, errors in each view's crop camera).

Seeds: ``--seeds`` picks the batches. 100-199 are a validation range (for choosing anything);
report with others (e.g. 500-502).

    python tools/fit_accuracy.py --mode per_view --seeds 500 501 502
    python tools/fit_accuracy.py --mode calibrated --start triangulation
"""
from __future__ import annotations

import argparse
import platform
import sys
import time
from dataclasses import replace
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run from a checkout without installing

from mvspin.body import BodyModel  # noqa: E402
from mvspin.data.synthetic_keypoints import SyntheticOptions, make_capture, sample_bodies  # noqa: E402
from mvspin.fitting import MVSMPLify, MVSMPLifyConfig, SMPLify  # noqa: E402
from mvspin.fitting.evaluation import fit_pose_errors  # noqa: E402
from mvspin.fitting.result import PerViewEstimate  # noqa: E402
from mvspin.geometry import axis_angle_to_matrix  # noqa: E402

EXACT = {"estimate_pose_deg": 0.0, "estimate_orient_deg": 0.0, "estimate_betas_std": 0.0,
         "estimate_scale_rel": 0.0, "estimate_trans_m": 0.0}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--mode", choices=["per_view", "calibrated", "smplify"], default="per_view",
                   help="smplify: each view alone (SMPLify), from the network estimate")
    p.add_argument("--seeds", type=int, nargs="+", default=[500, 501, 502],
                   help="one batch per seed (100-199: validation; default: %(default)s)")
    p.add_argument("--batch", type=int, default=16)
    p.add_argument("--views", type=int, default=4)
    p.add_argument("--resolution", choices=["low", "full"], default="full")
    p.add_argument("--long", type=int, default=1000, help="stage-2 iterations of the long Adam row")
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--start", choices=["network", "mean", "triangulation"], default="network",
                   help="where the fits begin (mean: per-view mode only; triangulation: calibrated only)")
    args = p.parse_args()
    if (args.start, args.mode) in (("mean", "calibrated"), ("triangulation", "per_view"), ("mean", "smplify"),
                                   ("triangulation", "smplify")):
        p.error(f"--start {args.start} does not apply to the {args.mode} mode")
    torch.set_num_threads(args.threads)
    body = BodyModel.free(args.resolution)
    base = MVSMPLifyConfig(mode="per_view" if args.mode == "smplify" else args.mode, patience=0)
    zero = replace(base, stage1_iterations=0, stage2_iterations=0, triangulation_fit_iterations=0)
    adam = "Adam 100 + 100 (presets)"
    rows = [(f"start ({args.start})", zero, False),
            ("truth", zero, True),
            (adam, base, False),
            (f"Adam 100 + {args.long}", replace(base, stage2_iterations=args.long), False),
            ("LM, no proximal term", replace(base, optimizer="lm", lm_proximal_weight=0.0), False),
            ("LM (its defaults)", replace(base, optimizer="lm"), False)]
    batches = []
    for seed in args.seeds:
        params = sample_bodies(body, args.batch, torch.Generator().manual_seed(seed))
        batches.append({exact: make_capture(body, params, args.views, seed=seed + 1,
                                            options=SyntheticOptions(**(EXACT if exact else {})))
                        for exact in (False, True)})
    print(f"MV-SMPLify accuracy, {args.mode} mode, {args.start} start: {len(args.seeds)} batches (seeds {args.seeds}) of "
          f"{args.batch} bundles x {args.views} views, {body.name}; {platform.machine()}, {args.threads} thread(s)")
    header = (f"{'fit':<34} {'energy':>10} {'MPJPE mm':>9} {'PA-MPJPE mm':>12} {'s / batch':>10} "
              f"{'PA vs Adam 100+100':>19}")
    print(header)
    print("-" * len(header))
    reference: torch.Tensor | None = None  # Adam 100 + 100's PA-MPJPE per fitted body
    for name, cfg, exact in rows:
        # SMPLify takes the same config (an MVSMPLifyConfig is an SMPLifyConfig)
        fitter = SMPLify(body, cfg) if args.mode == "smplify" else MVSMPLify(body, cfg)
        energy = mpjpe = pa = seconds = 0.0
        per_body = []
        for caps in batches:
            cap = caps[exact]
            t0 = time.perf_counter()
            estimate = cap.estimate
            if args.start == "mean" and not exact:
                estimate = PerViewEstimate.mean(body, *cap.crop_keypoints.shape[:2])
            if isinstance(fitter, SMPLify):  # every view alone (fit_pose_errors compares them view by view)
                r = fitter.fit(cap.crop_keypoints.flatten(0, 1), estimate.rotmat.flatten(0, 1),
                               estimate.betas.flatten(0, 1), estimate.cam.flatten(0, 1))
            elif args.mode == "per_view":
                r = fitter.fit_per_view(cap.crop_keypoints, estimate)
            else:  # from triangulation: no estimate (the truth's row keeps its exact one)
                r = fitter.fit_calibrated(cap.keypoints, cap.cameras,
                                          None if args.start == "triangulation" and not exact else estimate)
            seconds += time.perf_counter() - t0
            gt = cap.gt
            m, a = fit_pose_errors(body, r, gt.body_pose, gt.betas, axis_angle_to_matrix(gt.global_orient),
                                   cap.crop_orient)
            energy += float(r.energy.sum())
            mpjpe += float(m.mean())
            pa += float(a.mean())
            per_body.append(a.flatten().double())
        n = len(batches)
        # The paired difference per body (same bundles, same views) with its standard error:
        # whether a row's PA-MPJPE differs from Adam's by more than the bodies' scatter.
        errors = torch.cat(per_body)
        if name == adam:
            reference, versus = errors, ""
        elif reference is None or exact:
            versus = ""
        else:
            d = errors - reference
            versus = f"{float(d.mean()):+.2f} +- {float(d.std() / len(d) ** 0.5):.2f}"
        print(f"{name:<34} {energy / n:>10.1f} {mpjpe / n:>9.2f} {pa / n:>12.2f} {seconds / n:>10.3f} {versus:>19}")


if __name__ == "__main__":
    main()
