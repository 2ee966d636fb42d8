"""Tests of eriep_jax.ops: the 17 Table-1 operations.

Reference: Pillow on crops of the two photographs that ship with scikit-learn.
Pillow works on uint8, so each op gets `uint8 / 255` and its output is rounded
to 8 bits before the comparison. The fill value 0.5 rounds (half to even) to
128, exactly Pillow's fillcolor (128, 128, 128), so fills need no tolerance.

Tolerances (in 8-bit levels): point and colour ops mean <= 1, max <= 2;
geometric ops mean <= 3 and at most 1% of values off by more than 2 levels
(measured: max 1 level everywhere). The remaining differences come from
Pillow truncating where we round, and from Pillow's integer luminance/mean/
SMOOTH intermediates, which we keep continuous so they stay differentiable.
No exception to these tolerances was needed.
"""

import functools
import importlib

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from PIL import Image, ImageDraw, ImageEnhance, ImageOps

from eriep_jax import ops

TABLE1 = (
    ("shear_x", "affine", "continuous"), ("shear_y", "affine", "continuous"),
    ("translate_x", "affine", "continuous"),
    ("translate_y", "affine", "continuous"), ("rotate", "affine", "continuous"),
    ("flip", "affine", "none"), ("solarize", "color", "discrete"),
    ("posterize", "color", "discrete"), ("invert", "color", "none"),
    ("contrast", "color", "continuous"), ("color", "color", "continuous"),
    ("brightness", "color", "continuous"), ("sharpness", "color", "none"),
    ("auto_contrast", "color", "none"), ("equalize", "other", "none"),
    ("cutout", "other", "discrete"), ("sample_pairing", "other", "continuous"),
)
GEOMETRIC = ("shear_x", "shear_y", "translate_x", "translate_y", "rotate")
GREY = (128, 128, 128)
KEY = jax.random.key(0)


def _magnitudes(spec):
  if spec.magnitude_type == "none":
    return (0.0,)
  if spec.symmetric:
    return (0.3, -0.3, 0.7, -0.7, 1.0, -1.0)
  return (0.3, 0.7, 1.0)


@functools.lru_cache(maxsize=None)
def _crops():
  """24 uint8 crops: 16 of 32x32 and 8 non-square 24x40 (H x W)."""
  from sklearn.datasets import load_sample_images  # pylint: disable=g-import-not-at-top
  photos = load_sample_images().images
  rng = np.random.default_rng(0)
  groups = []
  for (h, w), count in (((32, 32), 16), ((24, 40), 8)):
    crops = []
    for i in range(count):
      photo = photos[i % 2]
      y = rng.integers(0, photo.shape[0] - h)
      x = rng.integers(0, photo.shape[1] - w)
      crops.append(photo[y:y + h, x:x + w])
    groups.append(np.stack(crops))
  return groups


@functools.lru_cache(maxsize=None)
def _jit(name):
  return jax.jit(ops.OPS[name].fn)


def _varied(count, step):
  """`count` crops of the 32x32 group, subsampled by `step`, whose values
  span more than half of [0, 1] (so no op saturates them entirely)."""
  crops = _crops()[0][:, ::step, ::step]
  spread = crops.max(axis=(1, 2, 3)).astype(int) - crops.min(axis=(1, 2, 3))
  return jnp.asarray(crops[spread > 128][:count].astype(np.float32) / 255)


def _pil_affine(a, data):
  return np.asarray(Image.fromarray(a).transform(
      (a.shape[1], a.shape[0]), Image.AFFINE, data, resample=Image.BILINEAR,
      fillcolor=GREY))


def _solarize_threshold(m):
  """Smallest 8-bit level that our float32 test `x > 1 - m` inverts."""
  levels = np.arange(256, dtype=np.float32) / np.float32(255)
  above = levels > np.float32(1.0) - np.float32(m)
  return int(np.argmax(above)) if above.any() else 256


