"""Checkpoint I/O: SPIN's 331-key layout, strict loading with named errors, numpy entries."""
from __future__ import annotations

import io
import zipfile
from pathlib import Path

import numpy as np
import pytest
import torch

from mvspin.geometry import rot6d_to_matrix
from mvspin.regressor.backbone import read_weights_file
from mvspin.regressor.checkpoint import (
    CheckpointError,
    infer_depth,
    load_regressor_checkpoint,
    save_regressor_checkpoint,
    spin_state_dict_layout,
)
from mvspin.regressor.hmr import HMRRegressor


def _bn(prefix: str, channels: int) -> dict[str, tuple[int, ...]]:
    return {f"{prefix}.weight": (channels,), f"{prefix}.bias": (channels,),
            f"{prefix}.running_mean": (channels,), f"{prefix}.running_var": (channels,),
            f"{prefix}.num_batches_tracked": ()}


def spin_resnet50_layout_from_spec() -> dict[str, tuple[int, ...]]:
    """SPIN's HMR state dict written out from the architecture description, not from the code:
    torchvision ResNet-50 trunk (Bottleneck [3, 4, 6, 3], widths 64..512, expansion 4, downsample
    on each stage's first block), then the head and the mean-parameter buffers."""
    layout: dict[str, tuple[int, ...]] = {"conv1.weight": (64, 3, 7, 7), **_bn("bn1", 64)}
    in_channels = 64
    for stage, (width, n_blocks) in enumerate(zip((64, 128, 256, 512), (3, 4, 6, 3)), start=1):
        for block in range(n_blocks):
            p = f"layer{stage}.{block}"
            layout[f"{p}.conv1.weight"] = (width, in_channels, 1, 1)
            layout.update(_bn(f"{p}.bn1", width))
            layout[f"{p}.conv2.weight"] = (width, width, 3, 3)
            layout.update(_bn(f"{p}.bn2", width))
            layout[f"{p}.conv3.weight"] = (4 * width, width, 1, 1)
            layout.update(_bn(f"{p}.bn3", 4 * width))
            if block == 0:
                layout[f"{p}.downsample.0.weight"] = (4 * width, in_channels, 1, 1)
                layout.update(_bn(f"{p}.downsample.1", 4 * width))
            in_channels = 4 * width
    for name, shape in (("fc1", (1024, 2048 + 144 + 10 + 3)), ("fc2", (1024, 1024)),
                        ("decpose", (144, 1024)), ("decshape", (10, 1024)),
                        ("deccam", (3, 1024))):
        layout[f"{name}.weight"] = shape
        layout[f"{name}.bias"] = shape[:1]
    layout.update({"init_pose": (1, 144), "init_shape": (1, 10), "init_cam": (1, 3)})
    return layout


def _random_state(layout: dict[str, tuple[int, ...]], seed: int = 0) -> dict[str, torch.Tensor]:
    gen = torch.Generator().manual_seed(seed)
    state = {}
    for name, shape in layout.items():
        if name.endswith("num_batches_tracked"):
            state[name] = torch.tensor(1234, dtype=torch.long)
        elif name.endswith("running_var"):
            state[name] = torch.rand(shape, generator=gen) + 0.5
        else:
            state[name] = torch.randn(shape, generator=gen) * 0.01
    return state


@pytest.fixture(scope="module")
def spin_state() -> dict[str, torch.Tensor]:
    return _random_state(spin_resnet50_layout_from_spec())


def _spin_checkpoint(state: dict[str, torch.Tensor]) -> dict:
    """A checkpoint in SPIN's training layout, including its numpy `dataset_perm`."""
    return {"model": state,
            "optimizer": {"state": {}, "param_groups": [{"lr": 3e-5, "betas": (0.9, 0.999),
                                                         "params": [0, 1]}]},
            "epoch": 7, "batch_idx": 120, "batch_size": 64,
            "dataset_perm": np.random.default_rng(0).permutation(1000),
            "total_step_count": np.int64(9000)}


