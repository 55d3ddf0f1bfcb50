#!/usr/bin/env python
"""Benchmark: seconds per MV-SPIN training step, split into data, network, fitting, backward and store I/O.

Two settings, each a real :func:`mvspin.learning.trainer.train` run on a synthetic bundle file
made for it (rendered once, not timed):

- ``paper``: the MV-SPIN setting, 16 bundles x 4 views (64 crops), 224 px crops, ResNet-50,
  MV-SMPLify 100 + 100 iterations (early stopping off), the full-resolution free model;
- ``synthetic_cpu``: ``configs/synthetic_cpu.yaml`` as it is (ResNet-18, 64 px crops, the
  low-resolution model, its fitting iterations and batch);
- ``synthetic_cpu_cal``: the same with ``fits.fitting.mode=calibrated`` (one world-frame body on
  the stored cameras, :mod:`mvspin.learning.calibrated_targets`). The fresh network's views
  disagree, so every bundle starts from triangulated keypoints (stage 0's 3D fit included).

The trainer records every step's split in ``metrics.jsonl`` (``time/*``, per step): ``data``
(waiting for the loader), ``network`` (regressor forward), ``fitting`` (MV-SMPLify),
``backward`` (body model, losses, backward pass, Adam step), ``store_io`` (fits store reads and
updates). The table shows the median over the timed steps (the first step is a warm-up and is
dropped), the fitting's share of the step, and the time to write one checkpoint with its fits
store. The issue's goal: fitting under 10% of a ResNet-50 step on CPU.

    python tools/bench_train.py --steps 4 --settings paper synthetic_cpu synthetic_cpu_cal
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import tempfile
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))  # run from a checkout without installing
os.environ.setdefault("EGL_PLATFORM", "surfaceless")  # open3d offscreen rendering on CPU

from mvspin.body import BodyModel  # noqa: E402
from mvspin.config import load_config  # noqa: E402
from mvspin.data.synthetic_capture import generate_capture_file  # noqa: E402
from mvspin.data.synthetic_options import SyntheticOptions  # noqa: E402
from mvspin.learning.train_config import TrainConfig, load_train_config  # noqa: E402
from mvspin.learning.trainer import STEP_TIMES, train  # noqa: E402

SETTINGS = {
    "paper": {
        "config": ROOT / "configs" / "mvspin_h36m_3dhp.yaml",
        "capture": {"num_views": 4, "image_size": (224, 224)}, "resolution": "full",
        "overrides": {"data.ratios": "null", "optim.batch_size": 16, "optim.num_workers": 0,
                      "fits.fitting.stage1_iterations": 100, "fits.fitting.stage2_iterations": 100,
                      "fits.fitting.patience": 0, "model.body_resolution": "full"},
    },
    "synthetic_cpu": {
        "config": ROOT / "configs" / "synthetic_cpu.yaml",
        "capture": {"num_views": 4, "image_size": (96, 96), "focal": 150.0}, "resolution": "low",
        "overrides": {},
    },
    "synthetic_cpu_cal": {
        "config": ROOT / "configs" / "synthetic_cpu.yaml",
        "capture": {"num_views": 4, "image_size": (96, 96), "focal": 150.0}, "resolution": "low",
        "overrides": {"fits.fitting.mode": "calibrated"},
    },
}


def bench(name: str, steps: int, device: str, folder: Path, optimizer: str | None = None,
          compile_fits: bool = False) -> dict:
    s = dict(SETTINGS[name])
    if optimizer:  # the fitting's optimiser (e.g. lm, the batched Levenberg-Marquardt solver)
        s["overrides"] = {**s["overrides"], "fits.fitting.optimizer": optimizer}
    if compile_fits:  # torch.compile'd stage energies; the warm-up step compiles
        s["overrides"] = {**s["overrides"], "fits.fitting.compile": True}
    # The config without its (still missing) data file, for the batch size.
    probe = load_config(TrainConfig, s["config"], [f"{k}={v}" for k, v in s["overrides"].items()])
    bundles = probe.optim.batch_size * (steps + 1)
    capture = folder / f"{name}.h5"
    generate_capture_file(capture, bundles, seed=0, options=SyntheticOptions.preset("capture", **s["capture"]),
                          body=BodyModel.free(s["resolution"]))
    overrides = {**s["overrides"], "data.files": f"[{capture}]", "optim.max_steps": steps + 1,
                 "optim.log_every": 1, "optim.checkpoint_every": 10 ** 9, "optim.device": device,
                 "optim.image_every": 0, "fits.use_ground_truth_smpl": False}
    config = load_train_config(s["config"], [f"{k}={v}" for k, v in overrides.items()])
    out = folder / f"{name}_run"
    summary = train(config, out)
    rows = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()][1:]
    med = {k: statistics.median(r[f"time/{k}"] for r in rows) for k in STEP_TIMES}
    med["step"] = statistics.median(sum(r[f"time/{k}"] for k in STEP_TIMES) for r in rows)
    return {"name": name, "config": config, "times": med, "checkpoint": summary.checkpoint_seconds,
            "steps": len(rows), "views": s["capture"]["num_views"]}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--settings", nargs="+", default=list(SETTINGS), choices=list(SETTINGS))
    p.add_argument("--steps", type=int, default=4, help="timed steps per setting (after one warm-up step)")
    p.add_argument("--device", default="cpu")
    p.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's)")
    p.add_argument("--optimizer", choices=["adam", "lbfgs", "lm"], default=None,
                   help="the fitting's optimiser (default: each setting's config)")
    p.add_argument("--compile", action="store_true",
                   help="fits.fitting.compile=true (torch.compile'd fitting energies; compiled in the warm-up step)")
    args = p.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    results = []
    with tempfile.TemporaryDirectory() as tmp:
        for name in args.settings:
            results.append(bench(name, args.steps, args.device, Path(tmp), args.optimizer, args.compile))
    print(f"\nmachine: {platform.processor() or platform.machine()}, {os.cpu_count()} CPUs, torch "
          f"{torch.__version__}, {torch.get_num_threads()} threads, device {args.device}")
    head = f"{'setting':<17} {'opt':<5} {'mode':<10} {'batch':>9} {'crop':>5} {'net':>7} {'fit it':>8} " + " ".join(
        f"{k:>9}" for k in (*STEP_TIMES, "step")) + f" {'fit share':>9} {'ckpt s':>7}"
    print(head)
    print("-" * len(head))
    for r in results:
        c, t = r["config"], r["times"]
        f = c.fits.fitting
        label = r["name"] + (" (c)" if f.compile else "")  # (c): compiled fits
        print(f"{label:<17} {f.optimizer:<5} {f.mode:<10} {c.optim.batch_size:>4} x {r['views']:<2} "
              f"{c.data.crop_size:>5} {'R-' + str(c.model.depth):>7} "
              f"{f.stage1_iterations:>3}+{f.stage2_iterations:<4} "
              + " ".join(f"{t[k]:>9.3f}" for k in (*STEP_TIMES, "step"))
              + f" {100 * t['fitting'] / t['step']:>8.1f}% {r['checkpoint']:>7.3f}")
    print(f"\nseconds per step, median of {results[0]['steps']} steps after a warm-up step; 'ckpt s' is one checkpoint "
          "write (model, optimiser, fits store, config)")


if __name__ == "__main__":
    main()
