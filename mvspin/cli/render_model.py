"""``mvspin render-model``: a PNG grid of the body model in several poses and shapes."""
from __future__ import annotations

import argparse
from pathlib import Path

import cv2
import numpy as np
import torch

from mvspin.cli.common import add_body_model_args, atomic_write_bytes, check_output, check_range, load_body_model, log


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "render-model", help="save a PNG grid of the body model in several poses and shapes",
        description="Render the body model (free by default) in its rest pose, its mean pose, poses sampled "
                    "from the pose prior and along the first shape directions, as one PNG grid.",
    )
    add_body_model_args(p)
    p.add_argument("--out", type=Path, default=Path("body_model.png"), help="output PNG (default: %(default)s)")
    p.add_argument("--samples", type=int, default=4, help="poses sampled from the prior (default: %(default)s)")
    p.add_argument("--seed", type=int, default=0, help="random seed for the sampled poses")
    p.add_argument("--size", type=int, nargs=2, default=(240, 320), metavar=("W", "H"), help="panel size in pixels")
    p.add_argument("--cols", type=int, default=5, help="panels per row (default: %(default)s)")
    p.set_defaults(run=run)


def model_gallery(body, samples: int, seed: int) -> list[tuple[str, torch.Tensor, torch.Tensor]]:
    """(label, body_pose (69,), betas (10,)) for each panel."""
    from mvspin.geometry import matrix_to_axis_angle, rot6d_to_matrix

    zero_pose, zero_betas = torch.zeros(69), torch.zeros(body.num_betas)
    mean_rot = rot6d_to_matrix(torch.as_tensor(body.mean_params["pose"]).reshape(24, 6))
    mean_pose = matrix_to_axis_angle(mean_rot[1:]).reshape(69)
    panels = [("rest pose", zero_pose, zero_betas), ("mean pose", mean_pose, zero_betas)]
    g = torch.Generator().manual_seed(seed)
    prior_samples = body.pose_prior().sample(samples, generator=g, spread=0.25) if samples else []
    panels += [(f"prior sample {i + 1}", p, zero_betas) for i, p in enumerate(prior_samples)]
    for k in range(min(2, body.num_betas)):
        for value in (-2.0, 2.0):
            betas = zero_betas.clone()
            betas[k] = value
            panels.append((f"beta{k} = {value:+.0f}", mean_pose, betas))
    return panels


def run(args: argparse.Namespace) -> int:
    from mvspin.rendering import image_grid, look_at, render_mesh

    check_range("--cols", args.cols, 1, 64)
    check_range("--samples", args.samples, 0, 256)
    for option, value in (("--size W", args.size[0]), ("--size H", args.size[1])):
        check_range(option, value, 32, 4096)
    if args.out.suffix.lower() != ".png":
        raise ValueError(f"--out {args.out}: the gallery is a PNG; give a name ending in .png")
    check_output(args.out, "--out")  # before the body model and the renderer start
    body = load_body_model(args)
    panels = model_gallery(body, args.samples, args.seed)
    w, h = args.size
    f = 0.95 * h / 2.0 * 3.2 / 1.1  # fits a ~2.2 m tall box at 3.2 m
    K = np.array([[f, 0, w / 2], [0, f, h / 2], [0, 0, 1]])
    R, t = look_at(eye=(0.0, 0.1, 3.2), target=(0.0, -0.15, 0.0))
    images = []
    with torch.no_grad():
        for label, pose, betas in panels:
            out = body(body_pose=pose[None], betas=betas[None])
            img = render_mesh(out.vertices[0].numpy(), body.faces, K, w, h, R, t).color
            cv2.putText(img, label, (6, 18), cv2.FONT_HERSHEY_SIMPLEX, 0.45, (40, 40, 40), 1, cv2.LINE_AA)
            images.append(img)
    grid = image_grid(images, cols=args.cols)
    ok, png = cv2.imencode(".png", cv2.cvtColor(grid, cv2.COLOR_RGB2BGR))
    if not ok:
        raise ValueError(f"could not encode {args.out}")
    atomic_write_bytes(args.out, png.tobytes())
    log.info("wrote %s (%d panels, %dx%d)", args.out, len(images), grid.shape[1], grid.shape[0])
    return 0
