"""How each named anatomical point is computed on a particular body model.

Every keypoint is a fixed linear combination of the posed skeleton joints (24) and of a few
posed mesh vertices. A :class:`KeypointMap` stores that combination for one keypoint set as a
dense ``(K, 24)`` joint-weight matrix plus a ``(K, M)`` weight matrix over ``M`` vertex ids.
Both the full forward (all vertices) and the keypoint-only fast path (LBS of just those ``M``
vertices) apply the same map, which is why they agree to float precision.

Points come from three sources:
- SMPL's 24 joints, by name;
- surface landmarks, one vertex each (the model's own vertex ids: SMPL's ids are meaningless on
  another mesh);
- dataset-specific points: on SMPL, rows of SPIN's regressors (``J_regressor_h36m.npy``,
  ``J_regressor_extra.npy``) over the mesh; on the free model, the geometric definitions in
  :data:`DERIVED_POINTS`.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from mvspin.body.keypoint_sets import SMPL_JOINT_NAMES, KeypointSet, get_keypoint_set
from mvspin.errors import KeypointSetUnavailable

__all__ = ["KeypointMap", "PointSources", "KeypointSetUnavailable", "DERIVED_POINTS", "BLAZEPOSE_DERIVED"]

_H36M_LIMB_POINTS = {
    f"h36m_{side}_{part}": ((f"{side}_{part}", 1.0),)
    for side in ("left", "right")
    for part in ("hip", "knee", "ankle", "shoulder", "elbow", "wrist")
}

DERIVED_POINTS: dict[str, tuple[tuple[str, float], ...]] = {
    # Geometric stand-ins for the dataset-specific points SPIN regresses from SMPL's mesh.
    # They are used when no regressor file for the loaded mesh defines the point (always on the
    # free model). Each is a weighted sum of other points.
    "mid_hip": (("left_hip", 0.5), ("right_hip", 0.5)),
    "upper_neck": (("neck", 0.5), ("head", 0.5)),
    "lsp_left_hip": (("left_hip", 1.0),),
    "lsp_right_hip": (("right_hip", 1.0),),
    "lsp_neck": (("upper_neck", 1.0),),
    "lsp_head_top": (("head_top", 1.0),),
    "mpii_pelvis": (("mid_hip", 1.0),),
    "mpii_thorax": (("neck", 1.0),),
    "h36m_pelvis": (("mid_hip", 1.0),),
    "h36m_thorax": (("neck", 1.0),),
    "h36m_spine": (("h36m_pelvis", 0.5), ("h36m_thorax", 0.5)),
    "h36m_neck": (("nose", 0.5), ("chin", 0.5)),  # H36M's "neck/nose" sits at the jaw
    "h36m_head": (("head_top", 1.0),),
    **_H36M_LIMB_POINTS,
    **{name: parts for side, other in (("left", "right"), ("right", "left")) for name, parts in (
        # BlazePose's points without a vertex (keypoint set blazepose33). Approximations from
        # average face and hand proportions: an eye corner sits about a quarter of the
        # eye-to-eye distance from the eye centre; a mouth corner about 40 % of the way from the
        # nose tip to the chin and 0.2 eye distances to its side; the hand points about halfway
        # from the hand joint (the knuckles) to the finger tips; the foot tip between the toes.
        (f"{side}_eye_inner", ((f"{side}_eye", 0.76), (f"{other}_eye", 0.24))),
        (f"{side}_eye_outer", ((f"{side}_eye", 1.24), (f"{other}_eye", -0.24))),
        (f"mouth_{side}", (("nose", 0.6), ("chin", 0.4), (f"{side}_eye", 0.2), (f"{other}_eye", -0.2))),
        (f"{side}_pinky_knuckle", ((f"{side}_hand", 0.5), (f"{side}_pinky_tip", 0.5))),
        (f"{side}_index_knuckle", ((f"{side}_hand", 0.5), (f"{side}_index_tip", 0.5))),
        (f"{side}_thumb_knuckle", ((f"{side}_wrist", 0.5), (f"{side}_thumb_tip", 0.5))),
        (f"{side}_foot_tip", ((f"{side}_big_toe", 0.5), (f"{side}_small_toe", 0.5))),
    )},
}
"""Geometric definitions of points no vertex or regressor file gives (the free model uses all of
them; SMPL only the geometric helpers, see ``BodyModel.from_smpl_dir``)."""
BLAZEPOSE_DERIVED: tuple[str, ...] = tuple(
    f"{a}{side}{b}" for side in ("left", "right") for a, b in (
        ("", "_eye_inner"), ("", "_eye_outer"), ("mouth_", ""), ("", "_pinky_knuckle"), ("", "_index_knuckle"),
        ("", "_thumb_knuckle"), ("", "_foot_tip")))
"""The derived points of the blazepose33 keypoint set (geometric, used on every body model)."""


@dataclass(frozen=True)
class PointSources:
    """What a body model offers to place points.

    Attributes:
        num_vertices: mesh size.
        landmarks: landmark name -> vertex id on this mesh.
        regressed: point name -> dense vertex weights ``(num_vertices,)`` (SPIN's regressor rows).
        derived: point name -> weighted sum of other points (definitions this model accepts).
        missing_hint: point name -> why it is unavailable (e.g. which file to add).
        per_set: keypoint set name -> {point: point used instead} for sets whose reference
            places a point differently from the model's usual placement. On SMPL, SPIN's 49
            take ``h36m_spine``, ``h36m_neck`` and ``h36m_head`` from ``J_regressor_extra``
            rows (its ``JOINT_MAP`` indices 51-53), while ``h36m17`` takes them from
            ``J_regressor_h36m``; the anatomical point (and so the mapping of dataset keypoints
            between sets) is the same.
    """

    num_vertices: int
    landmarks: dict[str, int]
    regressed: dict[str, np.ndarray]
    derived: dict[str, tuple[tuple[str, float], ...]]
    missing_hint: dict[str, str]
    per_set: dict[str, dict[str, str]] = field(default_factory=dict)

    def resolve(self, point: str, _depth: int = 0) -> tuple[np.ndarray, dict[int, float]]:
        """Joint weights ``(24,)`` and vertex weights ``{vertex id: weight}`` of ``point``."""
        joints = np.zeros(len(SMPL_JOINT_NAMES), dtype=np.float64)
        verts: dict[int, float] = {}
        if point in SMPL_JOINT_NAMES:
            joints[SMPL_JOINT_NAMES.index(point)] = 1.0
        elif point in self.regressed:
            row = self.regressed[point]
            for v in np.flatnonzero(row):
                verts[int(v)] = float(row[v])
        elif point in self.landmarks:
            verts[int(self.landmarks[point])] = 1.0
        elif point in self.derived and _depth < 8:
            for part, weight in self.derived[point]:
                j, part_verts = self.resolve(part, _depth + 1)
                joints += weight * j
                for vid, w in part_verts.items():
                    verts[vid] = verts.get(vid, 0.0) + weight * w
        else:
            hint = self.missing_hint.get(point, "the model defines no such point")
            raise KeypointSetUnavailable(f"point {point!r} is not available: {hint}")
        return joints, verts


@dataclass(frozen=True)
class KeypointMap:
    """Linear map from posed joints and a vertex subset to one keypoint set's keypoints.

    Attributes:
        keypoint_set: the set this map produces.
        joint_weights: ``(K, 24)``.
        vertex_ids: ``(M,)`` int64 ids of the vertices the set uses (may be empty).
        vertex_weights: ``(K, M)``.
    """

    keypoint_set: KeypointSet
    joint_weights: np.ndarray
    vertex_ids: np.ndarray
    vertex_weights: np.ndarray

    @classmethod
    def build(cls, set_name: str, sources: PointSources) -> "KeypointMap":
        """Resolve every keypoint of ``set_name`` on a model.

        Raises:
            KeypointSetUnavailable: naming the set, the point and how to make it available.
        """
        kset = get_keypoint_set(set_name)
        substitute = sources.per_set.get(set_name, {})
        rows = []
        for name, point in zip(kset.names, kset.points):
            try:
                rows.append(sources.resolve(substitute.get(point, point)))
            except KeypointSetUnavailable as err:
                raise KeypointSetUnavailable(
                    f"keypoint set {set_name!r} cannot be made for this body model: keypoint "
                    f"{name!r} needs {err}"
                ) from None
        vertex_ids = np.array(sorted({v for _, verts in rows for v in verts}), dtype=np.int64)
        column = {int(v): i for i, v in enumerate(vertex_ids)}
        joint_w = np.stack([j for j, _ in rows]).astype(np.float32)
        vert_w = np.zeros((len(rows), len(vertex_ids)), dtype=np.float32)
        for k, (_, verts) in enumerate(rows):
            for vid, w in verts.items():
                vert_w[k, column[vid]] = w
        return cls(kset, joint_w, vertex_ids, vert_w)
