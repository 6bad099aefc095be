"""Pretrained backbone weights: safetensors in numpy, torch files, loading into the Flax ResNet.

The conversion is checked against a ResNet written here in numpy (NCHW,
OIHW weights under torchvision's names, float64), which shares nothing with
the Flax model but the architecture, and, where torchvision is installed,
against torchvision's own ResNet-50.
"""

import functools
import json
import math
import struct
import sys

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from pcv import config as config_lib
from pcv.models import Frozen, PCVNet, build_backbone, torchvision_key
from pcv.models.resnet import max_pool_3x3_s2
from pcv.models.weights import (
    CorruptFileError,
    LoadReport,
    WeightMismatchError,
    load_backbone,
    load_state_dict,
    read_safetensors,
    read_safetensors_metadata,
    read_torch_state_dict,
    write_safetensors,
)
from pcv.pretrained import main

C, K = 5, 17


def synthetic_config(arg):
    return config_lib.load(f"synthetic:{arg}")


# --- torchvision-layout weights, made here --------------------------------------


def torchvision_resnet_shapes(layers, widths=(64, 128, 256, 512), expansion=4, num_classes=1000):
    """Name -> shape of torchvision's bottleneck ``resnet*.state_dict()`` (convs OIHW)."""
    shapes = {}

    def conv(name, out, inp, k):
        shapes[f"{name}.weight"] = (out, inp, k, k)

    def bn(name, c):
        for leaf in ("weight", "bias", "running_mean", "running_var"):
            shapes[f"{name}.{leaf}"] = (c,)
        shapes[f"{name}.num_batches_tracked"] = ()

    conv("conv1", 64, 3, 7)
    bn("bn1", 64)
    inp = 64
    for s, (depth, width) in enumerate(zip(layers, widths)):
        out = width * expansion
        for b in range(depth):
            p = f"layer{s + 1}.{b}"
            conv(f"{p}.conv1", width, inp, 1)
            bn(f"{p}.bn1", width)
            conv(f"{p}.conv2", width, width, 3)
            bn(f"{p}.bn2", width)
            conv(f"{p}.conv3", out, width, 1)
            bn(f"{p}.bn3", out)
            if b == 0:
                conv(f"{p}.downsample.0", out, inp, 1)
                bn(f"{p}.downsample.1", out)
            inp = out
    shapes["fc.weight"] = (num_classes, inp)
    shapes["fc.bias"] = (num_classes,)
    return shapes


def random_weights(shapes, seed=0):
    """Random float32 values in torch layout; BN statistics and affine near (0, 1)."""
    rng = np.random.default_rng(seed)
    out = {}
    for name, shape in shapes.items():
        leaf = name.rsplit(".", 1)[-1]
        if leaf == "num_batches_tracked":
            out[name] = np.array(1234, np.int64)
        elif len(shape) == 4:  # He init on fan-in keeps activations O(1) through the stack
            out[name] = rng.standard_normal(shape, np.float32) * np.float32(math.sqrt(2.0 / math.prod(shape[1:])))
        elif leaf in ("running_var", "weight") and name.startswith(("conv", "bn", "layer")):
            out[name] = rng.uniform(0.5, 1.5, shape).astype(np.float32)
        else:  # bias, running_mean, fc
            out[name] = rng.normal(0.0, 0.1, shape).astype(np.float32)
    return out


RESNET50 = (3, 4, 6, 3)
RESNET101 = (3, 4, 23, 3)


@pytest.fixture(scope="module")
def r50_weights():
    return random_weights(torchvision_resnet_shapes(RESNET50))


@pytest.fixture(scope="module")
def r50_case(r50_weights):
    """An input [1, 3, 64, 64] and the numpy reference's (C2, C3, C4, C5) for it."""
    x = np.random.default_rng(1).standard_normal((1, 3, 64, 64))
    return x, np_resnet(x, r50_weights, RESNET50)


