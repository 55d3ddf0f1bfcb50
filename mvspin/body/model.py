"""`BodyModel`: SMPL-layout body models (smplx-backed) with named keypoints and a fast path.

Two tiers share one implementation:

- :meth:`BodyModel.forward` runs smplx's full forward (every vertex, pose blend shapes, LBS) and
  returns vertices, the 24 joints and, optionally, a named keypoint set. This is what rendering,
  evaluation and mesh losses use.
- :meth:`BodyModel.keypoints` / :meth:`BodyModel.keypoints_multiview` are the fitting path:
  forward kinematics of the shape-dependent rest joints plus LBS of only the few vertices the
  keypoint set uses. ``keypoints_multiview`` evaluates one body per bundle in a canonical frame
  and applies each view's root rotation and translation afterwards, so V views cost one body.

Inputs accept rotation matrices (``(B, 23, 3, 3)``, ``(B, 3, 3)``) or axis-angle (``(B, 69)``,
``(B, 23, 3)``, ``(B, 3)``). Units are metres; SMPL axes (Y up, body facing +Z) at rest.
"""
from __future__ import annotations

import contextlib
import io
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from typing import Any, Optional

import numpy as np
import smplx
import torch
from torch import Tensor, nn

from mvspin.body import model_files
from mvspin.body.keypoint_sets import KEYPOINT_SETS, SMPL_PARENTS
from mvspin.body.model_files import BodyModelFilesError
from mvspin.body.points import BLAZEPOSE_DERIVED, DERIVED_POINTS, KeypointMap, KeypointSetUnavailable, PointSources
from mvspin.body.priors import FreePosePrior, GMMPosePrior
from mvspin.errors import ArgumentError, ShapeError, check_shape
from mvspin.geometry.products import is_compiling, matmul3
from mvspin.geometry.rotations import axis_angle_to_matrix, closed_form_backward_applies, so3_right_jacobian

__all__ = ["BodyModel", "BodyOutput", "check_body_values"]

# smplx's names for vertex landmarks -> mvspin's point names.
_SMPLX_LANDMARKS = {
    "nose": "nose", "reye": "right_eye", "leye": "left_eye", "rear": "right_ear", "lear": "left_ear",
    "LBigToe": "left_big_toe", "LSmallToe": "left_small_toe", "LHeel": "left_heel",
    "RBigToe": "right_big_toe", "RSmallToe": "right_small_toe", "RHeel": "right_heel",
    "lthumb": "left_thumb_tip", "lindex": "left_index_tip", "lmiddle": "left_middle_tip",
    "lring": "left_ring_tip", "lpinky": "left_pinky_tip", "rthumb": "right_thumb_tip",
    "rindex": "right_index_tip", "rmiddle": "right_middle_tip", "rring": "right_ring_tip",
    "rpinky": "right_pinky_tip", "head_top": "head_top", "chin": "chin",
}

# Rows of SPIN's J_regressor_extra.npy, in file order (SPIN's JOINT_MAP indices 45..53). The
# last three are SPIN's own regressions of Human3.6M's spine, jaw and head; SPIN's 49 keypoints
# use them ('Spine (H36M)': 51, 'Jaw (H36M)': 52, 'Head (H36M)': 53), while evaluation (h36m17)
# uses J_regressor_h36m's rows for the same anatomical points.
_SPIN_EXTRA_ROWS = ("lsp_right_hip", "lsp_left_hip", "lsp_neck", "lsp_head_top", "mpii_pelvis",
                    "mpii_thorax", "extra_h36m_spine", "extra_h36m_neck", "extra_h36m_head")
_SPIN49_FROM_EXTRA = {"h36m_spine": "extra_h36m_spine", "h36m_neck": "extra_h36m_neck",
                      "h36m_head": "extra_h36m_head"}


@dataclass
class BodyOutput:
    """Result of :meth:`BodyModel.forward`.

    Attributes:
        joints: ``(B, 24, 3)`` posed SMPL joints, metres.
        vertices: ``(B, N, 3)`` posed mesh, or None when not requested.
        keypoints: ``(B, K, 3)`` keypoints of ``keypoint_set``, or None.
        keypoint_set: name of the set in ``keypoints``.
    """

    joints: Tensor
    vertices: Optional[Tensor] = None
    keypoints: Optional[Tensor] = None
    keypoint_set: Optional[str] = None


def _as_rotmat(x: Tensor, n_joints: int, name: str, lead: int = 1) -> Tensor:
    """Rotation matrices ``(*lead, n_joints, 3, 3)`` from matrices or axis-angle input.

    The rank decides the format, so a batch of three axis-angle vectors ``(3, 3)`` is never
    mistaken for one matrix: with ``lead`` leading batch dims, matrices have ``lead + 2`` (one
    rotation) or ``lead + 3`` dims, axis-angle ``lead + 1`` (or ``lead + 2`` as ``(J, 3)``).
    """
    if n_joints == 1:
        if x.dim() == lead + 2 and x.shape[-2:] == (3, 3):
            return x.unsqueeze(-3)
        if x.dim() == lead + 1 and x.shape[-1] == 3:
            return axis_angle_to_matrix(x.unsqueeze(-2))
    else:
        if x.dim() == lead + 3 and x.shape[-3:] == (n_joints, 3, 3):
            return x
        if x.dim() == lead + 1 and x.shape[-1] == 3 * n_joints:
            return axis_angle_to_matrix(x.reshape(*x.shape[:-1], n_joints, 3))
        if x.dim() == lead + 2 and x.shape[-2:] == (n_joints, 3):
            return axis_angle_to_matrix(x)
    b = "B, V" if lead == 2 else "B"
    shapes = (f"({b}, 3, 3) rotation matrices or ({b}, 3) axis-angle" if n_joints == 1 else
              f"({b}, {n_joints}, 3, 3) rotation matrices or ({b}, {3 * n_joints}) axis-angle")
    raise ShapeError(f"{name} must be {shapes}, got {tuple(x.shape)}")


ROTATION_TOLERANCE = 1e-3
"""Largest ``|R^T R - I|`` entry (and ``|det R - 1|``) of a matrix taken as a rotation: float32
round-off after thousands of products stays near 1e-6; a scaled or sheared matrix is far off."""