def _pillow(name, a, m, extra):
  """Pillow reference of op `name` on one uint8 image `a` at magnitude m."""
  h, w = a.shape[:2]
  im = Image.fromarray(a)
  if name == "shear_x":
    s = 0.3 * m
    return _pil_affine(a, (1, s, -s * h / 2, 0, 1, 0))
  if name == "shear_y":
    s = 0.3 * m
    return _pil_affine(a, (1, 0, 0, s, 1, -s * w / 2))
  if name == "translate_x":
    return _pil_affine(a, (1, 0, 0.45 * m * w, 0, 1, 0))
  if name == "translate_y":
    return _pil_affine(a, (1, 0, 0, 0, 1, 0.45 * m * h))
  if name == "rotate":
    return np.asarray(im.rotate(30 * m, resample=Image.BILINEAR, fillcolor=GREY))
  if name == "flip":
    return np.asarray(ImageOps.mirror(im))
  if name == "solarize":
    return np.asarray(ImageOps.solarize(im, _solarize_threshold(m)))
  if name == "posterize":
    return np.asarray(ImageOps.posterize(im, 8 - round(4 * m)))
  if name == "invert":
    return np.asarray(ImageOps.invert(im))
  if name in ("contrast", "color", "brightness"):
    enhancer = {"contrast": ImageEnhance.Contrast, "color": ImageEnhance.Color,
                "brightness": ImageEnhance.Brightness}[name]
    return np.asarray(enhancer(im).enhance(1 + 0.9 * m))
  if name == "sharpness":
    return np.asarray(ImageEnhance.Sharpness(im).enhance(1.9))
  if name == "auto_contrast":
    return np.asarray(ImageOps.autocontrast(im))
  if name == "equalize":
    return np.asarray(ImageOps.equalize(im))
  if name == "cutout":
    side = round(0.5 * m * min(h, w))
    out = im.copy()
    if side > 0:
      cy, cx = extra
      y0, x0 = cy - side // 2, cx - side // 2
      box = [max(x0, 0), max(y0, 0), min(x0 + side, w) - 1, min(y0 + side, h) - 1]
      ImageDraw.Draw(out).rectangle(box, fill=GREY)
    return np.asarray(out)
  if name == "sample_pairing":
    return np.asarray(Image.blend(im, Image.fromarray(extra), 0.4 * m))
  raise AssertionError(name)


def test_registry_is_table1():
  assert [(s.name, s.category, s.magnitude_type) for s in ops.OPS.values()] == [
      (n, c, t) for n, c, t in TABLE1]
  assert all(name == spec.name for name, spec in ops.OPS.items())
  symmetric = {s.name for s in ops.OPS.values() if s.symmetric}
  assert symmetric == {"shear_x", "shear_y", "translate_x", "translate_y",
                       "rotate", "contrast", "color", "brightness"}
  assert {s.name for s in ops.OPS.values() if s.needs_key} == {
      "cutout", "sample_pairing"}
  scales = {s.name: s.scale for s in ops.OPS.values()}
  assert (scales["shear_x"], scales["translate_y"], scales["rotate"],
          scales["contrast"], scales["cutout"], scales["sample_pairing"]) == (
              0.3, 0.45, 30.0, 0.9, 0.5, 0.4)
  assert all(s.scale == 0.0 for s in ops.OPS.values()
             if s.magnitude_type == "none")
  assert [s.name for s in ops.get_ops(["rotate", "flip"])] == ["rotate", "flip"]


def test_translate_x_and_y_each_listed_once():
  # Faster AutoAugment's public search space lists TranslateY twice and has no
  # TranslateX.
  names = list(ops.OPS)
  assert len(names) == 17 == len(set(names))
  assert names.count("translate_x") == 1 and names.count("translate_y") == 1
  x = jnp.asarray(_crops()[0][:2, :8, :8] / np.float32(255))
  moved_x = ops.OPS["translate_x"].fn(x, 0.5)
  moved_y = ops.OPS["translate_y"].fn(x, 0.5)
  # translate_x fills columns, translate_y fills rows.
  assert bool(jnp.all(moved_x[:, :, -1] == 0.5))
  assert bool(jnp.all(moved_y[:, -1, :] == 0.5))
  assert not bool(jnp.all(moved_x[:, -1, :] == 0.5))