def test_spec_layout_has_331_keys_and_matches_module(spin_state):
    layout = spin_resnet50_layout_from_spec()
    assert len(layout) == 331
    assert spin_state_dict_layout(50) == layout
    # Order is irrelevant to loading (the root's buffers come first in torch's state_dict order).
    assert sorted(HMRRegressor(50).state_dict()) == sorted(layout)


def test_spin_state_dict_loads_strictly(spin_state):
    model = HMRRegressor(depth=50)
    result = model.load_state_dict(spin_state, strict=True)
    assert not result.missing_keys and not result.unexpected_keys
    assert torch.equal(model.layer3[5].conv2.weight, spin_state["layer3.5.conv2.weight"])
    assert torch.equal(model.init_cam, spin_state["init_cam"])


def test_spin_checkpoint_with_numpy_entries_loads(tmp_path, spin_state):
    path = tmp_path / "model_checkpoint.pt"
    torch.save(_spin_checkpoint(spin_state), path)
    model, meta = load_regressor_checkpoint(path)
    assert model.depth == 50 and not model.training
    assert torch.equal(model.fc1.weight, spin_state["fc1.weight"])
    assert torch.equal(model.bn1.num_batches_tracked, spin_state["bn1.num_batches_tracked"])
    assert meta["epoch"] == 7 and meta["batch_size"] == 64
    assert isinstance(meta["dataset_perm"], np.ndarray)
    assert np.array_equal(meta["dataset_perm"], np.random.default_rng(0).permutation(1000))
    assert meta["total_step_count"] == 9000


def _as_numpy1_pickle(path: Path) -> None:
    """Rewrite a torch.save file so numpy globals carry numpy 1.x's module name, as in files
    written by SPIN's environment (numpy.core.multiarray instead of numpy._core.multiarray)."""
    raw = path.read_bytes()
    out = io.BytesIO()
    with zipfile.ZipFile(io.BytesIO(raw)) as zin, zipfile.ZipFile(out, "w",
                                                                  zipfile.ZIP_STORED) as zout:
        replaced = False
        for info in zin.infolist():
            data = zin.read(info.filename)
            if info.filename.endswith("data.pkl"):
                new = data.replace(b"cnumpy._core.multiarray\n", b"cnumpy.core.multiarray\n")
                replaced = new != data
                data = new
            zout.writestr(info.filename, data)
    assert replaced, "test setup: no numpy global found to rename"
    path.write_bytes(out.getvalue())


def test_numpy1_era_checkpoint_loads(tmp_path):
    source = HMRRegressor(18)
    path = tmp_path / "old.pt"
    torch.save({"model": source.state_dict(), "dataset_perm": np.arange(5),
                "total_step_count": np.int64(3)}, path)
    _as_numpy1_pickle(path)
    model, meta = load_regressor_checkpoint(path)
    assert model.depth == 18
    assert np.array_equal(meta["dataset_perm"], np.arange(5)) and meta["total_step_count"] == 3


def test_missing_key_is_named(tmp_path, spin_state):
    state = dict(spin_state)
    del state["layer2.1.bn2.running_var"]
    path = tmp_path / "damaged.pt"
    torch.save({"model": state}, path)
    with pytest.raises(CheckpointError, match=r"missing keys 1 \(layer2\.1\.bn2\.running_var\)"):
        load_regressor_checkpoint(path, depth=50)


def test_unexpected_and_misshaped_keys_are_named(tmp_path):
    state = HMRRegressor(18).state_dict()
    state["extra.weight"] = torch.zeros(2)
    state["decshape.bias"] = torch.zeros(11)
    path = tmp_path / "odd.pt"
    torch.save(state, path)
    with pytest.raises(CheckpointError) as info:
        load_regressor_checkpoint(path)
    message = str(info.value)
    assert "unexpected keys 1 (extra.weight)" in message
    assert "decshape.bias (11,) vs (10,)" in message
    assert str(path) in message


