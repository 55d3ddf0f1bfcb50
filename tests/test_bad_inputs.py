"""Bad options end in one line with the allowed range, before any work, and leave nothing on disk
(issue 16, theme 5 and parts of 6-7): each case runs through ``mvspin.cli.main.main`` and checks
the exit status, the one line's key words and that no output appeared."""
from __future__ import annotations

from pathlib import Path

import pytest

from mvspin.cli.main import main


def _files(root: Path) -> dict[str, Path]:
    board = root / "board.yaml"
    board.write_text("type: charuco\nsquares_x: 7\nsquares_y: 5\nsquare_length: 80\nmarker_length: 60\nunit: mm\n")
    huge = root / "huge.yaml"
    huge.write_text("type: charuco\nsquares_x: 1001\nsquares_y: 1000\nsquare_length: 80\nmarker_length: 60\nunit: mm\n")
    video = root / "take.mp4"
    video.write_bytes(b"\x00\x00\x00\x18ftypmp42" + bytes(200))  # a video's first bytes, passed as a board
    junk = root / "junk.bin"
    junk.write_bytes(b"junk")
    return {"board": board, "huge": huge, "video": video, "junk": junk}


# (name, argv with {board} {huge} {video} {junk} {out}, key words of the one line)
CASES = [
    ("fit-rig keypoint set", ["fit-rig", "--rig", "{junk}", "--keypoints", "{junk}", "-o", "{out}",
                              "--keypoint-set", "nope"], ["--keypoint-set", "'nope' is not a keypoint set", "coco17"]),
    ("fit-rig keypoint set by --set", ["fit-rig", "--rig", "{junk}", "--keypoints", "{junk}", "-o", "{out}",
                                       "--set", "keypoint_set=nope"], ["--keypoint-set", "not a keypoint set"]),
    ("fit-rig fps inf", ["fit-rig", "--rig", "{junk}", "--keypoints", "{junk}", "-o", "{out}", "--fps", "inf"],
     ["--fps must be in (0, 10000], got inf"]),
    ("fit-rig negative radius", ["fit-rig", "--rig", "{junk}", "--keypoints", "{junk}", "-o", "{out}",
                                 "--set", "association.radius_m=-0.1"], ["association.radius_m must be in (0, 100]"]),
    ("fit-rig subjects 0", ["fit-rig", "--rig", "{junk}", "--keypoints", "{junk}", "-o", "{out}", "--subjects", "0"],
     ["--subjects must be in 1..64"]),
    ("synthetic keypoint set", ["data", "synthetic", "-o", "{out}/s.h5", "--bundles", "2", "--keypoint-set", "nope"],
     ["--keypoint-set must be one of", "got 'nope'"]),
    ("synthetic --num-views", ["data", "synthetic", "-o", "{out}/s.h5", "--bundles", "2", "--num-views", "100000"],
     ["--num-views must be in 1..64", "100000"]),
    ("synthetic num_views", ["data", "synthetic", "-o", "{out}/s.h5", "--bundles", "2", "--set", "options.num_views=100000"],
     ["--num-views must be in 1..64", "100000"]),
    ("demo keypoint set", ["demo", "-o", "{out}", "--keypoints", "nope"], ["--keypoints must be one of"]),
    ("demo views", ["demo", "-o", "{out}", "--views", "100000"], ["--views must be in 2..64"]),
    ("board-image dpi inf", ["calibrate", "board-image", "--board", "{board}", "-o", "{out}/b.png", "--dpi", "inf"],
     ["--dpi must be in (0, 2400], got inf"]),
    ("board-image dpi 1e6", ["calibrate", "board-image", "--board", "{board}", "-o", "{out}/b.png", "--dpi", "1e6"],
     ["--dpi must be in (0, 2400]"]),
    ("board-image 1001 x 1000", ["calibrate", "board-image", "--board", "{huge}", "-o", "{out}/b.png"],
     ["huge.yaml", "1001 x 1000"]),
    ("board-image jpg", ["calibrate", "board-image", "--board", "{board}", "-o", "{out}/b.jpg"],
     ["b.jpg", "PNG", ".png"]),
    ("calibrate format bogus", ["calibrate", "--board", "{board}", "--videos", "{video}", "{video}",
                                "-o", "{out}/rig.toml", "--format", "bogus"], ["--format must be one of", "bogus"]),
    ("calibrate video as board", ["calibrate", "--board", "{video}", "--videos", "{video}", "{video}",
                                  "-o", "{out}/rig.toml"], ["take.mp4", "board description"]),
    ("eval input size 100000", ["eval", "--dataset", "synthetic", "--checkpoint", "{junk}", "--data", "{junk}",
                                "-o", "{out}", "--input-size", "100000"], ["--input-size must be in 32..1024"]),
    ("eval input size 0", ["eval", "--dataset", "synthetic", "--checkpoint", "{junk}", "--data", "{junk}",
                           "-o", "{out}", "--input-size", "0"], ["--input-size must be in 32..1024, got 0"]),
    ("eval batch size 0", ["eval", "--dataset", "synthetic", "--checkpoint", "{junk}", "--data", "{junk}",
                           "-o", "{out}", "--batch-size", "0"], ["--batch-size must be in 1..4096, got 0"]),
    ("eval max samples -1", ["eval", "--dataset", "synthetic", "--checkpoint", "{junk}", "--data", "{junk}",
                             "-o", "{out}", "--max-samples", "-1"], ["--max-samples must be >= 1, got -1"]),
    ("render-model grid", ["render-model", "-o", "{out}/m.png", "--samples", "262144", "--cols", "20480"],
     ["must be in", "got 2"]),
    ("render-model size", ["render-model", "-o", "{out}/m.png", "--size", "100000", "100000"],
     ["--size W must be in 32..4096"]),
    ("render-model size one number", ["render-model", "-o", "{out}/m.png", "--size", "100000"],
     ["length 1 does not match", "2"]),
    ("h36m same camera twice", ["data", "build", "h36m", "{out}", "-o", "{out}/h.h5", "--cameras", "54138969",
                                "54138969"], ["--cameras names 54138969 more than once"]),
    ("train unreadable data", ["train", "-o", "{out}", "--set", "data.files=[{junk}]"],
     ["junk.bin", "not a readable HDF5 file"]),
]