def check_body_values(rotations: Optional[dict[str, Tensor]] = None, **values: Optional[Tensor]) -> None:
    """Raise :class:`~mvspin.errors.ArgumentError` naming the parameter when a value is NaN or
    infinite, or a matrix given as a rotation is not one (``|R^T R - I|`` or ``|det R - 1|``
    above :data:`ROTATION_TOLERANCE`).

    Args:
        rotations: ``{name: (..., 3, 3)}`` matrices the caller gave as rotations (axis-angle
            inputs need no such check: their matrices are rotations by construction).
        values: ``{name: tensor or None}`` checked for finite values.

    Skipped while differentiating through inputs that require grad, and inside ``torch.compile``
    (a data-dependent check would break the graph): a fitting loop's variables are checked once
    where the fit starts, not on every evaluation.
    """
    if is_compiling():
        return
    given = {k: v for k, v in values.items() if isinstance(v, Tensor) and v.numel()}
    rots = {k: v for k, v in (rotations or {}).items() if v.numel()}
    if torch.is_grad_enabled() and any(t.requires_grad for t in (*given.values(), *rots.values())):
        return
    for name, x in given.items():
        if not bool(torch.isfinite(x).all()):
            rows = (~torch.isfinite(x)).reshape(x.shape[0], -1).any(1).nonzero().flatten().tolist()
            raise ArgumentError(f"{name} is NaN or infinite in {len(rows)} of {x.shape[0]} bodies (first: index "
                                f"{rows[0]}); give finite values")
    for name, r in rots.items():
        eye = torch.eye(3, dtype=r.dtype, device=r.device)
        off = (r.transpose(-1, -2) @ r - eye).abs().amax((-1, -2))
        det = (r[..., 0, :] * torch.linalg.cross(r[..., 1, :], r[..., 2, :], dim=-1)).sum(-1)  # no LU per matrix
        bad = (off > ROTATION_TOLERANCE) | ((det - 1).abs() > ROTATION_TOLERANCE)
        if bool(bad.any()):
            raise ArgumentError(
                f"{name}: {int(bad.sum())} of {bad.numel()} matrices are not rotations (R^T R differs from the "
                f"identity by up to {float(off.max()):.3g}, det down to {float(det.min()):.3g}): give rotation "
                f"matrices or axis-angle vectors")


