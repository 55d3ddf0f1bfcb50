"""Single-image evaluation protocols: Human3.6M p1/p2, MPI-INF-3DHP, 3DPW and synthetic.

Every protocol follows SPIN's ``eval.py`` (nkolot/SPIN) on this project's bundle files:

- **Predicted joints**: the ``h36m17`` keypoints of the predicted body (SPIN:
  ``J_regressor_h36m`` on the mesh; the free model has its own regressor for the same points),
  centred on their pelvis (row 0). The network's camera is not used: errors are root-relative.
- **h36m-p1**: Human3.6M S9 and S11, every 5th frame, every camera; **h36m-p2**: the same frames
  from the frontal camera ``60457274`` only. Ground truth: the stored 3D joints moved into each
  view's camera, centred on the pelvis. MPJPE and PA-MPJPE (reconstruction error) on the 14 LSP
  joints (``H36M_TO_J14``).
- **mpi-inf-3dhp**: the test set (``univ_annot3``), 17 joints (``H36M_TO_J17``), centred on the
  pelvis. MPJPE and PA-MPJPE on the 17 joints (the pelvis included, as SPIN's ``eval.py`` does).
  PCK@150 mm and AUC (mean PCK over 0, 5, ..., 150 mm) after rigid alignment, which is how SPIN
  and MV-SPIN report them ("rigid alignment" rows of their tables), on all 17 joints; and without
  alignment (``pck_unaligned``, ``auc_unaligned``) on the 16 joints other than the pelvis, which
  is 0 after centring on both sides and would count as a free correct joint.
- **3dpw**: the test set; ground-truth joints from the ground-truth SMPL parameters posed with the
  gender's body model (male/female, as SPIN) in the camera frame, pelvis-centred, 14 LSP joints.
- **synthetic**: every view of every bundle of a file with SMPL ground truth (a
  ``mvspin data synthetic`` test set); ground truth as for 3DPW with the evaluation body model.

:func:`select_samples` picks the protocol's (bundle, view) samples and their ground truth from a
bundle file, checking first that the file is of the protocol's dataset and has what it needs;
:func:`protocol_errors` turns predicted and ground-truth joints into per-sample errors;
:func:`evaluate` runs a regressor over the samples and returns an :class:`EvaluationResult`
(printed table, JSON, per-sample ``.npz``).

Example:
    >>> from mvspin.body import BodyModel  # doctest: +SKIP
    >>> model, meta = load_regressor_checkpoint("model_checkpoint.pt")  # doctest: +SKIP
    >>> result = evaluate(model, BodyModel.free("low"), BundleFile("test.h5"), "synthetic")  # doctest: +SKIP
    >>> print(result.table()); result.save("eval_out")  # doctest: +SKIP
"""
from __future__ import annotations

import json
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Mapping, Optional

import numpy as np
import torch
from torch import Tensor

from mvspin.atomic import OutputGroup
from mvspin.body.keypoint_sets import H36M17_TO_LSP14, get_keypoint_set, keypoint_index_map
from mvspin.config import check_range
from mvspin.data.bundle_format import BundleFile
from mvspin.errors import EvaluationDataError
from mvspin.geometry import auc, axis_angle_to_matrix, mpjpe, pa_mpjpe, pck, similarity_procrustes
from mvspin.progress import Progress, no_progress

if TYPE_CHECKING:
    from mvspin.body import BodyModel
    from mvspin.regressor.hmr import HMRRegressor

__all__ = [
    "PROTOCOLS",
    "Protocol",
    "EvaluationDataError",
    "ProtocolSamples",
    "EvaluationResult",
    "get_protocol",
    "check_protocol_file",
    "select_samples",
    "predicted_joints",
    "protocol_errors",
    "evaluate",
    "evaluate_predictions",
]

H36M_FRONTAL_CAMERA = "60457274"
"""Human3.6M protocol 2's camera (SPIN's ``h36m.py`` preprocessing keeps only this one)."""
_PELVIS_H36M17 = 0  # SPIN centres on row 0 of J_regressor_h36m for every dataset
# SPIN's J24_TO_J14: the 14 evaluation slots of its 24 ground-truth joints; in a spin49 file they
# follow the 25 OpenPose keypoints. SPIN's Human3.6M files fill these slots with H36M joints.
_SPIN_GT_OFFSET = 25
_SPIN_J24_TO_J14 = (0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 18)


