"""ResNet trunk (torchvision names, ImageNet loading) and SPIN's HMR regressor."""
from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from torch import nn

from mvspin.geometry import rot6d_to_matrix
from mvspin.regressor.backbone import CheckpointError, ResNet, load_imagenet_weights, resnet
from mvspin.regressor.hmr import HMRRegressor, RegressorOutput, default_mean_params


def _assert_rotations(R: torch.Tensor) -> None:
    R = R.double()
    eye = torch.eye(3, dtype=R.dtype).expand_as(R)
    assert torch.allclose(R.transpose(-1, -2) @ R, eye, atol=1e-5)
    assert torch.allclose(torch.linalg.det(R), torch.ones(R.shape[:-2], dtype=R.dtype), atol=1e-5)


@pytest.fixture(scope="module")
def model18() -> HMRRegressor:
    torch.manual_seed(0)
    return HMRRegressor(depth=18).eval()


# --- backbone -------------------------------------------------------------------------------

def test_resnet_feature_sizes_and_torchvision_names():
    r18, r50 = resnet(18), resnet(50)
    assert r18.feature_dim == 512 and r50.feature_dim == 2048
    assert r18(torch.zeros(1, 3, 64, 64)).shape == (1, 512)
    names18 = r18.state_dict()
    assert len(names18) == 120 and not any(k.startswith("fc.") for k in names18)
    assert names18["layer2.0.downsample.0.weight"].shape == (128, 64, 1, 1)
    assert "layer1.0.downsample.0.weight" not in names18  # BasicBlock stage 1 keeps its width
    assert names18["layer4.1.bn2.num_batches_tracked"].dtype == torch.long
    names50 = r50.state_dict()
    assert names50["layer1.0.downsample.1.running_var"].shape == (256,)
    # torchvision v1.5: the stride sits on the 3x3 convolution of a Bottleneck.
    assert r50.layer2[0].conv1.stride == (1, 1) and r50.layer2[0].conv2.stride == (2, 2)
    with pytest.raises(ValueError, match="depth 42.*18, 34, 50, 101, 152"):
        resnet(42)


