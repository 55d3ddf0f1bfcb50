"""The shape check and the error hierarchy the command line relies on."""
import ast
import builtins
import importlib
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

import mvspin.errors as errors
from mvspin.body.model_files import BodyModelFilesError
from mvspin.cli.main import main
from mvspin.config import ConfigError
from mvspin.data.bundle_format import BundleFormatError
from mvspin.errors import FitError, MvspinError, ShapeError, check_shape

ROOT = Path(__file__).resolve().parents[1]


def test_check_shape_binds_names_across_calls():
    sizes = check_shape("keypoints", torch.zeros(2, 4, 25, 3), ["B", "V", 25, 3])
    assert sizes == {"B": 2, "V": 4}
    assert check_shape("cams", np.zeros((4, 3, 3)), ["V", 3, 3], sizes) == {"B": 2, "V": 4}
    with pytest.raises(ShapeError, match=r"cams must have shape \(V, 3, 3\) with .*V=4, got \(3, 3, 3\)"):
        check_shape("cams", np.zeros((3, 3, 3)), ["V", 3, 3], sizes)


@pytest.mark.parametrize("shape, ok", [((3, 3), True), ((7, 2, 3, 3), True), ((3,), False), ((2, 3, 4), False)])
def test_check_shape_leading_axes(shape, ok):
    if ok:
        check_shape("R", torch.zeros(shape), ["*", 3, 3])
    else:
        with pytest.raises(ShapeError, match=r"R must have shape \(\.\.\., 3, 3\)"):
            check_shape("R", torch.zeros(shape), ["*", 3, 3])


def test_check_shape_rejects_repeated_name_mismatch_and_non_arrays():
    with pytest.raises(ShapeError, match=r"got \(2, 3\)"):
        check_shape("square", torch.zeros(2, 3), ["N", "N"])
    with pytest.raises(ShapeError, match="got list"):
        check_shape("x", [1, 2, 3], [3])
    with pytest.raises(ShapeError):
        check_shape("x", torch.zeros(0, 3), ["B", 3])  # a named axis needs at least one element


def test_library_errors_share_one_base_and_keep_builtin_types():
    for cls, builtin in ((ShapeError, ValueError), (FitError, FloatingPointError), (ConfigError, ValueError),
                         (BodyModelFilesError, FileNotFoundError), (BundleFormatError, ValueError)):
        assert issubclass(cls, MvspinError) and issubclass(cls, builtin)


def _is_exception_base(base: ast.expr, known: set[str]) -> bool:
    """Whether a class base (as written) is an ``Exception`` class: a builtin one, a stdlib module's
    (``pickle.UnpicklingError``), one defined in the scanned files, or one named like one.
    (``KeyboardInterrupt`` and the other ``BaseException``-only classes are signals, not errors.)"""
    if isinstance(base, ast.Name):
        obj = getattr(builtins, base.id, None)
        if isinstance(obj, type) and issubclass(obj, BaseException):
            return issubclass(obj, Exception)
        name = base.id
    elif isinstance(base, ast.Attribute):
        module = ast.unparse(base.value)
        if module.split(".")[0] in sys.stdlib_module_names:
            obj = getattr(importlib.import_module(module), base.attr, None)
            return isinstance(obj, type) and issubclass(obj, Exception)
        name = base.attr
    else:
        return False
    return name in known or name.endswith(("Error", "Exception", "Warning"))


def _exception_classes() -> dict[str, list[str]]:
    """``{file: [class names]}`` of every exception class defined under mvspin/ and calibration/
    (nested classes included), found by reading the source."""
    classes = []
    for root in ("mvspin", "calibration"):
        for f in sorted((ROOT / root).rglob("*.py")):
            tree = ast.parse(f.read_text(encoding="utf-8"))
            classes += [(str(f.relative_to(ROOT)), n) for n in ast.walk(tree) if isinstance(n, ast.ClassDef)]
    known: set[str] = set()
    found: dict[str, list[str]] = {}
    changed = True
    while changed:  # a class deriving from an exception class defined in a later file
        changed = False
        for path, node in classes:
            if node.name not in found.get(path, []) and any(_is_exception_base(b, known) for b in node.bases):
                known.add(node.name)
                found.setdefault(path, []).append(node.name)
                changed = True
    return found