@pytest.mark.parametrize("name", [row[0] for row in TABLE1])
def test_matches_pillow(name):
  spec = ops.OPS[name]
  magnitudes = _magnitudes(spec)
  rng = np.random.default_rng(1)
  for crops in _crops():
    n, h, w, _ = crops.shape
    batch = np.concatenate([crops] * len(magnitudes))
    mags = np.repeat(np.asarray(magnitudes, np.float32), n)
    extras = [None] * len(batch)
    x = jnp.asarray(batch.astype(np.float32) / 255)
    if name == "cutout":
      centers = np.stack([rng.integers(0, h, len(batch)),
                          rng.integers(0, w, len(batch))], axis=-1)
      out = ops.cutout_at(x, mags, centers)
      extras = [tuple(c) for c in centers]
    elif name == "sample_pairing":
      partners = np.concatenate([crops[::-1]] * len(magnitudes))
      out = ops.sample_pairing_with(x, mags, partners.astype(np.float32) / 255)
      extras = list(partners)
    else:
      out = _jit(name)(x, mags, KEY)
    if spec.magnitude_type != "none":
      # m = 0 is the identity, to the last bit (same compiled shape).
      zero = _jit(name)(x, jnp.zeros_like(mags), KEY)
      np.testing.assert_array_equal(zero, x, err_msg=name)
    got = np.asarray(jnp.round(out * 255)).astype(np.int32)
    want = np.stack([_pillow(name, a, float(m), e)
                     for a, m, e in zip(batch, mags, extras)]).astype(np.int32)
    diff = np.abs(got - want)
    for m in magnitudes:
      d = diff[mags == np.float32(m)]
      where = f"{name} m={m} on {n} crops of {h}x{w}"
      # The op really changes real photographs (the comparison is not
      # between two identities).
      changed = np.abs(got - batch.astype(np.int32))[mags == np.float32(m)]
      assert changed.mean() > 0.25, where
      if name in GEOMETRIC:
        assert d.mean() <= 3, where
        assert np.mean(d > 2) <= 0.01, where
      else:
        assert d.mean() <= 1, where
        assert d.max() <= 2, where
    assert np.all(got >= 0) and np.all(got <= 255)


def test_solarize_zero_is_identity_and_posterize_reduces_levels():
  # Faster AutoAugment's solarize inverts every pixel at m = 0; its posterize
  # shifts left before right and so changes nothing.
  x = jnp.asarray(_crops()[0].astype(np.float32) / 255)
  edge = jnp.stack([jnp.ones_like(x[0]), jnp.zeros_like(x[0])])
  np.testing.assert_array_equal(ops.solarize(x, 0.0), x)
  np.testing.assert_array_equal(ops.solarize(edge, 0.0), edge)
  np.testing.assert_array_equal(ops.solarize(edge, 1.0)[1], edge[1])
  np.testing.assert_array_equal(ops.solarize(edge, 1.0)[0], 1.0 - edge[0])
  levels = lambda y: np.unique(np.round(np.asarray(y) * 255).astype(int))
  assert len(levels(x)) > 100
  assert len(levels(ops.posterize(x, 1.0))) <= 16        # 4 bits kept
  assert set(levels(ops.posterize(x, 0.3)) % 2) == {0}    # 7 bits kept
  assert set(levels(ops.posterize(x, 0.7)) % 8) == {0}    # 5 bits kept
  off_grid = x + 0.3 / 255   # not on 8-bit levels: m = 0 still the identity
  np.testing.assert_array_equal(ops.posterize(off_grid, 0.0), off_grid)


def test_hand_computed_values():
  # translate_x by exactly 2 pixels on a 5x10 ramp: output column x shows input
  # column x + 2; the last two columns fall outside and are filled with 0.5.
  ramp = jnp.broadcast_to(jnp.arange(10, dtype=jnp.float32)[:, None] / 10,
                          (1, 5, 10, 1))
  out = ops.translate_x(ramp, 2 / (0.45 * 10))
  np.testing.assert_allclose(out[0, 0, :, 0],
                             [.2, .3, .4, .5, .6, .7, .8, .9, .5, .5], atol=1e-6)
  # Half a pixel: bilinear average of neighbours; the last column's source
  # point 9.5 + 0.5 = W lies outside [0, W) and is filled.
  out = ops.translate_x(ramp, 0.5 / (0.45 * 10))
  np.testing.assert_allclose(out[0, 0, :, 0], list(np.arange(9) / 10 + .05) +
                             [.5], atol=1e-6)
  # Shifting back by 0.4 pixel: column 0's source 0.1 is inside [0, W) but
  # left of the first pixel centre, so it clamps to the border value 0.
  out = ops.translate_x(ramp, -0.4 / (0.45 * 10))
  np.testing.assert_allclose(out[0, 0, :3, 0], [0.0, 0.06, 0.16], atol=1e-6)
  grey = jnp.full((1, 4, 4, 3), 0.4)
  np.testing.assert_allclose(ops.brightness(grey, 1.0), 0.4 * 1.9, atol=1e-6)
  np.testing.assert_allclose(ops.brightness(grey, -1.0), 0.4 * 0.1, atol=1e-6)
  np.testing.assert_allclose(ops.contrast(grey, -1.0), 0.4, atol=1e-6)
  rgb = jnp.asarray([[[[1.0, 0.0, 0.0]]]])
  np.testing.assert_allclose(ops.color(rgb, -1.0)[0, 0, 0],
                             [0.299 + 0.1 * 0.701, 0.299 * 0.9,
                              0.299 * 0.9], atol=1e-6)
  # sharpness: interior pixel of a single bright dot, 1.9 - 0.9 * 5/13.
  dot = jnp.zeros((1, 5, 5, 1)).at[0, 2, 2, 0].set(0.5)
  np.testing.assert_allclose(ops.sharpness(dot)[0, 2, 2, 0],
                             0.5 * (1.9 - 0.9 * 5 / 13), atol=1e-6)
  np.testing.assert_allclose(ops.sharpness(dot)[0, 2, 1, 0], 0.0, atol=1e-6)
  # auto_contrast stretches per channel; a constant channel is kept.
  x = jnp.asarray([[[[0.2, 0.5, 0.3]], [[0.6, 0.5, 0.3]]]])
  np.testing.assert_allclose(ops.auto_contrast(x)[0, :, 0],
                             [[0.0, 0.5, 0.3], [1.0, 0.5, 0.3]], atol=1e-6)
  # cutout of side round(0.5 * 1.0 * 6) = 3 centred at (0, 5): rows 0..1,
  # columns 4..5 after clipping.
  ones = jnp.ones((1, 6, 6, 1))
  out = ops.cutout_at(ones, 1.0, jnp.asarray([[0, 5]]))[0, :, :, 0]
  expect = np.ones((6, 6))
  expect[0:2, 4:6] = 0.5
  np.testing.assert_array_equal(out, expect)


