"""Named keypoint sets and the anatomical points they sit on.

A *keypoint set* is a file convention: an ordered list of keypoint names (OpenPose BODY_25,
COCO-17, Human3.6M-17, ...). Each keypoint is placed on the body model at a named *point*:
one of SMPL's 24 joints, a surface landmark (nose, ears, heels, ...), or a dataset-specific
point (the Human3.6M head, the LSP neck, ...). How a point is computed depends on the loaded
body model (see :mod:`mvspin.body.points`); this module only names things, so the data layer
can use keypoint orders and left/right flips without loading a model.

Left and right are always the *subject's* left and right.
"""
from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property

SMPL_JOINT_NAMES: tuple[str, ...] = (
    "pelvis", "left_hip", "right_hip", "spine1", "left_knee", "right_knee", "spine2",
    "left_ankle", "right_ankle", "spine3", "left_foot", "right_foot", "neck", "left_collar",
    "right_collar", "head", "left_shoulder", "right_shoulder", "left_elbow", "right_elbow",
    "left_wrist", "right_wrist", "left_hand", "right_hand",
)
"""SMPL's 24 kinematic joints in SMPL order (joint 0 is the root)."""

SMPL_PARENTS: tuple[int, ...] = (
    -1, 0, 0, 0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 9, 9, 12, 13, 14, 16, 17, 18, 19, 20, 21,
)
"""Parent of each SMPL joint (-1 for the root)."""

LANDMARK_NAMES: tuple[str, ...] = (
    "nose", "right_eye", "left_eye", "right_ear", "left_ear", "head_top", "chin",
    "left_big_toe", "left_small_toe", "left_heel", "right_big_toe", "right_small_toe",
    "right_heel", "left_thumb_tip", "left_index_tip", "left_middle_tip", "left_ring_tip",
    "left_pinky_tip", "right_thumb_tip", "right_index_tip", "right_middle_tip",
    "right_ring_tip", "right_pinky_tip",
)
"""Surface points defined by one mesh vertex each (model-specific vertex ids)."""


@dataclass(frozen=True)
class KeypointSet:
    """An ordered keypoint convention.

    Attributes:
        name: the set's name, e.g. ``"openpose25"``.
        names: keypoint names in file order.
        points: for each keypoint, the anatomical point it is placed at on a body model.
        description: where the convention comes from.
    """

    name: str
    names: tuple[str, ...]
    points: tuple[str, ...]
    description: str

    def __post_init__(self) -> None:
        if len(self.names) != len(self.points):
            raise ValueError(f"{self.name}: {len(self.names)} names but {len(self.points)} points")
        if len(set(self.names)) != len(self.names):
            raise ValueError(f"{self.name}: duplicate keypoint names")

    def __len__(self) -> int:
        return len(self.names)

    def index(self, keypoint: str) -> int:
        """Position of ``keypoint`` in this set; ``KeyError`` listing the names otherwise."""
        try:
            return self.names.index(keypoint)
        except ValueError:
            raise KeyError(f"{keypoint!r} is not in {self.name}; it has {', '.join(self.names)}") from None

    @cached_property
    def flip_permutation(self) -> tuple[int, ...]:
        """Index map that swaps left and right keypoints (for horizontal image flips).

        ``flipped[i] = original[perm[i]]``: keypoint i of a mirrored image is the original's
        keypoint with the opposite side in its name.
        """
        perm = []
        for n in self.names:
            mirrored = _mirror_name(n)
            perm.append(self.names.index(mirrored) if mirrored in self.names else self.names.index(n))
        return tuple(perm)


def _mirror_name(name: str) -> str:
    for a, b in (("left_", "right_"), ("right_", "left_")):
        if name.startswith(a):
            return b + name[len(a):]
    for a, b in (("_left", "_right"), ("_right", "_left")):
        if a in name:
            return name.replace(a, b)
    return name


# --- the sets ------------------------------------------------------------------------------

