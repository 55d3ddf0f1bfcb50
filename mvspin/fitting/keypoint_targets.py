"""Map a named 2D keypoint set onto the keypoints a body model can produce, with weights.

Users bring keypoints in their detector's convention (``openpose25``, ``coco17``, ``halpe26``,
``spin49``, ...). The fitter evaluates one keypoint set on the body model (the data's own set
when the model can make it, otherwise the available set sharing the most anatomical points) and
compares matched pairs. Keypoints the model cannot place are ignored (listed in
:attr:`KeypointTargets.ignored`).

Weights per matched keypoint:
- ``keypoint_weights`` from the config, by the data set's keypoint names (default 1);
- keypoints on ``ignored_points`` (anatomical point names, e.g. the detector hips, which sit
  higher and wider than SMPL's hip joints) get weight 0 in the body stage, as SPIN's
  ``ign_joints``;
- stage 1 uses only the torso (shoulders and hips). For sets holding both a detector's and
  ground-truth torso keypoints (``spin49``), :attr:`KeypointTargets.torso_primary` marks the
  detector's four and :attr:`KeypointTargets.torso_fallback` the ground-truth ones (SPIN's
  stage 1 uses the first when all four are detected, else the second).
"""
from __future__ import annotations

import warnings
from dataclasses import dataclass
from typing import Mapping, Sequence

import torch
from torch import Tensor

from mvspin.body import BodyModel, KeypointSetUnavailable, get_keypoint_set, keypoint_index_map
from mvspin.errors import check_shape

__all__ = ["KeypointTargets", "DETECTOR_TORSO", "TORSO_POINTS"]

DETECTOR_TORSO: dict[str, tuple[str, ...]] = {
    "spin49": ("op_right_hip", "op_left_hip", "op_right_shoulder", "op_left_shoulder"),
}
"""Keypoint names of the detector's torso in sets that also hold ground-truth torso keypoints
(SPIN's ``OP RHip, OP LHip, OP RShoulder, OP LShoulder``)."""

TORSO_POINTS: frozenset[str] = frozenset({
    "left_shoulder", "right_shoulder", "left_hip", "right_hip", "lsp_left_hip", "lsp_right_hip",
    "h36m_left_shoulder", "h36m_right_shoulder", "h36m_left_hip", "h36m_right_hip",
})
"""Anatomical points that stage 1 (orientation and translation) fits: shoulders and hips."""


