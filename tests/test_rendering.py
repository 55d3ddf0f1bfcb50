import cv2
import numpy as np
import pytest

from mvspin.rendering import image_grid, look_at, overlay, render_mesh


def _torus(n: int = 48, m: int = 24, r1: float = 0.4, r2: float = 0.15):
    u, v = np.meshgrid(np.linspace(0, 2 * np.pi, n, endpoint=False), np.linspace(0, 2 * np.pi, m, endpoint=False), indexing="ij")
    verts = np.stack([(r1 + r2 * np.cos(v)) * np.cos(u), (r1 + r2 * np.cos(v)) * np.sin(u), r2 * np.sin(v)], -1).reshape(-1, 3)
    faces = []
    for i in range(n):
        for j in range(m):
            a, b, c, d = i * m + j, ((i + 1) % n) * m + j, ((i + 1) % n) * m + (j + 1) % m, i * m + (j + 1) % m
            faces += [(a, b, c), (a, c, d)]
    return verts, np.array(faces)


def _projected_mask(verts, faces, K, R, t, w, h):
    cam = verts @ R.T + t
    px = cam[:, :2] / cam[:, 2:] * np.diag(K)[:2] + K[:2, 2]
    mask = np.zeros((h, w), np.uint8)
    # pixel centres sit at integer coordinates: shift by 0.5 to fill the covered pixel grid
    for tri in faces:
        cv2.fillPoly(mask, [np.round((px[tri] - 0.0) * 16).astype(np.int32)], 1, shift=4)
    return mask.astype(bool)


@pytest.mark.parametrize("size", [(160, 120), (96, 200)])
def test_render_covers_projected_triangles(size):
    w, h = size
    verts, faces = _torus()
    R, t = look_at(eye=(0.3, -0.5, -1.6), target=(0.05, 0.0, 0.0))
    K = np.array([[130.0, 0, w * 0.45], [0, 125.0, h * 0.55], [0, 0, 1]])
    res = render_mesh(verts, faces, K, w, h, R, t)
    ref = _projected_mask(verts, faces, K, R, t, w, h)
    iou = (res.mask & ref).sum() / (res.mask | ref).sum()
    assert iou > 0.9, iou
    assert res.color.shape == (h, w, 3) and res.color[~res.mask].min() > 250  # white background
    depth = res.depth[res.mask]
    cam_z = (verts @ R.T + t)[:, 2]
    assert cam_z.min() - 1e-2 <= depth.min() and depth.max() <= cam_z.max() + 1e-2


def test_overlay_and_grid():
    verts, faces = _torus()
    K = np.array([[100.0, 0, 40], [0, 100.0, 30], [0, 0, 1]])
    res = render_mesh(verts, faces, K, 80, 60, t=np.array([0, 0, 2.0]))
    img = np.zeros((60, 80, 3), np.uint8)
    out = overlay(img, res, alpha=1.0)
    assert (out[res.mask] == res.color[res.mask]).all() and (out[~res.mask] == 0).all()
    grid = image_grid([out, out, out], cols=2, pad=2)
    assert grid.shape == (2 * 60 + 3 * 2, 2 * 80 + 3 * 2, 3)


def test_look_at_is_upright_and_right_handed():
    R, t = look_at(eye=(0.0, 1.0, 3.0), target=(0.0, 1.0, 0.0))
    assert np.allclose(R @ R.T, np.eye(3)) and np.isclose(np.linalg.det(R), 1.0)
    cam = lambda p: R @ np.asarray(p) + t  # noqa: E731
    assert np.allclose(cam((0.0, 1.0, 0.0)), (0, 0, 3))  # target straight ahead
    assert cam((0.0, 2.0, 0.0))[1] < 0  # world up is image up (OpenCV y points down)
    assert cam((1.0, 1.0, 0.0))[0] > 0  # +X (a body's left, facing the camera) is image right


def test_lit_side_is_brighter():
    verts, faces = _torus(r1=0.0, r2=0.5)  # a torus with no hole: a sphere
    K = np.array([[100.0, 0, 40], [0, 100.0, 30], [0, 0, 1]])
    res = render_mesh(verts, faces, K, 80, 60, t=np.array([0, 0, 2.0]), light_direction=(1.0, 0.0, 0.3))
    gray = res.color.mean(-1)
    left, right = gray[:, :40][res.mask[:, :40]].mean(), gray[:, 40:][res.mask[:, 40:]].mean()
    assert left > right + 20  # light travels towards +x: it lights surfaces facing -x (left)


def test_pixel_centres_follow_opencv_convention():
    """A square whose projected edges fall at x in [10.3, 50.7], y in [20.6, 40.2] covers exactly
    the pixels whose integer centres lie inside (OpenCV's convention)."""
    z, f = 2.0, 100.0
    x0, x1, y0, y1 = ((v - 32.0) * z / f for v in (10.3, 50.7, 20.6, 40.2))
    verts = np.array([[x0, y0, z], [x1, y0, z], [x1, y1, z], [x0, y1, z]])
    faces = np.array([[0, 1, 2], [0, 2, 3]])
    K = np.array([[f, 0, 32.0], [0, f, 32.0], [0, 0, 1]])
    mask = render_mesh(verts, faces, K, 64, 64).mask
    cols, rows = np.flatnonzero(mask.any(0)), np.flatnonzero(mask.any(1))
    assert (cols.min(), cols.max(), rows.min(), rows.max()) == (11, 50, 21, 40)


def test_rendering_prints_nothing(tmp_path):
    """open3d/Filament start-up banners and the XDG_RUNTIME_DIR complaint do not reach the user."""
    import os
    import subprocess
    import sys
    from pathlib import Path

    root = Path(__file__).resolve().parents[1]
    env = {k: v for k, v in os.environ.items() if k != "XDG_RUNTIME_DIR"}
    env.update(PYTHONPATH=str(root), TMPDIR=str(tmp_path))
    script = ("import numpy as np\n"
              "from mvspin.rendering import render_mesh\n"
              "r = render_mesh(np.array([[-1., -1, 5], [1, -1, 5], [0, 1, 5]]), np.array([[0, 1, 2]]),\n"
              "                np.array([[40., 0, 32], [0, 40, 24], [0, 0, 1]]), 64, 48)\n"
              "print('covered', int(r.mask.sum()))\n")
    done = subprocess.run([sys.executable, "-c", script], env=env, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert done.stderr == ""
    lines = done.stdout.splitlines()
    assert len(lines) == 1 and lines[0].startswith("covered ") and int(lines[0].split()[1]) > 100