class BodyModel(nn.Module):
    """A SMPL-layout body model with named keypoint sets, mean parameters and priors.

    Build one with :meth:`free` (the bundled CC0-derived model, the default everywhere),
    :meth:`from_smpl_dir` (official SMPL files, read without chumpy) or :meth:`load` (SMPL when
    a directory is given or ``$MVSPIN_SMPL_DIR`` is set, the free model otherwise).

    Example:
        >>> body = BodyModel.free("low")
        >>> out = body(body_pose=torch.zeros(2, 69), betas=torch.zeros(2, 10), keypoints="coco17")
        >>> out.vertices.shape, out.keypoints.shape
        (torch.Size([2, 1229, 3]), torch.Size([2, 17, 3]))
    """

    # buffers (registered in __init__; declared for type checkers)
    J_template: Tensor
    J_shapedirs_flat: Tensor
    _ancestors: Tensor
    _parent_index: Tensor
    _moved_by: Tensor

    def __init__(
        self,
        arrays: dict[str, Any],
        *,
        name: str,
        source: str,
        sources: PointSources,
        mean_params: dict[str, np.ndarray],
        mean_params_source: str,
        gmm_path: Optional[Path] = None,
        dtype: torch.dtype = torch.float32,
    ) -> None:
        super().__init__()
        parents = np.asarray(arrays["kintree_table"])[0].astype(np.int64)
        parents[0] = -1
        if tuple(parents.tolist()) != SMPL_PARENTS:
            raise BodyModelFilesError(f"{source}: kinematic tree is not SMPL's 24-joint tree")
        smplx_ids = {k: sources.landmarks[v] for k, v in _SMPLX_LANDMARKS.items() if v in sources.landmarks}
        has_feet = all(k in smplx_ids for k in ("LBigToe", "LSmallToe", "LHeel", "RBigToe", "RSmallToe", "RHeel"))
        has_hands = all(k in smplx_ids for k in ("lthumb", "lindex", "lmiddle", "lring", "lpinky",
                                                 "rthumb", "rindex", "rmiddle", "rring", "rpinky"))
        with contextlib.redirect_stdout(io.StringIO()):  # smplx prints a note about 10 betas
            self.smpl = smplx.SMPL(
                model_path="",
                data_struct=smplx.utils.Struct(**arrays),
                vertex_ids=smplx_ids,
                use_feet_keypoints=has_feet,
                use_hands=has_hands,
                create_betas=False, create_body_pose=False, create_global_orient=False,
                create_transl=False, dtype=dtype,
            )
        self.name = name
        self.source = source
        self.point_sources = sources
        self.mean_params = mean_params
        self.mean_params_source = mean_params_source
        self.gmm_path = gmm_path
        self.num_betas = self.smpl.num_betas
        # Shape-dependent rest joints are linear in the betas: J = J_template + J_shapedirs @ b.
        j_reg = self.smpl.J_regressor.double()
        self.register_buffer("J_template", (j_reg @ self.smpl.v_template.double()).to(dtype), persistent=False)
        j_dirs = torch.einsum("jv,vck->kjc", j_reg, self.smpl.shapedirs.double())  # (betas, 24, 3)
        self.register_buffer("J_shapedirs_flat", j_dirs.reshape(self.num_betas, 72).to(dtype), persistent=False)
        self.has_pose_blendshapes = bool(self.smpl.posedirs.abs().max() > 0)
        self.register_buffer("_ancestors", _ancestor_tables(SMPL_PARENTS), persistent=False)
        self.register_buffer("_parent_index", torch.tensor([max(p, 0) for p in SMPL_PARENTS]), persistent=False)
        # [a, j] = 1 where joint j is a strict ancestor of joint a (its rotation moves joint a)
        self.register_buffer("_moved_by", _strict_ancestors(SMPL_PARENTS).to(dtype), persistent=False)
        self._kmaps: dict[str, KeypointMap] = {}
        self._kmap_tensors: dict[tuple, tuple[Tensor, ...]] = {}

    # --- construction -----------------------------------------------------------------------

    @classmethod
    def free(cls, resolution: str = "full", dtype: torch.dtype = torch.float32,
             device: torch.device | str | None = None) -> "BodyModel":
        """The bundled free SMPL-layout model: ``"full"`` (12,272 vertices) or ``"low"`` (1,229)."""
        if resolution not in model_files.FREE_MODEL_FILES:
            raise ValueError(f"resolution must be one of {', '.join(model_files.FREE_MODEL_FILES)}, got {resolution!r}")
        path = model_files.ASSETS_DIR / model_files.FREE_MODEL_FILES[resolution]
        if not path.is_file():
            raise BodyModelFilesError(
                f"bundled model {path} is missing: reinstall mvspin or run tools/build_free_body_model.py"
            )
        arrays = model_files.load_model_arrays(path)
        landmarks = {_SMPLX_LANDMARKS.get(str(n), str(n)): int(i)
                     for n, i in zip(arrays.pop("landmark_names"), arrays.pop("landmark_vertex_ids"))}
        sources = PointSources(
            num_vertices=arrays["v_template"].shape[0], landmarks=landmarks, regressed={},
            derived=DERIVED_POINTS, missing_hint={},
        )
        mean_path = model_files.ASSETS_DIR / model_files.FREE_MEAN_PARAMS
        model = cls(
            _smpl_arrays(arrays), name=f"free-{path.stem.removeprefix('free_smpl_')}", source=str(path),
            sources=sources, mean_params=model_files.load_mean_params(mean_path),
            mean_params_source=str(mean_path), dtype=dtype,
        )
        return model.to(device) if device is not None else model

    @classmethod
    def from_smpl_dir(cls, smpl_dir: str | Path, gender: str = "neutral", dtype: torch.dtype = torch.float32,
                      device: torch.device | str | None = None) -> "BodyModel":
        """Official SMPL from a user directory, read without chumpy, plus SPIN's files if present.

        Raises:
            BodyModelFilesError: the model file is missing or incomplete (one-line message naming
                the file and where to get it).
        """
        files = model_files.find_smpl_files(smpl_dir, gender)
        arrays = model_files.load_model_arrays(files.model)
        n_verts = arrays["v_template"].shape[0]
        landmarks = {}
        if n_verts == 6890:  # smplx's vertex ids are SMPL-mesh ids: only valid on that mesh
            from smplx.vertex_ids import vertex_ids as smplx_vertex_ids
            landmarks = {_SMPLX_LANDMARKS[k]: int(v) for k, v in smplx_vertex_ids["smplh"].items()
                         if k in _SMPLX_LANDMARKS}
        regressed: dict[str, np.ndarray] = {}
        hint = {}
        extra = files.extras.get("J_regressor_extra.npy")
        if extra is not None:
            rows = _load_regressor(extra, len(_SPIN_EXTRA_ROWS), n_verts)
            regressed.update(zip(_SPIN_EXTRA_ROWS, rows))
            regressed["head_top"], regressed["chin"] = rows[3], rows[7]
        else:
            why = f"add J_regressor_extra.npy from {model_files.SPIN_DATA_URL} to {smpl_dir}"
            hint.update({p: why for p in (*_SPIN_EXTRA_ROWS, "head_top", "chin")})
        h36m = files.extras.get("J_regressor_h36m.npy")
        h36m_points = KEYPOINT_SETS["h36m17"].points
        if h36m is not None:
            regressed.update(zip(h36m_points, _load_regressor(h36m, 17, n_verts)))
        else:
            why = f"add J_regressor_h36m.npy from {model_files.SPIN_DATA_URL} to {smpl_dir}"
            hint.update({p: why for p in h36m_points})
        # Only purely geometric helpers are derived on SMPL: dataset points must come from SPIN's
        # regressors, or evaluation numbers would silently stop matching the literature.
        derived = {k: DERIVED_POINTS[k] for k in ("mid_hip", "upper_neck", *BLAZEPOSE_DERIVED)}
        sources = PointSources(n_verts, landmarks, regressed, derived, hint,
                               per_set={"spin49": dict(_SPIN49_FROM_EXTRA)})
        mean_path = files.extras.get("smpl_mean_params.npz")
        if mean_path is None:  # the free model's hand-set mean pose is in SMPL's layout too
            mean_path = model_files.ASSETS_DIR / model_files.FREE_MEAN_PARAMS
        model = cls(
            arrays, name=f"smpl-{gender}", source=str(files.model), sources=sources,
            mean_params=model_files.load_mean_params(mean_path), mean_params_source=str(mean_path),
            gmm_path=files.extras.get("gmm_08.pkl"), dtype=dtype,
        )
        return model.to(device) if device is not None else model

    @classmethod
    def load(cls, smpl_dir: str | Path | None = None, gender: str = "neutral", resolution: str = "full",
             dtype: torch.dtype = torch.float32, device: torch.device | str | None = None) -> "BodyModel":
        """SMPL from ``smpl_dir`` (or ``$MVSPIN_SMPL_DIR``) when given, else the free model."""
        smpl_dir = smpl_dir if smpl_dir is not None else model_files.default_smpl_dir()
        if smpl_dir is not None:
            return cls.from_smpl_dir(smpl_dir, gender, dtype=dtype, device=device)
        return cls.free(resolution, dtype=dtype, device=device)

    # --- properties -------------------------------------------------------------------------

    @property
    def faces(self) -> np.ndarray:
        """Triangles ``(F, 3)`` int64."""
        return np.asarray(self.smpl.faces, dtype=np.int64)

    @property
    def num_vertices(self) -> int:
        return int(self.smpl.v_template.shape[0])

    @property
    def is_free(self) -> bool:
        return self.name.startswith("free")

    @cached_property
    def available_keypoint_sets(self) -> list[str]:
        """Names of the keypoint sets this model can produce."""
        out = []
        for name in KEYPOINT_SETS:
            try:
                self.keypoint_map(name)
                out.append(name)
            except KeypointSetUnavailable:
                pass
        return out

    def rest_joints(self, betas: Tensor) -> Tensor:
        """Shape-dependent rest (T-pose) joints ``(B, 24, 3)`` for betas ``(B, num_betas)``."""
        self._check_betas(betas, betas.shape[0])
        betas = betas.to(self.J_template.dtype)
        return self.J_template + (betas @ self.J_shapedirs_flat).view(-1, 24, 3)

    def keypoint_weight_sums(self, set_name: str) -> Tensor:
        """Per-keypoint sum of the weights over joints and vertices ``(K,)`` (1 up to rounding; SPIN's
        regressor rows only approximately): moving a keypoint with the body scales by it."""
        return self._map_tensors(set_name)[-1]

    def keypoint_map(self, set_name: str) -> KeypointMap:
        """The (cached) linear map producing ``set_name`` on this model.

        Raises:
            KeyError: unknown set name (lists the known ones).
            KeypointSetUnavailable: the set needs a point this model lacks (says which file adds it).
        """
        if set_name not in self._kmaps:
            self._kmaps[set_name] = KeypointMap.build(set_name, self.point_sources)
        return self._kmaps[set_name]

    def mean_params_tensors(self, device: torch.device | str | None = None) -> dict[str, Tensor]:
        """Mean parameters (SPIN layout): ``pose (144,)`` 6D, ``shape (10,)``, ``cam (3,)``."""
        return {k: torch.as_tensor(v, device=device) for k, v in self.mean_params.items()}

    def pose_prior(self) -> GMMPosePrior | FreePosePrior:
        """SMPLify's GMM prior when ``gmm_08.pkl`` was found, else the free hand-set prior."""
        prior = GMMPosePrior.from_pickle(self.gmm_path) if self.gmm_path else FreePosePrior()
        return prior.to(self.J_template.device)

    def describe(self) -> dict[str, Any]:
        """What is loaded and from where (for ``mvspin info`` and output metadata)."""
        return {
            "name": self.name,
            "source": self.source,
            "vertices": self.num_vertices,
            "faces": int(self.faces.shape[0]),
            "keypoint_sets": self.available_keypoint_sets,
            "mean_params": self.mean_params_source,
            "pose_prior": f"GMM ({self.gmm_path})" if self.gmm_path else "free (joint limits)",
            "pose_blendshapes": self.has_pose_blendshapes,
        }

    # --- full forward -----------------------------------------------------------------------

    def forward(
        self,
        body_pose: Optional[Tensor] = None,
        betas: Optional[Tensor] = None,
        global_orient: Optional[Tensor] = None,
        transl: Optional[Tensor] = None,
        *,
        keypoints: Optional[str] = None,
        check: bool = True,
    ) -> BodyOutput:
        """Full smplx forward: vertices, 24 joints and optionally a named keypoint set.

        Args:
            body_pose: ``(B, 23, 3, 3)`` rotation matrices or ``(B, 69)`` axis-angle; zeros if None.
            betas: ``(B, num_betas)``; zeros if None.
            global_orient: ``(B, 3, 3)`` or ``(B, 3)``; identity if None.
            transl: ``(B, 3)`` metres; zero if None.
            keypoints: name of a keypoint set to compute from the posed mesh and joints.
            check: refuse NaN values and matrices that are not rotations
                (:func:`check_body_values`); fitting loops that checked their start pass False.
        """
        body_rot, betas, root_rot, transl = self._standardise(body_pose, betas, global_orient, transl, check)
        out = self.smpl(
            betas=betas, body_pose=body_rot, global_orient=root_rot.unsqueeze(1), transl=transl,
            pose2rot=False,
        )
        joints = out.joints[:, :24]
        kp = None
        if keypoints is not None:
            mix, vids = self._map_tensors(keypoints)[:2]
            kp = torch.matmul(mix, torch.cat([joints, out.vertices[:, vids]], dim=1))
        return BodyOutput(joints=joints, vertices=out.vertices, keypoints=kp, keypoint_set=keypoints)

    # --- fast path --------------------------------------------------------------------------

    def keypoints(
        self,
        set_name: str,
        body_pose: Tensor,
        betas: Tensor,
        global_orient: Optional[Tensor] = None,
        transl: Optional[Tensor] = None,
        check: bool = True,
    ) -> Tensor:
        """Keypoints ``(B, K, 3)`` of ``set_name`` without skinning the whole mesh.

        Equal to ``forward(..., keypoints=set_name).keypoints`` to float precision (``check`` as
        in :meth:`forward`).
        """
        body_rot, betas, root_rot, transl = self._standardise(body_pose, betas, global_orient, transl, check)
        kp, root = self._canonical(set_name, body_rot, betas)
        weight_sum = self._map_tensors(set_name)[-1]
        return _apply_root(kp, weight_sum, root, root_rot.unsqueeze(1), transl.unsqueeze(1))[:, 0]

    def keypoints_multiview(
        self,
        set_name: str,
        body_pose: Tensor,
        betas: Tensor,
        global_orient: Tensor,
        transl: Tensor,
        check: bool = True,
    ) -> Tensor:
        """One body per bundle seen under V root rotations and translations (``check`` as in
        :meth:`forward`: the fitting loops pass False, their start was checked).

        Args:
            body_pose: ``(B, 23, 3, 3)`` or ``(B, 69)``: shared by all views of a bundle.
            betas: ``(B, num_betas)``: shared.
            global_orient: ``(B, V, 3, 3)`` or ``(B, V, 3)``: per view.
            transl: ``(B, V, 3)``: per view, metres.

        Returns:
            ``(B, V, K, 3)``: equal to running the full forward once per view.
        """
        sizes = check_shape("keypoints_multiview: transl", transl, ["B", "V", 3])
        root_rot = _as_rotmat(global_orient, 1, "global_orient", lead=2)[..., 0, :, :]
        check_shape("keypoints_multiview: global_orient (as rotation matrices)", root_rot, ["B", "V", 3, 3], sizes)
        body_rot = _as_rotmat(body_pose, 23, "body_pose")
        self._check_betas(betas, body_rot.shape[0])
        if check:
            rots = {"body_pose": body_rot} if body_pose.dim() == 4 else {}
            if global_orient.dim() == 4:
                rots["global_orient"] = root_rot
            check_body_values(rots, body_pose=body_pose, betas=betas, global_orient=global_orient, transl=transl)
        kp, root = self._canonical(set_name, body_rot, betas)
        return _apply_root(kp, self._map_tensors(set_name)[-1], root, root_rot, transl)

    def canonical_keypoints(self, set_name: str, body_pose: Tensor, betas: Tensor) -> tuple[Tensor, Tensor]:
        """Keypoints of a body with identity root rotation and no translation, and its rest pelvis.

        With :meth:`apply_root` this splits :meth:`keypoints_multiview` in two, so a fitter that
        holds the body fixed (and moves only root rotations and translations) evaluates the body
        once: ``apply_root(set_name, *canonical_keypoints(set_name, pose, betas), R, t)`` equals
        ``keypoints_multiview(set_name, pose, betas, R, t)``.

        Args:
            set_name: keypoint set.
            body_pose: ``(B, 23, 3, 3)`` rotation matrices or ``(B, 69)`` axis-angle.
            betas: ``(B, num_betas)``.

        Returns:
            ``(B, K, 3)`` keypoints, metres, and ``(B, 3)`` the rest pelvis about which SMPL
            applies the root rotation.
        """
        body_rot = _as_rotmat(body_pose, 23, "body_pose")
        self._check_betas(betas, body_rot.shape[0])
        return self._canonical(set_name, body_rot, betas)

    def apply_root(self, set_name: str, keypoints: Tensor, pelvis: Tensor, global_orient: Tensor,
                   transl: Tensor) -> Tensor:
        """Canonical keypoints (:meth:`canonical_keypoints`) seen under per-view root transforms.

        SMPL moves every point by ``x' = R (x - J0) + J0 + t``; a keypoint whose joint and vertex
        weights sum to ``s`` (1 up to rounding) moves by ``R (k - s J0) + s (J0 + t)``, which is
        what this computes, so the result equals the full forward exactly.

        Args:
            set_name: the keypoint set of ``keypoints``.
            keypoints: ``(B, K, 3)`` or ``(B, 1, K, 3)`` canonical keypoints, metres.
            pelvis: ``(B, 3)`` rest pelvis from :meth:`canonical_keypoints`.
            global_orient: ``(B, V, 3, 3)`` root rotations (or ``(B, V, 3)`` axis-angle).
            transl: ``(B, V, 3)`` SMPL translations, metres.

        Returns:
            ``(B, V, K, 3)``.
        """
        weight_sum = self._map_tensors(set_name)[-1]
        k = weight_sum.shape[0]
        check_shape(f"apply_root: {set_name} keypoints", keypoints, ["B", 1, k, 3] if keypoints.dim() == 4 else ["B", k, 3])
        check_shape("apply_root: transl", transl, ["B", "V", 3])
        root_rot = _as_rotmat(global_orient, 1, "global_orient", lead=2)[..., 0, :, :]
        return _apply_root(keypoints, weight_sum, pelvis, root_rot, transl)

    def keypoint_jacobian(self, set_name: str, body_pose: Tensor, betas: Tensor, global_orient: Tensor,
                          transl: Tensor, with_betas: bool = False,
                          pose_coordinates: str = "perturbation", check: bool = True) -> tuple[Tensor, Tensor]:
        """Keypoints ``(B, K, 3)`` and their derivatives ``(B, K, 3, 75)`` with respect to small
        rotation perturbations and the translation, in closed form (no autograd).

        The 75 columns are: the root perturbation ``d0`` in the world frame (``exp(d0) R0``), the
        23 body joints' local perturbations ``d_j`` (``R_j exp(d_j)``), then ``transl``; with
        ``with_betas`` the ``num_betas`` derivatives by the betas follow. A rigid
        point ``q`` moved by joint ``j`` changes by ``(W_j d_j) x (q - p_j)`` (``W_j``, ``p_j``
        the joint's world rotation and position); keypoints are linear blends of such points.
        Pose blend shapes are held fixed (exact for models without them, such as the free
        model; a Gauss-Newton approximation otherwise). With ``pose_coordinates="axis_angle"``
        (``body_pose`` then given as axis-angle) the body columns are derivatives by the 69
        axis-angle components instead (through :func:`~mvspin.geometry.so3_right_jacobian`).

        Args:
            set_name: keypoint set.
            body_pose: ``(B, 23, 3, 3)`` or ``(B, 69)``. betas: ``(B, num_betas)``.
            global_orient: ``(B, 3, 3)`` or ``(B, 3)``. transl: ``(B, 3)`` metres.
            check: refuse NaN, infinite and non-rotation inputs (:func:`check_body_values`); a
                solver passes False for its own iterates, checked where its fit starts.

        Example:
            >>> body = BodyModel.free("low")
            >>> kp, jac = body.keypoint_jacobian("openpose25", torch.zeros(2, 69), torch.zeros(2, 10),
            ...                                  torch.zeros(2, 3), torch.zeros(2, 3))
            >>> jac.shape
            torch.Size([2, 25, 3, 75])
        """
        if pose_coordinates not in ("perturbation", "axis_angle"):
            raise ValueError(f"pose_coordinates must be 'perturbation' or 'axis_angle', got {pose_coordinates!r}")
        if pose_coordinates == "axis_angle" and body_pose.shape[-2:] == (3, 3):
            raise ShapeError("pose_coordinates='axis_angle' needs body_pose as axis-angle (B, 69) or (B, 23, 3)")
        body_rot, betas, root_rot, transl = self._standardise(body_pose, betas, global_orient, transl, check=check)
        mix, vids, v_tmpl, v_dirs, p_dirs, w_lbs, s = self._map_tensors(set_name)
        joint_moves, vertex_moves, count = self._moved_weights(set_name)
        b, dtype, dev = body_rot.shape[0], self.J_template.dtype, body_rot.device
        rest = self.rest_joints(betas)
        eye = torch.eye(3, dtype=dtype, device=dev)
        world_rot, joints = self._forward_kinematics(torch.cat([eye.expand(b, 1, 3, 3), body_rot], 1), rest)
        moved = torch.einsum("kaj,bad->bkjd", joint_moves, joints)  # weighted positions it moves
        points = joints
        if vids.numel():
            m = vids.numel()
            verts = v_tmpl + (betas @ v_dirs).view(b, m, 3)
            if p_dirs is not None:
                verts = verts + ((body_rot - eye).reshape(b, -1) @ p_dirs).view(b, m, 3)
            # each vertex as carried rigidly by each joint: W_i (v - J_i) + p_i   (B, m, 24, 3)
            carried = _mat3vec(world_rot[:, None], verts[:, :, None] - rest[:, None]) + joints[:, None]
            points = torch.cat([joints, torch.einsum("mi,bmid->bmd", w_lbs, carried)], 1)
            moved = moved + torch.einsum("km,bmjd->bkjd", mix[:, 24:],
                                         torch.einsum("bmid,mij->bmjd", carried, vertex_moves))
        canon = torch.matmul(mix, points)
        lever = moved - count[..., None] * joints[:, None]  # (B, K, 24, 3): sum of w (q - p_j)
        r0 = root_rot
        lever_w = torch.einsum("bcd,bkjd->bkjc", r0, lever)
        # a local perturbation d_j turns joint j's frame about the world axis W_j d_j
        axis_map = _mat3(r0[:, None], world_rot[:, 1:])  # (B, 23, 3, 3)
        if pose_coordinates == "axis_angle":
            axis_map = _mat3(axis_map, so3_right_jacobian(body_pose.reshape(b, 23, 3).to(dtype)))
        # negated lever (3x smaller than the product; bitwise the same as negating the product)
        j_body = _skew_times(-lever_w[:, :, 1:], axis_map)  # (B, K, 3, 23, 3)
        pivot = s[:, None] * (rest[:, None, 0] + transl[:, None])  # (B, K, 3)
        kp = torch.einsum("bcd,bkd->bkc", r0, canon - s[:, None] * rest[:, None, 0]) + pivot
        j_root = -_skew(kp - pivot)  # (B, K, 3, 3)
        j_transl = s[:, None, None] * eye  # (K, 3, 3)
        parts = [j_root, j_body.reshape(b, -1, 3, 69), j_transl.expand(b, -1, 3, 3).contiguous()]
        if with_betas:
            # contiguous parts: torch.cat along the last dim gathers a broadcast (stride-0) part or the
            # einsum's (B, 3, K, nb) layout several times slower (5 ms of 28 at L = 300)
            parts.append(self._shape_jacobian(set_name, world_rot, r0, carried if vids.numel() else None).contiguous())
        return kp, torch.cat(parts, -1)

    def _shape_jacobian(self, set_name: str, world_rot: Tensor, root_rot: Tensor,
                        carried: Optional[Tensor]) -> Tensor:
        """``(B, K, 3, num_betas)``: with the rotations fixed, posed joints and skinned vertices
        are linear in the rest joints and rest vertices, which are linear in the betas."""
        mix, vids, _, v_dirs, _, w_lbs, s = self._map_tensors(set_name)
        nb = self.num_betas
        d_rest = self.J_shapedirs_flat.view(nb, 24, 3).permute(1, 2, 0)  # (24, 3, nb)
        d_local = torch.cat([d_rest[:1], d_rest[1:] - d_rest[self._parent_index[1:]]])
        eye = torch.eye(3, dtype=world_rot.dtype, device=world_rot.device)
        parent_rot = torch.cat([eye.expand(world_rot.shape[0], 1, 3, 3), world_rot[:, self._parent_index[1:]]], 1)
        with_self = self._moved_by + torch.eye(24, dtype=eye.dtype, device=eye.device)
        d_joints = torch.einsum("kj,bjcn->bkcn", with_self, torch.einsum("bjcd,jdn->bjcn", parent_rot, d_local))
        points = d_joints
        if carried is not None:
            m = vids.numel()
            d_verts = v_dirs.view(nb, m, 3).permute(1, 2, 0)  # (m, 3, nb)
            # skinned vertex: sum_i w_mi (W_i (v_m - J_i) + p_i), so its derivative is
            # (sum_i w_mi W_i) dv_m - sum_i w_mi W_i dJ_i + sum_i w_mi dp_i: blended before the
            # product, without the (B, m, 24, 3, nb) array of every joint carrying every vertex
            blend_rot = torch.einsum("mi,bicd->bmcd", w_lbs, world_rot)  # (B, m, 3, 3)
            rot_rest = torch.einsum("bicd,idn->bicn", world_rot, d_rest)  # (B, 24, 3, nb)
            d_skinned = (blend_rot @ d_verts + torch.einsum("mi,bicn->bmcn", w_lbs, d_joints - rot_rest))
            points = torch.cat([d_joints, d_skinned], 1)
        d_canon = torch.einsum("ka,bacn->bkcn", mix, points)
        d_pivot = s[:, None, None] * d_rest[0]  # (K, 3, nb)
        return torch.einsum("bcd,bkdn->bkcn", root_rot, d_canon - d_pivot) + d_pivot

    def _canonical(self, set_name: str, body_rot: Tensor, betas: Tensor) -> tuple[Tensor, Tensor]:
        """:meth:`canonical_keypoints` for rotation matrices ``(B, 23, 3, 3)`` (no input checks).

        Small 3x3 products go through ``torch.matmul`` (:func:`_mat3`, :func:`_mat3vec`): with
        torch 2.x on CPU its batched GEMM is about 3x faster forward and backward than the
        broadcast multiply-and-sum these helpers used before (which builds a 27-element product
        per matrix and reduces it again in the backward pass).
        """
        dtype = self.J_template.dtype
        body_rot, betas = body_rot.to(dtype), betas.to(dtype)
        _, vids, _, _, p_dirs, _, _ = self._map_tensors(set_name)
        if p_dirs is None and vids.numel() and closed_form_backward_applies(body_rot, betas):
            return _CanonicalKeypoints.apply(body_rot, betas, self, set_name)
        kp, root, *_ = self._canonical_parts(set_name, body_rot, betas)
        return kp, root

    def _canonical_parts(self, set_name: str, body_rot: Tensor, betas: Tensor) -> tuple[Tensor, ...]:
        """:meth:`_canonical`'s keypoints ``(B, K, 3)`` and rest pelvis ``(B, 3)``, then what its
        closed-form backward needs: world rotations and positions of the joints, rest joints,
        the shaped subset vertices ``(B, m, 3)`` and their blended transforms ``(B, m, 12)``."""
        mix, vids, v_tmpl, v_dirs, p_dirs, w_lbs, _ = self._map_tensors(set_name)
        b = body_rot.shape[0]
        dtype = self.J_template.dtype
        rest_joints = self.rest_joints(betas)
        eye = torch.eye(3, dtype=dtype, device=body_rot.device).expand(b, 1, 3, 3)
        rots = torch.cat([eye, body_rot], dim=1)
        world_rot, posed_joints = self._forward_kinematics(rots, rest_joints)
        points = posed_joints
        verts = blended = posed_joints[:, :0]
        if vids.numel():
            m = vids.numel()
            verts = v_tmpl + (betas @ v_dirs).view(b, m, 3)
            if p_dirs is not None:
                pose_feature = (body_rot - torch.eye(3, dtype=dtype, device=body_rot.device)).reshape(b, -1)
                verts = verts + (pose_feature @ p_dirs).view(b, m, 3)
            # LBS of the subset: v' = sum_j w_j (R_j v + p_j - R_j J_j), blended as one GEMM
            offset = posed_joints - _mat3vec(world_rot, rest_joints)
            packed = torch.cat([world_rot.reshape(b, 24, 9), offset], dim=-1)  # (B, 24, 12)
            blended = (w_lbs @ packed.transpose(0, 1).reshape(24, b * 12)).view(m, b, 12).transpose(0, 1)
            skinned = _mat3vec(blended[..., :9].reshape(b, m, 3, 3), verts) + blended[..., 9:]
            points = torch.cat([posed_joints, skinned], dim=1)
        return torch.matmul(mix, points), rest_joints[:, 0], world_rot, posed_joints, rest_joints, verts, blended

    def _forward_kinematics(self, rots: Tensor, rest_joints: Tensor) -> tuple[Tensor, Tensor]:
        """World rotations ``(B, 24, 3, 3)`` and positions ``(B, 24, 3)`` of the posed joints.

        Pointer doubling: every joint composes its transform with the one ``2^k`` levels up, so
        SMPL's 9-level tree takes 4 batched steps (about 30 tensor ops in all) instead of one
        step per joint or per level. Entry 24 is an identity sentinel above the root.
        """
        bones = rest_joints - rest_joints.index_select(1, self._parent_index)
        local_t = torch.cat([rest_joints[:, :1], bones[:, 1:]], dim=1)  # the root sits at J0
        if closed_form_backward_applies(rots, local_t):
            return _KinematicChain.apply(rots, local_t, self._ancestors, self._parent_index, self._moved_by)
        return _chain(rots, local_t, self._ancestors)

    def _moved_weights(self, set_name: str) -> tuple[Tensor, Tensor, Tensor]:
        """:meth:`keypoint_jacobian`'s constant factors, cached per set: ``(K, 24, 24)``
        ``mix[k, a] [joint j strictly moves joint a]``, ``(m, 24, 24)`` ``w_lbs[m, i] [joint j
        moves what joint i skins]`` (the steps opt_einsum chose for the einsums these replace,
        contracted once: its path search cost ~1 ms per call) and ``(K, 24)``, the weight of each
        keypoint that joint j moves."""
        device, dtype = self.J_template.device, self.J_template.dtype
        key = ("moved", set_name, device, dtype)
        if key not in self._kmap_tensors:
            mix, vids, _, _, _, w_lbs, _ = self._map_tensors(set_name)
            strict = self._moved_by  # (24 points, 24 joints): joint j moves joint a
            with_self = strict + torch.eye(24, dtype=dtype, device=device)  # joint j moves what a skins
            count = mix[:, :24] @ strict
            if vids.numel():
                count = count + mix[:, 24:] @ (w_lbs @ with_self)
            self._kmap_tensors[key] = (mix[:, :24, None] * strict, w_lbs[:, :, None] * with_self, count)
        return self._kmap_tensors[key]  # type: ignore[return-value]

    def _map_tensors(self, set_name: str) -> tuple[Any, ...]:
        """Keypoint-map tensors on the model's device/dtype, cached per set."""
        device, dtype = self.J_template.device, self.J_template.dtype
        key = (set_name, device, dtype)
        if key not in self._kmap_tensors:
            kmap = self.keypoint_map(set_name)
            vids = torch.as_tensor(kmap.vertex_ids, device=device)
            p_dirs = None
            if self.has_pose_blendshapes and vids.numel():
                cols = (vids[:, None] * 3 + torch.arange(3, device=device)).reshape(-1)
                p_dirs = self.smpl.posedirs[:, cols].to(dtype)
            mix = torch.as_tensor(np.concatenate([kmap.joint_weights, kmap.vertex_weights], axis=1),
                                  device=device, dtype=dtype)  # (K, 24 + M) over [joints | vertices]
            self._kmap_tensors[key] = (
                mix,
                vids,
                self.smpl.v_template[vids].to(dtype),
                self.smpl.shapedirs[vids].to(dtype).permute(2, 0, 1).reshape(self.num_betas, -1),
                p_dirs,
                self.smpl.lbs_weights[vids].to(dtype),
                mix.sum(1),  # per-keypoint weight sum, see _apply_root
            )
        return self._kmap_tensors[key]

    def _check_betas(self, betas: Tensor, batch: int) -> None:
        check_shape("betas", betas, ["B", self.num_betas], {"B": batch})

    def _standardise(self, body_pose, betas, global_orient, transl,
                     check: bool = True) -> tuple[Tensor, Tensor, Tensor, Tensor]:
        """Rotation matrices and defaults for every parameter, with shapes checked."""
        given = [x for x in (body_pose, betas, global_orient, transl) if x is not None]
        b = given[0].shape[0] if given else 1
        dtype, device = self.J_template.dtype, self.J_template.device
        body_rot = (_as_rotmat(body_pose, 23, "body_pose") if body_pose is not None
                    else torch.eye(3, dtype=dtype, device=device).expand(b, 23, 3, 3))
        if global_orient is not None and global_orient.dim() == 4 and global_orient.shape[1] == 1:
            global_orient = global_orient[:, 0]  # smplx's (B, 1, 3, 3)
        root_rot = (_as_rotmat(global_orient, 1, "global_orient")[..., 0, :, :] if global_orient is not None
                    else torch.eye(3, dtype=dtype, device=device).expand(b, 3, 3))
        betas = betas if betas is not None else torch.zeros(b, self.num_betas, dtype=dtype, device=device)
        transl = transl if transl is not None else torch.zeros(b, 3, dtype=dtype, device=device)
        self._check_betas(betas, b)
        if body_rot.shape[:1] != (b,) or root_rot.shape != (b, 3, 3) or transl.shape != (b, 3):
            raise ShapeError(
                f"batch sizes disagree: body_pose {tuple(body_rot.shape)}, global_orient "
                f"{tuple(root_rot.shape)}, transl {tuple(transl.shape)} (expected B={b}, transl (B, 3))"
            )
        if check:
            rots = {}
            if body_pose is not None and body_pose.dim() == 4:
                rots["body_pose"] = body_rot
            if global_orient is not None and global_orient.dim() == 3:
                rots["global_orient"] = root_rot
            check_body_values(rots, body_pose=body_pose, betas=betas, global_orient=global_orient, transl=transl)
        return body_rot.to(dtype), betas.to(dtype), root_rot.to(dtype), transl.to(dtype)