@dataclass(frozen=True)
class Protocol:
    """One evaluation protocol.

    Attributes:
        name: the protocol's name (``--dataset`` of ``mvspin eval``).
        dataset: the ``dataset`` attribute its bundle files carry.
        subjects: subjects evaluated (None: all).
        frame_step: frames whose index is a multiple of this are evaluated.
        cameras: camera names evaluated (None: every view).
        joint_set: keypoint set of the evaluated joints (``lsp14`` or ``mpi_inf_3dhp17``).
        ground_truth: ``"joints"`` (stored 3D joints) or ``"smpl"`` (posed ground-truth SMPL).
        gendered: pose the ground truth with the sample's gender model (3DPW).
        pck: also report PCK@150 mm and AUC (MPI-INF-3DHP).
        source: where the definition comes from.
    """

    name: str
    dataset: str
    subjects: Optional[tuple[str, ...]]
    frame_step: int
    cameras: Optional[tuple[str, ...]]
    joint_set: str
    ground_truth: str
    gendered: bool = False
    pck: bool = False
    source: str = ""

    @property
    def h36m_rows(self) -> tuple[int, ...]:
        """Rows of the ``h36m17`` keypoints giving this protocol's joints, in its order
        (SPIN's ``H36M_TO_J14`` / ``H36M_TO_J17``)."""
        if self.joint_set == "lsp14":
            return tuple(H36M17_TO_LSP14)
        pairs = dict(keypoint_index_map(self.joint_set, "h36m17"))
        return tuple(pairs[i] for i in range(len(get_keypoint_set(self.joint_set))))

    @property
    def num_joints(self) -> int:
        return len(self.h36m_rows)

    @property
    def root_index(self) -> Optional[int]:
        """Position of the pelvis among the protocol's joints (None when it is not one of them)."""
        rows = self.h36m_rows
        return rows.index(_PELVIS_H36M17) if _PELVIS_H36M17 in rows else None

    @property
    def metric_names(self) -> tuple[str, ...]:
        base = ("mpjpe", "pa_mpjpe")
        return base + (("pck", "auc", "pck_unaligned", "auc_unaligned") if self.pck else ())


PROTOCOLS: dict[str, Protocol] = {
    p.name: p
    for p in (
        Protocol("h36m-p1", "h36m", ("S9", "S11"), 5, None, "lsp14", "joints",
                 source="SPIN eval.py / datasets/preprocess/h36m.py, protocol 1"),
        Protocol("h36m-p2", "h36m", ("S9", "S11"), 5, (H36M_FRONTAL_CAMERA,), "lsp14", "joints",
                 source="SPIN eval.py / datasets/preprocess/h36m.py, protocol 2 (frontal camera)"),
        Protocol("mpi-inf-3dhp", "mpi_inf_3dhp", None, 1, None, "mpi_inf_3dhp17", "joints", pck=True,
                 source="SPIN eval.py (17 joints) / datasets/preprocess/mpi_inf_3dhp.py (test set)"),
        Protocol("3dpw", "3dpw", None, 1, None, "lsp14", "smpl", gendered=True,
                 source="SPIN eval.py (gender-specific ground-truth bodies)"),
        Protocol("synthetic", "synthetic", None, 1, None, "lsp14", "smpl",
                 source="mvspin: every view of a synthetic test file with SMPL ground truth"),
    )
}
"""Every protocol by name."""

_METRIC_UNITS = {"mpjpe": "mm", "pa_mpjpe": "mm", "pck": "%", "auc": "%", "pck_unaligned": "%",
                 "auc_unaligned": "%"}


def get_protocol(name: str | Protocol) -> Protocol:
    """A protocol by name; ``ValueError`` listing the known names otherwise."""
    if isinstance(name, Protocol):
        return name
    try:
        return PROTOCOLS[name]
    except KeyError:
        raise ValueError(f"unknown evaluation protocol {name!r}; known: {', '.join(PROTOCOLS)}") from None


@dataclass
class ProtocolSamples:
    """The single-image samples a protocol evaluates in one bundle file, with ground truth.

    Attributes:
        bundle: (N,) bundle index of each sample. view: (N,) view index in its bundle.
        gt_joints: (N, J, 3) ground-truth joints in the view's camera frame, pelvis-centred,
            metres, in the protocol's joint order.
        subject, sequence, camera: (N,) str ids. frame: (N,) frame index.
    """

    bundle: np.ndarray
    view: np.ndarray
    gt_joints: Tensor
    subject: np.ndarray
    sequence: np.ndarray
    frame: np.ndarray
    camera: np.ndarray

    def __len__(self) -> int:
        return int(self.bundle.shape[0])


