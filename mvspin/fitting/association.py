"""Subject association: which detection in each camera and frame is which person.

A 2D detector lists several people per camera and frame, in no particular order, sometimes
with left and right swapped, sometimes with joints far off. Before fitting, each subject's
detections are picked out consistently:

- **across views** by reprojection consensus: every pair of cameras and pair of detections
  proposes a 3D skeleton (two-view triangulation); a camera supports a proposal when one of its
  detections reprojects onto it (most joints within ``radius_m`` at the person's depth). The
  proposal with the most support is a person; each supporting camera contributes its best
  detection. Greedily repeated on the detections left, up to ``max_people`` per frame.
- **left/right flips**: each detection is also tried mirrored (keypoint set's flip
  permutation); a camera whose mirrored detection fits the consensus better contributes it
  swapped back. Ties go to the labelling most cameras agree on.
- **outlier joints**: joints of a chosen detection farther than ``radius_m`` from the
  consensus are given confidence 0.
- **across time** by tracking: people are linked frame to frame by their 3D centre (nearest,
  within a gate that grows with the gap); the ``num_subjects`` longest tracks are the subjects.
  A frame where a subject's track has no person leaves that subject undetected there: never
  filled with someone else.

Everything per frame is batched over blocks of frames (no Python loop over cameras or people
in the scoring); only the tracking walks the frames.
"""
from __future__ import annotations

import itertools
from dataclasses import dataclass
from typing import Optional

import torch
from torch import Tensor

from calibration import CameraTensors, Rig, point_distance, triangulate_points
from mvspin.body import get_keypoint_set
from mvspin.geometry import perspective_projection
from mvspin.progress import Progress, no_progress

__all__ = ["AssociationConfig", "Association", "associate_subjects", "camera_pair_agreement", "best_camera_order",
           "CameraOrder", "agreeing_cameras"]


@dataclass
class AssociationConfig:
    """How detections are associated to subjects."""

    radius_m: float = 0.15
    """A joint agrees with a 3D proposal when it reprojects within this distance (metres at the
    person's depth, turned into pixels per camera): about half a shoulder width, so a mirrored
    detection does not agree while 2-4 px of detector noise easily does."""
    outlier_joint_m: float = 0.06
    """A chosen detection's joint farther than this (metres at the person's depth) from the
    person's triangulated consensus is an outlier and gets confidence 0 (about 15 px at 4 m
    for a 1000 px focal length: several times 2-4 px detector noise)."""
    min_joints: int = 5
    """Joints a detection must share with a proposal to be judged at all."""
    min_agreement: float = 0.6
    """Share of the shared joints that must agree for a camera to support a proposal."""
    min_views: int = 2
    """Cameras that must support a person for it to count."""
    max_people: int = 4
    """People looked for per frame (subjects and bystanders)."""
    track_gate_m: float = 0.4
    """Largest 3D jump (metres) of a person's centre between consecutive frames ..."""
    track_speed_mps: float = 3.0
    """... plus this speed times the time since the track was last seen."""
    max_gap_s: float = 2.0
    """A track not seen for longer than this ends."""
    block_frames: int = 64
    """Frames scored together (bounds memory: the score tensor grows with V^2 P^2 K per frame)."""

    def __post_init__(self) -> None:
        from mvspin.config import check_range

        for name in ("radius_m", "outlier_joint_m", "track_gate_m"):
            check_range(f"association.{name}", getattr(self, name), 0, 100, low_open=True)
        check_range("association.track_speed_mps", self.track_speed_mps, 0, 1000)
        check_range("association.max_gap_s", self.max_gap_s, 0, 3600)
        check_range("association.min_agreement", self.min_agreement, 0, 1)
        check_range("association.min_joints", self.min_joints, 1, 1000, integer=True)
        check_range("association.min_views", self.min_views, 2, 1000, integer=True)
        check_range("association.max_people", self.max_people, 1, 64, integer=True)
        check_range("association.block_frames", self.block_frames, 1, 100000, integer=True)