def test_resnet18_checkpoint_into_depth50_is_architecture_mismatch(tmp_path):
    path = tmp_path / "r18.pt"
    save_regressor_checkpoint(path, HMRRegressor(18))
    with pytest.raises(CheckpointError, match="architecture mismatch.*ResNet-18.*depth=50"):
        load_regressor_checkpoint(path, depth=50)


def test_non_hmr_state_dicts_are_refused(tmp_path):
    classifier = {k: v for k, v in HMRRegressor(18).state_dict().items()
                  if k.startswith(("conv1.", "bn1.", "layer"))}
    classifier.update({"fc.weight": torch.zeros(1000, 512), "fc.bias": torch.zeros(1000)})
    path = tmp_path / "imagenet.pth"
    torch.save(classifier, path)
    with pytest.raises(CheckpointError, match="image classifier.*load_imagenet_weights"):
        load_regressor_checkpoint(path)
    other = tmp_path / "other.pt"
    torch.save({"encoder.weight": torch.zeros(3)}, other)
    with pytest.raises(CheckpointError, match="not an HMR regressor"):
        load_regressor_checkpoint(other)


def test_save_load_round_trip_is_bitwise(tmp_path):
    gen = torch.Generator().manual_seed(1)
    mean = {"pose": torch.randn(144, generator=gen), "shape": torch.randn(10, generator=gen),
            "cam": torch.tensor([0.8, 0.1, -0.1])}
    model = HMRRegressor(18, mean_params=mean)
    with torch.no_grad():  # non-trivial BatchNorm statistics, so their saving is exercised
        for module in model.modules():
            if isinstance(module, torch.nn.BatchNorm2d):
                module.running_mean.uniform_(-0.1, 0.1, generator=gen)
                module.running_var.uniform_(0.5, 1.5, generator=gen)
    model.eval()
    path = tmp_path / "run" / "model_checkpoint.pt"
    assert save_regressor_checkpoint(path, model, epoch=2, dataset_perm=np.arange(4)) == path
    assert sorted(p.name for p in path.parent.iterdir()) == ["model_checkpoint.pt"]  # no temp
    loaded, meta = load_regressor_checkpoint(path)
    images = torch.randn(2, 3, 64, 64, generator=gen)
    with torch.no_grad():
        a, b = model(images), loaded(images)
    for name in ("rotmat", "betas", "cam", "pose_6d"):
        assert torch.equal(getattr(a, name), getattr(b, name)), name
    assert meta["epoch"] == 2 and np.array_equal(meta["dataset_perm"], np.arange(4))
    assert meta["mvspin"]["depth"] == 18 and meta["mvspin"]["version"]
    # SPIN's layout: the state dict under "model", next to the caller's entries.
    raw = read_weights_file(path)
    assert set(raw) == {"model", "epoch", "dataset_perm", "mvspin"}
    assert list(raw["model"]) == list(spin_state_dict_layout(18))


def test_save_overwrites_atomically_and_validates(tmp_path):
    path = tmp_path / "ckpt.pt"
    first, second = HMRRegressor(18), HMRRegressor(18)
    save_regressor_checkpoint(path, first, epoch=1)
    save_regressor_checkpoint(path, second, epoch=2)
    loaded, meta = load_regressor_checkpoint(path)
    assert meta["epoch"] == 2
    assert torch.equal(loaded.fc1.weight, second.fc1.weight)
    with pytest.raises(ValueError, match="reserved"):
        save_regressor_checkpoint(path, first, model={})
    with pytest.raises(TypeError, match="HMRRegressor"):
        save_regressor_checkpoint(path, torch.nn.Linear(2, 2))
    assert sorted(p.name for p in tmp_path.iterdir()) == ["ckpt.pt"]


