"""The PCV network: shapes, dtypes, parameter counts, normalisation modes.

Models are built abstractly (``nnx.eval_shape``, the same Python code as a
real init) and filled with numpy random values: on the 2-core test machine
XLA compiles every random initializer per kernel shape, which would cost
seconds per model and say nothing the forward passes do not.
"""

import functools
import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx
from jax.sharding import Mesh, NamedSharding
from jax.sharding import PartitionSpec as P

from pcv.models import (
    FPN,
    Frozen,
    FrozenBatchNorm,
    PCVNet,
    PyramidFusion,
    build_backbone,
    count_params,
    torchvision_key,
    upsample_bilinear_2x,
    upsample_nearest_2x,
)
from pcv.models.resnet import conv_init, make_norm

C, K = 5, 17  # classes, vote bins
SMALL = dict(backbone="small", fpn_channels=32, fusion_channels=32)


def materialize(abstract, seed=0):
    """Give an abstract model random values: kernels He-scaled, norms/statistics near 1/0."""
    rng = np.random.default_rng(seed)
    flat = []
    for path, var in nnx.to_flat_state(nnx.state(abstract)):
        shape = var.get_value().shape
        name = path[-1]
        if name == "kernel":
            value = rng.normal(0.0, math.sqrt(2.0 / math.prod(shape[:-1])), shape)
        elif name in ("scale", "var"):
            value = rng.uniform(0.5, 1.5, shape)
        else:  # bias, mean
            value = rng.normal(0.0, 0.1, shape)
        flat.append((path, var.replace(jnp.asarray(value, var.get_value().dtype))))
    nnx.update(abstract, nnx.from_flat_state(flat))
    return abstract


def make(seed=0, **kwargs):
    return materialize(nnx.eval_shape(lambda: PCVNet(C, K, **kwargs)), seed)


@functools.cache
def forward(graphdef):
    """The trainer's functional step shape: merge inside jit, return outputs and new state.

    Cached per graphdef so that tests sharing a model and input shape compile once.
    """

    @jax.jit
    def run(state, images):
        model = nnx.merge(graphdef, state)
        return model(images), nnx.state(model)

    return run


def images(b, h, w, seed=0):
    return jnp.asarray(np.random.default_rng(seed).normal(size=(b, h, w, 3)), jnp.float32)


def assert_close(actual, desired, rtol=1e-4):
    """Equal up to reduction order: tolerance relative to the largest magnitude."""
    scale = float(np.abs(np.asarray(desired)).max())
    np.testing.assert_allclose(actual, desired, rtol=rtol, atol=rtol * scale)


@pytest.fixture(scope="module")
def small_bn():
    """Small network with BatchNorm everywhere, eval mode."""
    model = make(**SMALL, backbone_norm="batch", head_norm="batch")
    model.eval()
    return model


# --- shapes, dtypes, sizes ---------------------------------------------------


def test_small_shapes_dtypes_and_eval_mode_is_per_image(small_bn):
    graphdef, state = nnx.split(small_bn)
    x = images(2, 64, 96)
    out, new_state = forward(graphdef)(state, x)
    assert out["semantic"].shape == (2, 16, 24, C)
    assert out["votes"].shape == (2, 16, 24, K + 1)
    for v in out.values():
        assert v.dtype == jnp.float32 and np.isfinite(v).all()
    assert all(leaf.dtype == jnp.float32 for leaf in jax.tree.leaves(state))
    # Eval mode: running statistics, so an image's output ignores its batch mates
    # and the statistics stay put.
    other, _ = forward(graphdef)(state, x.at[0].set(images(1, 64, 96, seed=9)[0]))
    assert_close(other["votes"][1], out["votes"][1])
    assert np.abs(other["votes"][0] - out["votes"][0]).max() > 1e-3
    jax.tree.map(
        np.testing.assert_array_equal, nnx.state(small_bn, nnx.BatchStat), nnx.filter_state(new_state, nnx.BatchStat)
    )