_OPENPOSE25 = (
    ("nose", "nose"), ("neck", "neck"),
    ("right_shoulder", "right_shoulder"), ("right_elbow", "right_elbow"),
    ("right_wrist", "right_wrist"), ("left_shoulder", "left_shoulder"),
    ("left_elbow", "left_elbow"), ("left_wrist", "left_wrist"),
    ("mid_hip", "pelvis"),  # SPIN places OpenPose's MidHip at SMPL's pelvis joint
    ("right_hip", "right_hip"), ("right_knee", "right_knee"), ("right_ankle", "right_ankle"),
    ("left_hip", "left_hip"), ("left_knee", "left_knee"), ("left_ankle", "left_ankle"),
    ("right_eye", "right_eye"), ("left_eye", "left_eye"),
    ("right_ear", "right_ear"), ("left_ear", "left_ear"),
    ("left_big_toe", "left_big_toe"), ("left_small_toe", "left_small_toe"),
    ("left_heel", "left_heel"), ("right_big_toe", "right_big_toe"),
    ("right_small_toe", "right_small_toe"), ("right_heel", "right_heel"),
)

# OpenPose's COCO body model (18 points): BODY_25 without MidHip and the feet.
_COCO18 = tuple(pair for pair in _OPENPOSE25 if pair[0] not in (
    "mid_hip", "left_big_toe", "left_small_toe", "left_heel", "right_big_toe", "right_small_toe", "right_heel"))

_COCO17 = (
    ("nose", "nose"), ("left_eye", "left_eye"), ("right_eye", "right_eye"),
    ("left_ear", "left_ear"), ("right_ear", "right_ear"),
    ("left_shoulder", "left_shoulder"), ("right_shoulder", "right_shoulder"),
    ("left_elbow", "left_elbow"), ("right_elbow", "right_elbow"),
    ("left_wrist", "left_wrist"), ("right_wrist", "right_wrist"),
    ("left_hip", "left_hip"), ("right_hip", "right_hip"),
    ("left_knee", "left_knee"), ("right_knee", "right_knee"),
    ("left_ankle", "left_ankle"), ("right_ankle", "right_ankle"),
)

_OPENPOSE25B = _COCO17 + (
    ("upper_neck", "upper_neck"), ("head_top", "head_top"),
    ("left_big_toe", "left_big_toe"), ("left_small_toe", "left_small_toe"),
    ("left_heel", "left_heel"), ("right_big_toe", "right_big_toe"),
    ("right_small_toe", "right_small_toe"), ("right_heel", "right_heel"),
)

_HALPE26 = _COCO17 + (
    ("head", "head_top"), ("neck", "neck"), ("hip", "mid_hip"),
    ("left_big_toe", "left_big_toe"), ("right_big_toe", "right_big_toe"),
    ("left_small_toe", "left_small_toe"), ("right_small_toe", "right_small_toe"),
    ("left_heel", "left_heel"), ("right_heel", "right_heel"),
)

# Human3.6M's 17 evaluation joints in the order of SPIN's J_regressor_h36m rows (left leg
# before right leg), so SPIN's regressor file maps row i to keypoint i unchanged.
_H36M17 = (
    ("pelvis", "h36m_pelvis"), ("left_hip", "h36m_left_hip"), ("left_knee", "h36m_left_knee"),
    ("left_ankle", "h36m_left_ankle"), ("right_hip", "h36m_right_hip"),
    ("right_knee", "h36m_right_knee"), ("right_ankle", "h36m_right_ankle"),
    ("spine", "h36m_spine"), ("thorax", "h36m_thorax"), ("neck", "h36m_neck"),
    ("head", "h36m_head"), ("left_shoulder", "h36m_left_shoulder"),
    ("left_elbow", "h36m_left_elbow"), ("left_wrist", "h36m_left_wrist"),
    ("right_shoulder", "h36m_right_shoulder"), ("right_elbow", "h36m_right_elbow"),
    ("right_wrist", "h36m_right_wrist"),
)