@dataclass
class Association:
    """Per-subject detections picked out of a multi-person recording.

    Attributes:
        keypoints: ``(S, T, V, K, 3)`` each subject's keypoints per frame and camera, mirrored
            detections swapped back, outlier joints and cameras without the subject at 0.
        found: ``(S, T)`` bool, the subject was found (supported by ``min_views`` cameras).
        person_index: ``(S, T, V)`` the detection chosen in each camera's list (-1: none).
        flipped: ``(S, T, V)`` bool, the chosen detection was left/right swapped.
        rejected_joints: ``(S, T, V)`` joints of the chosen detection set to 0 as outliers.
        centre: ``(S, T, 3)`` the subject's triangulated centre, world units (0 where not found).
        track_length: ``(S,)`` frames each subject was found in.
    """

    keypoints: Tensor
    found: Tensor
    person_index: Tensor
    flipped: Tensor
    rejected_joints: Tensor
    centre: Tensor
    track_length: Tensor

    @property
    def num_subjects(self) -> int:
        return int(self.keypoints.shape[0])


def _pair_cameras(cams: CameraTensors, a: Tensor, b: Tensor) -> CameraTensors:
    """Cameras with leading dims ``(N, 2)``: view a[n] then b[n]."""
    def pick(x: Optional[Tensor]) -> Optional[Tensor]:
        return None if x is None else torch.stack([x[a], x[b]], 1)
    return CameraTensors(pick(cams.K), pick(cams.R), pick(cams.t), pick(cams.dist), pick(cams.image_size))


