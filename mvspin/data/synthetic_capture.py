"""Synthetic multi-camera captures with rendered images, written as a bundle file.

Each bundle is one body seen by a rig of V cameras, with everything known exactly:

- bodies, rigs, 2D keypoints (projection + pixel noise + dropped keypoints + optional outlier
  views) and crop boxes come from :mod:`mvspin.data.synthetic_keypoints` (the same sampling the
  fitting tests use: poses from the free pose prior, Gaussian betas, cameras around the subject
  looking at it, upright, world +Y up);
- the body's mesh (the free model at ``"full"`` or ``"low"`` resolution, or SMPL when given) is
  rendered in every view with open3d offscreen: per-part colours or "clothes" (skin, top, bottoms,
  shoes, optional stripes, per-vertex shading noise), one sun per bundle fixed in the world (so
  every view of a bundle is lit consistently) plus ambient light, and a varied procedural
  background (gradient, low-frequency texture, clutter shapes, sensor noise) or a plain one;
- the file stores images, crops, 2D keypoints, world-frame 3D joints, SMPL parameters (world
  frame, axis-angle) and the cameras (see :mod:`mvspin.data.bundle_format`).

Bundle ``i`` depends only on ``(seed, i)`` and the options: the first bundles of a longer file
are the bundles of a shorter one.

Rendering speed. open3d's CPU renderer costs a fixed ~20 ms per render call plus time that grows
with the triangles drawn (~50 ms for one 24,540-triangle body at 224 px; measured on the 2-core
development machine), and :func:`mvspin.rendering.render_mesh` renders twice per view (colour,
then depth). :func:`render_views` therefore renders all V views of a bundle in *one* call:
view ``v`` is drawn into its own tile of a larger framebuffer through the linear map
``X' = Kb^-1 K_v' X_cam`` of its camera-frame vertices (``K_v'`` = its intrinsics shifted to the
tile), which projects through the framebuffer camera ``Kb`` exactly where ``K_v`` projects
``X_cam`` and keeps the depth. Normals are given in the world frame, lit by a world-frame sun, so
diffuse shading equals a per-view render. A view whose mesh reaches more than ``TILE_MARGIN``
pixels outside its image would spill into its neighbour: it is rendered on its own instead.
Triangles facing away from a camera are dropped before upload (the renderer would cull them), and
the mask comes from a key background colour the clothes cannot produce (no second depth render).
On that machine this is 3-6x faster than one ``render_mesh`` per view (``tools/bench_data.py``).
"""
from __future__ import annotations

import colorsys
import json
import math
import os
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Optional, Sequence

import cv2
import numpy as np
import torch
from numpy.typing import ArrayLike

from mvspin import rendering
from mvspin.body import BodyModel
from mvspin.body.keypoint_sets import SMPL_JOINT_NAMES
from mvspin.config import ConfigError
from mvspin.data.bundle_format import BundleWriter
from mvspin.data.synthetic_keypoints import make_capture, sample_bodies
from mvspin.data.synthetic_options import SyntheticOptions
from mvspin.geometry import keypoint_crop_boxes
from mvspin.progress import Progress, no_progress, stage_progress

__all__ = [
    "check_renderable",
    "SyntheticOptions",
    "SyntheticBundle",
    "GenerationReport",
    "render_views",
    "make_bundle",
    "generate_capture_file",
    "part_labels",
    "TILE_MARGIN",
]


TILE_MARGIN = 24
"""Pixels a tiled view's mesh may reach beyond its image before the view is rendered alone."""
_TILE_GAP = 2 * TILE_MARGIN + 2  # between tiles: two margins never meet
_MAX_FRAMEBUFFER = 4096  # framebuffer side limit (GL textures; memory)
# Key background: pure magenta. Every clothes/part colour has green >= _MIN_CHANNEL, so a lit
# surface pixel with red = blue = 255 has green >= 255 * _MIN_CHANNEL > 0: never the key.
_KEY = (1.0, 0.0, 1.0)
_MIN_CHANNEL = 0.06
_SKIN_TONES = np.array([[0.96, 0.80, 0.69], [0.91, 0.71, 0.56], [0.78, 0.57, 0.44],
                        [0.56, 0.39, 0.27], [0.36, 0.24, 0.17]])
