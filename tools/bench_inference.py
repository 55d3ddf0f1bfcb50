#!/usr/bin/env python
"""Benchmark: regressor throughput and where ``mvspin infer`` spends its time per image.

Part 1 times the HMR regressor alone (eval mode, no gradients, random 224x224 crops) for each
backbone and batch size and reports images per second (median of --repeats timed runs after one
warm-up).

Part 2 runs ``mvspin infer`` end to end (the library job it wraps, ``mvspin.apps.infer.run``)
on --images synthetic JPEG images of --image-size, with an untrained network of --infer-backbone
(weights do not change the time), and splits the time per image into the command's stages:
read, crop, network, body model, render (open3d overlay + side view), write (.npz, .obj, PNGs).
A one-image warm-up run first creates the renderer; each stage is the median over --repeats runs.

    python tools/bench_inference.py --threads 2
"""
from __future__ import annotations

import argparse
import logging
import platform
import statistics
import tempfile
from pathlib import Path

import cv2
import numpy as np
import torch
from _bench import median_time  # tools/ is on sys.path when run as a script

from mvspin.apps.infer import STAGES, InferConfig, run
from mvspin.body import BodyModelConfig
from mvspin.regressor import HMRRegressor


def bench_network(depth: int, batch: int, size: int, repeats: int, device: torch.device) -> float:
    """Images per second of the regressor's forward pass."""
    torch.manual_seed(0)
    model = HMRRegressor(depth).to(device).eval()
    crops = torch.randn(batch, 3, size, size, device=device)

    def forward() -> None:
        with torch.no_grad():
            model(crops)
        if device.type == "cuda":
            torch.cuda.synchronize(device)

    return batch / median_time(forward, repeats)


def _write_images(folder: Path, count: int, width: int, height: int) -> list[Path]:
    rng = np.random.default_rng(0)
    paths = []
    for i in range(count):
        # Smooth random colour fields: JPEG sizes and decode times like a photo, not like noise.
        small = rng.integers(0, 255, size=(height // 16 + 1, width // 16 + 1, 3), dtype=np.uint8)
        image = cv2.resize(small, (width, height), interpolation=cv2.INTER_CUBIC)
        path = folder / f"image_{i:03d}.jpg"
        cv2.imwrite(str(path), image)
        paths.append(path)
    return paths


def bench_infer(args: argparse.Namespace, folder: Path) -> dict[str, float]:
    """Median seconds per image of each ``mvspin infer`` stage."""
    width, height = args.image_size
    images = _write_images(folder / "in", args.images, width, height)

    def config(inputs: list[Path], out: Path) -> InferConfig:
        return InferConfig(inputs=inputs, allow_untrained=True, backbone=args.infer_backbone, out=out,
                           batch_size=args.batch_size, body=BodyModelConfig(resolution=args.resolution),
                           device=args.device)

    run(config(images[:1], folder / "warmup"))
    runs = []
    for r in range(args.repeats):
        # Each run loads its models, as each `mvspin infer` call does (part of the total).
        report = run(config(images, folder / f"run{r}"))
        if report.failures:
            raise RuntimeError(f"infer failed: {report.failures[0]}")
        runs.append({s: report.timings.get(s, 0.0) / len(images) for s in STAGES}
                    | {"total": (report.seconds + report.load_seconds) / len(images)})
    return {k: statistics.median(run[k] for run in runs) for k in runs[0]}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--backbones", type=int, nargs="+", default=[50, 18], help="ResNet depths for part 1")
    p.add_argument("--batch", type=int, nargs="+", default=[1, 16], help="batch sizes for part 1")
    p.add_argument("--size", type=int, default=224, help="network input side (SPIN: 224)")
    p.add_argument("--repeats", type=int, default=5)
    p.add_argument("--images", type=int, default=16, help="images for part 2")
    p.add_argument("--image-size", type=int, nargs=2, default=(640, 480), metavar=("W", "H"))
    p.add_argument("--infer-backbone", default="resnet50", help="network of part 2 (default: %(default)s)")
    p.add_argument("--batch-size", type=int, default=16, help="--batch-size of part 2")
    p.add_argument("--resolution", choices=("full", "low"), default="full", help="free body model of part 2")
    p.add_argument("--device", default=None, help="torch device (default: cpu)")
    p.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's choice)")
    p.add_argument("--skip-infer", action="store_true", help="only part 1")
    args = p.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    device = torch.device(args.device or "cpu")
    logging.basicConfig(level=logging.WARNING)
    machine = (f"{platform.processor() or platform.machine()}, {torch.get_num_threads()} torch threads, "
               f"torch {torch.__version__}, device {device}")
    print(f"machine: {machine}")

    print(f"\nregressor forward, {args.size}x{args.size} input, median of {args.repeats} runs")
    print(f"{'backbone':<10}{'batch':>7}{'images/s':>11}{'ms/image':>11}")
    for depth in args.backbones:
        for batch in args.batch:
            rate = bench_network(depth, batch, args.size, args.repeats, device)
            print(f"{'ResNet-' + str(depth):<10}{batch:>7}{rate:>11.1f}{1000 / rate:>11.1f}")

    if args.skip_infer:
        return
    w, h = args.image_size
    print(f"\nmvspin infer per image: {args.images} JPEG images {w}x{h}, {args.infer_backbone}, batch "
          f"{args.batch_size}, free model '{args.resolution}', median of {args.repeats} runs")
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        (folder / "in").mkdir()
        split = bench_infer(args, folder)
    total = split.pop("total")
    print(f"{'stage':<14}{'ms/image':>10}{'share':>8}")
    for stage in STAGES:
        if stage == "refine":
            continue
        print(f"{stage:<14}{1000 * split[stage]:>10.1f}{100 * split[stage] / total:>7.1f}%")
    other = total - sum(split.values())
    print(f"{'other':<14}{1000 * other:>10.1f}{100 * other / total:>7.1f}%")
    print(f"{'total':<14}{1000 * total:>10.1f}{'':>8}  ({1 / total:.2f} images/s, incl. model loading)")


if __name__ == "__main__":
    main()