def test_random_ops_use_the_key():
  x = jnp.asarray(_crops()[0][:8].astype(np.float32) / 255)
  side = round(0.5 * 0.6 * 32)
  out = ops.cutout(x, 0.6, jax.random.key(3))
  changed = np.asarray(jnp.any(out != x, axis=-1))
  for i in range(len(x)):
    rows, cols = np.nonzero(changed[i])
    assert 0 < len(rows) <= side * side
    assert rows.max() - rows.min() < side and cols.max() - cols.min() < side
    np.testing.assert_array_equal(out[i][changed[i]], 0.5)
  assert not np.array_equal(out, ops.cutout(x, 0.6, jax.random.key(4)))
  # sample_pairing: every output is a blend with one partner of the batch,
  # and the partners form a permutation.
  a = 0.4 * 0.75
  out = ops.sample_pairing(x, 0.75, jax.random.key(5))
  partners = (np.asarray(out) - (1 - a) * np.asarray(x)) / a
  dist = np.abs(partners[:, None] - np.asarray(x)[None]).max(axis=(2, 3, 4))
  assert np.all(dist.min(axis=1) < 1e-4)
  assert sorted(dist.argmin(axis=1)) == list(range(len(x)))
  with pytest.raises(ValueError, match="key"):
    ops.cutout(x, 0.5)
  with pytest.raises(ValueError, match="key"):
    ops.OPS["sample_pairing"].fn(x, 0.5, None)


def _core(name):
  """The op with its random choice fixed, so it can be vmapped per image."""
  if name == "cutout":
    return lambda x, m: ops.cutout_at(x, m, jnp.tile(jnp.asarray([[5, 9]]),
                                                     (x.shape[0], 1)))
  if name == "sample_pairing":
    return lambda x, m: ops.sample_pairing_with(x, m, 1.0 - x[:, ::-1])
  fn = ops.OPS[name].fn
  return lambda x, m: fn(x, m, None)


@pytest.mark.parametrize("name", [row[0] for row in TABLE1])
def test_jit_vmap_and_per_sample_magnitudes(name):
  spec = ops.OPS[name]
  x = _varied(3, 2)
  lo = -1.0 if spec.symmetric else 0.0
  mags = jnp.asarray([1.0, lo + 0.3, 0.6], jnp.float32)
  fn = _core(name)
  eager = fn(x, mags)
  np.testing.assert_allclose(jax.jit(fn)(x, mags), eager, atol=1e-5)
  single = jax.vmap(lambda im, m: fn(im[None], m)[0])(x, mags)
  np.testing.assert_allclose(single, eager, atol=1e-5)
  for i in range(3):
    alone = fn(x, mags[i])[i]
    np.testing.assert_allclose(eager[i], alone, atol=1e-5)
  if spec.magnitude_type != "none":
    # Each sample gets its own magnitude: swapping the magnitudes changes it.
    assert not np.allclose(fn(x, mags[jnp.asarray([1, 0, 2])])[0], eager[0],
                           atol=1e-4)
  if spec.needs_key:
    rnd = spec.fn(x, mags, KEY)
    np.testing.assert_allclose(jax.jit(spec.fn)(x, mags, KEY), rnd, atol=1e-5)