def test_every_error_class_is_defined_in_mvspin_errors_and_derives_from_mvspin_error():
    found = _exception_classes()
    assert sum(map(len, found.values())) >= 23  # the scan sees the library's errors
    assert {path: names for path, names in found.items() if path != "mvspin/errors.py"} == {}
    defined = set(found["mvspin/errors.py"])
    assert set(errors.__all__) - {"check_shape", "import_optional"} == defined
    for name in defined:
        cls = getattr(errors, name)
        assert issubclass(cls, MvspinError), name
        assert cls.__doc__ and cls.__doc__.strip(), name
        assert cls is MvspinError or len(cls.__mro__) > 3, f"{name} keeps a built-in base besides MvspinError"


@pytest.mark.parametrize("module, name, builtin", [
    ("mvspin.config", "ConfigError", ValueError),
    ("mvspin.atomic", "IncompleteWriteError", OSError),
    ("mvspin.atomic", "OutputLocationError", OSError),
    ("calibration", "CalibrationError", ValueError),
    ("mvspin.body.model_files", "BodyModelFilesError", FileNotFoundError),
    ("mvspin.body.safe_pickle", "UnsafePickleError", __import__("pickle").UnpicklingError),
    ("mvspin.body.points", "KeypointSetUnavailable", KeyError),
    ("mvspin.fitting.recording", "RecordingError", ValueError),
    ("mvspin.fitting.camera_checks", "CameraMismatchError", ValueError),
    ("mvspin.data.bundle_format", "BundleFormatError", ValueError),
    ("mvspin.data.video", "VideoError", OSError),
    ("mvspin.data.keypoint_files", "MissingKeypointFileError", FileNotFoundError),
    ("mvspin.learning.fits_store", "FitsStoreError", ValueError),
    ("mvspin.learning.trainer", "TrainingError", RuntimeError),
])
def test_errors_stay_importable_where_users_import_them(module, name, builtin):
    cls = getattr(importlib.import_module(module), name)
    assert cls is getattr(errors, name)
    assert issubclass(cls, builtin) and issubclass(cls, MvspinError)
    with pytest.raises(builtin):
        raise cls("x")


def test_config_error_keeps_its_field_and_key_errors_print_plainly():
    err = errors.ConfigError("batch_size must be >= 1, got 0", field="batch_size")
    assert (err.field, str(err)) == ("batch_size", "batch_size must be >= 1, got 0")
    assert errors.ConfigError("no field").field is None
    assert str(errors.KeypointSetUnavailable("smpl has no point 'nose'")) == "smpl has no point 'nose'"


