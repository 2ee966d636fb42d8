"""Tests of eriep_jax.models: registry, exact parameter counts, shapes, modes, devices.

Big models are only traced (``jax.eval_shape``), never materialised; numerical
tests use widths of 1/16 to 1/48 and 32x32 inputs so that the whole file stays
fast on a 2-core CPU. The 2 fake CPU devices come from tests/conftest.py.
"""

import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from eriep_jax import models
from eriep_jax.models import get_model, list_models

ALL = ["cnn12", "cnn16", "cnn4", "cnn8", "convnext_tiny", "resnet101", "resnet18", "resnet50",
       "vgg16", "wrn40_2"]

# One tiny representative of each code path: plain CNN, VGG (trailing pool in the head),
# basic-block ResNet, bottleneck ResNet (ImageNet stem), ConvNeXt.
TINY = {
    "cnn8": dict(width=1 / 16),
    "vgg16": dict(width=1 / 16),
    "resnet18": dict(width=1 / 16),
    "resnet50": dict(width=1 / 32, stem="imagenet"),
    "convnext_tiny": dict(width=1 / 48),
}


def n_params(tree) -> int:
  return sum(int(np.prod(a.shape)) for a in jax.tree_util.tree_leaves(tree))


def abstract_variables(model, size=32, batch=1):
  x = jax.ShapeDtypeStruct((batch, size, size, 3), jnp.float32)
  return jax.eval_shape(lambda k, x: model.init(k, x), jax.random.key(0), x)


def images(n, size=32, seed=0):
  return jax.random.uniform(jax.random.key(seed), (n, size, size, 3), jnp.float32)


def replicate(tree):
  n_dev = jax.local_device_count()
  return jax.tree_util.tree_map(lambda a: jnp.broadcast_to(a, (n_dev,) + a.shape), tree)


def synthetic_variables(model, seed=0):
  """Variables with the model's tree, filled from NumPy instead of running ``init``.

  XLA needs ~20 s of CPU to compile the threefry draws of a ResNet-50's init, so
  the numerical tests fill the traced tree themselves: kernels ~ N(0, 1/fan_in),
  biases ~ N(0, 0.1^2), norm scales 1, running stats (0, 1), layer scale 0.5 (the
  real 1e-6 would hide ConvNeXt's blocks from every check). The real
  initialisers are tested once, on cnn4, in test_init_statistics.
  """
  rng = np.random.default_rng(seed)
  abstract = abstract_variables(model)

  def fill(path, leaf):
    name = jax.tree_util.keystr(path)
    if "kernel" in name:
      fan_in = int(np.prod(leaf.shape[:-1]))
      return jnp.asarray(rng.normal(0.0, 1.0 / np.sqrt(fan_in), leaf.shape), jnp.float32)
    if "layer_scale" in name:
      return jnp.full(leaf.shape, 0.5, jnp.float32)
    if "'scale'" in name or "'var'" in name:
      return jnp.ones(leaf.shape, jnp.float32)
    if "'mean'" in name:
      return jnp.zeros(leaf.shape, jnp.float32)
    assert "bias" in name, name
    return jnp.asarray(rng.normal(0.0, 0.1, leaf.shape), jnp.float32)

  return jax.tree_util.tree_map_with_path(fill, abstract)


@functools.lru_cache(maxsize=None)
def tiny(name):
  """(model, variables) of a tiny-width model, built once per test session."""
  model = get_model(name, 10, **TINY[name])
  return model, synthetic_variables(model)


@functools.lru_cache(maxsize=None)
def jitted(name, train=False, features=True):
  """A jitted apply of a tiny model, cached so that tests share its compilation."""
  model, _ = tiny(name)
  if train:
    return jax.jit(functools.partial(model.apply, train=True, mutable=["batch_stats"]))
  return jax.jit(functools.partial(model.apply, return_features=features))


# ----------------------------------------------------------------------------- registry


def test_list_models_names():
  assert list_models() == ALL


def test_unknown_name_lists_valid_names():
  with pytest.raises(ValueError, match=r"unknown model name 'resnet34'.*cnn8.*convnext_tiny"):
    get_model("resnet34", 10)