def _apply_root(kp: Tensor, weight_sum: Tensor, root: Tensor, root_rot: Tensor, transl: Tensor) -> Tensor:
    """Canonical keypoints ``(B, K, 3)`` (or ``(B, 1, K, 3)``) seen by each view: ``(B, V, K, 3)``.

    SMPL moves every joint and vertex by ``x' = R (x - J0) + J0 + t`` (rotation about the rest
    pelvis ``J0``). A keypoint is a weighted sum of such points whose weights sum to ``s`` (1 up to
    rounding; SPIN's regressor rows only approximately), so ``k' = R (k - s J0) + s (J0 + t)``
    reproduces the full forward exactly.
    """
    if kp.dim() == 3:
        kp = kp.unsqueeze(1)
    s = weight_sum[:, None]  # (K, 1)
    centred = kp - s * root[:, None, None]
    # one product per view for all K keypoints (einsum): half the forward-and-backward time of a
    # product per keypoint at fitting sizes
    return torch.einsum("bvcd,bvkd->bvkc", root_rot, centred) + s * (root[:, None] + transl)[:, :, None]


def _chain(rots: Tensor, local_t: Tensor, ancestors: Tensor) -> tuple[Tensor, Tensor]:
    """Pointer-doubling forward kinematics (:meth:`BodyModel._forward_kinematics`): world
    rotations ``(B, J, 3, 3)`` and positions ``(B, J, 3)`` from local rotations and offsets."""
    b, dtype, device = rots.shape[0], rots.dtype, rots.device
    world_rot = torch.cat([rots, torch.eye(3, dtype=dtype, device=device).expand(b, 1, 3, 3)], dim=1)
    world_pos = torch.cat([local_t, torch.zeros(b, 1, 3, dtype=dtype, device=device)], dim=1)
    for anc in ancestors:  # index_select: a quarter of advanced indexing's time at these sizes
        up_rot = world_rot.index_select(1, anc)
        world_pos = world_pos.index_select(1, anc) + _mat3vec(up_rot, world_pos)
        world_rot = _mat3(up_rot, world_rot)
    return world_rot[:, :-1], world_pos[:, :-1]


