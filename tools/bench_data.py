#!/usr/bin/env python
"""Benchmark: synthetic capture generation and training-data loading.

Times (median of --repeats runs, after one warm-up):

- generator, end to end (sample bodies and rigs, render, compose backgrounds, JPEG-encode, write
  HDF5): views per second at the given image size, free model at full and low resolution;
- the render stage alone: all V views in one tiled pass (:func:`render_views`) against one
  :func:`mvspin.rendering.render_mesh` call per view (colour + depth, the baseline), same meshes;
- the training loader (:class:`TrainingDataset` + DataLoader, augmentation on, batch of
  --batch bundles): bundles per second with 0 and 2 workers, on synthetic files whose images are
  224 px (the generator's default) and 1000 px (Human3.6M-sized frames); an epoch of
  --loader-items bundles, worker start-up included (workers are re-created every epoch).

Prints one table. Example::

    python tools/bench_data.py --repeats 3
"""
from __future__ import annotations

import argparse
import os
import platform
import tempfile
from pathlib import Path

os.environ.setdefault("EGL_PLATFORM", "surfaceless")  # open3d offscreen on CPU

import numpy as np
import torch
from _bench import median_time  # tools/ is on sys.path when run as a script

from mvspin.body import BodyModel
from mvspin.data.synthetic_capture import generate_capture_file, make_bundle, part_labels, render_views
from mvspin.data.synthetic_options import SyntheticOptions
from mvspin.learning.training_dataset import TrainingDataset, make_loader
from mvspin.rendering import render_mesh


def bench_generator(body: BodyModel, bundles: int, views: int, size: int, repeats: int, tmp: Path) -> float:
    opts = SyntheticOptions.preset("capture", num_views=views, image_size=(size, size), focal=360.0 * size / 224)
    t = median_time(lambda: generate_capture_file(tmp / f"gen_{body.name}.h5", bundles, seed=0, options=opts,
                                                   body=body), repeats)
    return bundles * views / t


def bench_render(body: BodyModel, bundles: int, views: int, size: int, repeats: int) -> tuple[float, float]:
    """Views/s of the render stage: tiled pass vs one render_mesh per view."""
    opts = SyntheticOptions.preset("capture", num_views=views, image_size=(size, size), focal=360.0 * size / 224)
    labels = part_labels(body)
    made = [make_bundle(body, i, 0, opts, labels) for i in range(bundles)]
    colors = np.full((body.num_vertices, 3), 0.6)

    def tiled() -> None:
        for b in made:
            f = b.fields
            render_views(b.vertices, body.faces, colors, f["camera_K"], f["camera_R"], f["camera_t"], (size, size))

    def per_view() -> None:
        for b in made:
            f = b.fields
            for v in range(views):
                render_mesh(b.vertices, body.faces, f["camera_K"][v], size, size, f["camera_R"][v], f["camera_t"][v],
                            vertex_colors=colors)

    n = bundles * views
    return n / median_time(tiled, repeats), n / median_time(per_view, repeats)


def bench_loader(path: Path, workers: int, batch: int, items: int, repeats: int) -> float:
    ds = TrainingDataset([path], epoch_size=items, seed=0)
    epoch = [0]

    def run() -> None:
        epoch[0] += 1
        ds.set_epoch(epoch[0])
        for _ in make_loader(ds, batch_size=batch, num_workers=workers, seed=0, drop_last=False):
            pass

    return len(ds) / median_time(run, repeats)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--bundles", type=int, default=12, help="bundles per generator run")
    parser.add_argument("--views", type=int, default=4)
    parser.add_argument("--size", type=int, default=224, help="generated image side, pixels")
    parser.add_argument("--loader-bundles", type=int, default=32, help="bundles in each loader file")
    parser.add_argument("--loader-items", type=int, default=128, help="bundles per loader epoch (sampled from the file)")
    parser.add_argument("--loader-sizes", type=int, nargs="+", default=[224, 1000], help="image sides of loader files")
    parser.add_argument("--batch", type=int, default=4, help="bundles per loader batch")
    args = parser.parse_args()

    rows: list[tuple[str, str, str]] = []
    with tempfile.TemporaryDirectory() as d:
        tmp = Path(d)
        for res in ("full", "low"):
            body = BodyModel.free(res)
            label = f"{body.name} ({body.num_vertices} vertices)"
            vps = bench_generator(body, args.bundles, args.views, args.size, args.repeats, tmp)
            rows.append((f"generator end to end, {args.size}x{args.size}, V={args.views}", label, f"{vps:8.1f} views/s"))
            tiled, single = bench_render(body, max(4, args.bundles // 2), args.views, args.size, args.repeats)
            rows.append(("  render stage: tiled pass (render_views)", label, f"{tiled:8.1f} views/s"))
            rows.append(("  render stage: render_mesh per view (baseline)", label,
                         f"{single:8.1f} views/s  (tiled {tiled / single:.1f}x)"))
        body = BodyModel.free("low")
        for size in args.loader_sizes:
            path = tmp / f"loader_{size}.h5"
            opts = SyntheticOptions.preset("capture", num_views=args.views, image_size=(size, size), focal=360.0 * size / 224)
            generate_capture_file(path, args.loader_bundles, seed=1, options=opts, body=body)
            for workers in (0, 2):
                bps = bench_loader(path, workers, args.batch, args.loader_items, args.repeats)
                rows.append((f"loader, {size}x{size} JPEG images, batch {args.batch}, augmented",
                             f"{workers} workers", f"{bps:8.1f} bundles/s ({bps * args.views:.0f} crops/s)"))

    load = os.getloadavg()
    print(f"machine: {platform.processor() or platform.machine()}, {os.cpu_count()} CPUs, torch threads "
          f"{torch.get_num_threads()}, load average {load[0]:.1f} (shared machine: other jobs slow timings)")
    print(f"median of {args.repeats} runs after one warm-up")
    w0 = max(len(r[0]) for r in rows)
    w1 = max(len(r[1]) for r in rows)
    print(f"{'what':<{w0}}  {'setting':<{w1}}  result")
    print("-" * (w0 + w1 + 30))
    for a, b, c in rows:
        print(f"{a:<{w0}}  {b:<{w1}}  {c}")


if __name__ == "__main__":
    main()