# LSP's 14 joints, placed as SPIN's "ground truth" joints place them (J24_TO_J14).
_LSP14 = (
    ("right_ankle", "right_ankle"), ("right_knee", "right_knee"),
    ("right_hip", "lsp_right_hip"), ("left_hip", "lsp_left_hip"),
    ("left_knee", "left_knee"), ("left_ankle", "left_ankle"),
    ("right_wrist", "right_wrist"), ("right_elbow", "right_elbow"),
    ("right_shoulder", "right_shoulder"), ("left_shoulder", "left_shoulder"),
    ("left_elbow", "left_elbow"), ("left_wrist", "left_wrist"),
    ("neck", "lsp_neck"), ("head_top", "lsp_head_top"),
)

# SPIN's 24 "ground truth" joints: a superset of the joints the 2D/3D datasets annotate.
_SPIN_GT24 = _LSP14 + (
    ("pelvis_mpii", "mpii_pelvis"), ("thorax_mpii", "mpii_thorax"),
    ("spine_h36m", "h36m_spine"), ("jaw_h36m", "h36m_neck"), ("head_h36m", "h36m_head"),
    ("nose", "nose"), ("left_eye", "left_eye"), ("right_eye", "right_eye"),
    ("left_ear", "left_ear"), ("right_ear", "right_ear"),
)

# MPI-INF-3DHP's 17 test joints in the dataset's order. Their points follow SPIN's evaluation,
# which compares them with the Human3.6M-regressed joints (H36M_TO_J17).
_MPI_INF_3DHP17 = (
    ("head_top", "h36m_head"), ("neck", "h36m_thorax"),
    ("right_shoulder", "h36m_right_shoulder"), ("right_elbow", "h36m_right_elbow"),
    ("right_wrist", "h36m_right_wrist"), ("left_shoulder", "h36m_left_shoulder"),
    ("left_elbow", "h36m_left_elbow"), ("left_wrist", "h36m_left_wrist"),
    ("right_hip", "h36m_right_hip"), ("right_knee", "h36m_right_knee"),
    ("right_ankle", "h36m_right_ankle"), ("left_hip", "h36m_left_hip"),
    ("left_knee", "h36m_left_knee"), ("left_ankle", "h36m_left_ankle"),
    ("pelvis", "h36m_pelvis"), ("spine", "h36m_spine"), ("head", "h36m_neck"),
)

_SPIN49 = tuple(("op_" + n, p) for n, p in _OPENPOSE25) + _SPIN_GT24

# BlazePose (MediaPipe Pose) 33 landmarks in the model's order. The hips sit on the same
# anatomical points as COCO's and OpenPose's detector hips ("left_hip", "right_hip": higher and
# wider than SMPL's hip joints), so the fitter leaves them out of the body stage as SPIN does for
# the OpenPose hips (``KeypointTargets``' default ``ignored_points``) and uses them only to place
# the torso. Eye corners, mouth corners, hand points and foot tips have no vertex of their own on
# the body models: they are geometric approximations (``mvspin.body.points.DERIVED_POINTS``).
_BLAZEPOSE33 = (
    ("nose", "nose"),
    ("left_eye_inner", "left_eye_inner"), ("left_eye", "left_eye"), ("left_eye_outer", "left_eye_outer"),
    ("right_eye_inner", "right_eye_inner"), ("right_eye", "right_eye"), ("right_eye_outer", "right_eye_outer"),
    ("left_ear", "left_ear"), ("right_ear", "right_ear"),
    ("mouth_left", "mouth_left"), ("mouth_right", "mouth_right"),
    ("left_shoulder", "left_shoulder"), ("right_shoulder", "right_shoulder"),
    ("left_elbow", "left_elbow"), ("right_elbow", "right_elbow"),
    ("left_wrist", "left_wrist"), ("right_wrist", "right_wrist"),
    ("left_pinky", "left_pinky_knuckle"), ("right_pinky", "right_pinky_knuckle"),
    ("left_index", "left_index_knuckle"), ("right_index", "right_index_knuckle"),
    ("left_thumb", "left_thumb_knuckle"), ("right_thumb", "right_thumb_knuckle"),
    ("left_hip", "left_hip"), ("right_hip", "right_hip"),
    ("left_knee", "left_knee"), ("right_knee", "right_knee"),
    ("left_ankle", "left_ankle"), ("right_ankle", "right_ankle"),
    ("left_heel", "left_heel"), ("right_heel", "right_heel"),
    ("left_foot_index", "left_foot_tip"), ("right_foot_index", "right_foot_tip"),
)