def test_name_is_case_insensitive():
  assert isinstance(get_model("ResNet18", 10), models.ResNet)


@pytest.mark.parametrize("name,options,error,pattern", [
    ("cnn8", dict(width=0), ValueError, "width=0"),
    ("cnn8", dict(width=-0.5), ValueError, "width=-0.5"),
    ("cnn8", dict(width=float("inf")), ValueError, "width=inf"),
    ("cnn8", dict(dtype="int8"), TypeError, "dtype='int8'"),
    ("cnn8", dict(batch_norm="yes"), TypeError, "batch_norm='yes'"),
    ("cnn8", dict(stem="imagenet"), TypeError, r"option\(s\) \['stem'\]"),
    ("cnn8", dict(mean=(0.5, 0.5)), ValueError, "3 entries"),
    ("cnn8", dict(std=(0.2, 0.0, 0.2)), ValueError, "non-positive"),
    ("cnn8", dict(bn_axis_name=3), TypeError, "bn_axis_name=3"),
    ("resnet18", dict(stem="tiny"), ValueError, "stem='tiny'"),
    ("cnn8", dict(norm="instance"), ValueError, "norm='instance' for cnn8 is unknown"),
    ("wrn40_2", dict(norm="instance"), ValueError, "norm='instance' for wrn40_2 is unknown"),
    ("resnet18", dict(batch_norm=False), ValueError, "batch_norm=False"),
    ("convnext_tiny", dict(drop_path_rate=1.0), ValueError, "drop_path_rate=1.0"),
])
def test_bad_options_raise_clear_errors(name, options, error, pattern):
  with pytest.raises(error, match=pattern):
    get_model(name, 10, **options)


def test_bad_num_classes():
  with pytest.raises(ValueError, match="num_classes=0"):
    get_model("cnn8", 0)


@pytest.mark.parametrize("name,shape,dtype,error,pattern", [
    ("cnn8", (32, 32, 3), jnp.float32, ValueError, r"shape \(32, 32, 3\).*x\[None\]"),
    ("resnet18", (2, 32, 32, 1), jnp.float32, ValueError, "3 channels"),
    ("convnext_tiny", (2, 3, 32, 32), jnp.float32, ValueError, "NHWC"),
    ("cnn8", (2, 32, 32, 3), jnp.uint8, TypeError, r"uint8.*/ 255"),
    ("vgg16", (2, 16, 16, 3), jnp.float32, ValueError, "at least 32x32"),
    ("convnext_tiny", (2, 28, 28, 3), jnp.float32, ValueError, "at least 32x32"),
])
def test_bad_inputs_raise_at_trace_time(name, shape, dtype, error, pattern):
  model = get_model(name, 10, width=1 / 16)
  x = jax.ShapeDtypeStruct(shape, dtype)
  with pytest.raises(error, match=pattern):
    jax.eval_shape(lambda k, x: model.init(k, x), jax.random.key(0), x)


# ----------------------------------------------------------------------------- parameter counts


@pytest.mark.parametrize("name,expected", [
    # torchvision's published counts (ImageNet stem, 1000 classes).
    ("resnet18", 11_689_512),
    ("resnet50", 25_557_032),
    ("resnet101", 44_549_160),
    ("convnext_tiny", 28_589_128),
])
def test_torchvision_parameter_counts(name, expected):
  options = dict(stem="imagenet") if name.startswith("resnet") else {}
  variables = abstract_variables(get_model(name, 1000, **options))
  assert n_params(variables["params"]) == expected


def conv(k, cin, cout):  # 3x3 conv with bias
  return k * k * cin * cout + cout


def bn(c):  # scale + bias (running stats are not parameters)
  return 2 * c


def dense(i, o):
  return i * o + o


HEAD_10 = dense(512, 512) + dense(512, 256) + dense(256, 10)