def test_data_parallel_prefix_is_stripped(tmp_path):
    state = {f"module.{k}": v for k, v in HMRRegressor(18).state_dict().items()}
    path = tmp_path / "ddp.pt"
    torch.save({"model": state}, path)
    model, _ = load_regressor_checkpoint(path, depth=18)
    assert torch.equal(model.deccam.weight, state["module.deccam.weight"])


class NotAllowed:
    """An arbitrary object: weights_only loading must refuse it."""


def test_unsafe_objects_and_bad_files_are_refused(tmp_path):
    path = tmp_path / "unsafe.pt"
    torch.save({"model": HMRRegressor(18).state_dict(), "hook": NotAllowed()}, path)
    with pytest.raises(CheckpointError, match="not allowed"):
        load_regressor_checkpoint(path)
    # Object arrays could carry anything: only numeric numpy dtypes are read.
    torch.save({"model": HMRRegressor(18).state_dict(),
                "names": np.array(["a", 1], dtype=object)}, path)
    with pytest.raises(CheckpointError, match="not allowed.*ObjectDType"):
        load_regressor_checkpoint(path)
    garbage = tmp_path / "garbage.pt"
    garbage.write_bytes(b"this is not a checkpoint")
    with pytest.raises(CheckpointError, match="garbage.pt: not a readable"):
        load_regressor_checkpoint(garbage)
    with pytest.raises(FileNotFoundError, match="missing.pt"):
        load_regressor_checkpoint(tmp_path / "missing.pt")


def test_infer_depth_from_keys():
    for depth in (10, 18, 34, 50, 101):  # 10: the small CPU trunk, one basic block per stage
        assert infer_depth(spin_state_dict_layout(depth)) == depth
    assert infer_depth({"fc1.weight": 0}) is None


def test_loaded_mean_pose_decodes_to_rotations(tmp_path, spin_state):
    state = dict(spin_state)
    state["init_pose"] = torch.randn(1, 144, generator=torch.Generator().manual_seed(3))
    path = tmp_path / "m.pt"
    torch.save({"model": state}, path)
    model, _ = load_regressor_checkpoint(path)
    R = rot6d_to_matrix(model.init_pose.reshape(24, 6).double())
    assert torch.allclose(R.transpose(-1, -2) @ R, torch.eye(3, dtype=R.dtype).expand(24, 3, 3),
                          atol=1e-5)
    assert torch.allclose(torch.linalg.det(R), torch.ones(24, dtype=R.dtype), atol=1e-5)


def test_checkpoint_metadata_gives_the_input_size_and_checks_the_body_model():
    """What a checkpoint says about itself: the trainer stores its config as JSON under
    ``train_state.config``; SPIN's files say nothing (224 px, any body model)."""
    import json

    from mvspin.body import BodyModel
    from mvspin.regressor.checkpoint import (
        checkpoint_input_size,
        find_checkpoint_setting,
        find_training_model_section,
        same_body_model,
    )

    low, full = BodyModel.free("low"), BodyModel.free("full")
    trained = {"epoch": 2, "train_state": {"config": json.dumps(
        {"model": {"smpl_dir": None, "body_resolution": "low"}, "data": {"img_res": 96}})}}
    assert find_checkpoint_setting(trained, ("img_res",)) == 96
    assert find_training_model_section(trained) == {"smpl_dir": None, "body_resolution": "low"}
    assert checkpoint_input_size(trained, low, "t.pt") == 96
    with pytest.raises(CheckpointError, match=r"t\.pt: trained for body model 'free-low', but .* 'free-notoes'"):
        checkpoint_input_size(trained, full, "t.pt")
    assert checkpoint_input_size({"epoch": 3}, full) == 224  # SPIN's files
    assert checkpoint_input_size({"mvspin": {"input_size": True}}, full, default=128) == 128  # not a size
    assert same_body_model("free", low) and same_body_model("free-low", low) and not same_body_model("smpl", low)
    assert not same_body_model("free-full", low) and same_body_model("free-full", full)