def check_protocol_file(bundles: BundleFile, protocol: str | Protocol) -> Protocol:
    """Check that ``bundles`` can be evaluated with ``protocol`` (cheap: attributes only).

    Raises:
        EvaluationDataError: the file is of another dataset, lacks the ground truth the protocol
            needs (SMPL parameters, 3D joints, cameras), or stores joints it cannot map.
    """
    p = get_protocol(protocol)
    where = str(bundles.path)
    dataset = str(bundles.attrs.get("dataset"))
    if dataset != p.dataset:
        raise EvaluationDataError(f"{where}: is a {dataset!r} bundle file, but protocol {p.name} needs a "
                                  f"{p.dataset!r} file (built by mvspin data)")
    if p.ground_truth == "smpl":
        if not bundles.has_smpl:
            raise EvaluationDataError(f"{where}: has no SMPL ground truth (fields smpl_*), which protocol "
                                      f"{p.name} needs")
        if not bundles.has_cameras:
            raise EvaluationDataError(f"{where}: has no cameras; protocol {p.name} needs them to move the "
                                      "world-frame SMPL ground truth into each view's camera")
        return p
    if bundles.joints_3d_keypoint_set is None:
        raise EvaluationDataError(f"{where}: has no 3D joints (field joints_3d), which protocol {p.name} needs")
    _gt_columns(bundles, p)  # raises when the stored set cannot give the protocol's joints
    if bundles.joints_3d_frame == "world" and not bundles.has_cameras:
        raise EvaluationDataError(f"{where}: world-frame 3D joints without cameras")
    return p


def _gt_columns(bundles: BundleFile, p: Protocol) -> tuple[list[int], Optional[int]]:
    """Columns of the stored 3D joints giving the protocol's joints, and the pelvis column
    (None when the stored joints are already root-relative without a pelvis entry)."""
    stored = bundles.joints_3d_keypoint_set
    if stored == "spin49":  # SPIN's preprocessed files: fixed slots, already root-centred
        if p.joint_set != "lsp14":
            raise EvaluationDataError(f"{bundles.path}: spin49 joints give SPIN's 14 evaluation joints only, "
                                      f"not {p.joint_set}")
        return [_SPIN_GT_OFFSET + j for j in _SPIN_J24_TO_J14], None
    target = get_keypoint_set("h36m17")
    source = get_keypoint_set(stored)
    by_point = {pt: i for i, pt in reversed(list(enumerate(source.points)))}
    wanted = [target.points[r] for r in p.h36m_rows] + [target.points[_PELVIS_H36M17]]
    missing = [w for w in wanted if w not in by_point]
    if missing:
        raise EvaluationDataError(f"{bundles.path}: its 3D joints ({stored}) lack the points {', '.join(missing)} "
                                  f"that protocol {p.name} evaluates")
    cols = [by_point[w] for w in wanted]
    return cols[:-1], cols[-1]


