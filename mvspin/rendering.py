"""Offscreen mesh rendering with open3d (CPU, EGL surfaceless), in OpenCV camera conventions.

One open3d renderer is kept per process (open3d does not support several at once); it is
re-created only when a larger image is asked for. Images are rendered through the exact pinhole
camera ``K`` and world-to-camera ``R, t`` (OpenCV axes: x right, y down, z forward), so a
rendered mesh covers the pixels where its projected triangles fall.
"""
from __future__ import annotations

import contextlib
import os
import threading
from dataclasses import dataclass
from typing import Any, Iterator, Optional, Sequence

import numpy as np

from calibration.camera import look_at  # re-exported: its one home is calibration

__all__ = ["quiet_native_output", "RenderResult", "render_mesh", "overlay", "image_grid", "look_at",
           "offscreen_renderer", "gl_intrinsics"]

# open3d 0.19 segfaults on a CPU-only machine unless EGL runs surfaceless (environment.md).
os.environ.setdefault("EGL_PLATFORM", "surfaceless")


def _ensure_runtime_dir() -> None:
    """Give Filament a valid ``$XDG_RUNTIME_DIR`` (a private folder of this user) when the
    environment has none, so it does not print ``error: XDG_RUNTIME_DIR is invalid``."""
    current = os.environ.get("XDG_RUNTIME_DIR")
    if current and os.path.isdir(current) and os.access(current, os.W_OK):
        return
    import tempfile

    folder = os.path.join(tempfile.gettempdir(), f"mvspin-runtime-{os.getuid() if hasattr(os, 'getuid') else 0}")
    try:
        os.makedirs(folder, mode=0o700, exist_ok=True)
        info = os.stat(folder)
        if hasattr(os, "getuid") and (info.st_uid != os.getuid() or info.st_mode & 0o077):
            return  # someone else's or not private: leave the environment alone
    except OSError:
        return
    os.environ["XDG_RUNTIME_DIR"] = folder


@contextlib.contextmanager
def quiet_native_output() -> Iterator[None]:
    """Send what C/C++ code writes to file descriptors 1 and 2 to ``/dev/null`` for the block.

    For open3d calls whose native libraries print to the terminal. Creating open3d's renderer prints Filament's and EGL's start-up banners ("FEngine ...
    created", "EGL(1.5)", "OpenGL(4.5)", "[Open3D INFO] EGL headless mode enabled"), which
    alarm users of a run that works. Errors still reach Python as exceptions.
    """
    import sys

    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except (AttributeError, OSError, ValueError):
            pass
    try:
        saved = (os.dup(1), os.dup(2))
    except OSError:  # no real descriptors (embedded interpreters): nothing to silence
        yield
        return
    devnull = os.open(os.devnull, os.O_WRONLY)
    try:
        os.dup2(devnull, 1)
        os.dup2(devnull, 2)
        yield
    finally:
        try:
            import ctypes

            ctypes.CDLL(None).fflush(None)  # C stdio buffers still hold banner text
        except (OSError, AttributeError):
            pass
        os.dup2(saved[0], 1)
        os.dup2(saved[1], 2)
        for fd in (*saved, devnull):
            os.close(fd)

_lock = threading.Lock()
_state: dict[str, Any] = {}

DEFAULT_COLOR = (0.65, 0.74, 0.86)


@dataclass
class RenderResult:
    """A rendered view.

    Attributes:
        color: ``(H, W, 3)`` uint8 RGB (background where ``mask`` is False).
        mask: ``(H, W)`` bool, True where the mesh is visible.
        depth: ``(H, W)`` float32 camera-space depth in metres (inf where empty).
    """

    color: np.ndarray
    mask: np.ndarray
    depth: np.ndarray


@contextlib.contextmanager
def offscreen_renderer(width: int, height: int) -> Iterator[tuple[Any, tuple[int, int]]]:
    """Hold the process's open3d renderer (at least ``width x height``) exclusively.

    Yields ``(renderer, (renderer_width, renderer_height))``. Code that draws several views in
    one pass (e.g. the synthetic capture generator) uses this instead of creating a renderer:
    open3d supports one per process.
    """
    with _lock:
        yield _renderer(width, height)


def gl_intrinsics(K: np.ndarray) -> np.ndarray:
    """``K`` for open3d: its pixel centres sit at half-integers, OpenCV's at integers."""
    K = np.array(K, dtype=np.float64)
    K[..., 0, 2] += 0.5
    K[..., 1, 2] += 0.5
    return K


def _renderer(width: int, height: int):
    """The process's renderer, at least ``width x height`` pixels."""
    import open3d as o3d

    r = _state.get("renderer")
    size = _state.get("size", (0, 0))
    if r is None or width > size[0] or height > size[1]:
        if r is not None:
            del _state["renderer"], r
        w, h = max(width, size[0]), max(height, size[1])
        _ensure_runtime_dir()
        o3d.utility.set_verbosity_level(o3d.utility.VerbosityLevel.Warning)
        with quiet_native_output():
            r = o3d.visualization.rendering.OffscreenRenderer(w, h)
        # No tone mapping/antialiasing: background and silhouettes come out exactly as asked.
        r.scene.view.set_post_processing(False)
        _state["renderer"], _state["size"] = r, (w, h)
    return r, _state["size"]