def _grad_images():
  """Per-sample special images (2x8x8x3 each): zeros, ones, grey, one bright pixel."""
  z = jnp.zeros((8, 8, 3))
  return jnp.stack([z, z + 1.0, z + 0.5, z.at[3, 4].set(1.0)])


@pytest.mark.parametrize("name", [row[0] for row in TABLE1])
def test_gradients(name):
  spec = ops.OPS[name]
  fn = _core(name)
  weights = jax.random.normal(jax.random.key(7), (4, 8, 8, 3))

  def loss(x, m):
    return jnp.sum(fn(x, m) * weights)

  grad = jax.jit(jax.grad(loss, argnums=(0, 1)))
  special = _grad_images()
  photo = _varied(4, 4)
  ends = (-1.0, 1.0) if spec.symmetric else (0.0, 1.0)
  middle = (-0.5, 0.5) if spec.symmetric else (0.5,)
  for m in (0.0,) + ends + middle:
    mags = jnp.full((4,), m)
    for images in (special, photo):
      gx, gm = grad(images, mags)
      assert bool(jnp.all(jnp.isfinite(gx))), (name, m)
      assert bool(jnp.all(jnp.isfinite(gm))), (name, m)
    if spec.magnitude_type == "continuous" and m in middle:
      assert bool(jnp.all(gm != 0)), (name, m, gm)   # photo, inside the range
  # jacrev too, on the bright-pixel image at the middle of the range.
  jac = jax.jacrev(lambda x: fn(x, jnp.full((1,), middle[0])))(special[3:])
  assert bool(jnp.all(jnp.isfinite(jac)))
  mags = jnp.full((4,), middle[-1])
  gx, gm = grad(photo, mags)
  if name in ("solarize", "posterize", "cutout"):
    # Straight-through in m: d out / d m = 1 for every pixel.
    np.testing.assert_allclose(gm, weights.sum(axis=(1, 2, 3)), rtol=1e-5)
  if name in ("posterize", "auto_contrast", "equalize"):
    np.testing.assert_allclose(gx, weights, rtol=1e-6)   # identity in x
  if spec.magnitude_type == "continuous":
    # The gradient in m agrees with a central finite difference.
    eps = 2e-3   # small, so that few pixels cross a clip or floor kink
    # Samples are independent, so the per-sample loss differences are the
    # per-sample derivatives.
    per_sample = jax.jit(lambda x, m: jnp.sum(fn(x, m) * weights, axis=(1, 2, 3)))
    fd = (per_sample(photo, mags + eps) - per_sample(photo, mags - eps)) / (2 * eps)
    np.testing.assert_allclose(gm, fd, rtol=0.1, atol=0.05 * float(
        jnp.max(jnp.abs(fd))))


def test_bad_inputs_raise_clear_errors():
  x = jnp.zeros((2, 8, 8, 3))
  with pytest.raises(ValueError, match=r"rank 3.*images\[None\]"):
    ops.rotate(x[0], 0.5)
  with pytest.raises(ValueError, match=r"rank 5"):
    ops.rotate(x[None], 0.5)
  for c in (2, 4):
    with pytest.raises(ValueError, match=f"{c} channels"):
      ops.invert(jnp.zeros((2, 8, 8, c)))
  with pytest.raises(TypeError, match=r"uint8.*astype\(jnp.float32\) / 255"):
    ops.contrast(np.zeros((2, 8, 8, 3), np.uint8), 0.5)
  with pytest.raises(TypeError, match=r"int32.*/ 255"):
    ops.flip(jnp.zeros((2, 8, 8, 3), jnp.int32))
  with pytest.raises(TypeError, match="uint8"):   # also while tracing
    jax.jit(ops.shear_x)(jnp.zeros((2, 8, 8, 3), jnp.uint8), 0.5)
  with pytest.raises(ValueError, match=r"shape \(3,\).*\(2,\)"):
    ops.shear_y(x, jnp.zeros(3))
  with pytest.raises(ValueError, match=r"shape \(2, 1\)"):
    jax.jit(ops.brightness)(x, jnp.zeros((2, 1)))
  with pytest.raises(TypeError, match="int32"):
    ops.solarize(x, jnp.zeros(2, jnp.int32))
  with pytest.raises(ValueError, match="shear_x, shear_y, translate_x"):
    ops.get_op("shearx")
  with pytest.raises(ValueError, match="empty"):
    ops.get_ops([])
  with pytest.raises(ValueError, match="'blur'"):
    ops.get_ops(["rotate", "blur"])