def test_cli_reports_user_errors_in_one_line_and_programming_errors_with_traceback(monkeypatch, capsys):
    import mvspin.cli.info as info

    def fail(exc):
        def run(args):
            raise exc
        return run

    monkeypatch.setattr(info, "run", fail(ShapeError("keypoints must have shape (B, 3), got (2,)")))
    assert main(["info"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err == ["mvspin info: error: keypoints must have shape (B, 3), got (2,)"]

    monkeypatch.setattr(info, "run", fail(FileNotFoundError(2, "No such file or directory", "/nope/x.h5")))
    assert main(["info"]) == 2
    assert capsys.readouterr().err.strip() == "mvspin info: error: /nope/x.h5: No such file or directory"

    monkeypatch.setattr(info, "run", fail(KeyError("internal")))
    with pytest.raises(KeyError):
        main(["info"])


def test_device_option_errors_name_the_option():
    from mvspin.cli.main import error_line
    from mvspin.config import ConfigError, resolve_device

    def line(name: str) -> str:
        with pytest.raises(ConfigError) as err:
            resolve_device(name)
        return error_line(err.value)

    assert line("banana") == "--device 'banana' is not a torch device (e.g. cpu, cuda, cuda:1)"
    assert line("meta").startswith("--device meta: only cpu and cuda")
    if not torch.cuda.is_available():
        assert line("cuda:0") == "--device cuda:0: CUDA is not available on this machine"
    else:
        assert "CUDA device" in line(f"cuda:{torch.cuda.device_count()}")
    assert resolve_device("cpu") == torch.device("cpu")


def test_disk_errors_without_a_file_name_get_one(tmp_path, monkeypatch, capsys):
    import errno

    import mvspin.cli.info as info
    from mvspin.atomic import write_bytes_atomic
    from mvspin.cli.main import error_line

    real_open = open

    def full_disk_open(path, mode="r", *a, **k):
        handle = real_open(path, mode, *a, **k)
        if "w" in mode and "mvspin-tmp" in str(path):
            def write(data):
                raise OSError(errno.ENOSPC, "No space left on device")
            handle.write = write
        return handle

    monkeypatch.setattr("builtins.open", full_disk_open)
    with pytest.raises(OSError) as err:
        write_bytes_atomic(tmp_path / "out.json", b"{}")
    monkeypatch.undo()
    assert error_line(err.value) == f"{tmp_path / 'out.json'}: No space left on device"
    assert list(tmp_path.iterdir()) == []

    def run(args):
        raise err.value
    monkeypatch.setattr(info, "run", run)
    assert main(["info"]) == 2
    assert capsys.readouterr().err.strip() == f"mvspin info: error: {tmp_path / 'out.json'}: No space left on device"


def test_render_model_checks_options_and_output_before_work(tmp_path, capsys):
    cases = [(["--cols", "0"], "--cols must be in 1..64, got 0"),
             (["--size", "10", "100"], "--size W must be in 32..4096, got 10"),
             (["--out", str(tmp_path / "m.jpg")], f"--out {tmp_path / 'm.jpg'}: the gallery is a PNG; give a name ending in .png"),
             (["--out", str(tmp_path / "d.png")], f"--out {tmp_path / 'd.png'}: is a directory (expected a file name)")]
    (tmp_path / "d.png").mkdir()
    for extra, message in cases:
        assert main(["render-model", "--resolution", "low", *extra]) == 2
        assert capsys.readouterr().err.strip() == f"mvspin render-model: error: {message}"
    assert [p.name for p in tmp_path.iterdir()] == ["d.png"]


def test_a_missing_optional_package_is_one_line_naming_the_extra():
    with pytest.raises(errors.MissingExtraError) as caught:
        errors.import_optional("mvspin_no_such_module.sub", extra="view", purpose="the 3D viewer")
    assert str(caught.value) == "the 3D viewer need mvspin_no_such_module: pip install 'mvspin[view]'"
    assert isinstance(caught.value, ImportError) and isinstance(caught.value, MvspinError)
    assert errors.import_optional("json", extra="view", purpose="x") is __import__("json")


def _setup_extras() -> set[str]:
    tree = ast.parse((ROOT / "setup.py").read_text(encoding="utf-8"))
    call = next(n for n in ast.walk(tree) if isinstance(n, ast.Call) and getattr(n.func, "id", "") == "setup")
    extras = next(k.value for k in call.keywords if k.arg == "extras_require")
    return {ast.literal_eval(k) for k in extras.keys}


def test_every_optional_import_names_an_extra_that_setup_py_declares():
    declared = _setup_extras()
    assert {"train", "datasets", "view", "detect", "video", "test", "lint"} <= declared
    used = set()
    for f in list((ROOT / "mvspin").rglob("*.py")) + list((ROOT / "calibration").rglob("*.py")):
        for node in ast.walk(ast.parse(f.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Call) and getattr(node.func, "id", "") == "import_optional":
                used |= {ast.literal_eval(k.value) for k in node.keywords if k.arg == "extra"}
    assert {"train", "datasets"} <= used <= declared
    # and the optional packages are imported nowhere at module level
    for f in list((ROOT / "mvspin").rglob("*.py")) + list((ROOT / "calibration").rglob("*.py")):
        for node in ast.parse(f.read_text(encoding="utf-8")).body:
            if isinstance(node, (ast.Import, ast.ImportFrom)):
                names = [a.name for a in node.names] if isinstance(node, ast.Import) else [node.module or ""]
                assert not any(n.split(".")[0] in ("tensorboard", "cdflib", "viser", "ai_edge_litert", "onnxruntime", "av")
                               or n == "torch.utils.tensorboard" for n in names), f"{f}: {names}"