def _frame_people(cand: Tensor, cams: CameraTensors, config: AssociationConfig, flip_twin: int) -> list[list[dict]]:
    """People in a block of frames.

    Args:
        cand: ``(T, V, C, K, 3)`` candidates (detections, then their mirrored versions:
            candidate ``c`` and ``c + flip_twin`` are one detection).
    Returns:
        per frame a list of people, each ``{"assign": (V,) long, "points": (K, 3), "valid": (K,),
        "inliers": (V, K) bool}`` (assignment -1 where a camera does not support the person).
    """
    t, v, c, k, _ = cand.shape
    conf = cand[..., 2]
    seen = conf > 0
    usable = seen.sum(-1) >= config.min_joints  # (T, V, C)
    pairs = list(itertools.combinations(range(v), 2))
    # Proposals: camera a's detection i (as listed) with camera b's detection j. With 4 or more
    # cameras some pair always has neither camera flipped; with fewer, b is tried mirrored too.
    seeds_b = c if v <= 3 else flip_twin
    prop = [(a, b, i, j) for a, b in pairs for i in range(flip_twin) for j in range(seeds_b)]
    pa, pb, pi, pj = (torch.tensor(col) for col in zip(*prop))
    # Only proposals whose two detections exist are triangulated: most listed slots are empty
    # (a recording with one person and a passing bystander lists two), and the 4x4
    # eigendecompositions are most of the association's time.
    pair_usable = usable[:, pa, pi] & usable[:, pb, pj]  # (T, N)
    points = torch.zeros(t, len(prop), k, 3, dtype=cand.dtype)
    valid = torch.zeros(t, len(prop), k, dtype=torch.bool)
    rows, cols = pair_usable.nonzero(as_tuple=True)
    if rows.numel():
        sa, sb, si, sj = pa[cols], pb[cols], pi[cols], pj[cols]
        xy = torch.stack([cand[rows, sa, si, :, :2], cand[rows, sb, sj, :, :2]], 1)  # (M, 2, K, 2)
        w = torch.stack([conf[rows, sa, si], conf[rows, sb, sj]], 1)  # (M, 2, K)
        tri = triangulate_points(xy, w, _pair_cameras(cams, sa, sb), threshold_px=None)
        points[rows, cols], valid[rows, cols] = tri.points, tri.valid
    prop_ok = pair_usable & (valid.sum(-1) >= config.min_joints)

    # Reproject every proposal into every camera and compare with every candidate.
    uv = perspective_projection(points[:, :, None], cams.K, cams.R, cams.t, cams.dist)  # (T, N, V, K, 2)
    depth = torch.einsum("vj,tnkj->tnvk", cams.R[:, 2], points) + cams.t[:, None, 2]  # the z row only
    focal = 0.5 * (cams.K[:, 0, 0] + cams.K[:, 1, 1])
    thr = focal[:, None] * config.radius_m / depth.clamp_min(0.1)  # (T, N, V, K) pixels
    dist = point_distance(uv[:, :, :, None], cand[:, None, :, :, :, :2])  # (T, N, V, C, K)
    common = valid[:, :, None, None] & seen[:, None] & (depth > 0.1)[:, :, :, None]
    agree = common & (dist < thr[:, :, :, None])
    n_common = common.sum(-1)
    frac = agree.sum(-1) / n_common.clamp_min(1)
    mean_d = (dist * agree).sum(-1) / agree.sum(-1).clamp_min(1) / thr.mean(-1)[:, :, :, None].clamp_min(1e-6)
    score = torch.where((n_common >= config.min_joints) & usable[:, None], frac - 1e-3 * mean_d,
                        torch.full_like(frac, -1.0))  # (T, N, V, C)
    is_flip = (torch.arange(c) >= flip_twin)

    people: list[list[dict]] = [[] for _ in range(t)]
    taken = torch.zeros(t, v, flip_twin, dtype=torch.bool)  # detections already given to a person
    for _ in range(config.max_people):
        taken_c = torch.cat([taken, taken], -1)  # (T, V, C)
        s = torch.where(taken_c[:, None], torch.full_like(score, -1.0), score)
        best_s, best_c = s.max(-1)  # (T, N, V)
        support = best_s >= config.min_agreement
        alive = prop_ok & ~taken[:, pa, pi] & ~taken[:, pb, pj % flip_twin]
        n_support = support.sum(-1)
        n_flip = (support & is_flip[best_c]).sum(-1)
        quality = (best_s * support).sum(-1) / n_support.clamp_min(1)
        # Most supporting cameras first; then agreement (a proposal seeded by a wrong or
        # mirrored detection agrees less); last, fewer mirrored cameras (a consistently
        # mirrored labelling agrees as well as the true one).
        total = torch.where(alive & (n_support >= config.min_views),
                            n_support + 0.1 * quality - 0.001 * n_flip, torch.full_like(quality, -1.0))
        top, top_n = total.max(-1)  # (T,)
        frames = torch.nonzero(top > 0).flatten()
        if frames.numel() == 0:
            break
        sup = support[frames, top_n[frames]]  # (F, V)
        chosen = torch.where(sup, best_c[frames, top_n[frames]], torch.full_like(sup, -1, dtype=torch.long))
        # Labelling by majority: mirroring every camera's choice gives the same person with
        # left and right swapped, so when most supporting cameras use their mirrored detection
        # the whole assignment is mirrored back.
        mirrored = sup & (chosen >= flip_twin)
        swap = mirrored.sum(-1) * 2 > sup.sum(-1)
        twin = torch.where(chosen >= flip_twin, chosen - flip_twin, chosen + flip_twin)
        chosen = torch.where(swap[:, None] & sup, twin, chosen)
        # Final 3D of the person from all supporting cameras (robust to a remaining bad joint).
        idx = chosen.clamp_min(0)
        kp = torch.gather(cand[frames], 2, idx[:, :, None, None, None].expand(-1, -1, 1, k, 3))[:, :, 0]
        kp = kp * sup[:, :, None, None]
        full = triangulate_points(kp[..., :2], kp[..., 2], cams, threshold_px=20.0)
        uv_f = perspective_projection(full.points[:, None], cams.K, cams.R, cams.t, cams.dist)  # (F, V, K, 2)
        depth_f = torch.einsum("vj,fkj->fvk", cams.R[:, 2], full.points) + cams.t[None, :, 2:3]
        thr_f = focal[None, :, None] * config.outlier_joint_m / depth_f.clamp_min(0.1)
        close = point_distance(uv_f, kp[..., :2]) < thr_f
        seen_f = kp[..., 2] > 0
        # Only a strict majority of the cameras seeing a joint outvotes the rest: when as many
        # disagree as agree (two cameras with a leg's labels swapped against two without), the
        # consensus picks either pair depending on noise, and dropping the other pair makes the
        # joint flip between two places from frame to frame (jumps of the fit of ~1000 m/s^2 on
        # the real Pose2Sim demo). Such a joint keeps every view; the fit's robust data term
        # weighs them.
        majority = 2 * (close & seen_f).sum(1, keepdim=True) > seen_f.sum(1, keepdim=True)
        inliers = seen_f & (close | ~full.valid[:, None] | ~majority)
        for row, f in enumerate(frames.tolist()):
            people[f].append({"assign": chosen[row], "points": full.points[row], "valid": full.valid[row],
                              "inliers": inliers[row], "keypoints": kp[row]})
        newly = torch.zeros_like(taken[frames])
        newly.scatter_(2, (idx % flip_twin)[..., None], sup[..., None])
        taken[frames] |= newly
    return people