def select_samples(bundles: BundleFile, protocol: str | Protocol, body: Optional["BodyModel"] = None,
                   gt_bodies: Optional[Mapping[str, "BodyModel"]] = None) -> ProtocolSamples:
    """The protocol's (bundle, view) samples of a file and their ground-truth joints.

    Args:
        bundles: the bundle file.
        protocol: a name of :data:`PROTOCOLS` or a :class:`Protocol`.
        body: body model posing SMPL ground truth (``smpl`` protocols), e.g. the free model.
        gt_bodies: per gender (``"male"``, ``"female"``, ``"neutral"``) the model posing the
            ground truth of gendered protocols (3DPW); missing genders use ``body``.

    Returns:
        :class:`ProtocolSamples` in file order (bundle, then view).

    Raises:
        EvaluationDataError: see :func:`check_protocol_file`; also when no sample remains (e.g. a
            Human3.6M training file has no S9/S11 bundles) or a view lacks ground truth in its
            camera frame.
    """
    p = check_protocol_file(bundles, protocol)
    where = str(bundles.path)
    subjects = bundles.read_field("subject")
    frames = bundles.read_field("frame")
    cam_names = bundles.read_field("camera_names")  # (N, V)
    keep = np.ones(len(bundles), dtype=bool)
    if p.subjects is not None:
        keep &= np.isin(subjects, p.subjects)
    keep &= frames % p.frame_step == 0
    views = np.ones(cam_names.shape, dtype=bool) if p.cameras is None else np.isin(cam_names, p.cameras)
    pairs = np.argwhere(keep[:, None] & views)  # (M, 2) in file order
    if len(pairs) == 0:
        rule = []
        if p.subjects is not None:
            rule.append(f"subjects {', '.join(p.subjects)}")
        if p.frame_step > 1:
            rule.append(f"every {p.frame_step}th frame")
        if p.cameras is not None:
            rule.append(f"camera {', '.join(p.cameras)}")
        raise EvaluationDataError(f"{where}: no sample matches protocol {p.name} ({'; '.join(rule) or 'all'}); "
                                  f"the file holds subjects {', '.join(sorted(set(subjects.tolist()))[:8])} "
                                  f"(split {bundles.attrs.get('split')!r})")
    b_idx, v_idx = pairs[:, 0], pairs[:, 1]
    if p.ground_truth == "joints":
        gt = _joint_ground_truth(bundles, p, b_idx, v_idx)
    else:
        if body is None:
            raise ValueError(f"protocol {p.name} poses SMPL ground truth: pass body=")
        gt = _smpl_ground_truth(bundles, p, b_idx, v_idx, body, gt_bodies or {})
    return ProtocolSamples(bundle=b_idx, view=v_idx, gt_joints=gt, subject=subjects[b_idx],
                           sequence=bundles.read_field("sequence")[b_idx], frame=frames[b_idx],
                           camera=cam_names[b_idx, v_idx])


def _joint_ground_truth(bundles: BundleFile, p: Protocol, b_idx: np.ndarray, v_idx: np.ndarray) -> Tensor:
    cols, pelvis = _gt_columns(bundles, p)
    joints = bundles.read_field("joints_3d")[b_idx, :, :3].astype(np.float64)  # (M, K, 3)
    if bundles.joints_3d_frame == "world":
        R = bundles.read_field("camera_R")[b_idx, v_idx]  # (M, 3, 3)
        t = bundles.read_field("camera_t")[b_idx, v_idx]  # (M, 3)
        joints = np.einsum("mij,mkj->mki", R, joints) + t[:, None]
    else:  # "view0_camera": only view 0 has its camera frame
        if np.any(v_idx != 0):
            raise EvaluationDataError(f"{bundles.path}: 3D joints are stored in view 0's camera only (no cameras), "
                                      f"so views other than 0 cannot be evaluated; build the file with cameras")
    if pelvis is not None:
        joints = joints - joints[:, pelvis:pelvis + 1]
    return torch.from_numpy(joints[:, cols]).to(torch.float64)


def _smpl_ground_truth(bundles: BundleFile, p: Protocol, b_idx: np.ndarray, v_idx: np.ndarray,
                       body: "BodyModel", gt_bodies: Mapping[str, "BodyModel"]) -> Tensor:
    has = bundles.read_field("has_smpl")[b_idx]
    if not has.all():
        raise EvaluationDataError(f"{bundles.path}: {int((~has).sum())} of the protocol's bundles have no SMPL "
                                  f"ground truth (has_smpl false), e.g. bundle {int(b_idx[~has][0])}")
    orient = torch.from_numpy(bundles.read_field("smpl_global_orient")[b_idx].astype(np.float64))
    body_pose = torch.from_numpy(bundles.read_field("smpl_body_pose")[b_idx].astype(np.float64))
    betas = torch.from_numpy(bundles.read_field("smpl_betas")[b_idx].astype(np.float64))
    R = torch.from_numpy(bundles.read_field("camera_R")[b_idx, v_idx].astype(np.float64))
    # Centring on the pelvis removes the translation, so the camera rotation alone moves the
    # body into the camera frame (the rotation is about the pelvis or the origin alike).
    orient_cam = R @ axis_angle_to_matrix(orient)
    genders = bundles.read_field("smpl_gender")[b_idx] if p.gendered else np.full(len(b_idx), "neutral")
    out = torch.empty(len(b_idx), 17, 3, dtype=torch.float64)
    for gender in sorted(set(genders.tolist())):
        model = gt_bodies.get(gender, body)
        rows = torch.from_numpy(np.flatnonzero(genders == gender))
        out[rows] = _h36m17_centred(model, body_pose[rows], betas[rows], orient_cam[rows])
    return out[:, list(p.h36m_rows)]