# SMPL joints (by dominant skinning weight) -> garment: vertices driven by the elbow joint form the
# forearm, by the knee the shin, by the wrist/hand the hand.
_SKIN = ("neck", "head", "left_wrist", "right_wrist", "left_hand", "right_hand")
_TOP = ("spine1", "spine2", "spine3", "left_collar", "right_collar", "left_shoulder", "right_shoulder")
_SLEEVES = ("left_elbow", "right_elbow")
_BOTTOM = ("pelvis", "left_hip", "right_hip")
_LEGS = ("left_knee", "right_knee")
_SHOES = ("left_ankle", "right_ankle", "left_foot", "right_foot")


def check_renderable(opt: SyntheticOptions) -> None:
    """Raise :class:`~mvspin.config.ConfigError` (field ``image_size``) beyond the renderer's own
    limit: one framebuffer side (GL textures; memory). Checked before any body model loads."""
    if max(opt.image_size) > _MAX_FRAMEBUFFER:
        raise ConfigError(f"image_size must be at most {_MAX_FRAMEBUFFER} pixels per side for rendering, "
                          f"got {opt.image_size}", field="image_size")


@dataclass
class SyntheticBundle:
    """One rendered bundle.

    Attributes:
        fields: the bundle as :meth:`BundleWriter.append` takes it (without ``images``).
        images: ``(V, H, W, 3)`` uint8 RGB images as rendered (before encoding).
        masks: ``(V, H, W)`` bool, where the body is visible.
        vertices: ``(N, 3)`` world-frame mesh vertices, metres.
        tiled: ``(V,)`` bool, views rendered in the shared tiled pass (else alone).
    """

    fields: dict[str, Any]
    images: np.ndarray
    masks: np.ndarray
    vertices: np.ndarray
    tiled: np.ndarray


@dataclass
class GenerationReport:
    """What :func:`generate_capture_file` wrote and how long the stages took.

    Attributes:
        path: the bundle file. num_bundles, num_views: its size. body_model: the model's name.
        seconds: wall time. stage_seconds: time per stage (bodies, render, compose, encode, write).
        views_alone: views rendered outside the tiled pass (mesh far outside the image).
    """

    path: Path
    num_bundles: int
    num_views: int
    body_model: str
    seconds: float
    stage_seconds: dict[str, float] = field(default_factory=dict)
    views_alone: int = 0

    @property
    def views_per_second(self) -> float:
        return self.num_bundles * self.num_views / max(self.seconds, 1e-9)

    def summary(self) -> str:
        stages = ", ".join(f"{k} {v:.2f} s" for k, v in self.stage_seconds.items())
        alone = f"; {self.views_alone} views rendered alone (body far outside the image)" if self.views_alone else ""
        return (f"{self.path}: {self.num_bundles} bundles x {self.num_views} views ({self.body_model}) in "
                f"{self.seconds:.1f} s, {self.views_per_second:.1f} views/s [{stages}]{alone}")


# --- rendering ---------------------------------------------------------------------------------


