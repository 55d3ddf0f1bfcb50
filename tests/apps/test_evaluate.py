"""mvspin.apps.evaluate: the eval job from Python (numbers equal the library's), its outputs and
options checked before any evaluation (exit status, one line, nothing on disk, nothing run)."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from mvspin.apps.evaluate import EvalConfig, run
from mvspin.body import BodyModel, BodyModelConfig
from mvspin.cli.main import main
from mvspin.config import ConfigError
from mvspin.learning.evaluation import evaluate
from mvspin.regressor.checkpoint import load_regressor_checkpoint, save_regressor_checkpoint
from mvspin.regressor.hmr import HMRRegressor
from tests.learning.test_eval_cli import N, V, write_smpl_test_file


@pytest.fixture(scope="module")
def files(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("apps_eval")
    body = BodyModel.free("low")
    torch.manual_seed(1)
    model = HMRRegressor(18, mean_params=body.mean_params)
    config = {"config": json.dumps({"data": {"crop_size": 64}, "model": {"smpl_dir": None, "body_resolution": "low"}})}
    save_regressor_checkpoint(root / "r18.pt", model, train_state=config)
    return {"root": root, "ckpt": root / "r18.pt", "data": write_smpl_test_file(root / "test.h5", seed=3)}


def _config(files, **changes) -> EvalConfig:
    return EvalConfig(checkpoint=files["ckpt"], dataset="synthetic", data=files["data"],
                      body=BodyModelConfig(resolution="low"), **changes)


def test_run_scores_like_the_library_and_writes_both_files(files):
    calls = []
    report = run(_config(files, out=files["root"] / "out", batch_size=4, max_samples=5),
                 progress=lambda stage, done, total: calls.append((stage, done, total)))
    assert report.input_size == 64  # from the checkpoint's training config
    assert [p.name for p in report.files] == ["eval_synthetic.json", "eval_synthetic_samples.npz"]
    assert all(p.is_file() for p in report.files)
    assert calls == [("eval synthetic", 4, 5), ("eval synthetic", 5, 5)]
    summary = json.loads(report.files[0].read_text())
    assert summary["samples"] == 5 and summary["metrics"]["mpjpe"] == pytest.approx(report.result.metrics["mpjpe"])
    model, _ = load_regressor_checkpoint(files["ckpt"])
    direct = evaluate(model, BodyModel.free("low"), files["data"], "synthetic", input_size=64)
    assert len(direct) == N * V  # the file has 6 samples; max_samples took the first 5
    np.testing.assert_allclose(report.result.errors["mpjpe"].numpy(), direct.errors["mpjpe"][:5].numpy(), rtol=1e-5)
    assert 0 < report.result.metrics["pa_mpjpe"] < report.result.metrics["mpjpe"]
    assert report.warnings == []


def test_a_training_split_is_scored_with_a_warning(files, tmp_path, caplog):
    train = write_smpl_test_file(tmp_path / "train.h5", seed=4, split="train")
    report = run(EvalConfig(checkpoint=files["ckpt"], dataset="synthetic", data=train, max_samples=2,
                            body=BodyModelConfig(resolution="low")))
    assert len(report.result) == 2
    assert report.warnings == [f"{train} is a training split: these are not test-set numbers"]
    assert report.warnings[0] in caplog.text


def _spy(monkeypatch) -> list[str]:
    """Record whether the checkpoint was loaded or the evaluation ran."""
    ran: list[str] = []
    import mvspin.learning.evaluation as evaluation
    import mvspin.regressor.checkpoint as checkpoint

    real_load, real_eval = checkpoint.load_regressor_checkpoint, evaluation.evaluate
    monkeypatch.setattr(checkpoint, "load_regressor_checkpoint", lambda *a, **k: ran.append("load") or real_load(*a, **k))
    monkeypatch.setattr(evaluation, "evaluate", lambda *a, **k: ran.append("evaluate") or real_eval(*a, **k))
    return ran


def _eval(files, capsys, *extra: str) -> tuple[int, list[str]]:
    code = main(["eval", "--checkpoint", str(files["ckpt"]), "--dataset", "synthetic", "--data", str(files["data"]),
                 "--resolution", "low", *extra])
    return code, capsys.readouterr().err.strip().splitlines()


def test_out_that_cannot_be_written_fails_before_any_evaluation(files, tmp_path, capsys, monkeypatch):
    ran = _spy(monkeypatch)
    blocker = tmp_path / "a_file"
    blocker.write_text("keep")
    for out, words in ((blocker, "a file is in the way"), (blocker / "sub", "is a file, not a folder")):
        code, lines = _eval(files, capsys, "-o", str(out))
        assert code == 2 and len(lines) == 1
        assert lines[0].startswith(f"mvspin eval: error: --out {out}") and words in lines[0]
    # a folder where a result file goes
    (tmp_path / "res" / "eval_synthetic.json").mkdir(parents=True)
    code, lines = _eval(files, capsys, "-o", str(tmp_path / "res"))
    assert code == 2 and len(lines) == 1 and "eval_synthetic.json: is a directory" in lines[0]
    assert ran == []  # neither the checkpoint nor a crop was touched
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a_file", "res"] and blocker.read_text() == "keep"
    assert [p.name for p in (tmp_path / "res").iterdir()] == ["eval_synthetic.json"]


@pytest.mark.skipif(hasattr(__import__("os"), "geteuid") and __import__("os").geteuid() == 0,
                    reason="root writes into read-only folders")
def test_read_only_out_fails_before_any_evaluation(files, tmp_path, capsys, monkeypatch):
    ran = _spy(monkeypatch)
    locked = tmp_path / "locked"
    locked.mkdir(mode=0o500)
    code, lines = _eval(files, capsys, "-o", str(locked / "out"))
    assert code == 2 and len(lines) == 1 and "cannot write there" in lines[0] and ran == []


@pytest.mark.parametrize("flags, words", [
    (["--input-size", "100000"], "--input-size must be in 32..1024, got 100000"),
    (["--input-size", "0"], "--input-size must be in 32..1024, got 0"),
    (["--batch-size", "0"], "--batch-size must be in 1..4096, got 0"),
    (["--max-samples", "-1"], "--max-samples must be >= 1, got -1"),
    (["--dataset", "h36m-p3"], "invalid choice: 'h36m-p3'"),
])
def test_bad_values_end_in_one_line_before_work(files, tmp_path, capsys, monkeypatch, flags, words):
    ran = _spy(monkeypatch)
    with pytest.raises(SystemExit) if "invalid choice" in words else _no_exit() as exit_info:
        code, lines = _eval(files, capsys, "-o", str(tmp_path / "out"), *flags)
    if exit_info is not None:  # argparse's own refusal of a choice
        code, lines = exit_info.value.code, capsys.readouterr().err.strip().splitlines()[-1:]
    assert code == 2 and len(lines) == 1 and words in lines[0]
    assert ran == [] and list(tmp_path.iterdir()) == []


class _no_exit:
    def __enter__(self):
        return None

    def __exit__(self, *exc):
        return False


def test_config_checks_in_python():
    with pytest.raises(ConfigError, match="max_samples must be >= 1, got -1") as err:
        EvalConfig(checkpoint=Path("c.pt"), dataset="synthetic", data=Path("d.h5"), max_samples=-1)
    assert err.value.field == "max_samples"
    with pytest.raises(ConfigError, match="dataset must be one of h36m-p1") as err:
        EvalConfig(checkpoint=Path("c.pt"), dataset="coco", data=Path("d.h5"))
    assert err.value.field == "dataset"


def test_failed_run_removes_the_out_folder_it_made(files, tmp_path):
    out = tmp_path / "new" / "deeper"
    with pytest.raises(Exception, match="does not exist"):
        run(EvalConfig(checkpoint=files["ckpt"], dataset="synthetic", data=tmp_path / "nope.h5", out=out,
                       body=BodyModelConfig(resolution="low")))
    assert list(tmp_path.iterdir()) == []


def test_a_checkpoint_with_nan_weights_is_named_before_any_evaluation(files, tmp_path, capsys):
    body = BodyModel.free("low")
    model = HMRRegressor(18, mean_params=body.mean_params)
    with torch.no_grad():
        model.decpose.weight.fill_(float("nan"))
    save_regressor_checkpoint(tmp_path / "nan.pt", model)
    code = main(["eval", "--checkpoint", str(tmp_path / "nan.pt"), "--dataset", "synthetic", "--data",
                 str(files["data"]), "--resolution", "low", "-o", str(tmp_path / "out")])
    lines = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and lines == [f"mvspin eval: error: {tmp_path / 'nan.pt'}: 1 weight tensors hold NaN or infinite "
                                   "values (decpose.weight); the run that wrote it diverged"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["nan.pt"]