class _KinematicChain(torch.autograd.Function):
    """:func:`_chain` with its vector-Jacobian product in closed form.

    Autograd through the pointer-doubling steps records ~40 nodes (index, 3x3 products); this
    backward is ~15 tensor ops, about half the time of a fitting iteration's body gradient.
    Turning joint j's local rotation ``L_j`` by ``dL`` moves its subtree rigidly:
    ``dR_a = P_j dL R_j^T R_a`` and ``dp_a = P_j dL R_j^T (p_a - p_j)`` (``P_j`` the parent's
    world rotation, identity for the root), so with ``G_a = dE/dR_a`` and ``g_a = dE/dp_a``

        dE/dL_j = P_j^T [sum_a (G_a R_a^T + g_a p_a^T) - (sum_a g_a) p_j^T] R_j,
        dE/dt_j = P_j^T sum_a g_a,

    the sums over ``a`` in the subtree of ``j`` (itself included): one product with the
    ancestor matrix. Uses ``R^T = R^-1``: equal to autograd's gradient up to rounding for
    rotation matrices (the fitting's rotations are orthonormal to float precision).
    """

    @staticmethod
    def forward(ctx: Any, rots: Tensor, local_t: Tensor, ancestors: Tensor, parent_index: Tensor,
                moved_by: Tensor) -> tuple[Tensor, Tensor]:
        world_rot, world_pos = _chain(rots, local_t, ancestors)
        ctx.save_for_backward(world_rot, world_pos, parent_index, moved_by)
        return world_rot, world_pos

    @staticmethod
    def backward(ctx: Any, g_rot: Optional[Tensor], g_pos: Optional[Tensor]) -> tuple[Optional[Tensor], ...]:
        world_rot, world_pos, parent_index, moved_by = ctx.saved_tensors
        return (*_chain_vjp(world_rot, world_pos, parent_index, moved_by, g_rot, g_pos), None, None, None)


