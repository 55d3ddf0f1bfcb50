"""Rig recordings: subject association and sequence fitting on synthetic recordings with known
ground truth (Z-up world, 2-4 px noise, 10% dropped joints, left/right flips in one camera,
outlier detections in another, a bystander listed first in some cameras)."""
from __future__ import annotations

import pytest
import torch

from mvspin.body import BodyModel
from mvspin.data.synthetic_recording import RecordingOptions, make_rig_recording
from mvspin.errors import NoFrameFittedError
from mvspin.fitting import MVSMPLify, MVSMPLifyConfig
from mvspin.fitting.association import associate_subjects
from mvspin.fitting.sequence import SequenceFitConfig, fit_sequence
from mvspin.geometry import axis_angle_to_matrix


@pytest.fixture(scope="module")
def body() -> BodyModel:
    return BodyModel.free("low")


def _gt_keypoints(body, rec):
    g = rec.gt
    return body.keypoints("openpose25", g.body_pose, g.betas, axis_angle_to_matrix(g.global_orient), g.transl)


def _acceleration(x):
    return x[2:] - 2 * x[1:-1] + x[:-2]


def _errors_mm(pred, gt):
    err = float((pred - gt).norm(dim=-1).mean()) * 1000
    acc = float((_acceleration(pred) - _acceleration(gt)).norm(dim=-1).mean()) * 1000
    return err, acc


def test_subject_keypoints_are_the_subjects_slot_wherever_it_is_listed(body):
    rec = make_rig_recording(body, RecordingOptions(num_frames=40, num_views=4), seed=3)
    kp = rec.subject_keypoints()
    t, v, _, k, _ = rec.detections.shape
    assert kp.shape == (t, v, k, 3)
    assert (rec.subject_index == 1).any() and (rec.subject_index == 0).any()  # both slots occur
    for f in range(t):
        for c in range(v):
            i = int(rec.subject_index[f, c])
            expected = rec.detections[f, c, i] if i >= 0 else torch.zeros(k, 3)
            assert torch.equal(kp[f, c], expected), (f, c, i)


def test_association_picks_the_subject_in_every_frame(body):
    rec = make_rig_recording(body, RecordingOptions(num_frames=100, num_views=6), seed=3)
    assert rec.bystander.any() and (rec.subject_index == 1).any()  # the bystander is listed first somewhere
    a = associate_subjects(rec.detections, rec.rig, "openpose25")
    assert bool(a.found.all())
    chosen, truth = a.person_index[0], rec.subject_index
    # Never the bystander: either the subject's detection or none (only for outlier detections).
    assert bool(((chosen == truth) | (chosen == -1)).all())
    assert bool((rec.outlier[chosen == -1]).all())
    assert int((chosen == -1).sum()) <= int(rec.outlier.sum())
    # Flipped detections are recognised and swapped back; in a side view where a flip barely
    # shows, the few joints that disagree are dropped instead. No clean detection is swapped.
    assert int((a.flipped[0] & rec.flipped).sum()) >= 0.75 * int(rec.flipped.sum())
    assert int((a.flipped[0] & ~rec.flipped).sum()) <= 1
    truth_uv = torch.as_tensor(rec.rig.project(_gt_keypoints(body, rec).double().numpy()), dtype=torch.float32)
    kept = a.keypoints[0, ..., 2] > 0
    off = (a.keypoints[0, ..., :2] - truth_uv).norm(dim=-1) > 20  # pixels; noise is 2-4 px
    assert int((kept & off)[rec.flipped].sum()) <= 0.02 * int(kept[rec.flipped].sum())
    assert int((kept & off).sum()) <= 0.005 * int(kept.sum())
    # Outlier joints are dropped, clean detections keep theirs.
    assert float(a.rejected_joints[0][rec.outlier].float().mean()) > 3
    assert float(a.rejected_joints[0][~rec.outlier].float().mean()) < 0.05


def test_two_subjects_keep_their_ids(body):
    opt = RecordingOptions(num_frames=40, num_views=4, bystander_rate=1.0, flip_view=None, outlier_view=None)
    rec = make_rig_recording(body, opt, seed=5)
    a = associate_subjects(rec.detections, rec.rig, "openpose25", num_subjects=2)
    truth = rec.subject_index  # the subject's slot; the bystander has the other one
    subject = int((a.person_index[0] == truth).float().mean() > 0.5) ^ 1  # which id is the recording's subject
    assert bool(a.found[subject].all()) and float(a.found[1 - subject].float().mean()) > 0.9
    ids = (a.person_index[subject], a.person_index[1 - subject])
    assert bool((ids[0] == truth).all())
    # The bystander is sometimes outside a camera's picture: then no detection, never the subject's.
    other = torch.gather(rec.detections[..., 2], 2, (1 - truth)[..., None, None].expand(-1, -1, 1, 25))[:, :, 0]
    visible = (other > 0).sum(-1) >= 8
    assert bool(((ids[1] == 1 - truth) | (ids[1] == -1)).all())
    assert float((ids[1] == 1 - truth)[visible].float().mean()) > 0.9, (ids[1], visible)