def test_cnn8_parameter_count_by_hand():
  convs = (conv(3, 3, 64) + conv(3, 64, 128) + conv(3, 128, 256) + conv(3, 256, 256)
           + conv(3, 256, 512) + 3 * conv(3, 512, 512))
  bns = bn(64) + bn(128) + 2 * bn(256) + 4 * bn(512)
  assert convs == 9_220_480 and bns == 5_504 and HEAD_10 == 396_554
  variables = abstract_variables(get_model("cnn8", 10))
  assert n_params(variables["params"]) == convs + bns + HEAD_10 == 9_622_538
  # Running mean and variance of the 8 BN layers.
  assert n_params(variables["batch_stats"]) == bns


def test_vgg16_parameter_count_by_hand():
  convs = (conv(3, 3, 64) + conv(3, 64, 64) + conv(3, 64, 128) + conv(3, 128, 128)
           + conv(3, 128, 256) + 2 * conv(3, 256, 256) + conv(3, 256, 512)
           + 5 * conv(3, 512, 512))
  bns = 2 * bn(64) + 2 * bn(128) + 3 * bn(256) + 6 * bn(512)
  variables = abstract_variables(get_model("vgg16", 10))
  assert n_params(variables["params"]) == convs + bns + HEAD_10 == 15_119_690


def test_wrn40_2_parameter_count_by_hand():
  # Faster AutoAugment's critic backbone: 3x3 stem conv to 16, three groups of 6
  # pre-activation blocks (BN, conv, BN, conv; 1x1 shortcut where the shape changes)
  # at 32, 64, 128 channels, final BN, Dense(10). No conv biases: 2,243,546 in all.
  total, cin = 3 * 3 * 3 * 16, 16
  for c in (32, 64, 128):
    for _ in range(6):
      total += bn(cin) + 9 * cin * c + bn(c) + 9 * c * c + (cin * c if cin != c else 0)
      cin = c
  total += bn(128) + 128 * 10 + 10
  variables = abstract_variables(get_model("wrn40_2", 10))
  assert n_params(variables["params"]) == total == 2_243_546
  # 36 3x3 convs + the stem + 3 shortcuts.
  kernels = [a for a in jax.tree_util.tree_leaves(variables["params"]) if a.ndim == 4]
  assert len(kernels) == 40
  assert sum(1 for a in kernels if a.shape[:2] == (1, 1)) == 3


def test_layer_norm_is_per_example_in_train_mode_and_has_no_batch_stats():
  # The stage-1 critic's norm: each example's output depends on that example only,
  # so the per-example gradient penalty stays valid (unlike batch norm in train mode).
  # The variables are synthetic (init's own tree, traced, with NumPy values; see
  # synthetic_variables): compiling init's draws cost ~7 s per model, and neither
  # property depends on the values (random biases, not init's zeros, if anything
  # make the checks stricter). The real initialisers are tested in test_init_statistics.
  for name in ("cnn4", "wrn40_2"):
    model = get_model(name, 10, width=1 / 8, norm="layer")
    variables = synthetic_variables(model)
    assert set(variables) == {"params"}
    x = images(4)
    other = x.at[1:].set(images(3, seed=9))
    apply = jax.jit(functools.partial(model.apply, train=True))
    np.testing.assert_allclose(apply(variables, other)[0], apply(variables, x)[0], rtol=1e-5,
                               atol=1e-6)
    if name == "cnn4":   # one LayerNorm (per-channel scale and bias) after each of the 4 convs
      body = variables["params"]["backbone"]
      assert sorted(k for k in body if k.startswith("LayerNorm")) == [
          f"LayerNorm_{i}" for i in range(4)]
      assert body["LayerNorm_3"]["scale"].shape == (64,)
      # It normalises each example over (H, W, C): its first conv's output scaled by 2
      # (with the bias scaled too) gives the same logits.
      scaled = jax.tree_util.tree_map(lambda a: a, variables)
      scaled["params"]["backbone"]["Conv_0"] = {
          k: 2.0 * v for k, v in body["Conv_0"].items()}
      np.testing.assert_allclose(apply(scaled, x), apply(variables, x), rtol=1e-4, atol=1e-5)


