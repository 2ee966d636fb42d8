"""Tests for eriep_jax.images.check_images, the one image-contract validator."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from eriep_jax import images as images_lib
from eriep_jax import models, ops
from eriep_jax.evaluate import perturbations as P
from eriep_jax.images import check_images


def _re_shape(shape):
  """A shape as a regex, e.g. (8, 8, 3) -> \\(8, 8, 3\\)."""
  return str(tuple(shape)).replace("(", r"\(").replace(")", r"\)")


def _batch(shape=(2, 8, 8, 3), seed=0):
  return np.random.default_rng(seed).uniform(0.0, 1.0, shape).astype(np.float32)


def test_callers_share_the_one_validator():
  assert ops.check_images is images_lib.check_images


def test_valid_batch_passes_through_unchanged():
  x = _batch()
  for kw in ({}, dict(float32_only=False, channels=None), dict(check_range=True)):
    out = check_images(x, **kw)
    assert isinstance(out, jax.Array)
    assert out.dtype == jnp.float32 and out.shape == x.shape
    np.testing.assert_array_equal(np.asarray(out), x)
  # The edges of [0, 1] are inside the range.
  edges = np.stack([np.zeros((8, 8, 1)), np.ones((8, 8, 1))]).astype(np.float32)
  np.testing.assert_array_equal(np.asarray(check_images(edges, check_range=True)), edges)
  # Grey images are part of the ops' contract.
  out = jax.jit(check_images)(jnp.asarray(x[..., :1]))
  np.testing.assert_array_equal(np.asarray(out), x[..., :1])


@pytest.mark.parametrize("dtype", [np.uint8, np.int32])
def test_integer_batch_is_refused_naming_the_fix(dtype):
  x = np.zeros((2, 8, 8, 3), dtype)
  fix = r"astype\(jnp.float32\) / 255"
  with pytest.raises(TypeError, match=np.dtype(dtype).name + ".*" + fix):
    check_images(x)
  with pytest.raises(TypeError, match=np.dtype(dtype).name + ".*" + fix):
    check_images(x, float32_only=False, channels=None)
  # The fix names the caller's argument.
  with pytest.raises(TypeError, match=r"ResNet expects.*`x\.astype\(jnp.float32\) / 255`"):
    check_images(x, name="x", caller="ResNet")
  # Also while tracing, from the shape and dtype alone.
  with pytest.raises(TypeError, match="/ 255"):
    jax.jit(check_images)(jnp.asarray(x))
  with pytest.raises(TypeError, match="/ 255"):
    jax.eval_shape(check_images, jax.ShapeDtypeStruct(x.shape, dtype))


def test_every_caller_refuses_uint8_naming_the_fix():
  x = np.zeros((2, 32, 32, 3), np.uint8)
  fix = r"uint8.*astype\(jnp.float32\) / 255"
  with pytest.raises(TypeError, match=fix):
    ops.rotate(x, 0.5)
  with pytest.raises(TypeError, match=r"perturb_2 expects.*" + fix):
    P.perturb_2(x, jax.random.key(0))
  model = models.get_model("cnn8", 10, width=1 / 16)
  with pytest.raises(TypeError, match=r"ConvNet expects.*" + fix):
    jax.eval_shape(lambda k, v: model.init(k, v), jax.random.key(0),
                   jax.ShapeDtypeStruct(x.shape, x.dtype))


def test_bool_batch_is_refused():
  with pytest.raises(TypeError, match=r"bool.*astype\(jnp.float32\)"):
    check_images(np.zeros((2, 8, 8, 3), bool), float32_only=False)


@pytest.mark.parametrize("shape,fix", [
    ((8, 8, 3), r"images\[None\]"),
    ((2, 8, 8), r"images\[None\]"),
    ((8, 8), r"reshape to \(B, H, W, C\)"),
    ((1, 2, 8, 8, 3), r"reshape to \(B, H, W, C\)"),
])
def test_wrong_rank_is_refused_naming_b_h_w_c(shape, fix):
  x = np.zeros(shape, np.float32)
  pattern = (r"rank 4, shape \(B, H, W, C\), got shape "
             + _re_shape(shape) + rf" \(rank {len(shape)}\); .*" + fix)
  with pytest.raises(ValueError, match=pattern):
    check_images(x)
  with pytest.raises(ValueError, match=pattern):
    jax.jit(check_images)(jnp.asarray(x))
  with pytest.raises(ValueError, match=pattern):
    check_images(x, float32_only=False, channels=None, min_size=0, allow_empty_batch=True)


def test_float64_is_refused_by_the_ops_and_converted_by_the_others():
  x = _batch().astype(np.float64)
  # The ops' contract (the default) is float32 only, as before.
  with pytest.raises(TypeError, match=r"float64.*astype\(jnp.float32\)"):
    check_images(x)
  with pytest.raises(TypeError, match="float64"):
    ops.invert(x)
  # The perturbations and the models take any float dtype; float64 arrives as
  # float32 (jax without x64), with the same values up to rounding.
  out = check_images(x, float32_only=False, channels=None)
  assert out.dtype == jnp.float32
  np.testing.assert_array_equal(np.asarray(out), x.astype(np.float32))
  np.testing.assert_array_equal(np.asarray(P.identity(x, None)), x.astype(np.float32))
  # A float16 batch keeps its dtype where other floats are allowed.
  half = check_images(x.astype(np.float16), float32_only=False)
  assert half.dtype == jnp.float16
  with pytest.raises(TypeError, match="float16"):
    check_images(x.astype(np.float16))


def test_channels_and_sizes():
  for c in (2, 4):
    with pytest.raises(ValueError, match=f"1 or 3 channels.*got {c} channels"):
      check_images(np.zeros((2, 8, 8, c), np.float32))
  with pytest.raises(ValueError, match=r"alpha.*images\[\.\.\., :3\]"):
    check_images(np.zeros((2, 8, 8, 4), np.float32))
  with pytest.raises(ValueError, match=r"NHWC.*x\.transpose\(0, 2, 3, 1\)"):
    check_images(np.zeros((2, 3, 8, 8), np.float32), name="x", channels=(3,))
  # Any channel count where channels=None.
  x = np.zeros((2, 8, 8, 5), np.float32)
  np.testing.assert_array_equal(np.asarray(check_images(x, channels=None)), x)
  # Empty batches and images are refused by default, allowed on request.
  with pytest.raises(ValueError, match="empty"):
    check_images(np.zeros((0, 8, 8, 3), np.float32))
  with pytest.raises(ValueError, match="empty"):
    check_images(np.zeros((2, 0, 8, 3), np.float32))
  assert check_images(np.zeros((0, 8, 8, 3), np.float32), allow_empty_batch=True).shape[0] == 0
  with pytest.raises(ValueError, match=r"at least 32x32 pixels, got 16x16"):
    check_images(np.zeros((2, 16, 16, 3), np.float32), min_size=32)


def test_non_arrays():
  with pytest.raises(TypeError, match="object"):
    check_images(object())
  # A nested list of Python floats is float64: refused by the ops, as before.
  with pytest.raises(TypeError, match="float64"):
    check_images([[[[0.5]]]])
  out = check_images([[[[0.5]]]], float32_only=False)
  assert out.dtype == jnp.float32 and out.shape == (1, 1, 1, 1)


def test_value_range_is_not_checked_by_default_as_before():
  # The ops' validator has never inspected values: [0, 1] is documented only.
  x = _batch()
  x[0, 0, 0, 0], x[1, 0, 0, 0] = -0.5, 2.0
  np.testing.assert_array_equal(np.asarray(check_images(x)), x)
  np.testing.assert_array_equal(np.asarray(ops.check_images(x)), x)
  np.testing.assert_array_equal(np.asarray(ops.invert(x)), 1.0 - x)


def test_value_range_check_on_concrete_arrays_only():
  x = _batch()
  x[0, 0, 0, 0], x[1, 0, 0, 0] = -0.5, 2.0
  with pytest.raises(ValueError, match=r"\[0, 1\], got min -0.5 and max 2; .*jnp\.clip"):
    check_images(x, check_range=True)
  with pytest.raises(ValueError, match=r"got min 255 and max 255; .*`images / 255`"):
    check_images(np.full((1, 4, 4, 3), 255.0, np.float32), check_range=True)
  with pytest.raises(ValueError, match="nan"):
    check_images(np.full((1, 4, 4, 3), np.nan, np.float32), check_range=True)
  # While tracing there are no values: the range is skipped, the rest checked.
  out = jax.jit(lambda v: check_images(v, check_range=True))(jnp.asarray(x))
  np.testing.assert_array_equal(np.asarray(out), x)
  with pytest.raises(ValueError, match="rank 3"):
    jax.jit(lambda v: check_images(v, check_range=True))(jnp.asarray(x[0]))
  # A concrete array closed over by a jitted function is still checked, on the host.
  bad = jnp.asarray(x)
  with pytest.raises(ValueError, match=r"got min -0.5 and max 2"):
    jax.jit(lambda: check_images(bad, check_range=True))()
  good = jnp.asarray(np.clip(x, 0, 1))
  np.testing.assert_array_equal(np.asarray(jax.jit(lambda: check_images(good, check_range=True))()),
                                np.clip(x, 0, 1))