def abstract_backbone(name, norm):
    return nnx.eval_shape(lambda: build_backbone(name, norm=norm, rngs=nnx.Rngs(0)))


def torch_layout(backbone, seed=0):
    """Random weights under torchvision names shaped for ``backbone`` (any pcv ResNet)."""
    rng = np.random.default_rng(seed)
    out = {}
    for path, var in nnx.to_flat_state(nnx.state(backbone)):
        shape = var.get_value().shape
        if path[-1] == "kernel":
            shape = (shape[3], shape[2], shape[0], shape[1])
        out[torchvision_key(path)] = rng.uniform(0.5, 1.5, shape).astype(np.float32)
    return out


def assert_backbone_holds(backbone, weights):
    """Every backbone variable equals its torch tensor (convs transposed OIHW -> HWIO)."""
    flat = nnx.to_flat_state(nnx.state(backbone))
    assert len(flat) > 0
    for path, var in flat:
        expect = weights[torchvision_key(path)]
        if path[-1] == "kernel":
            expect = expect.transpose(2, 3, 1, 0)
        np.testing.assert_array_equal(np.asarray(var.get_value()), expect, err_msg=str(path))


# --- numpy reference ResNet (NCHW, torch weights) -------------------------------


def np_conv(x, w, stride=1):
    """PyTorch Conv2d without bias, padding k // 2: x [B, I, H, W], w [O, I, k, k] -> [B, O, H', W']."""
    k = w.shape[-1]
    pad = k // 2
    xp = np.pad(x, ((0, 0), (0, 0), (pad, pad), (pad, pad)))
    ho = (x.shape[2] + 2 * pad - k) // stride + 1
    wo = (x.shape[3] + 2 * pad - k) // stride + 1
    taps = [xp[:, :, i : i + stride * ho : stride, j : j + stride * wo : stride] for i in range(k) for j in range(k)]
    cols = np.stack(taps, axis=2)  # [B, I, k*k, H', W']
    return np.einsum("bithw,oit->bohw", cols, w.reshape(w.shape[0], w.shape[1], k * k), optimize=True)


def np_bn(x, p, name):
    """Inference BatchNorm with the running statistics, eps 1e-5."""
    c = lambda leaf: p[f"{name}.{leaf}"].astype(np.float64)[None, :, None, None]  # noqa: E731
    return (x - c("running_mean")) / np.sqrt(c("running_var") + 1e-5) * c("weight") + c("bias")


def np_maxpool_3x3_s2(x):
    xp = np.pad(x, ((0, 0), (0, 0), (1, 1), (1, 1)), constant_values=-np.inf)
    ho, wo = (x.shape[2] - 1) // 2 + 1, (x.shape[3] - 1) // 2 + 1
    return np.max([xp[:, :, i : i + 2 * ho : 2, j : j + 2 * wo : 2] for i in range(3) for j in range(3)], axis=0)


def np_resnet(x, p, layers):
    """Bottleneck ResNet v1.5 (stride on the 3x3 conv) in eval mode: [B, 3, H, W] -> (C2, C3, C4, C5)."""
    relu = lambda v: np.maximum(v, 0)  # noqa: E731
    w = lambda name: p[f"{name}.weight"].astype(np.float64)  # noqa: E731
    x = relu(np_bn(np_conv(x, w("conv1"), 2), p, "bn1"))
    x = np_maxpool_3x3_s2(x)
    feats = []
    for s, depth in enumerate(layers):
        for b in range(depth):
            n = f"layer{s + 1}.{b}"
            stride = 2 if s > 0 and b == 0 else 1
            y = relu(np_bn(np_conv(x, w(f"{n}.conv1")), p, f"{n}.bn1"))
            y = relu(np_bn(np_conv(y, w(f"{n}.conv2"), stride), p, f"{n}.bn2"))
            y = np_bn(np_conv(y, w(f"{n}.conv3")), p, f"{n}.bn3")
            shortcut = x
            if f"{n}.downsample.0.weight" in p:
                shortcut = np_bn(np_conv(x, w(f"{n}.downsample.0"), stride), p, f"{n}.downsample.1")
            x = relu(y + shortcut)
        feats.append(x)
    return feats