def test_bf16_compute_keeps_float32_params_and_logits(small_bn):
    abstract = nnx.eval_shape(
        lambda: PCVNet(C, K, **SMALL, backbone_norm="batch", head_norm="batch", dtype=jnp.bfloat16)
    )
    abstract.eval()
    graphdef, abstract_state = nnx.split(abstract)
    assert all(leaf.dtype == jnp.float32 for leaf in jax.tree.leaves(abstract_state))
    # Same parameter structure: run the bf16 graph with the float32 model's values.
    state = nnx.state(small_bn)
    x = images(2, 64, 96, seed=1)
    out16, _ = forward(graphdef)(state, x)
    out32, _ = forward(nnx.graphdef(small_bn))(state, x)
    for key in out16:
        assert out16[key].dtype == jnp.float32
        err = np.abs(out16[key] - out32[key]).max() / np.abs(out32[key]).max()
        assert 0 < err < 0.1  # really computed in bf16, and still the same function
    # The trunk itself runs in bf16.
    model16 = nnx.merge(graphdef, state)
    feats = nnx.eval_shape(lambda m, x: m.backbone(x.astype(jnp.bfloat16)), model16, x)
    assert all(f.dtype == jnp.bfloat16 for f in feats)


@pytest.mark.parametrize("hw", [(70, 64), (64, 100), (16, 64)])
def test_input_size_must_be_multiple_of_32(small_bn, hw):
    h, w = hw
    with pytest.raises(ValueError, match=f"{h}x{w}"):
        small_bn(jnp.zeros((1, h, w, 3)))


def test_input_must_be_rgb_nhwc(small_bn):
    with pytest.raises(ValueError, match="B, H, W, 3"):
        small_bn(jnp.zeros((1, 3, 64, 64)))


def test_resnet50_forward_shapes():
    model = make(backbone="resnet50", backbone_norm="frozen", head_norm="group")  # the pretrained setup
    model.eval()
    out, _ = forward(nnx.graphdef(model))(nnx.state(model), images(1, 64, 64))
    assert out["semantic"].shape == (1, 16, 16, C) and out["votes"].shape == (1, 16, 16, K + 1)
    assert all(v.dtype == jnp.float32 and np.isfinite(v).all() for v in out.values())
    assert model.backbone.out_channels == (256, 512, 1024, 2048)


