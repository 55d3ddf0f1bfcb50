"""The ``render-model`` job: a PNG grid of the body model in several poses and shapes.

Panels: the rest pose, the mean pose, ``samples`` poses drawn from the pose prior, and the mean
pose with the first two betas at -2 and +2.

Example:
    >>> from mvspin.apps.render_model import RenderModelConfig, run  # doctest: +SKIP
    >>> report = run(RenderModelConfig(out=Path("model.png"), samples=2))  # doctest: +SKIP
"""
from __future__ import annotations

import logging
import math
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from mvspin.atomic import check_output_location, removed_if_unused, write_bytes_atomic
from mvspin.body import BodyModel, BodyModelConfig
from mvspin.config import ConfigError, check_range
from mvspin.progress import Progress, no_progress, stage_progress

__all__ = ["RenderModelConfig", "RenderModelReport", "run", "model_gallery", "MAX_GRID_PIXELS"]

log = logging.getLogger("mvspin")

MAX_GRID_PIXELS = 64_000_000
"""The largest gallery :func:`run` renders, pixels (192 MB of RGB; the defaults make 1200 x 640)."""
_SHAPE_PANELS = 4  # betas 0 and 1 at -2 and +2
_FIXED_PANELS = 2 + _SHAPE_PANELS  # rest pose, mean pose
_PAD = 4  # pixels around and between panels


@dataclass
class RenderModelConfig:
    """Everything ``mvspin render-model`` needs."""

    out: Path = Path("body_model.png")
    """Output PNG."""
    samples: int = 4
    """Poses sampled from the pose prior, 0..256."""
    seed: int = 0
    """Random seed of the sampled poses."""
    size: tuple[int, int] = (240, 320)
    """Panel width and height in pixels, 32..4096 each."""
    cols: int = 5
    """Panels per row, 1..64."""
    body: BodyModelConfig = field(default_factory=BodyModelConfig)
    """The body model drawn."""

    def __post_init__(self) -> None:
        self.out = Path(self.out)
        check_range("cols", self.cols, 1, 64, integer=True)
        check_range("samples", self.samples, 0, 256, integer=True)
        if len(self.size) != 2:
            raise ConfigError(f"size must be W H, got {list(self.size)}", field="size")
        self.size = (self.size[0], self.size[1])
        for side, value in zip("WH", self.size):
            if isinstance(value, bool) or not isinstance(value, int) or not 32 <= value <= 4096:
                raise ConfigError(f"size {side} must be in 32..4096, got {value}", field="size")
        if self.out.suffix.lower() != ".png":
            raise ConfigError(f"out {self.out}: the gallery is a PNG; give a name ending in .png", field="out")
        w, h = self.grid_pixels()
        if w * h > MAX_GRID_PIXELS:
            raise ConfigError(f"size: {self.panels()} panels of {self.size[0]} x {self.size[1]} in {self.cols} "
                              f"columns make a {w} x {h} image, more than {MAX_GRID_PIXELS // 1_000_000} "
                              "megapixels; use smaller panels, fewer columns or fewer samples", field="size")

    def panels(self) -> int:
        """Number of panels in the gallery."""
        return _FIXED_PANELS + self.samples

    def grid_pixels(self) -> tuple[int, int]:
        """Width and height of the gallery, pixels (panels and the padding between them)."""
        rows = math.ceil(self.panels() / self.cols)
        return self.cols * self.size[0] + (self.cols + 1) * _PAD, rows * self.size[1] + (rows + 1) * _PAD


@dataclass
class RenderModelReport:
    """What :func:`run` wrote."""

    path: Path
    """The PNG."""
    panels: int
    """Panels drawn."""
    pixels: tuple[int, int]
    """The image's width and height."""
    body_model: str
    """The body model's name."""


def model_gallery(body: BodyModel, samples: int, seed: int) -> list[tuple[str, torch.Tensor, torch.Tensor]]:
    """``(label, body_pose (69,), betas (num_betas,))`` for each panel (module docstring)."""
    from mvspin.geometry import matrix_to_axis_angle, rot6d_to_matrix

    zero_pose, zero_betas = torch.zeros(69), torch.zeros(body.num_betas)
    mean_rot = rot6d_to_matrix(torch.as_tensor(body.mean_params["pose"]).reshape(24, 6))
    mean_pose = matrix_to_axis_angle(mean_rot[1:]).reshape(69)
    panels = [("rest pose", zero_pose, zero_betas), ("mean pose", mean_pose, zero_betas)]
    g = torch.Generator().manual_seed(seed)
    prior_samples: list[torch.Tensor] = list(body.pose_prior().sample(samples, generator=g, spread=0.25)) if samples else []
    panels += [(f"prior sample {i + 1}", p, zero_betas) for i, p in enumerate(prior_samples)]
    for k in range(min(2, body.num_betas)):
        for value in (-2.0, 2.0):
            betas = zero_betas.clone()
            betas[k] = value
            panels.append((f"beta{k} = {value:+.0f}", mean_pose, betas))
    return panels


def run(config: RenderModelConfig, progress: Progress = no_progress) -> RenderModelReport:
    """Render the gallery and write it to ``config.out`` (checked before the body model loads)."""
    with removed_if_unused(config.out.parent):
        check_output_location(config.out, what="out")
        return _render(config, progress)


def _render(config: RenderModelConfig, progress: Progress) -> RenderModelReport:
    import cv2

    from mvspin.rendering import image_grid, look_at, render_mesh

    body = config.body.load()
    panels = model_gallery(body, config.samples, config.seed)
    w, h = config.size
    f = 0.95 * h / 2.0 * 3.2 / 1.1  # fits a ~2.2 m tall box at 3.2 m
    K = np.array([[f, 0, w / 2], [0, f, h / 2], [0, 0, 1]])
    R, t = look_at(eye=(0.0, 0.1, 3.2), target=(0.0, -0.15, 0.0))
    update = stage_progress(progress, "render-model", len(panels))
    images = []
    with torch.no_grad():
        for label, pose, betas in panels:
            out = body(body_pose=pose[None], betas=betas[None])
            img = render_mesh(out.vertices[0].numpy(), body.faces, K, w, h, R, t).color
            cv2.putText(img, label, (6, 18), cv2.FONT_HERSHEY_SIMPLEX, 0.45, (40, 40, 40), 1, cv2.LINE_AA)
            images.append(img)
            update(len(images))
    grid = image_grid(images, cols=config.cols, pad=_PAD)
    ok, png = cv2.imencode(".png", cv2.cvtColor(grid, cv2.COLOR_RGB2BGR))
    if not ok:
        raise ValueError(f"{config.out}: could not encode the gallery as PNG")
    write_bytes_atomic(config.out, png.tobytes())
    return RenderModelReport(path=config.out, panels=len(images), pixels=(grid.shape[1], grid.shape[0]),
                             body_model=body.name)