def _chain_vjp(world_rot: Tensor, world_pos: Tensor, parent_index: Tensor, moved_by: Tensor,
               g_rot: Optional[Tensor], g_pos: Optional[Tensor]) -> tuple[Tensor, Tensor]:
    """:class:`_KinematicChain`'s backward: gradients by the local rotations and offsets."""
    b, j = world_pos.shape[:2]
    if g_rot is None:
        g_rot = torch.zeros_like(world_rot)
    if g_pos is None:
        g_pos = torch.zeros_like(world_pos)
    # per joint: G R^T + g p^T (9) and g (3), summed over each joint's subtree in one product
    own = torch.matmul(g_rot, world_rot.transpose(-1, -2)) + g_pos[..., :, None] * world_pos[..., None, :]
    packed = torch.cat([own.reshape(b, j, 9), g_pos], -1)  # (B, J, 12)
    subtree = moved_by + torch.eye(j, dtype=moved_by.dtype, device=moved_by.device)  # [a, j]: j moves a
    sums = torch.matmul(subtree.transpose(0, 1), packed)  # (B, J, 12)
    sum_g = sums[..., 9:]
    inner = sums[..., :9].reshape(b, j, 3, 3) - sum_g[..., :, None] * world_pos[..., None, :]
    eye = torch.eye(3, dtype=world_rot.dtype, device=world_rot.device).expand(b, 1, 3, 3)
    parent_t = torch.cat([eye, world_rot.index_select(1, parent_index[1:])], 1).transpose(-1, -2)  # P_j^T
    g_local = torch.matmul(torch.matmul(parent_t, inner), world_rot)
    g_t = torch.matmul(parent_t, sum_g[..., None])[..., 0]
    return g_local, g_t