def test_backbone_features_at_strides_4_to_32():
    backbone = nnx.eval_shape(lambda: build_backbone("small", rngs=nnx.Rngs(0)))
    feats = nnx.eval_shape(lambda m, x: m(x), backbone, jax.ShapeDtypeStruct((2, 64, 96, 3), jnp.float32))
    assert [f.shape for f in feats] == [(2, 64 // s, 96 // s, c) for s, c in zip((4, 8, 16, 32), backbone.out_channels)]


# --- ResNet layout and naming -------------------------------------------------


@pytest.mark.parametrize("name, expected", [("resnet50", 23_508_032), ("resnet101", 42_500_160)])
def test_backbone_parameter_count_matches_torchvision(name, expected):
    backbone = nnx.eval_shape(lambda: build_backbone(name, rngs=nnx.Rngs(0)))
    assert count_params(backbone) == expected
    # Running statistics are not parameters; with them: + 2 x BN channels.
    bn_channels = count_params(backbone, nnx.BatchStat) // 2
    assert count_params(backbone, nnx.Param, nnx.BatchStat) == expected + 2 * bn_channels


def test_torchvision_names_and_layout_of_resnet50():
    backbone = nnx.eval_shape(lambda: build_backbone("resnet50", rngs=nnx.Rngs(0)))
    flat = {torchvision_key(p): v.get_value().shape for p, v in nnx.to_flat_state(nnx.state(backbone))}
    # torchvision resnet50.state_dict() has 320 entries: 53 convs, 53 x 4 BN
    # tensors, 53 num_batches_tracked and fc.weight/fc.bias; 265 without the last two kinds.
    assert len(flat) == 53 + 53 * 4
    assert flat["conv1.weight"] == (7, 7, 3, 64)  # HWIO
    assert flat["bn1.running_var"] == (64,)
    assert flat["layer1.0.downsample.0.weight"] == (1, 1, 64, 256)
    assert flat["layer1.0.downsample.1.weight"] == (256,)
    assert flat["layer3.5.conv3.weight"] == (1, 1, 256, 1024)
    assert flat["layer4.2.bn3.running_mean"] == (2048,)
    assert "layer3.6.conv1.weight" not in flat and "layer1.1.downsample.0.weight" not in flat
    # v1.5: the stride sits on the 3x3 conv; torch padding k // 2.
    block = backbone.layer2[0]
    assert block.conv1.strides == (1, 1) and block.conv2.strides == (2, 2)
    assert block.conv2.padding == ((1, 1), (1, 1)) and backbone.conv1.padding == ((3, 3), (3, 3))
    assert block.downsample[0].strides == (2, 2)


def test_torchvision_key_rejects_unknown_leaf():
    with pytest.raises(ValueError, match="foo"):
        torchvision_key(("layer1", 0, "foo"))


def test_conv_init_is_he_fan_out():
    w = conv_init(jax.random.key(0), (3, 3, 64, 128))
    np.testing.assert_allclose(np.std(w), math.sqrt(2.0 / (9 * 128)), rtol=0.02)
    assert abs(float(np.mean(w))) < 1e-3


# --- normalisation ------------------------------------------------------------


def test_batch_norm_is_independent_of_the_number_of_devices(small_bn):
    model = nnx.merge(*nnx.split(small_bn))  # a copy: train mode must not leak
    model.train()
    graphdef, state = nnx.split(model)
    x = images(8, 64, 64, seed=2)
    one_out, one_state = forward(graphdef)(state, x)

    mesh = Mesh(np.array(jax.devices()), ("data",))
    assert mesh.size == 8
    x_sharded = jax.device_put(x, NamedSharding(mesh, P("data")))
    state_repl = jax.device_put(state, NamedSharding(mesh, P()))
    dp_out, dp_state = forward(graphdef)(state_repl, x_sharded)
    assert len(dp_out["votes"].sharding.device_set) == 8  # really ran spread over 8 devices

    for key in one_out:
        assert_close(dp_out[key], one_out[key])
    stats_one, stats_dp = nnx.filter_state(one_state, nnx.BatchStat), nnx.filter_state(dp_state, nnx.BatchStat)
    jax.tree.map(assert_close, stats_dp, stats_one)
    # Not vacuous: train mode moved the statistics (momentum 0.9), by the global
    # batch's statistics, which no single device's shard has.
    before = nnx.filter_state(state, nnx.BatchStat)
    moved = jax.tree.leaves(jax.tree.map(lambda a, b: np.abs(a - b).max(), stats_one, before))
    assert min(moved) > 0


def test_frozen_norm_never_changes_and_is_not_a_param():
    model = make(**SMALL, backbone_norm="frozen", head_norm="none")
    assert not jax.tree.leaves(nnx.state(model, nnx.BatchStat))
    frozen = nnx.state(model, Frozen)
    # scale, bias, mean, var of 12 norms: stem, 2 per basic block, 3 downsample shortcuts
    assert len(jax.tree.leaves(frozen)) == 4 * 12
    bn_model = nnx.eval_shape(lambda: PCVNet(C, K, **SMALL, backbone_norm="batch", head_norm="none"))
    assert count_params(bn_model) - count_params(model) == count_params(bn_model.backbone, nnx.BatchStat)

    # The trainer's split: the optimizer's filter leaves the frozen norms out.
    assert PCVNet.trainable is nnx.Param
    _, params, rest = nnx.split(model, PCVNet.trainable, ...)
    assert not jax.tree.leaves(nnx.filter_state(rest, nnx.Param))
    assert jax.tree.leaves(nnx.filter_state(rest, Frozen))

    # A functional training step on the backbone (cheaper to compile than the
    # whole network): gradients w.r.t. nnx.Param only, Frozen untouched.
    backbone = model.backbone
    backbone.train()
    graphdef, params, rest = nnx.split(backbone, nnx.Param, ...)

    @jax.jit
    def step(params, rest, x):
        def loss(params):
            m = nnx.merge(graphdef, params, rest)
            feats = m(x)
            return sum(jnp.mean(f**2) for f in feats), (feats, nnx.state(m))

        (_, (feats, new_state)), grads = jax.value_and_grad(loss, has_aux=True)(params)
        return feats, new_state, grads

    x = images(2, 64, 64, seed=3)
    feats, new_state, grads = step(params, rest, x)
    jax.tree.map(np.testing.assert_array_equal, nnx.state(backbone, Frozen), nnx.filter_state(new_state, Frozen))
    assert jax.tree.structure(grads) == jax.tree.structure(params)
    assert all(np.isfinite(g).all() for g in jax.tree.leaves(grads))
    assert np.abs(grads["conv1"]["kernel"][...]).max() > 0  # through the stem's max pool
    # Frozen norms: no batch dependence even in train mode.
    other, _, _ = step(params, rest, x.at[1].set(images(1, 64, 64, seed=9)[0]))
    assert_close(other[-1][0], feats[-1][0])


def test_frozen_batch_norm_is_batch_norm_with_running_stats():
    rng = np.random.default_rng(4)
    stats = {k: jnp.asarray(rng.uniform(0.5, 1.5, 6), jnp.float32) for k in ("scale", "bias", "mean", "var")}
    frozen = FrozenBatchNorm(6)
    bn = nnx.BatchNorm(6, use_running_average=True, epsilon=1e-5, rngs=nnx.Rngs(0))
    for k, v in stats.items():
        getattr(frozen, k)[...] = v
        getattr(bn, k)[...] = v
    x = jnp.asarray(rng.normal(size=(2, 3, 3, 6)), jnp.float32)
    np.testing.assert_allclose(frozen(x), bn(x), rtol=1e-5, atol=1e-6)
    expect = (x - stats["mean"]) / np.sqrt(stats["var"] + 1e-5) * stats["scale"] + stats["bias"]
    np.testing.assert_allclose(frozen(x), expect, rtol=1e-5, atol=1e-6)
    assert frozen(x.astype(jnp.bfloat16)).dtype == jnp.bfloat16


def test_zero_scale_option_and_unknown_norm():
    rngs = nnx.Rngs(0)
    assert not np.any(make_norm("batch", 8, zero_scale=True, rngs=rngs).scale[...])
    assert not np.any(make_norm("group", 8, zero_scale=True, rngs=rngs).scale[...])
    assert np.all(make_norm("frozen", 8, zero_scale=True, rngs=rngs).scale[...] == 1)  # fixed values
    with pytest.raises(ValueError, match="layer"):
        make_norm("layer", 8, rngs=rngs)
    with pytest.raises(ValueError, match="resnet18"):
        PCVNet(C, K, backbone="resnet18")
    with pytest.raises(ValueError, match="head_norm"):
        PCVNet(C, K, backbone="small", head_norm="instance")


# --- FPN and fusion -------------------------------------------------------------


def numpy_bilinear_2x(x):
    """PyTorch's align_corners=False rule: source = (out + 0.5) / 2 - 0.5, clamped."""
    for axis in (1, 2):
        n = x.shape[axis]
        src = np.clip((np.arange(2 * n) + 0.5) / 2 - 0.5, 0, n - 1)
        i0 = np.floor(src).astype(int)
        i1 = np.minimum(i0 + 1, n - 1)
        f = (src - i0).reshape([-1 if a == axis else 1 for a in range(x.ndim)])
        x = (1 - f) * np.take(x, i0, axis) + f * np.take(x, i1, axis)
    return x


def test_upsampling_matches_torch_rules():
    x = np.random.default_rng(5).normal(size=(2, 3, 5, 4)).astype(np.float32)
    up = jax.jit(lambda x: (upsample_bilinear_2x(x), upsample_nearest_2x(x)))
    bilinear, nearest = up(x)
    np.testing.assert_allclose(bilinear, numpy_bilinear_2x(x), rtol=1e-6, atol=1e-6)
    np.testing.assert_array_equal(nearest, x.repeat(2, 1).repeat(2, 2))


def test_fpn_and_fusion_structure():
    in_channels = (16, 32, 64, 128)
    fpn = nnx.eval_shape(lambda: FPN(in_channels, 24, rngs=nnx.Rngs(0)))
    feats = [jax.ShapeDtypeStruct((1, 64 // s, 64 // s, c), jnp.float32) for s, c in zip((4, 8, 16, 32), in_channels)]
    pyramid = nnx.eval_shape(lambda m, f: m(f), fpn, feats)
    assert [p.shape for p in pyramid] == [(1, 64 // s, 64 // s, 24) for s in (4, 8, 16, 32)]
    assert fpn.lateral[0].conv.use_bias and fpn.lateral[0].norm is None  # norm="none": plain FPN

    fusion = nnx.eval_shape(lambda: PyramidFusion(24, 8, rngs=nnx.Rngs(0)))
    assert [len(level) for level in fusion.stages] == [1, 1, 2, 3]  # P2..P5
    fused = nnx.eval_shape(lambda m, p: m(p), fusion, pyramid)
    assert fused.shape == (1, 16, 16, 8)