def _make(name: str, pairs: tuple[tuple[str, str], ...], description: str) -> KeypointSet:
    return KeypointSet(name, tuple(n for n, _ in pairs), tuple(p for _, p in pairs), description)


KEYPOINT_SETS: dict[str, KeypointSet] = {
    s.name: s
    for s in (
        _make("smpl24", tuple(zip(SMPL_JOINT_NAMES, SMPL_JOINT_NAMES)), "SMPL's 24 kinematic joints"),
        _make("openpose25", _OPENPOSE25, "OpenPose BODY_25"),
        _make("openpose25b", _OPENPOSE25B, "OpenPose BODY_25B (COCO-17 + upper neck, head top, feet)"),
        _make("coco17", _COCO17, "MS-COCO 17 keypoints"),
        _make("coco18", _COCO18, "OpenPose COCO-18 (nose, neck, arms, legs, eyes, ears)"),
        _make("halpe26", _HALPE26, "HALPE-26 (COCO-17 + head, neck, hip, feet; RTMPose body)"),
        _make("h36m17", _H36M17, "Human3.6M 17 evaluation joints, SPIN's J_regressor_h36m order"),
        _make("lsp14", _LSP14, "Leeds Sports Pose 14 joints (SPIN's ground-truth placement)"),
        _make("mpi_inf_3dhp17", _MPI_INF_3DHP17, "MPI-INF-3DHP 17 test joints, dataset order"),
        _make("spin49", _SPIN49, "SPIN's 49: OpenPose BODY_25 then SPIN's 24 ground-truth joints"),
        _make("blazepose33", _BLAZEPOSE33, "BlazePose / MediaPipe Pose 33 landmarks"),
    )
}
"""Every keypoint set mvspin knows, by name."""

H36M17_TO_LSP14: tuple[int, ...] = tuple(
    KEYPOINT_SETS["h36m17"].index(n)
    for n in (
        "right_ankle", "right_knee", "right_hip", "left_hip", "left_knee", "left_ankle",
        "right_wrist", "right_elbow", "right_shoulder", "left_shoulder", "left_elbow",
        "left_wrist", "thorax", "head",  # LSP's neck and head top are H36M's thorax and head
    )
)
"""Rows of h36m17 that give LSP's 14 joints (the Human3.6M / 3DPW evaluation subset);
equals SPIN's ``H36M_TO_J14``."""


def get_keypoint_set(name: str) -> KeypointSet:
    """Look up a keypoint set by name; ``KeyError`` listing the known names otherwise."""
    try:
        return KEYPOINT_SETS[name]
    except KeyError:
        raise KeyError(f"unknown keypoint set {name!r}; known sets: {', '.join(KEYPOINT_SETS)}") from None


def keypoint_index_map(source: str, target: str) -> list[tuple[int, int]]:
    """Pairs ``(i_source, i_target)`` of keypoints that sit on the same anatomical point.

    Used to compare or convert keypoints between conventions; keypoints of one set that the
    other lacks are simply absent from the list.
    """
    src, dst = get_keypoint_set(source), get_keypoint_set(target)
    first_in_dst: dict[str, int] = {}
    for j, p in enumerate(dst.points):
        first_in_dst.setdefault(p, j)
    return [(i, first_in_dst[p]) for i, p in enumerate(src.points) if p in first_in_dst]