def _mirror(person: dict, perm: Tensor, flip_twin: int) -> None:
    """Swap a person's left and right (every camera's detection for its mirrored twin)."""
    a = person["assign"]
    person["assign"] = torch.where(a < 0, a, torch.where(a >= flip_twin, a - flip_twin, a + flip_twin))
    for name in ("points", "valid"):
        person[name] = person[name][perm]
    person["inliers"] = person["inliers"][:, perm]
    person["keypoints"] = person["keypoints"][:, perm]


def _consistent_labelling(track: list[dict], perm: Tensor, flip_twin: int) -> None:
    """Make left and right agree along a track (in place).

    Where few clean cameras see a frame, the consensus can come out mirrored (left labelled
    right). Each frame is compared with the previous one: if its mirror is closer, it is
    mirrored. Then, if most of the track's camera choices are mirrored detections, the whole
    track is (the detector is right more often than not).
    """
    prev = None
    for person in track:
        if prev is not None:
            both = person["valid"] & prev["valid"]
            both_m = person["valid"][perm] & prev["valid"]
            if int(both.sum()) >= 3 and int(both_m.sum()) >= 3:
                d_same = torch.linalg.vector_norm(person["points"] - prev["points"], dim=-1)[both].mean()
                d_mirr = torch.linalg.vector_norm(person["points"][perm] - prev["points"], dim=-1)[both_m].mean()
                if d_mirr < d_same:
                    _mirror(person, perm, flip_twin)
        prev = person
    used = sum(int((p["assign"] >= 0).sum()) for p in track)
    mirrored = sum(int((p["assign"] >= flip_twin).sum()) for p in track)
    if mirrored * 2 > used:
        for person in track:
            _mirror(person, perm, flip_twin)


