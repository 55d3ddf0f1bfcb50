"""The rendered synthetic capture: images show the body where its mesh projects, the stored ground
truth is self-consistent, generation is deterministic, tiled rendering equals per-view rendering."""
from __future__ import annotations

import json

import cv2
import numpy as np
import pytest
import torch

from mvspin.body import BodyModel
from mvspin.data.bundle_format import BundleFile
from mvspin.data.synthetic_capture import (
    generate_capture_file,
    make_bundle,
    part_labels,
    render_views,
)
from mvspin.data.synthetic_options import SyntheticOptions
from mvspin.rendering import render_mesh

GREY = round(0.5 * 255)


@pytest.fixture(scope="module")
def body():
    return BodyModel.free("low")


@pytest.fixture(scope="module")
def plain_file(tmp_path_factory, body):
    path = tmp_path_factory.mktemp("capture") / "plain.h5"
    opts = SyntheticOptions.preset("capture", num_views=3, colors="parts", background="plain", image_format=".png",
                                   noise_px=0.0, drop_rate=0.0)
    report = generate_capture_file(path, 3, seed=4, options=opts, body=body)
    assert report.num_bundles == 3 and report.views_per_second > 0
    return path


def _mesh_mask(vertices: np.ndarray, faces: np.ndarray, K, R, t, size, ss: int = 4) -> np.ndarray:
    """Independent silhouette: projected triangles filled with OpenCV at ``ss`` x resolution, a
    pixel (centre at integer coordinates) is covered when over half of its area is."""
    cam = vertices @ R.T + t
    uv = cam[:, :2] / cam[:, 2:] * [K[0, 0], K[1, 1]] + K[:2, 2]
    hi = np.zeros((size[1] * ss, size[0] * ss), np.uint8)
    for tri in np.round(((uv[faces] + 0.5) * ss - 0.5) * 16).astype(np.int32):  # one per triangle: no even-odd holes
        cv2.fillConvexPoly(hi, tri, 255, shift=4)
    return cv2.resize(hi, tuple(size), interpolation=cv2.INTER_AREA) > 127


def _iou(a: np.ndarray, b: np.ndarray) -> float:
    return float((a & b).sum() / (a | b).sum())


def test_rendered_views_show_the_body_where_the_mesh_projects(plain_file, body):
    """From the file alone: SMPL parameters + cameras -> mesh silhouette; the image differs from the
    plain background exactly there (IoU > 0.9)."""
    bf = BundleFile(plain_file)
    assert bf.attrs["body_model"] == body.name and json.loads(bf.attrs["options"])["num_views"] == 3
    # the saved options are the resolved config: they rebuild the options that made the file
    saved = SyntheticOptions(**json.loads(bf.attrs["options"]))
    assert saved == SyntheticOptions.preset("capture", num_views=3, colors="parts", background="plain",
                                            image_format=".png", noise_px=0.0, drop_rate=0.0)
    for i in range(len(bf)):
        rec, images = bf.read_bundle(i), bf.load_images(i)
        with torch.no_grad():
            out = body(torch.as_tensor(rec["smpl_body_pose"])[None], torch.as_tensor(rec["smpl_betas"])[None],
                       torch.as_tensor(rec["smpl_global_orient"])[None], torch.as_tensor(rec["smpl_transl"])[None])
        verts = out.vertices[0].double().numpy()
        for v in range(3):
            seen = (np.abs(images[v].astype(int) - GREY) > 12).any(-1)
            ref = _mesh_mask(verts, body.faces, rec["camera_K"][v], rec["camera_R"][v], rec["camera_t"][v],
                             rec["image_size"][v])
            assert ref.sum() > 2000  # the body is a sizeable part of a 224 x 224 view
            assert _iou(seen, ref) > 0.9, (i, v, _iou(seen, ref))


def test_stored_ground_truth_is_consistent(plain_file, body):
    bf = BundleFile(plain_file)
    assert bf.keypoint_set == "h36m17" and bf.joints_3d_frame == "world" and bf.has_smpl and bf.has_cameras
    for i in range(len(bf)):
        rec = bf.read_bundle(i)
        joints = rec["joints_3d"][:, :3].astype(np.float64)
        for v in range(3):
            cam = joints @ rec["camera_R"][v].T + rec["camera_t"][v]
            uv = cam[:, :2] / cam[:, 2:] @ np.diag(rec["camera_K"][v][[0, 1], [0, 1]]) + rec["camera_K"][v][:2, 2]
            kp = rec["keypoints_2d"][v]
            inside = kp[:, 2] > 0
            assert inside.sum() >= 15
            np.testing.assert_allclose(kp[inside, :2], uv[inside], atol=2e-3)  # no noise asked for
            half = rec["scale"][v] * 100
            assert np.all(np.abs(kp[inside, :2] - rec["center"][v]) <= half / 1.2 + 1e-3)  # box frames them
        with torch.no_grad():
            kp3 = body.keypoints("h36m17", torch.as_tensor(rec["smpl_body_pose"])[None],
                                 torch.as_tensor(rec["smpl_betas"])[None],
                                 torch.as_tensor(rec["smpl_global_orient"])[None],
                                 torch.as_tensor(rec["smpl_transl"])[None])[0].numpy()
        np.testing.assert_allclose(kp3, joints, atol=1e-5)
        assert rec["smpl_gender"] == "neutral" and rec["has_smpl"]