def test_init_statistics():
  # The real initialisers: He-normal fan-out convs (torchvision), zero conv biases, BN (1, 0).
  model = get_model("cnn4", 10, width=0.5)
  variables = jax.jit(model.init)(jax.random.key(0), images(1))
  kernel = variables["params"]["backbone"]["Conv_3"]["kernel"]
  assert kernel.shape == (3, 3, 128, 256)
  np.testing.assert_allclose(float(kernel.std()), np.sqrt(2.0 / (3 * 3 * 256)), rtol=0.01)
  assert float(jnp.abs(kernel.mean())) < 1e-4
  np.testing.assert_array_equal(variables["params"]["backbone"]["Conv_3"]["bias"], 0.0)
  np.testing.assert_array_equal(variables["params"]["backbone"]["BatchNorm_3"]["scale"], 1.0)
  np.testing.assert_array_equal(variables["batch_stats"]["backbone"]["BatchNorm_3"]["var"], 1.0)


def test_cnn8_without_batch_norm_has_no_batch_stats():
  variables = abstract_variables(get_model("cnn8", 10, batch_norm=False))
  assert set(variables) == {"params"}
  assert n_params(variables["params"]) == 9_622_538 - 5_504


@pytest.mark.parametrize("name,stages", [
    ("cnn4", [(3, 64), (64, 128), (128, 256), (256, 512)]),
    ("cnn12", [(3, 64), (64, 64), (64, 128), (128, 128), (128, 256)] + [(256, 256)] * 3
     + [(256, 512)] + [(512, 512)] * 3),
    ("cnn16", [(3, 64), (64, 64), (64, 128), (128, 128), (128, 256)] + [(256, 256)] * 3
     + [(256, 512)] + [(512, 512)] * 7),
])
def test_depth_variant_conv_counts(name, stages):
  depth = int(name[3:])
  assert len(stages) == depth
  expected = sum(conv(3, i, o) + bn(o) for i, o in stages) + HEAD_10
  variables = abstract_variables(get_model(name, 10))
  assert n_params(variables["params"]) == expected
  kernels = [a for a in jax.tree_util.tree_leaves(variables["params"]) if a.ndim == 4]
  assert len(kernels) == depth


def test_width_scales_every_layer():
  # cnn8 at quarter width: channels 16, 32, 64, 64, 128 x4; head 128-128, 128-64, 64-10.
  v = abstract_variables(get_model("cnn8", 10, width=0.25))
  expected = (conv(3, 3, 16) + conv(3, 16, 32) + conv(3, 32, 64) + conv(3, 64, 64)
              + conv(3, 64, 128) + 3 * conv(3, 128, 128)
              + bn(16) + bn(32) + 2 * bn(64) + 4 * bn(128)
              + dense(128, 128) + dense(128, 64) + dense(64, 10))
  assert n_params(v["params"]) == expected


# ----------------------------------------------------------------------------- shapes


@pytest.mark.parametrize("name,options,size,feature_shape", [
    ("cnn4", {}, 32, (4, 4, 32)),
    ("cnn8", {}, 32, (4, 4, 32)),
    ("cnn8", {}, 224, (28, 28, 32)),
    ("cnn12", {}, 32, (4, 4, 32)),
    ("cnn16", {}, 224, (28, 28, 32)),
    ("vgg16", {}, 32, (2, 2, 32)),
    ("vgg16", {}, 224, (14, 14, 32)),
    ("resnet18", {}, 32, (4, 4, 32)),
    ("resnet18", dict(stem="imagenet"), 224, (7, 7, 32)),
    ("resnet50", {}, 32, (4, 4, 128)),
    ("resnet50", dict(stem="imagenet"), 224, (7, 7, 128)),
    ("resnet101", dict(stem="imagenet"), 224, (7, 7, 128)),
    ("convnext_tiny", {}, 32, (1, 1, 48)),
    ("convnext_tiny", {}, 224, (7, 7, 48)),
])
def test_output_and_feature_shapes(name, options, size, feature_shape):
  model = get_model(name, 7, width=1 / 16, **options)
  x = jax.ShapeDtypeStruct((3, size, size, 3), jnp.float32)

  def run(k, x):
    variables = model.init(k, x)
    return model.apply(variables, x, return_features=True)

  logits, features = jax.eval_shape(run, jax.random.key(0), x)
  assert logits.shape == (3, 7) and logits.dtype == jnp.float32
  assert features.shape == (3,) + feature_shape and features.dtype == jnp.float32