@pytest.mark.parametrize("name, argv, words", CASES, ids=[c[0] for c in CASES])
def test_bad_option_is_one_line_before_work(name, argv, words, tmp_path, capsys):
    files = _files(tmp_path)
    out = tmp_path / "out"
    args = [a.format(out=out, **files) for a in argv]
    rc = main(args)
    captured = capsys.readouterr()
    err = captured.err.strip()
    assert rc == 2, (rc, err)
    assert len(err.splitlines()) == 1 and "Traceback" not in err, err
    for w in words:
        assert w in err, (w, err)
    assert not out.exists(), sorted(out.iterdir())


# -- errors that name the real cause and the file (theme 6) -------------------------------------

def _one_line(args, capsys) -> str:
    rc = main([str(a) for a in args])
    err = capsys.readouterr().err.strip()
    assert rc == 2 and len(err.splitlines()) == 1 and "Traceback" not in err, (rc, err)
    return err


def test_nan_keypoint_in_training_data_names_file_and_bundle(tmp_path, capsys):
    import h5py
    import numpy as np

    from tests.learning.train_helpers import tiny_capture, tiny_overrides

    data = tiny_capture(tmp_path / "train.h5", num_bundles=4)
    with h5py.File(data, "r+") as f:  # another tool's edit: the writer itself refuses NaN
        kp = f["keypoints_2d"][()]
        kp[:, 1, 3, 0] = np.nan
        f["keypoints_2d"][...] = kp
    err = _one_line(["train", "-o", tmp_path / "run", "--set",
                     *tiny_overrides([data], **{"optim.max_steps": 2, "data.augmentation": False})], capsys)
    assert "train.h5: bundle" in err and "keypoints_2d holds" in err and "NaN" in err
    assert "loss became" not in err  # named when read, not as a NaN loss steps later
    assert not (tmp_path / "run").exists() or not any((tmp_path / "run").rglob("*.pt"))


def test_nan_weight_checkpoint_blames_the_checkpoint(tmp_path):
    import torch

    from mvspin.errors import CheckpointError
    from mvspin.regressor.checkpoint import load_regressor_checkpoint, save_regressor_checkpoint
    from mvspin.regressor.hmr import HMRRegressor

    model = HMRRegressor(depth=18)
    with torch.no_grad():
        next(model.parameters()).fill_(float("nan"))
    save_regressor_checkpoint(tmp_path / "diverged.pt", model)
    with pytest.raises(CheckpointError, match=r"diverged\.pt: 1 weight tensors hold NaN or infinite values \(conv1.weight\)"):
        load_regressor_checkpoint(tmp_path / "diverged.pt")


def test_junk_mean_params_names_the_file(tmp_path):
    import numpy as np

    from mvspin.body.model_files import load_mean_params
    from mvspin.errors import BodyModelFilesError

    junk = tmp_path / "smpl_mean_params.npz"
    junk.write_bytes(b"not a zip" * 20)
    with pytest.raises(BodyModelFilesError, match=r"smpl_mean_params.npz: not a mean-parameter .npz"):
        load_mean_params(junk)
    np.savez(junk, pose=np.full(144, np.nan), shape=np.zeros(10), cam=np.zeros(3))
    with pytest.raises(BodyModelFilesError, match=r"smpl_mean_params.npz: pose holds NaN"):
        load_mean_params(junk)


def test_disk_full_during_data_synthetic_names_the_file(tmp_path, capsys):
    from tests.test_atomic import _small_tmpfs

    with _small_tmpfs(tmp_path, size="1400k") as disk:
        # 12 bundles of two 256 px PNG views (~2 MB) do not fit: HDF5 would crash the process
        err = _one_line(["data", "synthetic", "-o", disk / "s.h5", "--bundles", "12", "--resolution", "low",
                         "--set", "options.num_views=2", "options.image_size=[256,256]", "--image-format", ".png"],
                        capsys)
        assert "s.h5: the disk is full" in err and "nothing was written" in err
        assert list(disk.iterdir()) == []