def test_adaptive_pool_equals_spin_avgpool7_at_224(model18):
    images = torch.randn(2, 3, 224, 224, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        x = model18.maxpool(model18.relu(model18.bn1(model18.conv1(images))))
        x = model18.layer4(model18.layer3(model18.layer2(model18.layer1(x))))
        spin_feature = nn.AvgPool2d(7, stride=1)(x).flatten(1)
        assert torch.allclose(model18.extract_features(images), spin_feature, atol=1e-6)


def _torchvision_file(tmp_path, depth: int, drop: str | None = None, with_nbt: bool = True):
    state = {k: torch.randn(v.shape) if v.is_floating_point() else v
             for k, v in resnet(depth).state_dict().items()}
    if not with_nbt:  # files saved before PyTorch 0.4 have no num_batches_tracked
        state = {k: v for k, v in state.items() if not k.endswith("num_batches_tracked")}
    if drop:
        del state[drop]
    feature = 512 if depth < 50 else 2048
    state["fc.weight"], state["fc.bias"] = torch.zeros(1000, feature), torch.zeros(1000)
    path = tmp_path / f"resnet{depth}.pth"
    torch.save(state, path)
    return path, state


def test_imagenet_weights_fill_the_trunk_and_drop_fc(tmp_path):
    path, state = _torchvision_file(tmp_path, 18)
    model = HMRRegressor(18)
    head_before = model.fc1.weight.clone()
    load_imagenet_weights(model, path)
    assert torch.equal(model.layer3[1].conv2.weight, state["layer3.1.conv2.weight"])
    assert torch.equal(model.bn1.running_var, state["bn1.running_var"])
    assert torch.equal(model.fc1.weight, head_before)  # head untouched
    assert not hasattr(model, "fc")
    trunk = resnet(18)
    load_imagenet_weights(trunk, path)
    assert torch.equal(trunk.conv1.weight, state["conv1.weight"])


def test_imagenet_file_without_num_batches_tracked_loads(tmp_path):
    path, state = _torchvision_file(tmp_path, 18, with_nbt=False)
    trunk = resnet(18)
    load_imagenet_weights(trunk, path)
    assert torch.equal(trunk.layer1[0].bn1.weight, state["layer1.0.bn1.weight"])


def test_imagenet_loader_names_problems(tmp_path):
    path, _ = _torchvision_file(tmp_path, 18, drop="layer2.1.conv1.weight")
    with pytest.raises(CheckpointError, match=r"missing keys 1 \(layer2\.1\.conv1\.weight\)"):
        load_imagenet_weights(resnet(18), path)
    path50, _ = _torchvision_file(tmp_path, 50)
    with pytest.raises(CheckpointError, match="ResNet-18 trunk.*unexpected keys.*conv3"):
        load_imagenet_weights(resnet(18), path50)
    with pytest.raises(FileNotFoundError, match="nowhere.pth"):
        load_imagenet_weights(resnet(18), tmp_path / "nowhere.pth")


# --- regressor ------------------------------------------------------------------------------

@pytest.mark.parametrize("size", [224, 128])
def test_forward_shapes(model18, size):
    with torch.no_grad():
        out = model18(torch.randn(2, 3, size, size))
    assert isinstance(out, RegressorOutput)
    assert out.rotmat.shape == (2, 24, 3, 3) and out.betas.shape == (2, 10)
    assert out.cam.shape == (2, 3) and out.pose_6d.shape == (2, 144)
    _assert_rotations(out.rotmat)
    assert torch.allclose(out.rotmat, rot6d_to_matrix(out.pose_6d.reshape(2, 24, 6)))


def test_head_layout_matches_spin(model18):
    assert model18.fc1.in_features == 512 + 144 + 10 + 3 and model18.fc1.out_features == 1024
    assert isinstance(model18.drop1, nn.Dropout) and isinstance(model18.drop2, nn.Dropout)
    assert (model18.decpose.out_features, model18.decshape.out_features,
            model18.deccam.out_features) == (144, 10, 3)
    for decoder in (model18.decpose, model18.decshape, model18.deccam):
        bound = 0.01 * math.sqrt(6.0 / (decoder.in_features + decoder.out_features))
        assert decoder.weight.abs().max() <= bound
    assert model18.init_pose.shape == (1, 144) and model18.init_shape.shape == (1, 10)
    assert model18.init_cam.shape == (1, 3)


def test_iterations_follow_spin_without_relu_between_fc1_and_fc2(model18):
    """Recompute SPIN's loop by hand: fc1 -> fc2 directly (no activation), residual updates."""
    images = torch.randn(2, 3, 64, 64, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        feature = model18.extract_features(images)
        pose, shape, cam = (b.expand(2, -1) for b in (model18.init_pose, model18.init_shape,
                                                       model18.init_cam))
        for _ in range(3):
            hidden = model18.fc2(model18.fc1(torch.cat([feature, pose, shape, cam], 1)))
            pose = pose + model18.decpose(hidden)
            shape = shape + model18.decshape(hidden)
            cam = cam + model18.deccam(hidden)
        out = model18(images)
        assert torch.allclose(out.pose_6d, pose, atol=1e-6)
        assert torch.allclose(out.betas, shape, atol=1e-6)
        assert torch.allclose(out.cam, cam, atol=1e-6)
        one_step = model18(images, n_iter=1)
        assert not torch.allclose(one_step.cam, out.cam)


def test_forward_views_keeps_the_view_axis(model18):
    images = torch.randn(2, 3, 3, 64, 64, generator=torch.Generator().manual_seed(2))
    with torch.no_grad():
        per_view = model18.forward_views(images)
        flat = model18(images.reshape(6, 3, 64, 64))
    assert per_view.rotmat.shape == (2, 3, 24, 3, 3) and per_view.betas.shape == (2, 3, 10)
    assert per_view.cam.shape == (2, 3, 3) and per_view.pose_6d.shape == (2, 3, 144)
    assert torch.equal(per_view.cam[1, 2], flat.cam[5])
    assert torch.equal(per_view.rotmat[1, 0], flat.rotmat[3])
    with pytest.raises(ValueError, match=r"\(B, V, 3, H, W\)"):
        model18.forward_views(images[0])


def test_dropout_follows_train_and_eval():
    model = HMRRegressor(18)
    images = torch.randn(2, 3, 64, 64)
    model.train()
    with torch.no_grad():
        assert not torch.equal(model(images).cam, model(images).cam)
    model.eval()
    with torch.no_grad():
        assert torch.equal(model(images).cam, model(images).cam)


def test_default_mean_params_are_identity_and_valid():
    model = HMRRegressor(18)
    R = rot6d_to_matrix(model.init_pose.reshape(24, 6))
    _assert_rotations(R)
    assert torch.allclose(R, torch.eye(3).expand(24, 3, 3))
    assert torch.equal(model.init_shape, torch.zeros(1, 10))
    assert torch.allclose(model.init_cam, torch.tensor([[0.9, 0.0, 0.0]]))
    assert set(default_mean_params()) == {"pose", "shape", "cam"}


def test_given_mean_params_become_buffers_and_decode_to_rotations():
    rng = np.random.default_rng(0)
    mean = {"pose": rng.normal(size=(1, 144)).astype(np.float32),  # (1, 144) accepted too
            "shape": rng.normal(size=10), "cam": np.array([0.8, 0.05, -0.02])}
    model = HMRRegressor(18, mean_params=mean)
    assert torch.allclose(model.init_pose, torch.from_numpy(mean["pose"]))
    assert torch.allclose(model.init_shape, torch.from_numpy(mean["shape"]).float()[None])
    _assert_rotations(rot6d_to_matrix(model.init_pose.reshape(24, 6).double()))
    assert {"init_pose", "init_shape", "init_cam"} <= set(model.state_dict())


def test_bad_mean_params_are_named():
    good = default_mean_params()
    with pytest.raises(KeyError, match="'cam'"):
        HMRRegressor(18, mean_params={"pose": good["pose"], "shape": good["shape"]})
    with pytest.raises(ValueError, match=r"'shape' must have shape \(10,\)"):
        HMRRegressor(18, mean_params={**good, "shape": np.zeros(11)})
    with pytest.raises(ValueError, match="'pose' contains non-finite"):
        HMRRegressor(18, mean_params={**good, "pose": np.full(144, np.nan)})


def test_initial_estimate_override_and_input_checks(model18):
    images = torch.randn(1, 3, 64, 64)
    with torch.no_grad():
        a = model18(images, init_cam=torch.tensor([[0.5, 0.0, 0.0]]))
        b = model18(images)
    assert not torch.allclose(a.cam, b.cam)
    with pytest.raises(ValueError, match=r"init_cam must have shape \(1, 3\)"):
        model18(images, init_cam=torch.zeros(3))
    with pytest.raises(ValueError, match="n_iter"):
        model18(images, n_iter=0)
    with pytest.raises(ValueError, match=r"\(N, 3, H, W\)"):
        model18(torch.zeros(1, 1, 64, 64))
    with pytest.raises(ValueError, match="at least 32x32"):
        model18(torch.zeros(1, 3, 16, 16))


def test_regressor_is_a_torchvision_named_trunk_with_spin_keys():
    model = HMRRegressor(18)
    assert isinstance(model, ResNet)
    keys = set(model.state_dict())
    assert {"conv1.weight", "layer1.0.conv1.weight", "fc1.weight", "deccam.bias"} <= keys
    assert not any(k.startswith(("backbone.", "encoder.", "fc.")) for k in keys)