def test_bfloat16_compute_keeps_float32_params_and_logits():
  model32, variables = tiny("resnet18")
  model16 = get_model("resnet18", 10, dtype="bfloat16", **TINY["resnet18"])
  x = images(4)
  # Same parameter tree and dtypes: a float32 checkpoint serves both compute dtypes.
  abstract = jax.eval_shape(lambda k, x: model16.init(k, x), jax.random.key(1), x)
  assert all(a.dtype == jnp.float32 for a in jax.tree_util.tree_leaves(abstract))
  assert jax.tree_util.tree_structure(abstract) == jax.tree_util.tree_structure(variables)
  logits16 = jax.jit(model16.apply)(variables, x)
  logits32, _ = jitted("resnet18", features=True)(variables, x)
  assert logits16.dtype == jnp.float32
  # bfloat16 keeps 8 mantissa bits: agreement to a few percent of the logit scale.
  scale = float(jnp.max(jnp.abs(logits32)))
  np.testing.assert_allclose(logits16, logits32, atol=0.05 * scale)
  assert not np.allclose(logits16, logits32, atol=1e-6)  # it really computed in bfloat16


# ----------------------------------------------------------------------------- modes


def test_batch_stats_update_only_in_train_mode():
  model, variables = tiny("cnn8")
  x = images(4)
  _, state = jitted("cnn8", train=True)(variables, x)
  # First BN: running mean <- 0.9 * 0 + 0.1 * batch mean of the first conv's output.
  mean = jnp.asarray(models.CIFAR10_MEAN)
  std = jnp.asarray(models.CIFAR10_STD)
  p = variables["params"]["backbone"]["Conv_0"]
  y = jax.lax.conv_general_dilated((x - mean) / std, p["kernel"], (1, 1), ((1, 1), (1, 1)),
                                   dimension_numbers=("NHWC", "HWIO", "NHWC")) + p["bias"]
  np.testing.assert_allclose(state["batch_stats"]["backbone"]["BatchNorm_0"]["mean"],
                             0.1 * y.mean(axis=(0, 1, 2)), rtol=1e-4, atol=1e-6)
  np.testing.assert_allclose(state["batch_stats"]["backbone"]["BatchNorm_0"]["var"],
                             0.9 + 0.1 * y.var(axis=(0, 1, 2)), rtol=1e-4, atol=1e-6)
  # Eval mode leaves them untouched even when the collection is mutable.
  _, same = model.apply(variables, x, train=False, mutable=["batch_stats"])
  jax.tree_util.tree_map(np.testing.assert_array_equal, same["batch_stats"],
                         variables["batch_stats"])


def test_eval_mode_is_per_example_train_mode_is_not():
  model, variables = tiny("resnet18")
  x = images(4)
  other = x.at[1:].set(images(3, seed=9))  # same first example, different batch mates
  eval_fn, train_fn = jitted("resnet18", features=True), jitted("resnet18", train=True)
  np.testing.assert_allclose(eval_fn(variables, other)[0][0], eval_fn(variables, x)[0][0],
                             rtol=1e-5, atol=1e-5)
  assert not np.allclose(train_fn(variables, other)[0][0], train_fn(variables, x)[0][0],
                         atol=1e-4)


def test_max_pool_2x2_matches_reduce_window():
  from eriep_jax.models.cnn import max_pool_2x2
  x = jax.random.normal(jax.random.key(5), (2, 7, 6, 3))  # odd height: last row dropped
  expected = jax.lax.reduce_window(x, -jnp.inf, jax.lax.max, (1, 2, 2, 1), (1, 2, 2, 1), "VALID")
  np.testing.assert_array_equal(max_pool_2x2(x), expected)
  # The gradient goes to the arg-max of each window (no ties in continuous data).
  grad = jax.grad(lambda x: max_pool_2x2(x).sum())(x)
  assert float(grad.sum()) == 2 * 3 * 3 * 3 and set(np.unique(grad)) == {0.0, 1.0}