def test_grey_images_match_grey_rgb():
  # C = 1 follows the same semantics: on an RGB image with R = G = B the
  # luminance is the grey value itself, so every op must agree channel-wise.
  # Each op runs jitted, both layouts in one program: op by op, the 17 ops' primitives
  # took ~15 s to compile one by one.
  grey = _varied(2, 4)[..., :1]
  rgb = jnp.tile(grey, (1, 1, 1, 3))
  for spec in ops.OPS.values():
    m = jnp.asarray([0.7, -0.4 if spec.symmetric else 0.4])
    one, three = jax.jit(lambda g, c, m, fn=spec.fn: (fn(g, m, KEY), fn(c, m, KEY)))(grey, rgb, m)
    assert one.shape == grey.shape, spec.name
    np.testing.assert_allclose(one[..., 0], three[..., 0], atol=1e-5,
                               err_msg=spec.name)


def _affine_reference(name, images, m):
  """The general gather path `affine_transform` with each op's Pillow matrix."""
  b, h, w, _ = images.shape
  one, zero = jnp.ones_like(m), jnp.zeros_like(m)
  s, t = 0.3 * m, 0.45 * m
  matrix = {
      "shear_x": (one, s, -s * h / 2, zero, one, zero),
      "shear_y": (one, zero, zero, s, one, -s * w / 2),
      "translate_x": (one, zero, t * w, zero, one, zero),
      "translate_y": (one, zero, zero, zero, one, t * h),
  }[name]
  return ops.affine_transform(images, jnp.stack(matrix, axis=-1))


@pytest.mark.parametrize("name", ["shear_x", "shear_y", "translate_x",
                                  "translate_y"])
def test_axis_aligned_ops_match_the_gather_path(name):
  # The 1-D paths of the four axis-aligned ops (shear: barrel shifter with a
  # hand-written transpose; translate: a (W, W) matmul) equal the general
  # bilinear gather, values and gradients in images and magnitude.
  fn = getattr(ops, name)
  images = jax.random.uniform(jax.random.key(3), (6, 7, 8, 3))
  images = images.at[0].set(_grad_images()[3, :7, :, :])  # one bright pixel
  weights = jax.random.normal(jax.random.key(4), images.shape)
  mags = jnp.array([0.0, 1.0, -1.0, 0.37, -0.61, 0.05])

  def both(f):
    return jax.jit(jax.value_and_grad(
        lambda x, m: jnp.sum(f(x, m) * weights), argnums=(0, 1)))

  fast = jax.jit(fn)(images, mags)
  np.testing.assert_allclose(fast, _affine_reference(name, images, mags),
                             rtol=0, atol=1e-6)
  _, (gx, gm) = both(fn)(images, mags)
  _, (rx, rm) = both(functools.partial(_affine_reference, name))(images, mags)
  assert bool(jnp.all(jnp.isfinite(gx))) and bool(jnp.all(jnp.isfinite(gm)))
  np.testing.assert_allclose(gx, rx, rtol=1e-5, atol=1e-5)
  np.testing.assert_allclose(gm, rm, rtol=1e-5, atol=1e-5)
  assert bool(jnp.all(gm[1:] != 0)), gm   # the magnitude gradient is live


def _bilinear_by_autodiff(images, xin, yin, fill=0.5):
  # The sampler as plain JAX (what `affine._bilinear` computed before its
  # backward pass was written out), for `jax.grad` to differentiate.
  b, h, w, c = images.shape
  valid = (xin >= 0.0) & (xin < w) & (yin >= 0.0) & (yin < h)
  xs, ys = jnp.clip(xin - 0.5, 0.0, w - 1.0), jnp.clip(yin - 0.5, 0.0, h - 1.0)
  x0f, y0f = jax.lax.stop_gradient(jnp.floor(xs)), jax.lax.stop_gradient(jnp.floor(ys))
  dx, dy = (xs - x0f)[..., None], (ys - y0f)[..., None]
  x0, y0 = x0f.astype(jnp.int32), y0f.astype(jnp.int32)
  x1, y1 = jnp.minimum(x0 + 1, w - 1), jnp.minimum(y0 + 1, h - 1)
  at = lambda y, x: images[jnp.arange(b)[:, None, None], y, x]
  top = at(y0, x0) + dx * (at(y0, x1) - at(y0, x0))
  bottom = at(y1, x0) + dx * (at(y1, x1) - at(y1, x0))
  return jnp.where(valid[..., None], top + dy * (bottom - top), fill)