def _h36m17_centred(body: "BodyModel", body_pose: Tensor, betas: Tensor, orient: Tensor,
                    chunk: int = 256) -> Tensor:
    """(N, 17, 3) float64 pelvis-centred ``h36m17`` keypoints of N bodies."""
    dev, dt = body.J_template.device, body.J_template.dtype
    parts = []
    with torch.no_grad():
        for s in range(0, len(betas), chunk):
            kp = body.keypoints("h36m17", body_pose[s:s + chunk].to(dev, dt), betas[s:s + chunk].to(dev, dt),
                                orient[s:s + chunk].to(dev, dt)).double().cpu()
            parts.append(kp - kp[:, _PELVIS_H36M17:_PELVIS_H36M17 + 1])
    if not parts:
        return torch.empty(0, 17, 3, dtype=torch.float64)
    return torch.cat(parts)


def predicted_joints(body: "BodyModel", rotmat: Tensor, betas: Tensor, protocol: str | Protocol) -> Tensor:
    """The protocol's joints of predicted bodies: ``h36m17`` keypoints centred on their pelvis.

    Args:
        body: the body model the regressor predicts for.
        rotmat: (N, 24, 3, 3) predicted rotations (joint 0: orientation in the camera frame).
        betas: (N, 10) predicted shapes.
        protocol: protocol name or :class:`Protocol`.

    Returns:
        (N, J, 3) float64, metres, in the protocol's joint order.
    """
    p = get_protocol(protocol)
    kp = _h36m17_centred(body, rotmat[:, 1:], betas, rotmat[:, 0])
    return kp[:, list(p.h36m_rows)]


def protocol_errors(pred_joints: Tensor, gt_joints: Tensor, protocol: str | Protocol) -> dict[str, Tensor]:
    """Per-sample metrics of a protocol from pelvis-centred joints in its order.

    Args:
        pred_joints: (N, J, 3) predicted joints (e.g. :func:`predicted_joints`), metres.
        gt_joints: (N, J, 3) ground truth (:attr:`ProtocolSamples.gt_joints`), metres.
        protocol: protocol name or :class:`Protocol`.

    Returns:
        name -> (N,) values: ``mpjpe`` and ``pa_mpjpe`` in mm; with PCK protocols also ``pck``,
        ``auc`` (after rigid alignment, all joints) and ``pck_unaligned``, ``auc_unaligned``
        (without alignment, the pelvis excluded) as shares in [0, 1].

    Example:
        >>> gt = torch.zeros(1, 14, 3); gt[0, :, 0] = torch.arange(14.) / 10; gt[0, ::2, 1] = 0.3
        >>> errors = protocol_errors(gt + torch.tensor([0.01, 0., 0.]), gt, "h36m-p1")
        >>> round(float(errors["mpjpe"][0]), 3), round(float(errors["pa_mpjpe"][0]), 3)
        (10.0, 0.0)
    """
    p = get_protocol(protocol)
    pred = pred_joints.to(torch.float64)
    gt = gt_joints.to(torch.float64)
    if pred.shape != gt.shape or pred.ndim != 3 or pred.shape[1:] != (p.num_joints, 3):
        raise ValueError(f"protocol {p.name}: expected pred and gt joints of shape (N, {p.num_joints}, 3), got "
                         f"{tuple(pred.shape)} and {tuple(gt.shape)}")
    out = {"mpjpe": mpjpe(pred, gt), "pa_mpjpe": pa_mpjpe(pred, gt)}
    if p.pck:
        aligned, _, _, _ = similarity_procrustes(pred, gt)
        out["pck"] = pck(aligned, gt, 150.0)
        out["auc"] = auc(aligned, gt)
        mask = torch.ones(pred.shape[:2], dtype=torch.bool)
        if p.root_index is not None:
            mask[:, p.root_index] = False
        out["pck_unaligned"] = pck(pred, gt, 150.0, mask=mask)
        out["auc_unaligned"] = auc(pred, gt, mask=mask)
    return out