def associate_subjects(
    detections: Tensor,
    cameras: Rig | CameraTensors,
    keypoint_set: str,
    num_subjects: int = 1,
    config: Optional[AssociationConfig] = None,
    fps: float = 30.0,
    progress: Progress = no_progress,
) -> Association:
    """Pick each subject's detections out of a multi-person recording.

    Args:
        detections: ``(T, V, P, K, 3)`` image pixels and confidence per frame, camera and
            listed person (rows of zeros where a camera lists fewer than P people).
        cameras: the rig (V cameras, world units metres).
        keypoint_set: the detections' keypoint set (its left/right names give the flips).
        num_subjects: subjects to return, longest tracks first.
        fps: frame rate (the tracking gate grows with the time between sightings).
        progress: :class:`~mvspin.progress.Progress`, stage ``"associate"``: frames done after each block.

    Returns:
        :class:`Association` with ``S = num_subjects``.
    """
    c = config or AssociationConfig()
    kset = get_keypoint_set(keypoint_set)
    if detections.ndim != 5 or detections.shape[-2:] != (len(kset), 3):
        raise ValueError(f"detections must be (T, V, P, {len(kset)}, 3) {keypoint_set} keypoints, "
                         f"got {tuple(detections.shape)}")
    if num_subjects < 1:
        raise ValueError(f"num_subjects must be >= 1, got {num_subjects}")
    cams = cameras.to_torch(torch.float64) if isinstance(cameras, Rig) else cameras.to(dtype=torch.float64)
    t, v, p, k, _ = detections.shape
    if cams.K.shape[0] != v:
        raise ValueError(f"detections are for {v} cameras but the rig has {cams.K.shape[0]}")
    det = torch.nan_to_num(detections.to(torch.float64))
    det = torch.where((det[..., 2:] > 0), det, torch.zeros_like(det))
    perm = torch.tensor(kset.flip_permutation)
    cand = torch.cat([det, det[..., perm, :]], 2)  # (T, V, 2P, K, 3)

    people: list[list[dict]] = []
    for start in range(0, t, c.block_frames):
        people.extend(_frame_people(cand[start:start + c.block_frames], cams, c, p))
        progress("associate", min(t, start + c.block_frames), t)

    # Tracking: link people frame to frame by their 3D centre.
    tracks: list[dict] = []
    max_gap = max(1, int(round(c.max_gap_s * fps)))
    for f, frame in enumerate(people):
        centres = []
        for person in frame:
            ok = person["valid"]
            centres.append(person["points"][ok].mean(0) if bool(ok.any()) else None)
        active = [tr for tr in tracks if f - tr["last"] <= max_gap]
        pairs = []
        for pi_, cen in enumerate(centres):
            if cen is None:
                continue
            for ti, tr in enumerate(active):
                gap = f - tr["last"]
                d = float(torch.linalg.vector_norm(cen - tr["centre"]))
                if d <= c.track_gate_m + c.track_speed_mps * gap / fps:
                    pairs.append((d, pi_, ti))
        used_p, used_t = set(), set()
        for d, pi_, ti in sorted(pairs):
            if pi_ in used_p or ti in used_t:
                continue
            used_p.add(pi_)
            used_t.add(ti)
            tr = active[ti]
            tr["frames"][f] = pi_
            tr["centre"], tr["last"] = centres[pi_], f
        for pi_, cen in enumerate(centres):
            if pi_ not in used_p and cen is not None:
                tracks.append({"frames": {f: pi_}, "centre": cen, "last": f})

    tracks.sort(key=lambda tr: (-len(tr["frames"]), min(tr["frames"])))
    s = num_subjects
    for tr in tracks[:s]:
        _consistent_labelling([people[f][pi_] for f, pi_ in sorted(tr["frames"].items())], perm, p)
    keypoints = torch.zeros(s, t, v, k, 3, dtype=detections.dtype)
    found = torch.zeros(s, t, dtype=torch.bool)
    person_index = torch.full((s, t, v), -1, dtype=torch.long)
    flipped = torch.zeros(s, t, v, dtype=torch.bool)
    rejected = torch.zeros(s, t, v, dtype=torch.long)
    centre = torch.zeros(s, t, 3, dtype=torch.float64)
    for si, tr in enumerate(tracks[:s]):
        for f, pi_ in tr["frames"].items():
            person = people[f][pi_]
            assign, kp, inl = person["assign"], person["keypoints"], person["inliers"]
            keypoints[si, f] = (kp * inl[..., None]).to(detections.dtype)
            found[si, f] = True
            person_index[si, f] = torch.where(assign >= 0, assign % p, assign)
            flipped[si, f] = assign >= p
            rejected[si, f] = ((kp[..., 2] > 0) & ~inl).sum(-1)
            ok = person["valid"]
            centre[si, f] = person["points"][ok].mean(0)
    track_length = found.sum(-1)
    return Association(keypoints, found, person_index, flipped, rejected, centre, track_length)