@functools.cache
def jitted(graphdef):
    """``(state, x) -> module(x)`` compiled once per module structure (shared across tests and blocks)."""
    return jax.jit(lambda state, x: nnx.merge(graphdef, state)(x))


def run(module, x):
    graphdef, state = nnx.split(module)
    return jitted(graphdef)(state, x)


def flax_features(backbone, x_nchw):
    """The backbone's own forward, eval mode: [B, 3, H, W] -> NCHW (C2, C3, C4, C5) as float32 numpy."""
    backbone.eval()
    feats = run(backbone, jnp.asarray(x_nchw.transpose(0, 2, 3, 1), jnp.float32))
    return [np.asarray(f).transpose(0, 3, 1, 2) for f in feats]


def flax_features_blockwise(backbone, x_nchw):
    """The same, one jitted block at a time: identical blocks (most of ResNet-101's
    layer3) share one compiled program, which a whole-network jit cannot."""
    backbone.eval()
    x = jnp.asarray(x_nchw.transpose(0, 2, 3, 1), jnp.float32)
    x = max_pool_3x3_s2(nnx.relu(run(backbone.bn1, run(backbone.conv1, x))))
    feats = []
    for stage in (backbone.layer1, backbone.layer2, backbone.layer3, backbone.layer4):
        for block in stage:
            x = run(block, x)
        feats.append(np.asarray(x).transpose(0, 3, 1, 2))
    return feats


def assert_features_close(actual, desired, rtol=1e-4):
    """Per stage, within ``rtol`` of the stage's largest magnitude; and not trivial."""
    assert [a.shape for a in actual] == [d.shape for d in desired]
    for i, (a, d) in enumerate(zip(actual, desired)):
        scale = np.abs(d).max()
        assert scale > 0 and (d > 0).mean() > 0.05, f"C{i + 2} is degenerate"
        err = np.abs(a - d).max() / scale
        assert err < rtol, f"C{i + 2}: max error {err:.2e} of the largest magnitude {scale:.3g}"