@dataclass
class EvaluationResult:
    """Metrics of one protocol run.

    Attributes:
        protocol: the protocol's name. data: the bundle file. checkpoint: its path (or "").
        body_model: the body model's name. samples: the evaluated samples (ids, ground truth).
        errors: name -> (N,) per-sample values (:func:`protocol_errors`).
        pred_joints: (N, J, 3) predicted pelvis-centred joints, metres.
        seconds: wall time. extra: free-form entries kept in the JSON (e.g. training step).
    """

    protocol: str
    data: str
    checkpoint: str
    body_model: str
    samples: ProtocolSamples
    errors: dict[str, Tensor]
    pred_joints: Tensor
    seconds: float = 0.0
    extra: dict[str, Any] = field(default_factory=dict)

    def __len__(self) -> int:
        return len(self.samples)

    @property
    def metrics(self) -> dict[str, float]:
        """Mean of each metric: mm for errors, percent for PCK/AUC."""
        out = {}
        for name, values in self.errors.items():
            mean = float(values.double().mean())
            out[name] = 100.0 * mean if _METRIC_UNITS[name] == "%" else mean
        return out

    def table(self) -> str:
        """A text table of the mean metrics (and per subject for Human3.6M)."""
        names = list(self.errors)
        header = f"{'protocol':<14} {'samples':>8} " + " ".join(f"{n + ' (' + _METRIC_UNITS[n] + ')':>20}" for n in names)
        rows = [header, "-" * len(header)]

        def row(label: str, mask: np.ndarray) -> str:
            values = " ".join(f"{_mean(self.errors[n][torch.from_numpy(mask)], n):>20.2f}" for n in names)
            return f"{label:<14} {int(mask.sum()):>8} {values}"

        rows.append(row(self.protocol, np.ones(len(self), dtype=bool)))
        subjects = sorted(set(self.samples.subject.tolist()))
        if 1 < len(subjects) <= 8:
            for s in subjects:
                rows.append(row(f"  {s}", self.samples.subject == s))
        return "\n".join(rows)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready summary."""
        return {"protocol": self.protocol, "data": self.data, "checkpoint": self.checkpoint,
                "body_model": self.body_model, "samples": len(self), "metrics": self.metrics,
                "units": {n: _METRIC_UNITS[n] for n in self.errors}, "seconds": self.seconds,
                "source": PROTOCOLS[self.protocol].source if self.protocol in PROTOCOLS else "", **self.extra}

    def save(self, out_dir: str | Path, prefix: Optional[str] = None) -> tuple[Path, Path]:
        """Write ``<prefix>.json`` (the summary) and ``<prefix>_samples.npz`` (per-sample errors,
        ids and joints) into ``out_dir``, together or not at all; returns both paths."""
        out_dir = Path(out_dir)
        out_dir.mkdir(parents=True, exist_ok=True)
        prefix = prefix or f"eval_{self.protocol}"
        json_path, npz_path = out_dir / f"{prefix}.json", out_dir / f"{prefix}_samples.npz"
        arrays: dict[str, Any] = {n: v.double().numpy() for n, v in self.errors.items()}
        s = self.samples
        arrays.update(bundle=s.bundle, view=s.view, frame=s.frame, subject=s.subject.astype(str),
                      sequence=s.sequence.astype(str), camera=s.camera.astype(str),
                      pred_joints=self.pred_joints.numpy(), gt_joints=s.gt_joints.numpy())
        with OutputGroup() as group:
            with open(group.path(npz_path), "wb") as f:
                np.savez(f, **arrays)
            group.path(json_path).write_text(json.dumps(self.to_dict(), indent=2) + "\n", encoding="utf-8")
        return json_path, npz_path


def _mean(values: Tensor, name: str) -> float:
    mean = float(values.double().mean()) if values.numel() else float("nan")
    return 100.0 * mean if _METRIC_UNITS[name] == "%" else mean


def evaluate_predictions(rotmat: Tensor, betas: Tensor, samples: ProtocolSamples, body: "BodyModel",
                         protocol: str | Protocol) -> tuple[dict[str, Tensor], Tensor]:
    """Per-sample errors of predicted bodies against the samples' ground truth.

    Args:
        rotmat: (N, 24, 3, 3) and betas: (N, 10): one prediction per sample, in sample order.

    Returns:
        ``(errors, pred_joints)`` (see :func:`protocol_errors`, :func:`predicted_joints`).
    """
    if rotmat.shape[0] != len(samples) or betas.shape[0] != len(samples):
        raise ValueError(f"{len(samples)} samples but {rotmat.shape[0]} rotations and {betas.shape[0]} betas")
    pred = predicted_joints(body, rotmat, betas, protocol)
    return protocol_errors(pred, samples.gt_joints, protocol), pred


def evaluate(model: "HMRRegressor", body: "BodyModel", bundles: BundleFile | str | Path,
             protocol: str | Protocol, *, gt_bodies: Optional[Mapping[str, "BodyModel"]] = None,
             device: torch.device | str | None = None, batch_size: int = 32, input_size: int = 224,
             max_samples: Optional[int] = None, checkpoint: str = "",
             progress: Progress = no_progress) -> EvaluationResult:
    """Run a regressor on every sample of a protocol (one image each) and score it.

    Args:
        model: the regressor (put in eval mode). body: the body model it predicts for; it also
            poses SMPL ground truth where ``gt_bodies`` has no entry for the gender.
        bundles: the bundle file (or its path).
        protocol: protocol name or :class:`Protocol`.
        gt_bodies: gender -> body model for 3DPW's ground truth (SPIN: male and female SMPL).
        device: where the network runs (default: the model's device).
        batch_size: crops per network call.
        input_size: side of the network's input crops, pixels (SPIN: 224).
        max_samples: evaluate only the first samples (quick checks during training).
        checkpoint: recorded in the result.
        progress: told ``("eval <protocol>", samples done, samples)`` after each batch.

    Returns:
        the :class:`EvaluationResult`.

    Raises:
        EvaluationDataError: the file does not fit the protocol (before any network work).
        ConfigError: ``batch_size``, ``input_size`` or ``max_samples`` out of range.
    """
    from mvspin.regressor.predictor import Predictor

    check_range("batch_size", batch_size, 1, MAX_BATCH_SIZE, integer=True)
    check_range("input_size", input_size, MIN_INPUT_SIZE, MAX_INPUT_SIZE, integer=True)
    check_range("max_samples", max_samples, 1, integer=True)
    start = time.perf_counter()
    bundles = bundles if isinstance(bundles, BundleFile) else BundleFile(bundles)
    p = get_protocol(protocol)
    samples = select_samples(bundles, p, body, gt_bodies)
    if max_samples is not None and max_samples < len(samples):
        samples = _first(samples, max_samples)
    predictor = Predictor(model, body, device=device, batch_size=batch_size, input_size=input_size)
    centers = bundles.read_field("center")[samples.bundle, samples.view]
    scales = bundles.read_field("scale")[samples.bundle, samples.view]
    rotmats, betas = [], []
    n = len(samples)
    for s in range(0, n, batch_size):
        stop = min(s + batch_size, n)
        crops = torch.stack([predictor.crop(bundles.load_images(int(b), [int(v)])[0], centers[i], float(scales[i]))
                             for i, (b, v) in enumerate(zip(samples.bundle[s:stop], samples.view[s:stop]), s)])
        pred = predictor.predict_crops(crops, centers[s:stop], scales[s:stop], with_vertices=False)
        rotmats.append(pred.rotmat)
        betas.append(pred.betas)
        progress(f"eval {p.name}", stop, n)
    errors, pred_joints = evaluate_predictions(torch.cat(rotmats), torch.cat(betas), samples, body, p)
    return EvaluationResult(protocol=p.name, data=str(bundles.path), checkpoint=str(checkpoint),
                            body_model=body.name, samples=samples, errors=errors, pred_joints=pred_joints,
                            seconds=time.perf_counter() - start)


MIN_INPUT_SIZE, MAX_INPUT_SIZE = 32, 1024
"""Network input crop sides :func:`evaluate` accepts, pixels: ResNet's five stride-2 stages need
32 px for one cell; beyond 1024 px a crop costs gigabytes per batch and no checkpoint uses it."""
MAX_BATCH_SIZE = 4096
"""The largest ``batch_size`` :func:`evaluate` accepts (crops per network call)."""


def _first(samples: ProtocolSamples, n: int) -> ProtocolSamples:
    return ProtocolSamples(bundle=samples.bundle[:n], view=samples.view[:n], gt_joints=samples.gt_joints[:n],
                           subject=samples.subject[:n], sequence=samples.sequence[:n], frame=samples.frame[:n],
                           camera=samples.camera[:n])