@dataclass(frozen=True)
class KeypointTargets:
    """Matched pairs between a data keypoint set and a keypoint set evaluated on the body model.

    Attributes:
        data_set: the data's keypoint set name (K_data keypoints).
        model_set: the set evaluated on the body model (K_model keypoints).
        data_index: ``(M,)`` indices into the data keypoints.
        model_index: ``(M,)`` indices into the model keypoints (same anatomical point).
        weights: ``(M,)`` body-stage weights.
        torso: ``(M,)`` bool, keypoints used in stage 1.
        torso_primary: ``(M,)`` bool, the detector's torso keypoints (all torso keypoints for
            sets without ground-truth ones).
        torso_fallback: ``(M,)`` bool, the other torso keypoints (``spin49``'s ground truth).
        names: the M matched data keypoint names.
        ignored: data keypoint names the model cannot place.
        gather_model: False when ``model_index`` is ``0..K_model-1`` (no gather needed).
    """

    data_set: str
    model_set: str
    data_index: Tensor
    model_index: Tensor
    weights: Tensor
    torso: Tensor
    torso_primary: Tensor
    torso_fallback: Tensor
    names: tuple[str, ...]
    ignored: tuple[str, ...]
    gather_model: bool = True

    @classmethod
    def build(
        cls,
        body: BodyModel,
        data_set: str,
        keypoint_weights: Mapping[str, float] | None = None,
        ignored_points: Sequence[str] = ("left_hip", "right_hip"),
    ) -> "KeypointTargets":
        """Match ``data_set`` to the keypoints ``body`` can produce.

        ``ignored_points`` (anatomical point names) get weight 0 in the body stage; the default
        is the detector hips.

        Raises:
            KeyError: unknown set, or a ``keypoint_weights`` name the set does not have.
            ValueError: the model can place none of the set's keypoints.
        """
        data = get_keypoint_set(data_set)
        keypoint_weights = dict(keypoint_weights or {})
        unknown = sorted(set(keypoint_weights) - set(data.names))
        if unknown:
            raise KeyError(f"keypoint_weights names {unknown} are not in {data_set}; it has {', '.join(data.names)}")
        model_set = _best_model_set(body, data_set)
        pairs = keypoint_index_map(data_set, model_set) if model_set else []
        if not pairs:
            raise ValueError(f"body model {body.name} cannot place any keypoint of {data_set}")
        matched = {i for i, _ in pairs}
        ignored = tuple(n for i, n in enumerate(data.names) if i not in matched)
        if ignored:
            warnings.warn(f"{body.name} cannot place {data_set} keypoints {', '.join(ignored)}: they are ignored",
                          stacklevel=2)
        zero_weight = set(ignored_points)
        detector_torso = set(DETECTOR_TORSO.get(data_set, ()))
        weights, torso, primary, names = [], [], [], []
        for i, _ in pairs:
            name = data.names[i]
            weights.append(0.0 if data.points[i] in zero_weight else keypoint_weights.get(name, 1.0))
            is_torso = data.points[i] in TORSO_POINTS
            torso.append(is_torso)
            primary.append(is_torso and (not detector_torso or name in detector_torso))
            names.append(name)
        device = body.J_template.device
        model_index = [j for _, j in pairs]
        return cls(
            data_set=data_set,
            model_set=model_set,
            data_index=torch.tensor([i for i, _ in pairs], dtype=torch.long, device=device),
            model_index=torch.tensor(model_index, dtype=torch.long, device=device),
            weights=torch.tensor(weights, dtype=body.J_template.dtype, device=device),
            torso=torch.tensor(torso, dtype=torch.bool, device=device),
            torso_primary=torch.tensor(primary, dtype=torch.bool, device=device),
            torso_fallback=torch.tensor([t and not p for t, p in zip(torso, primary)], dtype=torch.bool, device=device),
            names=tuple(names),
            ignored=ignored,
            gather_model=model_index != list(range(len(get_keypoint_set(model_set)))),
        )

    @property
    def num_data_keypoints(self) -> int:
        return len(get_keypoint_set(self.data_set))

    def select(self, keypoints: Tensor) -> Tensor:
        """Data keypoints ``(..., K_data, C)`` -> matched ``(..., M, C)``."""
        check_shape(f"{self.data_set} keypoints", keypoints, ["*", self.num_data_keypoints, None])
        return keypoints.index_select(-2, self.data_index.to(keypoints.device))

    def model_keypoints(self, keypoints: Tensor) -> Tensor:
        """Model keypoints ``(..., K_model, 3)`` -> matched ``(..., M, 3)``."""
        if not self.gather_model:
            return keypoints
        return keypoints.index_select(-2, self.model_index.to(keypoints.device))

    def to(self, device: torch.device | str) -> "KeypointTargets":
        """The same targets with index and weight tensors on ``device``."""
        return KeypointTargets(self.data_set, self.model_set, self.data_index.to(device), self.model_index.to(device),
                               self.weights.to(device), self.torso.to(device), self.torso_primary.to(device),
                               self.torso_fallback.to(device), self.names, self.ignored, self.gather_model)


def _best_model_set(body: BodyModel, data_set: str) -> str:
    """The data's own set when the model can make it, else the available set covering most of
    its anatomical points (fewest keypoints on ties, so the fitter evaluates the least)."""
    try:
        body.keypoint_map(data_set)
        return data_set
    except KeypointSetUnavailable:
        pass
    best, best_key = "", (0, 0)
    for name in body.available_keypoint_sets:
        covered = len(keypoint_index_map(data_set, name))
        key = (covered, -len(get_keypoint_set(name)))
        if covered and key > best_key:
            best, best_key = name, key
    return best