def test_bilinear_backward_equals_autodiff_of_the_sampler():
  # `affine._bilinear` (rotate's sampler, and the reference of the 1-D paths)
  # writes its backward pass out. Values and gradients in the images and in
  # every matrix coefficient equal autodiff's, at m = 0 (sampling points on
  # pixel centres and on the clamp bounds), at +-1, and far outside the image.
  affine = importlib.import_module("eriep_jax.ops.affine")
  images = jax.random.uniform(jax.random.key(31), (5, 9, 8, 3))
  weights = jax.random.normal(jax.random.key(32), images.shape)
  angle = jnp.deg2rad(jnp.array([0.0, 30.0, -30.0, 7.3, 170.0]))
  cos, sin = jnp.cos(angle), jnp.sin(angle)
  shift = jnp.array([0.0, 0.0, 1.5, -2.25, 20.0])
  matrix = jnp.stack([cos, sin, 4 - 4 * cos - 4.5 * sin + shift,
                      -sin, cos, 4.5 + 4 * sin - 4.5 * cos], axis=-1)
  xo = jnp.arange(8, dtype=jnp.float32) + 0.5
  yo = jnp.arange(9, dtype=jnp.float32)[:, None] + 0.5

  def loss(sampler):
    def fn(x, m):
      mm = m[:, :, None, None]
      xin = mm[:, 0] * xo + mm[:, 1] * yo + mm[:, 2]
      yin = mm[:, 3] * xo + mm[:, 4] * yo + mm[:, 5]
      return jnp.sum(sampler(x, xin, yin) * weights)
    return jax.jit(jax.value_and_grad(fn, argnums=(0, 1)))

  got_value, got = loss(lambda x, xi, yi: affine._bilinear(x, xi, yi, fill=0.5))(images, matrix)
  want_value, want = loss(_bilinear_by_autodiff)(images, matrix)
  np.testing.assert_allclose(got_value, want_value, rtol=1e-6)
  for g, r in zip(got, want):
    assert bool(jnp.all(jnp.isfinite(g)))
    np.testing.assert_allclose(g, r, rtol=1e-5, atol=1e-4)
  assert float(jnp.max(jnp.abs(got[1][:4]))) > 1.0    # the coordinate gradient is live


@pytest.mark.parametrize("degenerate_shape", [(4, 6, 5, 3), (4, 6, 5, 1)])
def test_blend_backward_equals_autodiff_of_the_expression(degenerate_shape):
  # `_blend` writes its backward pass out (color, brightness, sharpness use
  # it); it must give jax.grad of clip(f x + (1 - f) d, 0, 1), including the
  # 1/2 that jnp.clip gives on either bound: factor 1 on images with pixels at
  # exactly 0 and 1 puts many pre-clip values on the bounds.
  color_ops = importlib.import_module("eriep_jax.ops.color")   # `ops.color` is the op
  x = jax.random.uniform(jax.random.key(21), (4, 6, 5, 3))
  x = x.at[:, 0].set(1.0).at[:, 1].set(0.0)
  d = jax.random.uniform(jax.random.key(22), degenerate_shape)
  f = jnp.array([1.0, 1.9, 0.1, -0.5])
  w = jax.random.normal(jax.random.key(23), x.shape)
  plain = lambda d, x, f: jnp.clip(f[:, None, None, None] * x
                                   + (1.0 - f[:, None, None, None]) * d, 0.0, 1.0)
  got = jax.grad(lambda *a: jnp.sum(color_ops._blend(*a) * w), argnums=(0, 1, 2))(d, x, f)
  want = jax.grad(lambda *a: jnp.sum(plain(*a) * w), argnums=(0, 1, 2))(d, x, f)
  np.testing.assert_array_equal(color_ops._blend(d, x, f), plain(d, x, f))
  for g, r in zip(got, want):
    np.testing.assert_allclose(g, r, rtol=1e-5, atol=1e-5)
  # The ties matter: without the 1/2 the images' gradient would differ.
  assert float(jnp.max(jnp.abs(want[1][0, :2] - w[0, :2]))) > 0.1