def test_images_get_imagenet_normalisation():
    """pcv.data's 0..255 constants are torchvision/timm's (x / 255 - mean) / std."""
    from pcv.data import IMAGE_MEAN, IMAGE_STD, normalize_images

    np.testing.assert_allclose(IMAGE_MEAN, 255 * np.array([0.485, 0.456, 0.406]), rtol=1e-6)
    np.testing.assert_allclose(IMAGE_STD, 255 * np.array([0.229, 0.224, 0.225]), rtol=1e-6)
    x = np.random.default_rng(0).integers(0, 256, (4, 5, 3), dtype=np.uint8)
    torch_style = (x / 255.0 - np.array([0.485, 0.456, 0.406])) / np.array([0.229, 0.224, 0.225])
    np.testing.assert_allclose(normalize_images(x), torch_style, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("norm", ["batch", "frozen"])
def test_resnet50_matches_numpy_reference(r50_weights, r50_case, norm):
    backbone = abstract_backbone("resnet50", norm)
    report = load_backbone(backbone, r50_weights)
    assert len(r50_weights) == 320  # as torchvision's resnet50().state_dict()
    assert len(report.loaded) == 53 + 53 * 4
    x, expect = r50_case
    assert_features_close(flax_features(backbone, x), expect)
    # Where the norm keeps them: "batch" -> affine Params + BatchStats; "frozen" -> all Frozen.
    kinds = {type(v) for _, v in nnx.to_flat_state(nnx.state(backbone.bn1))}
    assert kinds == ({nnx.Param, nnx.BatchStat} if norm == "batch" else {Frozen})


def test_reference_would_catch_a_wrong_layout(r50_weights, r50_case):
    """Not vacuous: one kernel with H and W swapped (OIHW -> WIHO) changes C3 onwards."""
    backbone = abstract_backbone("resnet50", "frozen")
    load_backbone(backbone, r50_weights)
    w = r50_weights["layer2.0.conv2.weight"]  # [128, 128, 3, 3]
    backbone.layer2[0].conv2.kernel[...] = jnp.asarray(w.transpose(3, 2, 1, 0))
    x, expect = r50_case
    with pytest.raises(AssertionError, match="C3"):
        assert_features_close(flax_features(backbone, x), expect)


def test_resnet101_loads_and_matches_numpy_reference():
    weights = random_weights(torchvision_resnet_shapes(RESNET101), seed=2)
    backbone = abstract_backbone("resnet101", "frozen")
    report = load_backbone(backbone, weights)
    assert len(report.loaded) == 104 + 104 * 4  # 104 convs, each with a BatchNorm
    assert_backbone_holds(backbone, weights)
    x = np.random.default_rng(3).standard_normal((1, 3, 64, 64))
    expect = np_resnet(x, weights, RESNET101)
    assert_features_close(flax_features_blockwise(backbone, x), expect)


def test_resnet50_weights_do_not_fit_resnet101(r50_weights):
    with pytest.raises(WeightMismatchError, match=r"layer3\.6\.conv1\.weight  expected \(256, 1024, 1, 1\)") as e:
        load_backbone(abstract_backbone("resnet101", "frozen"), r50_weights)
    assert len(e.value.missing) == 17 * 15  # blocks 6..22 of layer3, 3 convs + 3 x 4 BN tensors each


# --- what is loaded, ignored, refused ------------------------------------------------


def test_fc_and_num_batches_tracked_are_ignored_and_reported(r50_weights):
    report = load_backbone(abstract_backbone("resnet50", "batch"), r50_weights)
    assert isinstance(report, LoadReport)
    assert set(report.ignored) == {"fc.weight", "fc.bias"} | {
        n for n in r50_weights if n.endswith("num_batches_tracked")
    }
    assert len(report.ignored) == 2 + 53
    assert set(report.loaded) | set(report.ignored) == set(r50_weights)
    text = str(report)
    assert "265 tensors loaded" in text and "55 ignored" in text and "fc.* classifier" in text


def test_mismatches_are_one_error_naming_each(r50_weights):
    backbone = abstract_backbone("resnet50", "frozen")
    load_backbone(backbone, r50_weights)
    before = nnx.state(backbone)
    bad = dict(r50_weights)
    bad["layer2.1.conv2.weight"] = np.zeros((128, 128, 1, 1), np.float32)  # wrong shape
    del bad["layer4.2.bn3.running_var"]  # missing
    bad["layer5.0.conv1.weight"] = np.zeros((3,), np.float32)  # unexpected
    bad["layer1.0.bn1.bias"] = np.full((64,), np.nan, np.float32)  # corrupt values
    bad["layer1.0.bn2.bias"] = np.zeros((64,), np.int64)  # not float
    bad["layer1.1.bn1.running_var"] = -r50_weights["layer1.1.bn1.running_var"]
    with pytest.raises(WeightMismatchError) as e:
        load_backbone(backbone, bad)
    msg = str(e.value)
    assert "layer2.1.conv2.weight  expected (128, 128, 3, 3), got (128, 128, 1, 1)" in msg
    assert "layer4.2.bn3.running_var  expected (2048,)" in msg
    assert "layer5.0.conv1.weight  (3,)" in msg
    assert "layer1.0.bn1.bias  has NaN" in msg and "layer1.0.bn2.bias  dtype int64" in msg
    assert "layer1.1.bn1.running_var  has negative running variances" in msg
    assert e.value.missing == [("layer4.2.bn3.running_var", (2048,))]
    assert e.value.unexpected == [("layer5.0.conv1.weight", (3,))]
    assert e.value.mismatched == [("layer2.1.conv2.weight", (128, 128, 3, 3), (128, 128, 1, 1))]
    # All or nothing: the failed load changed no variable.
    jax.tree.map(np.testing.assert_array_equal, nnx.state(backbone), before)


def test_deep_stem_resnet_is_refused_with_a_hint(r50_weights):
    timm_d = {k: v for k, v in r50_weights.items() if k != "conv1.weight"}
    timm_d["conv1.0.weight"] = np.zeros((32, 3, 3, 3), np.float32)
    with pytest.raises(WeightMismatchError, match="(?s)conv1.weight  expected \\(64, 3, 7, 7\\).*deep-stem"):
        load_backbone(abstract_backbone("resnet50", "frozen"), timm_d)


def test_group_norm_backbone_is_refused(r50_weights):
    with pytest.raises(ValueError, match="GroupNorm.*frozen"):
        load_backbone(abstract_backbone("resnet50", "group"), r50_weights)


def test_prefixes_are_found_and_module_is_stripped():
    backbone = abstract_backbone("small", "frozen")
    weights = torch_layout(backbone)
    wrapped = {f"module.backbone.{k}": v for k, v in weights.items()}
    wrapped["module.head.weight"] = np.zeros((3, 3), np.float32)  # another part of a detector
    report = load_backbone(backbone, wrapped)
    assert report.prefix == "backbone." and report.ignored == ("head.weight",)
    assert "outside the backbone prefix" in str(report)
    assert_backbone_holds(backbone, weights)
    # An explicit prefix; two backbones in one file need one.
    twice = {**{f"a.{k}": v for k, v in weights.items()}, **{f"b.{k}": v + 1 for k, v in weights.items()}}
    with pytest.raises(ValueError, match=r"\['a\.', 'b\.'\]"):
        load_backbone(backbone, twice)
    load_backbone(backbone, twice, prefix="b.")
    assert_backbone_holds(backbone, {k: v + 1 for k, v in weights.items()})


def test_load_backbone_wants_a_resnet():
    with pytest.raises(TypeError, match="ResNet"):
        load_backbone(object(), {})


# --- the hooks: PCVNet, build_model, validate_config, command line ---------------


@pytest.fixture(scope="module")
def small_file(tmp_path_factory):
    """Torch-layout weights for the "small" backbone, as a safetensors file."""
    weights = torch_layout(abstract_backbone("small", "frozen"), seed=5)
    weights["fc.weight"] = np.zeros((10, 128), np.float32)
    path = tmp_path_factory.mktemp("weights") / "small.safetensors"
    write_safetensors(path, weights)
    return path, weights


def test_build_model_loads_config_model_pretrained_into_pcvnet(small_file, tmp_path):
    """build_model passes config.model.pretrained to PCVNet(pretrained=...), which loads it at init."""
    from pcv.errors import ConfigError
    from pcv.models.build import build_model
    from pcv.training.trainer import check_runtime
    from pcv.voting import VoteGrid

    path, weights = small_file
    config = synthetic_config("smoke")
    assert config.model.pretrained == ""  # scratch by default
    config = config_lib.override(config, {"model.pretrained": str(path)})
    check_runtime(config)
    model = build_model(config.model, C, VoteGrid(config.grid))
    assert isinstance(model, PCVNet)
    assert_backbone_holds(model.backbone, weights)
    # A usable model: real arrays everywhere (the backbone is built abstractly, then filled).
    assert all(isinstance(leaf, jax.Array) for leaf in jax.tree.leaves(nnx.state(model)))

    missing = config_lib.override(config, {"model.pretrained": str(tmp_path / "nope.safetensors")})
    with pytest.raises(ConfigError, match=r"config\.model\.pretrained: .*nope\.safetensors"):
        check_runtime(missing)
    with pytest.raises(ConfigError, match=r"config\.model\.backbone_norm"):
        config_lib.override(config, {"model.backbone_norm": "group"})


def test_pcvnet_pretrained_errors_come_before_the_rest_of_the_init(small_file):
    path, _ = small_file
    with pytest.raises(ValueError, match="GroupNorm"):
        PCVNet(C, K, backbone="small", backbone_norm="group", pretrained=str(path))
    with pytest.raises(WeightMismatchError, match="layer1.0.conv3.weight"):
        PCVNet(C, K, backbone="resnet50", backbone_norm="frozen", pretrained=str(path))


def test_check_command(small_file, capsys, tmp_path):
    path, _ = small_file
    assert main(["check", str(path), "--backbone=resnet50"]) == 1
    err = capsys.readouterr().err
    assert err.startswith(f"error: pretrained weights {path} do not fit") and "layer1.0.conv3.weight" in err
    assert err.count("\n") == 1  # one line, every name on it
    assert main(["check", str(tmp_path / "none.safetensors")]) == 1
    assert "none.safetensors" in capsys.readouterr().err
    assert main(["frobnicate"]) == 1
    assert "usage: python -m pcv.pretrained" in capsys.readouterr().err


# --- safetensors (the safetensors package) -------------------------------------------


@pytest.mark.parametrize("dtype", ["<f8", "<f4", "<f2", "<i8", "<i4", "<i2", "i1", "<u2", "u1", "?"])
def test_safetensors_round_trip(tmp_path, dtype):
    rng = np.random.default_rng(0)
    tensors = {
        "a.weight": (rng.normal(size=(3, 4, 2)) * 50).astype(dtype),
        "scalar": np.array(7).astype(dtype),
        "empty": np.zeros((0, 3), dtype),
    }
    path = tmp_path / "t.safetensors"
    write_safetensors(path, tensors, metadata={"format": "pt"})
    back = read_safetensors(path)
    assert back.keys() == tensors.keys()
    for k, v in tensors.items():
        assert back[k].dtype == v.dtype and back[k].shape == v.shape
        np.testing.assert_array_equal(back[k], v)
    assert read_safetensors_metadata(path) == {"format": "pt"}


def test_safetensors_bf16_reads_as_float32(tmp_path):
    x = np.array([[1.0, -3.0, 0.15625], [65280.0, -1e-3, 3.14159]], np.float32)
    path = tmp_path / "bf16.safetensors"
    write_safetensors(path, {"w": np.asarray(jnp.asarray(x, jnp.bfloat16))})
    back = read_safetensors(path)["w"]
    assert back.dtype == np.float32
    np.testing.assert_array_equal(back, np.asarray(jnp.asarray(x, jnp.bfloat16).astype(jnp.float32)))
    np.testing.assert_allclose(back, x, rtol=2**-8)


def hand_made_file(path, header, data):
    blob = json.dumps(header).encode()
    path.write_bytes(len(blob).to_bytes(8, "little") + blob + data)
    return path


def test_read_safetensors_of_a_file_written_by_hand(tmp_path):
    """The format as the spec gives it (8-byte length, JSON header, data), not as a writer happens to write it."""
    header = {
        "__metadata__": {"format": "pt"},
        "a": {"dtype": "F32", "shape": [2], "data_offsets": [0, 8]},
        "b": {"dtype": "BF16", "shape": [2], "data_offsets": [8, 12]},
        "m": {"dtype": "BOOL", "shape": [1, 2], "data_offsets": [12, 14]},
    }
    data = struct.pack("<ff", 1.5, -2.0) + struct.pack("<HH", 0x3F80, 0xC040) + b"\x01\x00"
    t = read_safetensors(hand_made_file(tmp_path / "x.safetensors", header, data))
    np.testing.assert_array_equal(t["a"], [1.5, -2.0])
    np.testing.assert_array_equal(t["b"], [1.0, -3.0])  # bf16 0x3F80 = 1, 0xC040 = -3
    np.testing.assert_array_equal(t["m"], [[True, False]])


GOOD = {"a": {"dtype": "F32", "shape": [2], "data_offsets": [0, 8]}}


@pytest.mark.parametrize(
    "header, data",
    [
        (GOOD, b"\0" * 5),  # truncated data
        ({"a": {"dtype": "F32", "shape": [3], "data_offsets": [0, 8]}}, b"\0" * 8),  # shape and size disagree
        ({"a": {"dtype": "X9", "shape": [1], "data_offsets": [0, 8]}}, b"\0" * 8),  # unknown dtype
        ({"a": {"dtype": "F32", "shape": [2]}}, b"\0" * 8),  # no offsets
        ([1, 2], b""),  # not an object
    ],
)
def test_corrupt_safetensors_errors_name_the_file(tmp_path, header, data):
    path = hand_made_file(tmp_path / "bad.safetensors", header, data)
    with pytest.raises(CorruptFileError, match="bad.safetensors: not a valid safetensors file"):
        read_safetensors(path)


def test_truncated_and_garbage_safetensors(tmp_path, small_file):
    path, _ = small_file
    raw = path.read_bytes()
    cut = tmp_path / "cut.safetensors"
    for size in (len(raw) - 100, 50, 3):
        cut.write_bytes(raw[:size])
        with pytest.raises(CorruptFileError, match="cut.safetensors: not a valid safetensors file"):
            read_safetensors(cut)
    cut.write_bytes((10).to_bytes(8, "little") + b"not json!!")
    with pytest.raises(CorruptFileError, match="cut.safetensors"):
        read_safetensors(cut)


# --- file types and torch ---------------------------------------------------------------


def test_load_state_dict_by_extension_or_content(tmp_path, small_file):
    path, weights = small_file
    renamed = tmp_path / "weights.data"
    renamed.write_bytes(path.read_bytes())
    for p in (path, renamed):
        got = load_state_dict(p)
        assert got.keys() == weights.keys()
    with pytest.raises(FileNotFoundError, match="missing.pth"):
        load_state_dict(tmp_path / "missing.pth")
    (tmp_path / "x.npz").write_bytes(b"hello world")
    with pytest.raises(ValueError, match="x.npz: unknown weight file type"):
        load_state_dict(tmp_path / "x.npz")


def test_torch_file_without_torch_says_what_to_do(tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "torch", None)  # import torch -> ImportError
    (tmp_path / "r.pth").write_bytes(b"PK\x03\x04")
    with pytest.raises(ImportError, match="(?s)r.pth needs torch.*pip install torch.*pcv.pretrained convert"):
        load_state_dict(tmp_path / "r.pth")


def test_torch_state_dict_files(tmp_path):
    torch = pytest.importorskip("torch", reason="needs torch (a CPU build is enough): pip install torch")
    sd = {
        "conv1.weight": torch.randn(4, 3, 7, 7),
        "bn1.num_batches_tracked": torch.tensor(5),
        "half": torch.randn(3).bfloat16(),
    }
    expect = {k: v.float().numpy() if v.dtype == torch.bfloat16 else v.numpy() for k, v in sd.items()}
    cases = {
        "plain.pth": sd,
        "wrapped.pth": {"state_dict": sd, "epoch": 3},
        "model.pt": {"model": {f"module.{k}": v for k, v in sd.items()}, "optimizer": {}},
    }
    for name, obj in cases.items():
        torch.save(obj, tmp_path / name)
        got = read_torch_state_dict(tmp_path / name)
        assert got.keys() == expect.keys(), name
        for k in expect:
            np.testing.assert_array_equal(got[k], expect[k])
    assert got["half"].dtype == np.float32
    torch.save([1, 2], tmp_path / "list.pth")
    with pytest.raises(ValueError, match="list.pth: expected a state dict"):
        read_torch_state_dict(tmp_path / "list.pth")
    (tmp_path / "junk.pth").write_bytes(b"PK\x03\x04junk")
    with pytest.raises(CorruptFileError, match="junk.pth"):
        read_torch_state_dict(tmp_path / "junk.pth")

    # convert: .pth -> .safetensors, same tensors
    assert main(["convert", str(tmp_path / "model.pt"), str(tmp_path / "out.safetensors")]) == 0
    got = read_safetensors(tmp_path / "out.safetensors")
    for k in expect:
        np.testing.assert_array_equal(got[k], expect[k])


def test_pth_of_resnet50_loads_like_the_dict(tmp_path, r50_weights):
    torch = pytest.importorskip("torch", reason="needs torch (a CPU build is enough): pip install torch")
    torch.save({k: torch.from_numpy(v) for k, v in r50_weights.items()}, tmp_path / "r50.pth")
    backbone = abstract_backbone("resnet50", "frozen")
    report = load_backbone(backbone, tmp_path / "r50.pth")
    assert len(report.loaded) == 265 and report.source.endswith("r50.pth")
    assert_backbone_holds(backbone, r50_weights)


def test_torch_ops_resnet50_matches(r50_weights, r50_case):
    """PyTorch's own conv / batch_norm / max_pool (padding, stride, eps conventions) on the
    same weights agree with the numpy reference, so the reference is PyTorch's ResNet."""
    torch = pytest.importorskip("torch", reason="needs torch (a CPU build is enough): pip install torch")
    F = torch.nn.functional
    p = {k: torch.from_numpy(v).double() for k, v in r50_weights.items() if v.ndim}

    def bn(x, name):
        w = [p[f"{name}.{leaf}"] for leaf in ("running_mean", "running_var", "weight", "bias")]
        return F.batch_norm(x, *w, training=False, eps=1e-5)

    def conv(x, name, stride=1):
        w = p[f"{name}.weight"]
        return F.conv2d(x, w, stride=stride, padding=w.shape[-1] // 2)

    x, expect = r50_case
    with torch.no_grad():
        y = F.max_pool2d(F.relu(bn(conv(torch.from_numpy(x), "conv1", 2), "bn1")), 3, 2, 1)
        feats = []
        for s, depth in enumerate(RESNET50):
            for b in range(depth):
                n = f"layer{s + 1}.{b}"
                stride = 2 if s > 0 and b == 0 else 1
                z = F.relu(bn(conv(y, f"{n}.conv1"), f"{n}.bn1"))
                z = F.relu(bn(conv(z, f"{n}.conv2", stride), f"{n}.bn2"))
                z = bn(conv(z, f"{n}.conv3"), f"{n}.bn3")
                if b == 0:
                    y = bn(conv(y, f"{n}.downsample.0", stride), f"{n}.downsample.1")
                y = F.relu(z + y)
            feats.append(y.numpy())
    assert_features_close(feats, expect, rtol=1e-9)  # both float64


def test_torchvision_resnet50_features_match(tmp_path):
    """torchvision's own ResNet-50 (random init, randomised BN statistics) against the Flax one."""
    torch = pytest.importorskip("torch", reason="needs torch (a CPU build is enough): pip install torch")
    torchvision = pytest.importorskip("torchvision", reason="needs torchvision: pip install torchvision")
    torch.manual_seed(0)
    net = torchvision.models.resnet50()
    with torch.no_grad():
        for m in net.modules():
            if isinstance(m, torch.nn.BatchNorm2d):  # init has mean 0, var 1, weight 1, bias 0: too easy
                m.running_mean.uniform_(-0.1, 0.1)
                m.running_var.uniform_(0.5, 1.5)
                m.weight.uniform_(0.5, 1.5)
                m.bias.uniform_(-0.1, 0.1)
    net.eval()
    torch.save(net.state_dict(), tmp_path / "resnet50.pth")
    x = torch.randn(1, 3, 64, 64, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        y = net.maxpool(net.relu(net.bn1(net.conv1(x))))
        expect = []
        for stage in (net.layer1, net.layer2, net.layer3, net.layer4):
            y = stage(y)
            expect.append(y.numpy().astype(np.float64))
    backbone = abstract_backbone("resnet50", "frozen")
    report = load_backbone(backbone, tmp_path / "resnet50.pth")
    assert len(report.loaded) == 265 and len(report.ignored) == 55
    assert_features_close(flax_features(backbone, x.numpy()), expect)