def camera_pair_agreement(detections: Tensor, cameras: Rig | CameraTensors, max_frames: int = 12,
                          budget: int = 1_000_000, given_order: bool = False) -> Tensor:
    """How well each pair of keypoint sources agrees with each pair of cameras' geometry.

    Two cameras' views of one person triangulate together: the 2D points of source ``i`` seen
    through camera ``a`` and of source ``j`` through camera ``b`` meet in 3D (small two-view
    reprojection residual) only when ``i`` is ``a``'s keypoints and ``j`` is ``b``'s. This scores
    every assignment of a pair of sources to a pair of cameras, so a keypoint-folder order can
    be checked against (or recovered from) the calibration.

    Args:
        detections: ``(T, V, P, K, 3)`` pixels and confidence per frame, source and person.
        cameras: the V calibrated cameras (metres).
        max_frames: frames used at most (those with the most detections).
        budget: triangulations per call at most (fewer frames for large rigs).
        given_order: score only source ``a`` as camera ``a`` (``E[a, b, a, b]``; the rest inf).
    Returns:
        ``(V, V, V, V)`` residual ``E[i, j, a, b]`` in metres at the person's depth (median over
        frames of the best-matching pair of people; ``inf`` where they never triangulate).
    """
    cams = cameras.to_torch(torch.float64) if isinstance(cameras, Rig) else cameras.to(dtype=torch.float64)
    det = torch.nan_to_num(torch.as_tensor(detections).to(torch.float64))
    t, v, p, k, _ = det.shape
    out = torch.full((v, v, v, v), float("inf"), dtype=torch.float64)
    if v < 2:
        return out
    combos = [(i, j, a, b) for i, j in itertools.combinations(range(v), 2) for a in range(v) for b in range(v)
              if a != b and (not given_order or (a, b) == (i, j))]
    fi, fj, ca, cb = (torch.tensor(col) for col in zip(*combos))
    n = len(combos)
    per_frame = max(1, n * p * p * k)
    count = (det[..., 2] > 0).sum((-1, -2)).amin(-1)  # (T,) joints seen by the emptiest source
    frames = torch.argsort(count, descending=True)[:max(2, min(max_frames if not given_order else 4 * max_frames,
                                                              budget // per_frame))]
    frames = frames[count[frames] > 0]
    if frames.numel() == 0:
        return out
    d = det[frames]  # (F, V, P, K, 3)
    pi, pj = (x.flatten() for x in torch.meshgrid(torch.arange(p), torch.arange(p), indexing="ij"))
    a_kp = d[:, fi][:, :, pi]  # (F, N, PP, K, 3)
    b_kp = d[:, fj][:, :, pj]
    xy = torch.stack([a_kp[..., :2], b_kp[..., :2]], 3)  # (F, N, PP, 2, K, 2)
    w = torch.stack([a_kp[..., 2], b_kp[..., 2]], 3)  # (F, N, PP, 2, K)
    pair = _pair_cameras(cams, ca, cb)  # (N, 2)
    pair_pp = CameraTensors(*(None if x is None else x[:, None] for x in
                              (pair.K, pair.R, pair.t, pair.dist, pair.image_size)))  # (N, 1, 2)
    tri = triangulate_points(xy, w, pair_pp, threshold_px=None)
    pts = tri.points  # (F, N, PP, K, 3)
    uv = perspective_projection(pts[:, :, :, None], pair_pp.K, pair_pp.R, pair_pp.t, pair_pp.dist)  # (F,N,PP,2,K,2)
    depth = torch.einsum("nvj,fnpkj->fnpvk", pair.R[..., 2, :], pts) + pair.t[None, :, None, :, None, 2]
    focal = 0.5 * (pair.K[..., 0, 0] + pair.K[..., 1, 1])  # (N, 2)
    metres = point_distance(uv, xy) * depth / focal[None, :, None, :, None]
    ok = tri.valid & (w > 0).all(3) & (depth > 0.1).all(3)  # (F, N, PP, K)
    metres = torch.where(ok, metres.amax(3), torch.full_like(metres[:, :, :, 0], float("inf")))
    enough = ok.sum(-1) >= 5
    med = torch.where(enough, torch.nan_to_num(metres, posinf=1e9).median(-1).values,
                      torch.full_like(enough, float("inf"), dtype=torch.float64))
    best = med.amin(2)  # (F, N): the best-matching people
    finite = torch.isfinite(best)
    for c in range(n):
        col = best[finite[:, c], c]
        if col.numel():
            value = float(col.median())
            i, j, a, b = combos[c]
            out[i, j, a, b] = out[j, i, b, a] = value
    return out


@dataclass
class CameraOrder:
    """Which keypoint source belongs to which camera, judged by the geometry.

    Attributes:
        order: ``order[a]`` the source that is camera ``a``'s (the best assignment found).
        residual_m: mean over camera pairs of the two-view residual of ``order`` (metres).
        given_residual_m: the same for the given order (source ``a`` is camera ``a``).
        pair_residual_m: ``(V, V)`` residual of each camera pair under ``order`` (metres; inf:
            never triangulate).
        searched: every permutation was tried (rigs of up to 8 cameras).
    """

    order: list[int]
    residual_m: float
    given_residual_m: float
    pair_residual_m: Tensor
    searched: bool

    @property
    def reordered(self) -> bool:
        return self.order != list(range(len(self.order)))


def _order_costs(agree: Tensor, orders: Tensor) -> Tensor:
    """Mean capped pair residual ``(M,)`` of each assignment ``orders`` ``(M, V)``."""
    v = orders.shape[1]
    a, b = (torch.tensor(x) for x in zip(*itertools.combinations(range(v), 2)))
    vals = agree[orders[:, a], orders[:, b], a, b].clamp_max(10.0)  # (M, pairs)
    return vals.mean(-1)


def best_camera_order(agree: Tensor, max_search: int = 8) -> CameraOrder:
    """The assignment of sources to cameras that agrees best with the geometry.

    Args:
        agree: ``(V, V, V, V)`` from :func:`camera_pair_agreement`.
        max_search: rigs up to this many cameras try every permutation (8! = 40320); larger
            rigs keep the given order and only score it.
    """
    v = agree.shape[0]
    given = list(range(v))
    given_cost = float(_order_costs(agree, torch.tensor([given]))[0])
    best, best_cost, searched = given, given_cost, v <= max_search
    if searched and v > 1:
        perms = torch.tensor(list(itertools.permutations(range(v))))
        costs = _order_costs(agree, perms)
        i = int(torch.argmin(costs))
        if float(costs[i]) < given_cost - 1e-9:
            best, best_cost = perms[i].tolist(), float(costs[i])
    pair = torch.full((v, v), float("inf"), dtype=torch.float64)
    for a in range(v):
        for b in range(v):
            if a != b:
                pair[a, b] = agree[best[a], best[b], a, b]
    return CameraOrder(best, best_cost, given_cost, pair, searched)


def agreeing_cameras(pair_residual_m: Tensor, floor_m: float = 0.06, noise_factor: float = 4.0) -> list[int]:
    """The largest group of cameras whose every pair triangulates together.

    A pair agrees when its residual is within ``max(floor_m, noise_factor x`` the best pair's
    residual): the best pair sets the rig's noise level, so cameras that agree only loosely (two
    cameras with swapped extrinsics see a consistent mirrored person, 7-16 cm off) are not taken
    for agreeing ones (about 1 cm for 2-4 px noise at 4 m).

    Args:
        pair_residual_m: ``(V, V)`` residual of each camera pair (metres, inf: never meet),
            e.g. ``E[a, b, a, b]`` of :func:`camera_pair_agreement`.
    Returns:
        The group's camera indices, increasing (ties: the lower mean residual); all cameras
        when no pair meets at all.
    """
    v = pair_residual_m.shape[0]
    finite = pair_residual_m[torch.isfinite(pair_residual_m)]
    if finite.numel() == 0:
        return list(range(v))
    thr = max(floor_m, noise_factor * float(finite.min()))
    ok = (pair_residual_m <= thr).tolist()
    best: list[int] = []
    best_cost = float("inf")
    sizes = range(v, 1, -1) if v <= 12 else range(0)
    for size in sizes:
        for group in itertools.combinations(range(v), size):
            if all(ok[a][b] for a, b in itertools.combinations(group, 2)):
                cost = sum(float(pair_residual_m[a, b]) for a, b in itertools.combinations(group, 2))
                if cost < best_cost:
                    best, best_cost = list(group), cost
        if best:
            return best
    return list(range(v))