class _CanonicalKeypoints(torch.autograd.Function):
    """:meth:`BodyModel._canonical` (shape, kinematic chain, skinning of the keypoints' vertices,
    keypoint mix) with its vector-Jacobian product in closed form, for models without pose blend
    shapes: the whole body is one node of the fitting iteration's graph instead of ~40.

    Backward, from ``g = dE/dk`` of the keypoints ``k = mix [p | s]``: ``dE/d[p | s] = mix^T g``;
    a skinned vertex ``s = A v + o`` (``A = sum_i w_i W_i``, ``o = sum_i w_i (p_i - W_i J_i)``)
    gives ``dE/dA = g_s v^T``, ``dE/dv = A^T g_s``, ``dE/do = g_s``, spread to the joints by the
    skinning weights; then :func:`_chain_vjp` through the kinematic chain, and the betas through
    the (linear) rest joints and vertices. Equal to autograd's gradient up to rounding."""

    @staticmethod
    def forward(ctx: Any, body_rot: Tensor, betas: Tensor, model: "BodyModel", set_name: str) -> tuple[Tensor, Tensor]:
        kp, root, world_rot, posed, rest, verts, blended = model._canonical_parts(set_name, body_rot, betas)
        ctx.save_for_backward(world_rot, posed, rest, verts, blended)
        ctx.model, ctx.set_name = model, set_name
        return kp, root

    @staticmethod
    def backward(ctx: Any, g_kp: Optional[Tensor], g_root: Optional[Tensor]) -> tuple[Optional[Tensor], ...]:
        world_rot, posed, rest, verts, blended = ctx.saved_tensors
        model: BodyModel = ctx.model
        mix, _, _, v_dirs, _, w_lbs, _ = model._map_tensors(ctx.set_name)
        b, m = verts.shape[:2]
        if g_kp is None:
            g_kp = torch.zeros(b, mix.shape[0], 3, dtype=rest.dtype, device=rest.device)
        g_points = torch.matmul(mix.transpose(0, 1), g_kp)  # (B, 24 + m, 3)
        g_s = g_points[:, 24:]
        g_verts = torch.matmul(blended[..., :9].reshape(b, m, 3, 3).transpose(-1, -2), g_s[..., None])[..., 0]
        g_blended = torch.cat([(g_s[..., :, None] * verts[..., None, :]).reshape(b, m, 9), g_s], -1)  # (B, m, 12)
        g_packed = (w_lbs.transpose(0, 1) @ g_blended.transpose(0, 1).reshape(m, b * 12)).view(24, b, 12).transpose(0, 1)
        g_offset = g_packed[..., 9:]  # offset_i = p_i - W_i J_i
        g_rot = g_packed[..., :9].reshape(b, 24, 3, 3) - g_offset[..., :, None] * rest[..., None, :]
        g_local, g_t = _chain_vjp(world_rot, posed, model._parent_index, model._moved_by, g_rot,
                                  g_points[:, :24] + g_offset)
        # rest joints: through the offsets, and the chain's local offsets J_j - J_parent (J_0 for the root)
        g_rest = g_t - torch.matmul(world_rot.transpose(-1, -2), g_offset[..., None])[..., 0]
        g_rest = g_rest.index_add(1, model._parent_index[1:], g_t[:, 1:], alpha=-1)
        if g_root is not None:
            g_rest[:, 0] += g_root
        g_betas = g_rest.reshape(b, 72) @ model.J_shapedirs_flat.transpose(0, 1) \
            + g_verts.reshape(b, 3 * m) @ v_dirs.transpose(0, 1)
        return g_local[:, 1:], g_betas, None, None