@pytest.mark.parametrize("size", [2, 5])  # matmul path (<= 3 pixels) and lax conv path
def test_conv3x3_matches_lax_conv(size):
  from eriep_jax.models.cnn import Conv3x3
  x = jax.random.normal(jax.random.key(6), (2, size, size + 1, 4))
  layer = Conv3x3(5)
  variables = layer.init(jax.random.key(7), x)
  kernel, bias = variables["params"]["kernel"], variables["params"]["bias"] + 0.3
  expected = jax.lax.conv_general_dilated(x, kernel, (1, 1), ((1, 1), (1, 1)),
                                          dimension_numbers=("NHWC", "HWIO", "NHWC")) + bias
  got = layer.apply({"params": {"kernel": kernel, "bias": bias}}, x)
  np.testing.assert_allclose(got, expected, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("cin", [3, 8])   # the image layer's matmul gradient, and lax's
def test_conv3x3_gradients_and_second_order_match_lax_conv(cin):
  # Input and kernel gradients, and the gradient penalty's second order (the kernel's
  # gradient of the squared input-gradient norm), against autodiff of the lax conv.
  from eriep_jax.models.cnn import Conv3x3
  x = jax.random.normal(jax.random.key(6), (2, 5, 6, cin))
  g = jax.random.normal(jax.random.key(8), (2, 5, 6, 7))
  kernel = Conv3x3(7).init(jax.random.key(7), x)["params"]["kernel"]
  lax_conv = lambda x, k: jax.lax.conv_general_dilated(
      x, k, (1, 1), ((1, 1), (1, 1)), dimension_numbers=("NHWC", "HWIO", "NHWC"))
  ours = lambda x, k: Conv3x3(7).apply({"params": {"kernel": k, "bias": jnp.zeros(7)}}, x)

  @functools.partial(jax.jit, static_argnums=2)
  def gradients(x, k, conv_fn):   # (d/dx, d/dk, d/dk of the penalty)
    loss = lambda x, k: jnp.sum(conv_fn(x, k) * g)
    penalty = lambda k: jnp.sum(jax.grad(loss)(jnp.tanh(x), k) ** 2)
    return (*jax.grad(loss, (0, 1))(x, k), jax.grad(penalty)(k))

  want, got = gradients(x, kernel, lax_conv), gradients(x, kernel, ours)
  for a, b in zip(got, want):
    np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-5)
  assert float(jnp.abs(want[0]).max()) > 0.1 and float(jnp.abs(want[2]).max()) > 0.1


