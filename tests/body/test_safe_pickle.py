import os
import pickle
import sys

import numpy as np
import pytest

from mvspin.body.safe_pickle import UnsafePickleError, load_restricted_pickle
from tests.body.fake_smpl import make_arrays, write_official_pkl


@pytest.mark.parametrize("protocol", [0, 2])
def test_official_layout_reads_without_chumpy(tmp_path, protocol):
    arrays = make_arrays(seed=3)
    path = tmp_path / "SMPL_NEUTRAL.pkl"
    write_official_pkl(path, arrays, protocol=protocol)
    raw = path.read_bytes()
    assert b"chumpy.ch" in raw and b"Ch" in raw  # the file really references chumpy's class
    assert "chumpy" not in sys.modules
    loaded = load_restricted_pickle(path)
    for key in ("v_template", "shapedirs", "posedirs", "J_regressor", "weights"):
        assert isinstance(loaded[key], np.ndarray), key
        np.testing.assert_array_equal(loaded[key], arrays[key])
    assert loaded["bs_style"] == "lbs"


class _RunsCode:
    def __reduce__(self):
        return (os.system, ("echo should-never-run",))


class _Evals:
    def __reduce__(self):
        return (eval, ("1+1",))


@pytest.mark.parametrize("payload", [_RunsCode(), _Evals()])
def test_code_running_pickle_is_refused(tmp_path, payload):
    path = tmp_path / "evil.pkl"
    with open(path, "wb") as f:
        pickle.dump({"v_template": payload}, f, protocol=2)
    with pytest.raises(UnsafePickleError, match="refused to load global") as err:
        load_restricted_pickle(path)
    assert str(path) in str(err.value)


def test_gmm_layout_round_trip(tmp_path):
    data = {"means": np.ones((8, 69)), "covars": np.tile(np.eye(69), (8, 1, 1)), "weights": np.full(8, 0.125)}
    path = tmp_path / "gmm_08.pkl"
    with open(path, "wb") as f:
        pickle.dump(data, f, protocol=2)
    loaded = load_restricted_pickle(path)
    np.testing.assert_array_equal(loaded["covars"], data["covars"])