def _mat3(a: Tensor, b: Tensor) -> Tensor:
    """Batched 3x3 @ 3x3 (:func:`~mvspin.geometry.products.matmul3`: matmul eagerly, see
    :meth:`BodyModel._canonical`; fused inside ``torch.compile``)."""
    return matmul3(a, b)


def _skew_times(a: Tensor, m: Tensor) -> Tensor:
    """``[a]x @ m`` for ``a (B, K, J, 3)`` and ``m (B, J, 3, 3)``, laid out ``(B, K, 3, J, 3)``
    (rows before joints): the cross products written out, twice as fast as torch's."""
    x, y, z = (c[..., None] for c in a.unbind(-1))
    m0, m1, m2 = m[:, None].unbind(-2)  # rows of m, (B, 1, J, 3)
    return torch.stack([y * m2 - z * m1, z * m0 - x * m2, x * m1 - y * m0], 2)


def _skew(v: Tensor) -> Tensor:
    """``(..., 3)`` -> ``(..., 3, 3)`` cross-product matrices: ``_skew(a) @ b == a x b``."""
    x, y, z = v.unbind(-1)
    zero = torch.zeros_like(x)
    return torch.stack([zero, -z, y, z, zero, -x, -y, x, zero], -1).view(*v.shape, 3)


def _mat3vec(a: Tensor, v: Tensor) -> Tensor:
    """Batched 3x3 @ 3-vector."""
    return matmul3(a, v.unsqueeze(-1)).squeeze(-1)


def _strict_ancestors(parents: tuple[int, ...]) -> Tensor:
    """``(J, J)`` with ``[a, j] = 1`` where ``j`` is a strict ancestor of ``a``."""
    out = torch.zeros(len(parents), len(parents))
    for a in range(len(parents)):
        j = parents[a]
        while j >= 0:
            out[a, j] = 1.0
            j = parents[j]
    return out


def _ancestor_tables(parents: tuple[int, ...]) -> Tensor:
    """``(steps, J + 1)`` ancestor pointers for pointer-doubling FK: row k maps each joint to its
    ancestor ``2^k`` levels up; index ``J`` is the identity sentinel above the root."""
    n = len(parents)
    anc = torch.tensor([p if p >= 0 else n for p in parents] + [n])
    tables: list[Tensor] = []
    while not bool((anc == n).all()) or not tables:
        tables.append(anc)
        anc = anc[anc]
    return torch.stack(tables)


def _smpl_arrays(arrays: dict[str, Any]) -> dict[str, Any]:
    """The subset of an asset's arrays that smplx's SMPL constructor reads."""
    keys = ("v_template", "shapedirs", "posedirs", "J_regressor", "weights", "kintree_table", "f")
    return {k: arrays[k] for k in keys}


def _load_regressor(path: Path, rows: int, n_verts: int) -> np.ndarray:
    try:
        reg = np.load(path, allow_pickle=False)
    except (ValueError, EOFError, OSError) as err:
        raise BodyModelFilesError(f"{path} is not a readable .npy regressor ({err})") from None
    if reg.shape != (rows, n_verts):
        raise BodyModelFilesError(f"{path}: expected shape ({rows}, {n_verts}), got {reg.shape}")
    return reg.astype(np.float64)