def test_normalize_equals_feeding_standardised_images():
  model, variables = tiny("cnn8")
  raw = get_model("cnn8", 10, normalize=False, **TINY["cnn8"])
  imagenet = get_model("cnn8", 10, mean=models.IMAGENET_MEAN, std=models.IMAGENET_STD,
                       **TINY["cnn8"])
  x = images(2)
  for m, mean, std in ((model, models.CIFAR10_MEAN, models.CIFAR10_STD),
                       (imagenet, models.IMAGENET_MEAN, models.IMAGENET_STD)):
    standardised = (x - jnp.asarray(mean)) / jnp.asarray(std)
    np.testing.assert_allclose(m.apply(variables, x), raw.apply(variables, standardised),
                               rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("name", ["vgg16", "convnext_tiny"])
def test_head_of_features_equals_logits_and_gradcam_grads_are_finite(name):
  model, variables = tiny(name)
  x = images(4)
  logits, features = jitted(name, features=True)(variables, x)
  head = jax.jit(functools.partial(model.apply, method="head"))
  np.testing.assert_allclose(head(variables, features), logits, rtol=1e-5, atol=1e-6)
  # Grad-CAM: d logit_c / d features from the single forward pass above.
  grads = jax.jit(jax.grad(lambda f: head(variables, f)[:, 3].sum()))(features)
  assert grads.shape == features.shape and bool(jnp.all(jnp.isfinite(grads)))
  assert float(jnp.abs(grads).sum()) > 0


@pytest.mark.parametrize("fill", [0.0, 1.0])
def test_parameter_gradients_are_finite_on_constant_images(fill):
  # Constant images make every BN batch variance 0: the epsilon must keep gradients finite.
  model, variables = tiny("cnn8")
  x = jnp.full((2, 32, 32, 3), fill, jnp.float32)
  grads = _constant_image_grads(variables["params"], x)
  leaves = jax.tree_util.tree_leaves(grads)
  assert all(bool(jnp.all(jnp.isfinite(g))) for g in leaves)
  assert sum(float(jnp.abs(g).sum()) for g in leaves) > 0


@jax.jit
def _constant_image_grads(params, x):
  model, variables = tiny("cnn8")

  def loss(params):
    logits, _ = model.apply({**variables, "params": params}, x, train=True,
                            mutable=["batch_stats"])
    return jax.nn.log_softmax(logits)[:, 0].mean()

  return jax.grad(loss)(params)


# ----------------------------------------------------------------------------- jit / pmap


@pytest.mark.parametrize("name", sorted(TINY))
def test_jit_and_pmap_match_eager(name):
  model, variables = tiny(name)
  n_dev = jax.local_device_count()
  assert n_dev == 2, "tests/conftest.py should provide 2 fake CPU devices"
  x = images(2 * n_dev, seed=3)
  eager, _ = model.apply(variables, x, return_features=True)
  jit_logits, _ = jitted(name, features=True)(variables, x)
  replicated = replicate(variables)
  pmapped = jax.pmap(model.apply)(replicated, x.reshape(n_dev, 2, *x.shape[1:]))
  np.testing.assert_allclose(jit_logits, eager, rtol=1e-5, atol=1e-5)
  np.testing.assert_allclose(pmapped.reshape(eager.shape), eager, rtol=1e-5, atol=1e-5)


def test_cross_device_batch_norm_under_pmap_matches_full_batch():
  n_dev = jax.local_device_count()
  local = get_model("resnet18", 10, **TINY["resnet18"])
  synced = get_model("resnet18", 10, bn_axis_name="batch", **TINY["resnet18"])
  _, variables = tiny("resnet18")
  x = images(2 * n_dev, seed=4)
  full, full_state = jitted("resnet18", train=True)(variables, x)
  replicated = replicate(variables)
  shards = x.reshape(n_dev, 2, *x.shape[1:])

  def train_apply(model):
    return jax.pmap(functools.partial(model.apply, train=True, mutable=["batch_stats"]),
                    axis_name="batch")(replicated, shards)

  logits, state = train_apply(synced)
  np.testing.assert_allclose(logits.reshape(full.shape), full, rtol=1e-4, atol=1e-5)
  for dev in range(n_dev):  # every device holds the global running statistics
    jax.tree_util.tree_map(lambda a, b: np.testing.assert_allclose(a[dev], b, rtol=1e-4,
                                                                   atol=1e-6),
                           state["batch_stats"], full_state["batch_stats"])
  # Without the axis name each device normalises with its own half batch.
  local_logits, _ = train_apply(local)
  assert not np.allclose(local_logits.reshape(full.shape), full, atol=1e-3)


def test_convnext_drop_path_needs_dropout_rng_only_in_train_mode():
  model = get_model("convnext_tiny", 10, drop_path_rate=0.5, **TINY["convnext_tiny"])
  _, variables = tiny("convnext_tiny")
  x = images(4)
  np.testing.assert_allclose(model.apply(variables, x), tiny("convnext_tiny")[0].apply(
      variables, x), rtol=1e-6)  # eval: drop-path off
  a = model.apply(variables, x, train=True, rngs={"dropout": jax.random.key(0)})
  b = model.apply(variables, x, train=True, rngs={"dropout": jax.random.key(1)})
  assert a.shape == (4, 10) and not np.allclose(a, b)
