"""mvspin.apps.fit_dataset from Python; its store checked before any fit; no store written when
nothing could be fitted."""
from __future__ import annotations

import pytest
import torch

from mvspin.apps.fit_dataset import FitDatasetConfig, run as fit_dataset
from mvspin.cli.main import main
from mvspin.config import load_config
from mvspin.learning.fits_store import FitsStore
from tests.learning.train_helpers import tiny_capture, tiny_overrides


@pytest.fixture(scope="module")
def capture(tmp_path_factory):
    return tiny_capture(tmp_path_factory.mktemp("apps_fit_dataset") / "train.h5", num_bundles=4)


def test_fit_dataset_from_python(capture, tmp_path):
    calls = []
    config = load_config(FitDatasetConfig, None, [*tiny_overrides([capture]), f"out={tmp_path / 'fits.h5'}",
                                                  "batch_size=3"])
    summary = fit_dataset(config, progress=lambda *c: calls.append(c))
    store = FitsStore.load(summary.path)
    assert summary.num_bundles == len(store) == 4 and (store.step == 0).all()
    assert calls[0] == ("fit-dataset", 0, 2) and calls[-1] == ("fit-dataset", 2, 2)  # batches of 3 and 1


def test_fit_dataset_out_in_the_way_fails_before_any_fit(capture, tmp_path, capsys, monkeypatch):
    import mvspin.learning.dataset_fits as dataset_fits

    monkeypatch.setattr(dataset_fits.MVSMPLify, "fit_per_view", lambda *a, **k: pytest.fail("fitted"))
    monkeypatch.setattr(dataset_fits, "setup_distributed", lambda *a, **k: pytest.fail("started the job"))
    (tmp_path / "fits.h5").mkdir()
    (tmp_path / "file").write_text("keep")
    base = ["fit-dataset", "--set", *tiny_overrides([capture]), "--no-progress"]
    for out, words in ((tmp_path / "fits.h5", "is a directory"), (tmp_path / "file" / "f.h5", "is a file, not a folder")):
        assert main([*base, "-o", str(out)]) == 2
        lines = capsys.readouterr().err.strip().splitlines()
        assert len(lines) == 1 and lines[0].startswith(f"mvspin fit-dataset: error: --out {out}") and words in lines[0]
    assert main([*base, "-o", str(tmp_path / "ok.h5"), "--batch-size", "0"]) == 2
    assert capsys.readouterr().err.strip() == "mvspin fit-dataset: error: --batch-size must be in 1..65536, got 0"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["file", "fits.h5"]
    assert list((tmp_path / "fits.h5").iterdir()) == []


def test_fit_dataset_where_nothing_fits_fails_and_writes_nothing(capture, tmp_path, monkeypatch):
    from types import SimpleNamespace

    import mvspin.learning.dataset_fits as dataset_fits
    from mvspin.errors import FitError

    def failed(fitter, kp, fit):  # every fit diverged (e.g. cameras that cannot see the keypoints)
        nan = torch.full(kp.shape[:1], float("nan"))
        return SimpleNamespace(loss=nan, error_px=nan)

    monkeypatch.setattr(dataset_fits, "score_fit", failed)
    config = load_config(FitDatasetConfig, None, [*tiny_overrides([capture]), f"out={tmp_path / 'fits.h5'}"])
    with pytest.raises(FitError, match=r"no bundle of .*train.h5 could be fitted: every fit ended without a finite "
                                       rf"loss; {tmp_path / 'fits.h5'} was not written"):
        fit_dataset(config)
    assert list(tmp_path.iterdir()) == []