def test_generation_is_deterministic_and_per_bundle(tmp_path, body):
    opts = SyntheticOptions.preset("capture", num_views=2, noise_px=2.0, drop_rate=0.2)
    a = generate_capture_file(tmp_path / "a.h5", 3, seed=7, options=opts, body=body).path
    b = generate_capture_file(tmp_path / "b.h5", 2, seed=7, options=opts, body=body).path
    c = generate_capture_file(tmp_path / "c.h5", 2, seed=8, options=opts, body=body).path
    fa, fb, fc = BundleFile(a), BundleFile(b), BundleFile(c)
    for i in range(2):  # bundle i depends only on (seed, i)
        ra, rb = fa.read_bundle(i), fb.read_bundle(i)
        for key in ("keypoints_2d", "joints_3d", "camera_R", "smpl_body_pose", "center"):
            np.testing.assert_array_equal(ra[key], rb[key])
        for x, y in zip(ra["images"], rb["images"]):
            np.testing.assert_array_equal(x, y)
    assert not np.array_equal(fa.read_bundle(0)["keypoints_2d"], fc.read_bundle(0)["keypoints_2d"])
    kp = fa.read_field("keypoints_2d")
    dropped = kp[..., 2] == 0
    assert 0.1 < dropped.mean() < 0.3 and np.all(kp[dropped][:, :2] == 0)
    # The noise is the asked-for 2 px around the exact projections.
    rec = fa.read_bundle(1)
    cam = rec["joints_3d"][:, :3] @ rec["camera_R"][0].T + rec["camera_t"][0]
    uv = cam[:, :2] / cam[:, 2:] * rec["camera_K"][0][[0, 1], [0, 1]] + rec["camera_K"][0][:2, 2]
    keep = rec["keypoints_2d"][0, :, 2] > 0
    assert 0.8 < np.abs(rec["keypoints_2d"][0, keep, :2] - uv[keep]).std() < 3.0


def test_tiled_rendering_equals_one_render_per_view(body):
    """All views in one pass (tiles) give the same silhouettes as rendering each view alone; a
    view whose body leaves the image is rendered alone."""
    opts = SyntheticOptions.preset("capture", num_views=3)
    bundle = make_bundle(body, 0, seed=1, options=opts)
    rec = bundle.fields
    K = rec["camera_K"].copy()
    K[2, 0, 0] = K[2, 1, 1] = 1400.0  # view 2 zooms in: the body reaches far outside its image
    colors = np.full((body.num_vertices, 3), 0.6)
    _, masks, tiled = render_views(bundle.vertices, body.faces, colors, K, rec["camera_R"], rec["camera_t"], (224, 224))
    assert tiled.tolist() == [True, True, False]
    for v in range(3):
        ref = render_mesh(bundle.vertices, body.faces, K[v], 224, 224, rec["camera_R"][v], rec["camera_t"][v]).mask
        assert _iou(masks[v], ref) > 0.995, (v, _iou(masks[v], ref))
        own = _mesh_mask(bundle.vertices, body.faces, K[v], rec["camera_R"][v], rec["camera_t"][v], (224, 224))
        assert _iou(masks[v], own) > 0.95


def test_appearance_options(body):
    labels = part_labels(body)
    assert labels.shape == (body.num_vertices,) and set(np.unique(labels)) <= set(range(24))
    varied = make_bundle(body, 2, seed=0, options=SyntheticOptions.preset("capture", num_views=2), labels=labels)
    bg = varied.images[~varied.masks]
    assert bg.std() > 10  # procedural backgrounds are not flat
    plain = make_bundle(body, 2, seed=0, options=SyntheticOptions.preset("capture", num_views=2, background="plain",
                                                                background_color=(0.2, 0.4, 0.6)))
    assert np.all(plain.images[~plain.masks] == np.round(np.array([0.2, 0.4, 0.6]) * 255))
    np.testing.assert_array_equal(plain.masks, varied.masks)  # same body and cameras
    with pytest.raises(ValueError, match="colors must be"):
        SyntheticOptions.preset("capture", colors="rainbow")
    with pytest.raises(ValueError, match="outlier_views must be in 0..1"):
        SyntheticOptions.preset("capture", num_views=2, outlier_views=2)
    with pytest.raises(ValueError, match="keypoint_set must be one of smpl24, .*got 'nope'"):
        SyntheticOptions.preset("capture", keypoint_set="nope")
    with pytest.raises(ValueError, match="distance"):
        SyntheticOptions.preset("capture", distance=(5.0, 4.0))