def test_sequence_fit_accuracy_and_smoothness(body):
    torch.manual_seed(0)
    rec = make_rig_recording(body, RecordingOptions(num_frames=120, num_views=4), seed=1)
    a = associate_subjects(rec.detections, rec.rig, "openpose25")
    kp = a.keypoints[0]
    gt = _gt_keypoints(body, rec)
    result = fit_sequence(body, kp, rec.rig, "openpose25")
    assert bool(result.fitted.all())
    assert result.betas.shape == (body.num_betas,)
    pred = body.keypoints("openpose25", result.body_pose, result.betas.expand(result.num_frames, -1),
                          result.global_orient, result.transl)
    err, acc = _errors_mm(pred, gt)
    per_frame = MVSMPLify(body, MVSMPLifyConfig(mode="calibrated"), "openpose25").fit_calibrated(kp, rec.rig)
    pf = body.keypoints("openpose25", per_frame.body_pose, per_frame.betas, per_frame.world_orient,
                        per_frame.world_transl)
    err_pf, acc_pf = _errors_mm(pf, gt)
    assert err <= 10.0, (err, err_pf)
    assert acc <= 0.5 * acc_pf, (acc, acc_pf)
    assert float(result.reprojection_error.median()) < 5.0  # pixels, against 2-4 px noise

    # The same recording in two chunks sharing 12 frames: one betas, no jump at the seam.
    chunked = fit_sequence(body, kp, rec.rig, "openpose25", SequenceFitConfig(chunk_frames=70, chunk_overlap=12))
    pc = body.keypoints("openpose25", chunked.body_pose, chunked.betas.expand(120, -1), chunked.global_orient,
                        chunked.transl)
    err_c, acc_c = _errors_mm(pc, gt)
    assert err_c <= 11.0 and acc_c <= 0.5 * acc_pf, (err_c, acc_c)
    seam = (_acceleration(pc) - _acceleration(gt)).norm(dim=-1).mean(-1)[54:72]  # frames 55..72 around the overlap
    assert float(seam.max()) * 1000 < 3 * acc_c


def test_frames_nobody_sees_are_carried_and_flagged(body):
    opt = RecordingOptions(num_frames=40, num_views=4, flip_view=None, outlier_view=None, bystander_rate=0.0)
    rec = make_rig_recording(body, opt, seed=2)
    kp = rec.detections[:, :, 0].clone()
    kp[15:18] = 0  # three frames with no detection in any camera
    cfg = SequenceFitConfig(refine_iterations=40, keyframe=MVSMPLifyConfig(
        mode="calibrated", stage1_iterations=30, stage2_iterations=30, triangulation_fit_iterations=50))
    result = fit_sequence(body, kp, rec.rig, "openpose25", cfg)
    assert result.fitted.tolist() == [not 15 <= t < 18 for t in range(40)]
    assert bool(torch.isinf(result.reprojection_error[15:18]).all())
    pred = body.keypoints("openpose25", result.body_pose, result.betas.expand(40, -1), result.global_orient,
                          result.transl)
    gt = _gt_keypoints(body, rec)
    gap = float((pred[15:18] - gt[15:18]).norm(dim=-1).mean())
    assert gap < 0.05  # carried through the gap by smoothness, within 5 cm


def test_no_usable_frame_is_a_clear_error(body):
    rig = make_rig_recording(body, RecordingOptions(num_frames=2, bystander_rate=0.0), seed=0).rig
    with pytest.raises(NoFrameFittedError, match="no frame of the recording could be fitted"):
        fit_sequence(body, torch.zeros(5, 4, 25, 3), rig, "openpose25")
    with pytest.raises(ValueError, match="keypoints are for 3 cameras but the rig has 4"):
        fit_sequence(body, torch.zeros(5, 3, 25, 3), rig, "openpose25")


def test_recording_fit_tells_an_unfittable_subject_by_its_error_class(body, monkeypatch):
    """fit_recording turns fit_sequence's NoFrameFittedError into a RecordingError naming the
    subject; any other error passes through unchanged (no message text decides)."""
    import mvspin.fitting.recording as recording
    from mvspin.errors import RecordingError

    rec = make_rig_recording(body, RecordingOptions(num_frames=2, bystander_rate=0.0), seed=0)

    def fail_with(err):
        def fit(*args, **kwargs):
            raise err
        return fit

    monkeypatch.setattr(recording, "fit_sequence", fail_with(NoFrameFittedError("the wording may change")))
    with pytest.raises(RecordingError, match=r"^subject 0: no frame could be fitted: the cameras do not see") as caught:
        recording.fit_recording(body, rec.detections, rec.rig, "openpose25")
    assert type(caught.value) is RecordingError
    other = ValueError("no frame of the recording could be fitted (but not that error)")
    monkeypatch.setattr(recording, "fit_sequence", fail_with(other))
    with pytest.raises(ValueError) as caught:
        recording.fit_recording(body, rec.detections, rec.rig, "openpose25")
    assert caught.value is other


@pytest.mark.parametrize("change, key", [({"smooth_penalty": "foo"}, "sequence.smooth_penalty"),
                                         ({"chunk_frames": 1}, "sequence.chunk_frames"),
                                         ({"smooth_scale": -1.0}, "sequence.smooth_scale"),
                                         ({"smooth_tail": -0.1}, "sequence.smooth_tail"),
                                         ({"keyframe_frame_px": 0.0}, "sequence.keyframe_frame_px"),
                                         ({"refine_reference_cameras": -1.0}, "sequence.refine_reference_cameras"),
                                         ({"keyframe_lm_cameras": -1.0}, "sequence.keyframe_lm_cameras"),
                                         ({"refine_optimizer": "sgd"}, "sequence.refine_optimizer")])
def test_bad_sequence_settings_are_refused_when_the_config_is_made(change, key):
    """A bad value fails where the config is built (before a recording is read), naming its key."""
    from mvspin.config import ConfigError

    with pytest.raises(ConfigError, match=key.replace(".", r"\.")) as err:
        SequenceFitConfig(**change)
    assert err.value.field == key