def render_mesh(
    vertices: np.ndarray,
    faces: np.ndarray,
    K: np.ndarray,
    width: int,
    height: int,
    R: Optional[np.ndarray] = None,
    t: Optional[np.ndarray] = None,
    color: Sequence[float] = DEFAULT_COLOR,
    vertex_colors: Optional[np.ndarray] = None,
    background: Sequence[float] = (1.0, 1.0, 1.0),
    light_direction: Sequence[float] = (0.3, 0.5, 1.0),
    ambient: float = 0.35,
) -> RenderResult:
    """Render one triangle mesh through a pinhole camera.

    Args:
        vertices: ``(N, 3)`` world points, metres.
        faces: ``(F, 3)`` vertex indices.
        K: ``(3, 3)`` intrinsics, pixels.
        width, height: image size in pixels.
        R, t: world-to-camera rotation ``(3, 3)`` and translation ``(3,)``; identity/zero if None.
        color: RGB in [0, 1] for the whole mesh, unless ``vertex_colors`` ``(N, 3)`` is given.
        background: RGB in [0, 1].
        light_direction: direction the light travels, in camera axes (the default comes from
            over the camera's upper left).
        ambient: share of light that reaches surfaces facing away from the light.

    Shading is Lambertian, computed per vertex here and drawn with open3d's unlit shader: the
    result does not depend on open3d's tone mapping and is the same on every machine.
    """
    import open3d as o3d

    vertices = np.asarray(vertices, dtype=np.float64)
    faces = np.asarray(faces, dtype=np.int32)
    if vertices.ndim != 2 or vertices.shape[1] != 3 or faces.ndim != 2 or faces.shape[1] != 3:
        raise ValueError(f"expected vertices (N, 3) and faces (F, 3), got {vertices.shape} and {faces.shape}")
    R = np.eye(3) if R is None else np.asarray(R, dtype=np.float64)
    t = np.zeros(3) if t is None else np.asarray(t, dtype=np.float64).reshape(3)
    # Render in camera coordinates (identity extrinsic) so lighting is fixed relative to the view.
    cam_vertices = vertices @ R.T + t
    mesh = o3d.geometry.TriangleMesh(o3d.utility.Vector3dVector(cam_vertices), o3d.utility.Vector3iVector(faces))
    mesh.compute_vertex_normals()
    normals = np.asarray(mesh.vertex_normals)
    light = -np.asarray(light_direction, dtype=np.float64)
    light /= np.linalg.norm(light)
    # Two-sided lighting: a normal pointing away from the camera belongs to a surface seen from
    # behind (or a mesh wound the other way); light it as seen.
    facing_away = np.einsum("ij,ij->i", normals, cam_vertices) > 0
    normals = np.where(facing_away[:, None], -normals, normals)
    lambert = np.clip(normals @ light, 0.0, None)
    shade = ambient + (1.0 - ambient) * lambert
    base = (np.asarray(vertex_colors, dtype=np.float64) if vertex_colors is not None
            else np.broadcast_to(np.asarray(color, dtype=np.float64), vertices.shape))
    mesh.vertex_colors = o3d.utility.Vector3dVector(np.clip(base * shade[:, None], 0.0, 1.0))
    material = o3d.visualization.rendering.MaterialRecord()
    material.shader = "defaultUnlit"

    K_gl = gl_intrinsics(K)
    with offscreen_renderer(width, height) as (r, (rw, rh)):
        scene = r.scene
        scene.clear_geometry()
        scene.set_background([*background, 1.0])
        scene.add_geometry("mesh", mesh, material)
        # The renderer may be larger than the image: the same K renders the image's pixels in its
        # top-left corner, which is cropped out below.
        r.setup_camera(K_gl, np.eye(4), rw, rh)
        z_near = max(1e-3, float(cam_vertices[:, 2].min()) * 0.5) if len(cam_vertices) else 0.01
        z_far = max(z_near * 2, float(cam_vertices[:, 2].max()) * 2 + 1.0) if len(cam_vertices) else 100.0
        scene.camera.set_projection(K_gl, z_near, z_far, float(rw), float(rh))
        color_img = np.asarray(r.render_to_image())[:height, :width].copy()
        depth = np.asarray(r.render_to_depth_image(z_in_view_space=True))[:height, :width].astype(np.float32)
        scene.clear_geometry()
    mask = np.isfinite(depth)
    depth[~mask] = np.inf
    return RenderResult(color=color_img, mask=mask, depth=depth)


def overlay(image: np.ndarray, render: RenderResult, alpha: float = 0.85) -> np.ndarray:
    """Blend a render over an RGB image ``(H, W, 3)`` uint8 where the mesh is visible."""
    if image.shape[:2] != render.mask.shape:
        raise ValueError(f"image is {image.shape[:2]} but the render is {render.mask.shape}")
    out = image.astype(np.float32).copy()
    m = render.mask
    out[m] = (1 - alpha) * out[m] + alpha * render.color[m].astype(np.float32)
    return np.clip(out + 0.5, 0, 255).astype(np.uint8)


def image_grid(images: Sequence[np.ndarray], cols: int, pad: int = 4, fill: int = 255) -> np.ndarray:
    """Tile equally sized ``(H, W, 3)`` images into a grid, row by row."""
    if not images:
        raise ValueError("image_grid needs at least one image")
    h, w = images[0].shape[:2]
    rows = (len(images) + cols - 1) // cols
    grid = np.full((rows * h + (rows + 1) * pad, cols * w + (cols + 1) * pad, 3), fill, dtype=np.uint8)
    for i, img in enumerate(images):
        if img.shape[:2] != (h, w):
            raise ValueError(f"image {i} is {img.shape[:2]}, expected {(h, w)}")
        r, c = divmod(i, cols)
        y, x = pad + r * (h + pad), pad + c * (w + pad)
        grid[y:y + h, x:x + w] = img[..., :3]
    return grid