def _normals(vertices: np.ndarray, faces: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Area-weighted unit vertex normals ``(N, 3)`` and face normals ``(F, 3)`` (length 2 x area),
    for faces counter-clockwise seen from outside."""
    tri = vertices[faces]
    fn = np.cross(tri[:, 1] - tri[:, 0], tri[:, 2] - tri[:, 0])
    corners = faces.reshape(-1)
    n = np.stack([np.bincount(corners, weights=np.repeat(fn[:, c], 3), minlength=len(vertices))
                  for c in range(3)], axis=1)
    norm = np.linalg.norm(n, axis=1, keepdims=True)
    return n / np.maximum(norm, 1e-12), fn


def _tile_layout(num_views: int, width: int, height: int) -> tuple[int, int, int]:
    """(columns, rows per pass, views per pass) of the tile grid in one framebuffer."""
    cols = max(1, min(num_views, (_MAX_FRAMEBUFFER + _TILE_GAP) // (width + _TILE_GAP)))
    rows = max(1, min(math.ceil(num_views / cols), (_MAX_FRAMEBUFFER + _TILE_GAP) // (height + _TILE_GAP)))
    return cols, rows, cols * rows


def render_views(
    vertices: np.ndarray,
    faces: np.ndarray,
    vertex_colors: np.ndarray,
    K: np.ndarray,
    R: np.ndarray,
    t: np.ndarray,
    image_size: tuple[int, int],
    light_direction: ArrayLike = (0.3, -1.0, 0.2),
    light_intensity: float = 80000.0,
    ambient_intensity: float = 25000.0,
    shadows: bool = False,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Render one world-frame mesh through V pinhole cameras, all views in one offscreen pass.

    Args:
        vertices: ``(N, 3)`` world points, metres. faces: ``(F, 3)`` vertex indices.
        vertex_colors: ``(N, 3)`` RGB in [0, 1]; keep every channel above 0.06 (the key colour
            that marks the background is pure magenta).
        K: ``(V, 3, 3)`` intrinsics (no lens distortion), pixels. R: ``(V, 3, 3)``, t: ``(V, 3)``
            world-to-camera extrinsics (OpenCV axes).
        image_size: (width, height) of every view.
        light_direction: direction the sun's light travels, **world** frame (shared by all views).
        light_intensity: sun intensity; ambient_intensity: image-based ambient light intensity.
        shadows: let the sun cast shadows (about twice the rendering time).

    Returns:
        colors ``(V, H, W, 3)`` uint8 (magenta where empty), masks ``(V, H, W)`` bool (the mesh
        covers the pixel), tiled ``(V,)`` bool (view drawn in the shared pass, not alone).
    """
    import open3d as o3d

    vertices = np.asarray(vertices, dtype=np.float64)
    faces = np.asarray(faces, dtype=np.int32)
    K, R, t = (np.asarray(a, dtype=np.float64) for a in (K, R, t))
    num_views = K.shape[0]
    if vertices.ndim != 2 or vertices.shape[1] != 3 or faces.ndim != 2 or faces.shape[1] != 3:
        raise ValueError(f"render_views: expected vertices (N, 3) and faces (F, 3), got {vertices.shape}, {faces.shape}")
    if K.shape != (num_views, 3, 3) or R.shape != (num_views, 3, 3) or t.shape != (num_views, 3):
        raise ValueError(f"render_views: expected K (V, 3, 3), R (V, 3, 3), t (V, 3), got {K.shape}, {R.shape}, {t.shape}")
    colors_v = np.asarray(vertex_colors, dtype=np.float64)
    if colors_v.shape != vertices.shape:
        raise ValueError(f"render_views: vertex_colors must be {vertices.shape}, got {colors_v.shape}")
    w, h = int(image_size[0]), int(image_size[1])
    normals, face_normals = _normals(vertices, faces)

    cam = vertices @ R.transpose(0, 2, 1) + t[:, None]  # (V, N, 3)
    z = cam[..., 2]
    px = cam @ K.transpose(0, 2, 1)
    with np.errstate(divide="ignore", invalid="ignore"):
        uv = px[..., :2] / z[..., None]
    safe = np.asarray((z > 1e-3).all(1) & (uv[..., 0] > -TILE_MARGIN).all(1) & (uv[..., 0] < w - 1 + TILE_MARGIN).all(1)
                      & (uv[..., 1] > -TILE_MARGIN).all(1) & (uv[..., 1] < h - 1 + TILE_MARGIN).all(1))
    # A face looks at camera v when its outward normal points to the camera centre C_v.
    centers = -np.einsum("vji,vj->vi", R, t)  # C = -R^T t
    corner = vertices[faces[:, 0]]
    front_facing = (np.einsum("fc,fc->f", face_normals, corner)[None]
                    - centers @ face_normals.T) < 0  # n . (a - C) < 0, (V, F)
    front = z[z > 1e-3]
    if front.size == 0:
        raise ValueError("render_views: the mesh is behind every camera")
    z_near, z_far = max(1e-3, 0.5 * float(front.min())), 2.0 * float(front.max()) + 1.0

    cols, rows, per_pass = _tile_layout(num_views, w, h)
    # Passes: the tiled views in groups that fit one framebuffer, then each unsafe view alone.
    tiled_views = [v for v in range(num_views) if safe[v]]
    passes = [tiled_views[i:i + per_pass] for i in range(0, len(tiled_views), per_pass)]
    passes += [[v] for v in range(num_views) if not safe[v]]
    fb_w = min(num_views, cols) * (w + _TILE_GAP) - _TILE_GAP
    fb_h = min(rows, math.ceil(num_views / cols)) * (h + _TILE_GAP) - _TILE_GAP

    material = o3d.visualization.rendering.MaterialRecord()
    material.shader = "defaultLit"
    material.base_color = [1.0, 1.0, 1.0, 1.0]
    # Specular highlights depend on the view direction, which the tile map distorts: keep them weak.
    material.base_roughness = 0.9
    material.base_reflectance = 0.2

    out = np.zeros((num_views, h, w, 3), np.uint8)
    focal_b = float(np.median(K[:, 0, 0]))
    Kb = np.array([[focal_b, 0.0, 0.0], [0.0, focal_b, 0.0], [0.0, 0.0, 1.0]])
    Kb_inv = np.linalg.inv(Kb)
    with rendering.offscreen_renderer(fb_w, fb_h) as (renderer, (rw, rh)):
        scene = renderer.scene
        scene.view.set_shadowing(bool(shadows))
        try:
            scene.set_background([*_KEY, 1.0])
            scene.scene.set_sun_light(np.asarray(light_direction, dtype=np.float32), [1.0, 1.0, 1.0],
                                      float(light_intensity))
            scene.scene.enable_sun_light(True)
            scene.scene.enable_indirect_light(True)
            scene.scene.set_indirect_light_intensity(float(ambient_intensity))
            for views in passes:
                offsets = {}
                verts, norms, cols_, tris = [], [], [], []
                count = 0
                for k, v in enumerate(views):
                    ox, oy = (k % cols) * (w + _TILE_GAP), (k // cols) * (h + _TILE_GAP)
                    offsets[v] = (ox, oy)
                    Kv = rendering.gl_intrinsics(K[v])
                    Kv[0, 2] += ox  # the view's tile in the shared framebuffer
                    Kv[1, 2] += oy
                    # Only triangles facing the camera are drawn (the renderer culls the others
                    # anyway): half the triangles and vertices to upload and transform.
                    keep = faces[front_facing[v]]
                    is_used = np.zeros(len(vertices), bool)
                    is_used[keep.reshape(-1)] = True
                    used = np.flatnonzero(is_used)
                    remap = np.empty(len(vertices), np.int32)
                    remap[used] = np.arange(len(used), dtype=np.int32) + count
                    count += len(used)
                    verts.append(cam[v, used] @ (Kb_inv @ Kv).T)
                    norms.append(normals[used])
                    cols_.append(colors_v[used])
                    tris.append(remap[keep])
                mesh = o3d.geometry.TriangleMesh(o3d.utility.Vector3dVector(np.concatenate(verts)),
                                                 o3d.utility.Vector3iVector(np.concatenate(tris)))
                mesh.vertex_normals = o3d.utility.Vector3dVector(np.concatenate(norms))
                mesh.vertex_colors = o3d.utility.Vector3dVector(np.concatenate(cols_))
                scene.clear_geometry()
                scene.add_geometry("body", mesh, material)
                renderer.setup_camera(Kb, np.eye(4), rw, rh)
                scene.camera.set_projection(Kb, z_near, z_far, float(rw), float(rh))
                image = np.asarray(renderer.render_to_image())
                for v, (ox, oy) in offsets.items():
                    out[v] = image[oy:oy + h, ox:ox + w]
        finally:
            scene.clear_geometry()
            scene.view.set_shadowing(True)  # the shared renderer's default (mvspin.rendering)
    masks = ~((out[..., 0] == 255) & (out[..., 1] == 0) & (out[..., 2] == 255))
    return out, masks, safe


# --- appearance -------------------------------------------------------------------------------


def part_labels(body: BodyModel) -> np.ndarray:
    """``(N,)`` int: the SMPL joint with the largest skinning weight at each vertex."""
    return body.smpl.lbs_weights.detach().cpu().numpy().argmax(axis=1)


def _hsv(rng: np.random.Generator, s: tuple[float, float], v: tuple[float, float]) -> np.ndarray:
    return np.array(colorsys.hsv_to_rgb(rng.uniform(), rng.uniform(*s), rng.uniform(*v)))


def _part_palette() -> np.ndarray:
    """24 distinct colours, one per SMPL joint (golden-ratio hues)."""
    return np.array([colorsys.hsv_to_rgb((0.618034 * j) % 1.0, 0.75, 0.9) for j in range(24)])


def _vertex_colors(labels: np.ndarray, rest_height: np.ndarray, scheme: str, rng: np.random.Generator) -> np.ndarray:
    if scheme == "parts":
        colors = _part_palette()[labels]
    else:
        joint = {n: i for i, n in enumerate(SMPL_JOINT_NAMES)}
        a, b = sorted(rng.choice(len(_SKIN_TONES), 2, replace=False))
        skin = _SKIN_TONES[a] + rng.uniform() * (_SKIN_TONES[b] - _SKIN_TONES[a])
        top, bottom = _hsv(rng, (0.1, 0.9), (0.25, 0.95)), _hsv(rng, (0.1, 0.8), (0.15, 0.75))
        shoes = _hsv(rng, (0.0, 0.5), (0.1, 0.5))
        table = np.tile(skin, (24, 1))
        for names, color in ((_TOP, top), (_BOTTOM, bottom), (_SHOES, shoes)):
            table[[joint[n] for n in names]] = color
        table[[joint[n] for n in _SLEEVES]] = top if rng.uniform() < 0.6 else skin  # long or short sleeves
        table[[joint[n] for n in _LEGS]] = bottom if rng.uniform() < 0.8 else skin  # trousers or shorts
        colors = table[labels]
        top_parts = np.isin(labels, [joint[n] for n in _TOP])
        if rng.uniform() < 0.35:  # horizontal stripes on the top, fixed to the body's rest shape
            period = rng.uniform(0.04, 0.12)
            stripe = np.sin(2 * np.pi * rest_height / period) > 0
            colors = np.where((top_parts & stripe)[:, None], _hsv(rng, (0.0, 0.9), (0.2, 1.0)), colors)
        # Per-vertex shading noise: a little texture instead of flat plastic.
        colors = colors * rng.uniform(0.9, 1.1, size=(len(labels), 1))
    return np.clip(colors, _MIN_CHANNEL, 1.0)


def _background(rng: np.random.Generator, width: int, height: int, scheme: str,
                plain: Sequence[float]) -> np.ndarray:
    """An RGB uint8 background ``(H, W, 3)``: plain, or gradient + texture + clutter + noise."""
    if scheme == "plain":
        return np.full((height, width, 3), np.round(np.asarray(plain) * 255), np.uint8)
    c_top, c_bottom = rng.uniform(0.05, 0.95, 3), rng.uniform(0.05, 0.95, 3)
    horizon = rng.uniform(0.3, 0.8)
    y = (np.arange(height, dtype=np.float32) / max(height - 1, 1))[:, None, None]
    mix = 1.0 / (1.0 + np.exp(-(y - horizon) * rng.uniform(5, 40)))  # soft wall/floor edge
    img: np.ndarray = (1 - mix) * c_top.astype(np.float32) + mix * c_bottom.astype(np.float32)
    img = np.broadcast_to(img, (height, width, 3)).copy()
    grid = rng.uniform(-1, 1, size=(int(rng.integers(3, 9)), int(rng.integers(3, 9)), 3)).astype(np.float32)
    img += rng.uniform(0.05, 0.25) * cv2.resize(grid, (width, height), interpolation=cv2.INTER_CUBIC)
    for _ in range(int(rng.integers(0, 7))):  # clutter: furniture-like boxes and round things
        color = tuple(float(c) for c in rng.uniform(0, 1, 3))
        x0, y0 = rng.uniform(-0.2, 1.0) * width, rng.uniform(-0.2, 1.0) * height
        sx, sy = rng.uniform(0.05, 0.5) * width, rng.uniform(0.05, 0.5) * height
        layer = img.copy()
        if rng.uniform() < 0.6:
            cv2.rectangle(layer, (int(x0), int(y0)), (int(x0 + sx), int(y0 + sy)), color, -1)
        else:
            cv2.ellipse(layer, (int(x0), int(y0)), (int(sx / 2), int(sy / 2)), float(rng.uniform(0, 180)), 0, 360,
                        color, -1)
        alpha = float(rng.uniform(0.5, 1.0))
        img = cv2.addWeighted(layer, alpha, img, 1.0 - alpha, 0.0)  # half-transparent to opaque
    img += np.float32(rng.uniform(0.0, 0.03)) * rng.standard_normal(size=img.shape, dtype=np.float32)
    return np.clip(img * 255 + 0.5, 0, 255).astype(np.uint8)


def _sun_direction(rng: np.random.Generator) -> np.ndarray:
    """Direction sunlight travels (world, +Y up): from 20-75 degrees above the horizon, any azimuth."""
    elevation, azimuth = np.radians(rng.uniform(20, 75)), rng.uniform(0, 2 * np.pi)
    towards_sun = np.array([np.cos(elevation) * np.sin(azimuth), np.sin(elevation), np.cos(elevation) * np.cos(azimuth)])
    return -towards_sun


# --- bundles ----------------------------------------------------------------------------------


def _bundle_seeds(seed: int, index: int) -> tuple[int, int, int]:
    """Independent seeds of bundle ``index`` for its body, its capture (rig, noise) and its look."""
    s = np.random.SeedSequence([int(seed), int(index)]).generate_state(3)
    return int(s[0]), int(s[1]), int(s[2])


def make_bundle(body: BodyModel, index: int, seed: int = 0, options: Optional[SyntheticOptions] = None,
                labels: Optional[np.ndarray] = None, timings: Optional[dict[str, float]] = None) -> SyntheticBundle:
    """Sample, render and describe bundle ``index`` of the capture ``seed``.

    Args:
        body: the body model (its mesh is rendered; its parameters are stored as SMPL fields).
        index: bundle index (with ``seed``, determines everything).
        options: see :class:`~mvspin.data.synthetic_options.SyntheticOptions` (default: its
            ``"capture"`` preset).
        labels: :func:`part_labels` of ``body`` (computed when None; pass it to save time).
        timings: if given, seconds per stage are added to it.

    Returns:
        the bundle's fields (cameras, keypoints, crops, joints, SMPL, ids), rendered images, masks.
    """
    opt = options or SyntheticOptions.preset("capture")
    check_renderable(opt)
    if body.num_betas != 10:
        raise ValueError(f"the bundle format stores 10 betas; body model {body.name} has {body.num_betas}")
    t0 = time.perf_counter()
    body_seed, capture_seed, look_seed = _bundle_seeds(seed, index)
    if opt.poses == "motions":
        from mvspin.data.motion_suite import sample_motion_bodies

        params = sample_motion_bodies(body, 1, np.random.default_rng(body_seed), opt.betas_std, opt.pose_spread / 2)
    else:
        params = sample_bodies(body, 1, torch.Generator().manual_seed(body_seed), opt.pose_spread, opt.betas_std)
    cap = make_capture(body, params, opt.num_views, seed=capture_seed, options=opt)
    rig = cap.rigs[0]
    if any(np.any(c.dist != 0) for c in rig):
        raise ValueError("synthetic rigs must be distortion-free: the renderer draws pinhole images")
    dev, dt = body.J_template.device, body.J_template.dtype
    with torch.no_grad():
        out = body(params.body_pose.to(dev, dt), params.betas.to(dev, dt), params.global_orient.to(dev, dt),
                   params.transl.to(dev, dt), keypoints=opt.joints_3d_set)
    vertices = out.vertices[0].double().cpu().numpy()
    joints = out.keypoints[0].double().cpu().numpy()
    # The crop box of each view frames the exactly projected keypoints (like the dataset builders'
    # ground-truth boxes), not the corrupted detections.
    clean = cap.keypoints_clean[0].clone()
    clean[..., 2] = 1.0
    center, scale, _ = keypoint_crop_boxes(clean, scale_factor=opt.crop_margin)
    t1 = time.perf_counter()

    look = np.random.default_rng(look_seed)
    if labels is None:
        labels = part_labels(body)
    rest_height = body.smpl.v_template[:, 1].detach().cpu().numpy()
    colors = _vertex_colors(labels, rest_height, opt.colors, look)
    K = np.stack([c.K for c in rig])
    R = np.stack([c.R for c in rig])
    t = np.stack([c.t for c in rig])
    rendered, masks, tiled = render_views(
        vertices, body.faces, colors, K, R, t, opt.image_size, light_direction=_sun_direction(look),
        light_intensity=look.uniform(*opt.light_intensity), ambient_intensity=look.uniform(*opt.ambient_intensity),
        shadows=opt.shadows)
    t2 = time.perf_counter()
    w, h = opt.image_size
    images = np.empty_like(rendered)
    for v in range(opt.num_views):
        bg = _background(look, w, h, opt.background, opt.background_color)
        images[v] = np.where(masks[v][..., None], rendered[v], bg)
    t3 = time.perf_counter()

    fields: dict[str, Any] = {
        "image_size": np.array([c.image_size for c in rig], dtype=np.int32),
        "center": center.numpy(),
        "scale": scale.numpy(),
        "keypoints_2d": cap.keypoints[0].numpy(),
        "joints_3d": np.concatenate([joints, np.ones((len(joints), 1))], axis=1),
        "camera_K": K,
        "camera_dist": np.zeros((opt.num_views, 5)),
        "camera_R": R,
        "camera_t": t,
        "smpl_global_orient": params.global_orient[0].numpy(),
        "smpl_body_pose": params.body_pose[0].numpy(),
        "smpl_betas": params.betas[0].numpy(),
        "smpl_transl": params.transl[0].numpy(),
        "smpl_gender": "neutral",
        "has_smpl": True,
        "subject": f"synthetic_{index:06d}",
        "sequence": f"seed_{seed}",
        "frame": int(index),
        "camera_names": np.array(rig.names, dtype=object),
    }
    if timings is not None:
        for k, dtv in (("bodies", t1 - t0), ("render", t2 - t1), ("compose", t3 - t2)):
            timings[k] = timings.get(k, 0.0) + dtv
    return SyntheticBundle(fields=fields, images=images, masks=masks, vertices=vertices, tiled=tiled)


def _encode(image_rgb: np.ndarray, ext: str, quality: int) -> np.ndarray:
    params = [int(cv2.IMWRITE_JPEG_QUALITY), int(quality)] if ext == ".jpg" else []
    ok, buf = cv2.imencode(ext, cv2.cvtColor(image_rgb, cv2.COLOR_RGB2BGR), params)
    if not ok:
        raise RuntimeError(f"OpenCV could not encode a {ext} image")
    return buf.reshape(-1)


def generate_capture_file(
    out: str | os.PathLike,
    num_bundles: int,
    seed: int = 0,
    options: Optional[SyntheticOptions] = None,
    body: Optional[BodyModel] = None,
    progress: Progress = no_progress,
    num_threads: Optional[int] = 1,
) -> GenerationReport:
    """Write ``num_bundles`` synthetic bundles of ``options.num_views`` rendered views to ``out``.

    The file appears only when complete (:class:`BundleWriter` writes a temporary file and
    renames it). Attributes record the body model, the seed and every option.

    Args:
        out: output ``.h5`` bundle file.
        num_bundles: N.
        seed: the capture's seed; bundle i depends only on (seed, i) and the options.
        options: see :class:`~mvspin.data.synthetic_options.SyntheticOptions` (default: its
            ``"capture"`` preset).
        body: the body model (default: the free model at full resolution).
        progress: told ``("synthetic bundles", done, num_bundles)`` after each bundle.
        num_threads: torch intra-op threads while generating (restored after; None: leave as
            is). One body per bundle is too little work to share: extra threads only contend
            with the renderer's (measured 1.5x slower with 2 threads on a 2-core machine).
    """
    opt = options or SyntheticOptions.preset("capture")
    check_renderable(opt)
    if num_bundles < 1:
        raise ValueError(f"num_bundles must be >= 1, got {num_bundles}")
    body = body if body is not None else BodyModel.free("full")
    threads = torch.get_num_threads()
    if num_threads is not None:
        torch.set_num_threads(int(num_threads))
    try:
        return _generate(out, num_bundles, seed, opt, body, progress)
    finally:
        torch.set_num_threads(threads)


def _generate(out: str | os.PathLike, num_bundles: int, seed: int, opt: SyntheticOptions, body: BodyModel,
              progress: Progress) -> GenerationReport:
    labels = part_labels(body)
    timings: dict[str, float] = {}
    views_alone = 0
    start = time.perf_counter()
    attrs = {
        "generator": "mvspin.data.synthetic_capture",
        "body_model": body.name,
        "seed": int(seed),
        "options": json.dumps(asdict(opt)),
    }
    with BundleWriter(out, dataset="synthetic", split=opt.split, num_views=opt.num_views,
                      keypoint_set=opt.keypoint_set, joints_3d_keypoint_set=opt.joints_3d_set,
                      joints_3d_frame="world", cameras=True, smpl=True, image_storage="bytes",
                      attrs=attrs) as writer:
        update = stage_progress(progress, "synthetic bundles", num_bundles)
        update(0)
        for i in range(num_bundles):
            b = make_bundle(body, i, seed, opt, labels=labels, timings=timings)
            views_alone += int((~b.tiled).sum())
            t0 = time.perf_counter()
            b.fields["images"] = [_encode(img, opt.image_format, opt.jpeg_quality) for img in b.images]
            t1 = time.perf_counter()
            writer.append(b.fields)
            t2 = time.perf_counter()
            timings["encode"] = timings.get("encode", 0.0) + t1 - t0
            timings["write"] = timings.get("write", 0.0) + t2 - t1
            update(i + 1)
        t_close = time.perf_counter()
    timings["write"] = timings.get("write", 0.0) + time.perf_counter() - t_close
    seconds = time.perf_counter() - start
    return GenerationReport(path=Path(out), num_bundles=num_bundles, num_views=opt.num_views, body_model=body.name,
                            seconds=seconds, stage_seconds=timings, views_alone=views_alone)