@pytest.mark.parametrize("name", ["shear_x", "shear_y"])
def test_shear_short_barrel_for_unit_magnitudes_equals_the_full_one(name):
  # The EPM calls shear with unit_magnitude=True (its OpSpec's unit_fn): a
  # chain of the shifts in [-5, 4] at 32 pixels, one `where` each. For |m| <= 1 it equals the
  # default full barrel and the gather path, values and gradients; the
  # default stays exact beyond (m = 3.3), where the short one is not.
  fn = getattr(ops, name)
  assert ops.get_op(name).unit_fn.keywords == {"unit_magnitude": True}
  images = jax.random.uniform(jax.random.key(11), (5, 32, 32, 3))
  weights = jax.random.normal(jax.random.key(12), images.shape)
  # No m = 0: there the gather path's border taps sit on `jnp.clip`'s tie
  # (see the next test).
  mags = jnp.array([0.05, 1.0, -1.0, 0.37, -0.999])
  short = functools.partial(fn, unit_magnitude=True)
  np.testing.assert_allclose(jax.jit(short)(images, mags), jax.jit(fn)(images, mags),
                             rtol=0, atol=1e-6)
  # 32-pixel coordinates round differently on the two paths (2e-6 seen).
  np.testing.assert_allclose(jax.jit(short)(images, mags), _affine_reference(name, images, mags),
                             rtol=0, atol=1e-5)
  loss = lambda f: jax.jit(jax.grad(lambda x, m: jnp.sum(f(x, m) * weights), argnums=(0, 1)))
  reference = functools.partial(_affine_reference, name)
  for got, want in zip(loss(short)(images, mags), loss(reference)(images, mags)):
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-5)
  far = mags.at[4].set(3.3)
  np.testing.assert_allclose(jax.jit(fn)(images, far), _affine_reference(name, images, far),
                             rtol=0, atol=1e-5)
  assert float(jnp.max(jnp.abs(jax.jit(short)(images, far)[4] - jax.jit(fn)(images, far)[4]))) > 0.1


@pytest.mark.parametrize("mode", ["edge", "constant"])
@pytest.mark.parametrize("axis", [1, 2])
def test_barrel_chains_of_one_where_per_shift_and_per_bit_equal_a_lookup(axis, mode, monkeypatch):
  # `_barrel` uses one `where` per shift up to _LINEAR_MAX_SHIFT shifts (the
  # EPM's shear) and one per bit beyond; both must give line[i + u], reading
  # past the end as jnp.pad with `mode` would.
  from eriep_jax.ops import affine  # pylint: disable=g-import-not-at-top
  line = jax.random.uniform(jax.random.key(31), (2, 6, 7, 3))
  lines = line.shape[3 - axis]                       # rows for axis 2, columns for axis 1
  length, max_shift = 8, 9
  u = jax.random.randint(jax.random.key(32), (2, lines), 0, max_shift + 1)
  pad = [(0, 0)] * 4
  pad[axis] = (0, length + max_shift)
  padded = np.pad(np.asarray(line), pad, mode=mode)
  index = np.arange(length)[None, None, :] + np.asarray(u)[:, :, None]   # (B, lines, length)
  if axis == 2:
    want = np.take_along_axis(padded, index[:, :, :, None], axis=2)
  else:
    want = np.take_along_axis(padded, np.swapaxes(index, 1, 2)[:, :, :, None], axis=1)
  got = affine._barrel(line, u, axis, length, max_shift, mode)
  np.testing.assert_array_equal(got, want)
  monkeypatch.setattr(affine, "_LINEAR_MAX_SHIFT", 0)   # the per-bit barrel
  np.testing.assert_array_equal(affine._barrel(line, u, axis, length, max_shift, mode), want)


@pytest.mark.parametrize("size", [1, 2, 5])
def test_shift_matches_the_gather_path_on_tiny_and_far_shifted_images(size):
  # The barrel shifter's transpose folds clamped taps onto the border pixels;
  # on 1..5-pixel lines every tap is near a border, and magnitudes far beyond
  # [-1, 1] shift whole lines out of the image.
  images = jax.random.uniform(jax.random.key(7), (7, size, size, 3))
  weights = jax.random.normal(jax.random.key(8), images.shape)
  mags = jnp.array([0.0, 1.0, -1.0, 0.37, -3.9, 7.5, 0.999])
  for name in ("shear_x", "shear_y", "translate_x", "translate_y"):
    fn = getattr(ops, name)
    ref = functools.partial(_affine_reference, name)
    np.testing.assert_allclose(jax.jit(fn)(images, mags),
                               jax.jit(ref)(images, mags), atol=1e-6, err_msg=name)
    # Gradients away from m = 0: there a border pixel's source sits exactly on
    # the clip bound, where `jnp.clip` splits the tie 0.5 / 0.5 and `_shift`
    # takes the one-sided difference it uses at every integer position.
    grads = [jax.jit(jax.grad(lambda x, m, f=f: jnp.sum(f(x, m) * weights[1:]),
                              argnums=(0, 1)))(images[1:], mags[1:]) for f in (fn, ref)]
    for got, want in zip(*grads):
      np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-5, err_msg=name)
