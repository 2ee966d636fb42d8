"""Tests for eriep_jax.data.views, SupContrast's augmentation in JAX.

References: colorsys (hue), the ITU-R 601-2 luma formula, NumPy versions of
torchvision's adjust_* formulas, hand-computed bilinear resizes and Pillow's
float ('F' mode) crop + bilinear resize. The statistical tests use fixed keys
(so they cannot flake) and a 5-sigma binomial tolerance.
"""

import colorsys
import functools
import inspect
import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from PIL import Image

from eriep_jax import data
from eriep_jax.data import views as V

LUMA = np.array([0.2989, 0.587, 0.114], np.float32)  # torchvision's rgb_to_grayscale
# No-op options but the crop: the output is the crop (and flip) alone.
NO_COLOR = dict(flip_p=0.0, jitter_p=0.0, grayscale_p=0.0)
IDENTITY = dict(scale=(1.0, 1.0), ratio=(1.0, 1.0), **NO_COLOR)


def _images(shape=(3, 6, 6, 3), seed=0, lo=0.0, hi=1.0):
  return np.random.default_rng(seed).uniform(lo, hi, shape).astype(np.float32)


def _binomial_tol(p, n, sigmas=5.0):
  return sigmas * math.sqrt(p * (1.0 - p) / n)


def _is_gray(x):
  """Per image: all channels exactly equal."""
  return np.all((x[..., 0] == x[..., 1]) & (x[..., 1] == x[..., 2]), axis=(1, 2))


# ----------------------------------------------------------------------------
# Deterministic cores against references.

def test_adjust_hue_matches_colorsys():
  x = _images((4, 5, 5, 3))
  # Edge pixels: black, white, grey, pure primaries and a secondary.
  x[0, 0, :5] = [[0, 0, 0], [1, 1, 1], [0.5, 0.5, 0.5], [1, 0, 0], [0, 1, 1]]
  x[0, 1, :3] = [[0, 1, 0], [0, 0, 1], [1, 1, 0]]
  deltas = np.array([0.1, -0.1, 0.37, -0.5], np.float32)
  out = np.asarray(V.adjust_hue(x, deltas))
  ref = np.empty_like(x)
  for b in range(x.shape[0]):
    for i in range(x.shape[1]):
      for j in range(x.shape[2]):
        h, s, v = colorsys.rgb_to_hsv(*x[b, i, j].astype(np.float64))
        ref[b, i, j] = colorsys.hsv_to_rgb((h + deltas[b]) % 1.0, s, v)
  np.testing.assert_allclose(out, ref, atol=1e-5, rtol=0)
  # Grey pixels keep their value exactly; a scalar delta broadcasts.
  np.testing.assert_array_equal(out[0, 0, :3], x[0, 0, :3])
  np.testing.assert_allclose(np.asarray(V.adjust_hue(x, 0.25)),
                             np.asarray(V.adjust_hue(x, np.full(4, 0.25, np.float32))),
                             atol=0)


def test_to_grayscale_is_torchvisions_luma():
  x = _images()
  out = np.asarray(V.to_grayscale(x))
  luma = x[..., 0] * 0.2989 + x[..., 1] * 0.587 + x[..., 2] * 0.114   # not Pillow's 0.299
  np.testing.assert_allclose(out, np.repeat(luma[..., None], 3, -1), atol=1e-6, rtol=0)
  assert _is_gray(out).all()
  grey = x[..., :1]
  np.testing.assert_array_equal(np.asarray(V.to_grayscale(grey)), grey)


def test_views_and_evaluation_share_torchvisions_colour_ops():
  # One implementation (eriep_jax.ops.torchvision_color): the SupCon views' and the
  # evaluation's brightness and contrast agree on a batch. The views vmap the per-image
  # op, the evaluation calls it on the batch, so a mean may round in another order
  # (6e-8 measured); a different luma (Pillow's 0.299) would differ by 1e-5 or more.
  from eriep_jax.evaluate import perturbations as P
  x = _images((4, 6, 6, 3))
  f = np.array([0.6, 1.4, 0.0, 1.0], np.float32)
  for name in ("adjust_brightness", "adjust_contrast"):
    np.testing.assert_allclose(np.asarray(getattr(V, name)(x, f)),
                               np.asarray(getattr(P, name)(x, f)), atol=1e-6, rtol=0,
                               err_msg=name)


def test_brightness_contrast_saturation_match_torchvision_formulas():
  x = _images((4, 6, 6, 3))
  f = np.array([0.6, 1.4, 0.0, 1.0], np.float32)
  fb = f[:, None, None, None]
  luma = (x * LUMA).sum(-1, keepdims=True)
  mean = luma.mean(axis=(1, 2, 3), keepdims=True)
  refs = {
      V.adjust_brightness: np.clip(fb * x, 0, 1),
      V.adjust_contrast: np.clip(fb * x + (1 - fb) * mean, 0, 1),
      V.adjust_saturation: np.clip(fb * x + (1 - fb) * luma, 0, 1),
  }
  for fn, ref in refs.items():
    out = np.asarray(fn(x, f))
    np.testing.assert_allclose(out, ref, atol=1e-6, rtol=0, err_msg=fn.__name__)
    np.testing.assert_array_equal(out[3], x[3])   # factor 1: exactly the image
  # The degenerate ends: black, the uniform mean grey, the grey image.
  np.testing.assert_array_equal(np.asarray(V.adjust_brightness(x, 0.0)), 0.0)
  np.testing.assert_allclose(np.asarray(V.adjust_contrast(x, 0.0))[2],
                             np.broadcast_to(mean[2], x[2].shape), atol=1e-6)
  assert _is_gray(np.asarray(V.adjust_saturation(x, 0.0))).all()


def test_resized_crop_identity_box_returns_the_image():
  x = _images((2, 5, 7, 3))
  boxes = np.array([[0, 0, 5, 7]] * 2, np.float32)
  np.testing.assert_allclose(np.asarray(V.resized_crop(x, boxes, (5, 7))), x,
                             atol=1e-6, rtol=0)


def test_resized_crop_left_half_of_2x4_by_hand():
  x = np.arange(8, dtype=np.float32).reshape(1, 2, 4, 1) / 10.0
  # Box rows 0-1, columns 0-1 -> 2x4: rows unchanged; the columns sample the
  # crop at (o + 0.5) / 2 - 0.5 = -0.25, 0.25, 0.75, 1.25, clamped to [0, 1].
  out = np.asarray(V.resized_crop(x, np.array([[0, 0, 2, 2]], np.float32), (2, 4)))
  a, b = x[0, :, 0, 0], x[0, :, 1, 0]
  ref = np.stack([a, 0.75 * a + 0.25 * b, 0.25 * a + 0.75 * b, b], axis=-1)
  np.testing.assert_allclose(out[0, ..., 0], ref, atol=1e-6, rtol=0)
  # Pixels outside the box (columns 2, 3) are never read.
  y = x.copy()
  y[..., 2:, :] = 1.0
  np.testing.assert_array_equal(
      out, np.asarray(V.resized_crop(y, np.array([[0, 0, 2, 2]], np.float32), (2, 4))))


def test_resized_crop_matches_pillow_crop_then_bilinear_resize():
  x = _images((1, 12, 10, 3), seed=3)
  for top, left, h, w in [(2, 3, 5, 4), (1, 0, 11, 7), (4, 5, 1, 3), (0, 2, 12, 8)]:
    ref = np.stack([
        np.asarray(Image.fromarray(x[0, :, :, c]).crop((left, top, left + w, top + h))
                   .resize((10, 12), Image.BILINEAR)) for c in range(3)], axis=-1)
    out = V.resized_crop(x, np.array([[top, left, h, w]], np.float32), (12, 10))
    np.testing.assert_allclose(np.asarray(out)[0], ref, atol=1e-5, rtol=0)


def test_color_jitter_applies_the_ops_in_the_given_order():
  x = _images((2, 5, 5, 3), lo=0.1, hi=0.9)
  factors = np.array([[1.3, 0.7, 1.4, 0.08], [0.6, 1.4, 0.6, -0.1]], np.float32)
  order = np.array([[3, 0, 2, 1], [1, 2, 0, 3]], np.int32)
  out = np.asarray(V.color_jitter(x, factors, order))
  ops = (V.adjust_brightness, V.adjust_contrast, V.adjust_saturation, V.adjust_hue)
  for b in range(2):
    y = x[b:b + 1]
    for k in order[b]:
      y = ops[k](y, factors[b, k])
    np.testing.assert_allclose(out[b], np.asarray(y)[0], atol=1e-6, rtol=0)
  # The order matters (the ops do not commute).
  swapped = np.asarray(V.color_jitter(x, factors, order[:, ::-1].copy()))
  assert np.abs(swapped - out).max() > 1e-3


def test_crop_boxes_fall_back_to_the_centre_crop():
  # Aspect ratios (2, 3) never fit a square at full area: the fallback is the
  # whole width and height round(8 / 2) = 4, centred.
  boxes = np.asarray(V.crop_boxes(jax.random.key(0), 3, 8, 8, scale=(1, 1), ratio=(2, 3)))
  np.testing.assert_array_equal(boxes, [[2, 0, 4, 8]] * 3)
  boxes = np.asarray(V.crop_boxes(jax.random.key(0), 2, 4, 12, scale=(1, 1),
                                  ratio=(0.5, 1.0)))   # too wide: w = round(4 * 1)
  np.testing.assert_array_equal(boxes, [[0, 4, 4, 4]] * 2)
  # An image whose ratio lies inside `ratio` falls back to the whole image
  # (and the one try that fits a full-area crop is the whole image too).
  boxes = np.asarray(V.crop_boxes(jax.random.key(0), 16, 6, 6, scale=(1, 1),
                                  ratio=(0.5, 2.0), tries=1))
  np.testing.assert_array_equal(boxes, [[0, 0, 6, 6]] * 16)


def test_crop_boxes_statistics():
  n, side, (s_lo, s_hi), (r_lo, r_hi) = 4000, 32, (0.2, 1.0), (3 / 4, 4 / 3)
  boxes = np.asarray(V.crop_boxes(jax.random.key(1), n, side, side))
  top, left, h, w = boxes.T
  np.testing.assert_array_equal(boxes, np.round(boxes))   # integer pixels
  assert (top >= 0).all() and (left >= 0).all()
  assert (top + h <= side).all() and (left + w <= side).all() and (h >= 1).all()
  # Rounding w, h to pixels moves each side by <= 0.5, so the area fraction
  # can fall below scale[0] by this much (as in torchvision).
  a = s_lo * side * side
  lo = min((math.sqrt(a * r) - 0.5) * (math.sqrt(a / r) - 0.5) for r in (r_lo, r_hi))
  frac = h * w / side**2
  assert frac.min() >= lo / side**2 and frac.max() <= s_hi
  assert frac.min() < 0.22 and frac.max() > 0.95   # the whole range is used
  # Most draws lie inside [0.2, 1] exactly.
  assert np.mean(frac >= s_lo) > 0.9
  aspect = w / h
  a_hi = (math.sqrt(a * r_hi) + 0.5) / (math.sqrt(a / r_hi) - 0.5)
  assert aspect.min() >= 1 / a_hi and aspect.max() <= a_hi
  # Offsets are uniform: the mean relative offset is ~1/2 (5 sigma of U[0, 1]).
  rel = top / np.maximum(side - h, 1)
  rel = rel[h < side]
  assert abs(rel.mean() - 0.5) < 5 * math.sqrt(1 / 12 / rel.size)


def test_crop_boxes_draw_uniform_area_and_log_uniform_ratio():
  # Square crops of a large image always fit: the first try is kept, so the
  # area fraction is U(0.2, 1) up to rounding (mean 0.6, 5 sigma).
  n, side = 4000, 224
  _, _, h, w = np.asarray(V.crop_boxes(jax.random.key(2), n, side, side,
                                       ratio=(1.0, 1.0))).T
  frac = h * w / side**2
  assert abs(frac.mean() - 0.6) < 5 * 0.8 / math.sqrt(12 * n) + 0.005
  assert abs(np.mean(frac < 0.4) - 0.25) < _binomial_tol(0.25, n)
  # A quarter of the area fits any ratio in (1/2, 2): log(w / h) is
  # U(-log 2, log 2) (mean 0, variance (2 log 2)^2 / 12).
  _, _, h, w = np.asarray(V.crop_boxes(jax.random.key(3), n, side, side,
                                       scale=(0.25, 0.25), ratio=(0.5, 2.0))).T
  log_r = np.log(w / h)
  var = (2 * math.log(2)) ** 2 / 12
  assert abs(log_r.mean()) < 5 * math.sqrt(var / n)
  assert abs(log_r.var() - var) < 0.1 * var


# ----------------------------------------------------------------------------
# The random augmentation.

def test_identity_options_return_the_image():
  x = _images((3, 8, 8, 3))
  out = np.asarray(V.supcon_augment(x, jax.random.key(0), **IDENTITY))
  np.testing.assert_allclose(out, x, atol=1e-5, rtol=0)


def test_crop_and_flip_statistics_from_a_coordinate_image():
  # Channel 0 = column centre, channel 1 = row centre: a bilinear resize of
  # the box [l, l + w) spans exactly (l + 0.5) / W .. (l + w - 0.5) / W, so
  # the box and the flip can be read back from the output.
  n, side = 1000, 32
  c = (np.arange(side, dtype=np.float32) + 0.5) / side
  grid = np.stack([np.broadcast_to(c[None, :], (side, side)),
                   np.broadcast_to(c[:, None], (side, side)),
                   np.full((side, side), 0.5, np.float32)], -1)
  x = np.broadcast_to(grid, (n, side, side, 3)).copy()
  out = np.asarray(V.supcon_augment(x, jax.random.key(7), flip_p=0.5, jitter_p=0.0,
                                    grayscale_p=0.0))
  w = (out[..., 0].max(axis=(1, 2)) - out[..., 0].min(axis=(1, 2))) * side + 1
  h = (out[..., 1].max(axis=(1, 2)) - out[..., 1].min(axis=(1, 2))) * side + 1
  np.testing.assert_allclose(w, np.round(w), atol=1e-3)   # integer boxes
  frac = np.round(h) * np.round(w) / side**2
  a = 0.2 * side * side
  lo = min((math.sqrt(a * r) - 0.5) * (math.sqrt(a / r) - 0.5) for r in (3 / 4, 4 / 3))
  assert frac.min() >= lo / side**2 and frac.max() <= 1.0
  assert np.mean(frac >= 0.2) > 0.9 and frac.min() < 0.25 and frac.max() > 0.9
  # Flipped: the column coordinate decreases left to right.
  flipped = out[:, 0, 0, 0] > out[:, 0, -1, 0]
  assert abs(flipped.mean() - 0.5) < _binomial_tol(0.5, n)


def test_flip_frequency_and_exact_flip():
  n = 2000
  x = _images((n, 4, 4, 3), seed=1)
  out = np.asarray(V.supcon_augment(x, jax.random.key(3), scale=(1.0, 1.0),
                                    ratio=(1.0, 1.0), flip_p=0.5, jitter_p=0.0,
                                    grayscale_p=0.0))
  same = np.all(np.abs(out - x) < 1e-6, axis=(1, 2, 3))
  flipped = np.all(np.abs(out - x[:, :, ::-1]) < 1e-6, axis=(1, 2, 3))
  assert np.all(same ^ flipped)   # each image is either, exactly
  assert abs(flipped.mean() - 0.5) < _binomial_tol(0.5, n)


def test_jitter_and_grayscale_frequencies():
  n = 2000
  x = _images((n, 4, 4, 3), seed=2, lo=0.1, hi=0.9)
  out = np.asarray(V.supcon_augment(x, jax.random.key(4), scale=(1.0, 1.0),
                                    ratio=(1.0, 1.0), flip_p=0.0))
  gray = _is_gray(out)
  assert abs(gray.mean() - 0.2) < _binomial_tol(0.2, n)
  # Among the coloured outputs, the unjittered ones are the input exactly.
  unchanged = np.all(out == x, axis=(1, 2, 3))[~gray]
  assert abs(unchanged.mean() - 0.2) < _binomial_tol(0.2, unchanged.size)
  # Grey outputs are the luma of the (possibly jittered) image: R = G = B.
  assert not _is_gray(out[~gray]).any()


# ColorJitter(brightness=1.5, contrast=0.3, saturation=0.6, hue=0.2), one op on at a time:
# distinct strengths, so a factor drawn from another op's range, or fed to another op, shows.
_ONE_OP = {
    "brightness": (V.adjust_brightness, (1.5, 0.0, 0.0, 0.0), (0.0, 2.5)),   # max(0, 1 - 1.5)
    "contrast": (V.adjust_contrast, (0.0, 0.3, 0.0, 0.0), (0.7, 1.3)),
    "saturation": (V.adjust_saturation, (0.0, 0.0, 0.6, 0.0), (0.4, 1.6)),
    "hue": (V.adjust_hue, (0.0, 0.0, 0.0, 0.2), (-0.2, 0.2)),
}
_JITTER_ONLY = dict(scale=(1.0, 1.0), ratio=(1.0, 1.0), flip_p=0.0, jitter_p=1.0,
                    grayscale_p=0.0)


def _hue_shift(x, out):
  """Per image: hue(out) - hue(x) in turns, in [-0.5, 0.5), at the most colourful pixel."""
  flat_x, flat_out = x.reshape(len(x), -1, 3), out.reshape(len(out), -1, 3)
  shifts = []
  for a, b in zip(flat_x, flat_out):
    i = np.argmax(a.max(-1) - a.min(-1))
    shift = colorsys.rgb_to_hsv(*b[i])[0] - colorsys.rgb_to_hsv(*a[i])[0]
    shifts.append((shift + 0.5) % 1.0 - 0.5)
  return np.array(shifts)


def _read_factor(name, x, out):
  """The factor that the op ``name`` applied to x to give out, fitted per image."""
  if name == "hue":
    return _hue_shift(x, out)
  if name == "brightness":
    ref = np.zeros_like(x)
  else:
    ref = (x * LUMA).sum(-1, keepdims=True)
    if name == "contrast":
      ref = np.broadcast_to(ref.mean(axis=(1, 2, 3), keepdims=True), x.shape)
  d = (x - ref).reshape(len(x), -1)
  return np.sum((out - ref).reshape(len(x), -1) * d, 1) / np.sum(d * d, 1)


@pytest.mark.parametrize("name", list(_ONE_OP))
def test_jitter_factors_are_uniform_on_colorjitters_ranges(name):
  # torchvision's ColorJitter.get_params: brightness, contrast and saturation factors
  # ~ U[max(0, 1 - v), 1 + v], the hue shift ~ U[-v, v]. The images stay inside (0, 1)
  # after every op, so no clipping: each output is its op at one factor, read back here.
  op, jitter, (lo, hi) = _ONE_OP[name]
  n = 1000
  x = _images((n, 3, 3, 3), seed=5, lo=0.3, hi=0.7) * (0.5 if name == "brightness" else 1.0)
  out = np.asarray(V.supcon_augment(x, jax.random.key(11), jitter=jitter, **_JITTER_ONLY))
  f = _read_factor(name, x, out)
  np.testing.assert_allclose(out, np.asarray(op(x, f.astype(np.float32))), atol=2e-5, rtol=0,
                             err_msg=f"the jittered images are not adjust_{name} of the input")
  assert f.min() >= lo - 1e-4 and f.max() <= hi + 1e-4, (name, f.min(), f.max())
  assert f.min() < lo + 0.02 * (hi - lo) and f.max() > hi - 0.02 * (hi - lo), (f.min(), f.max())
  # Kolmogorov-Smirnov distance to U[lo, hi]; 1.95 / sqrt(n) is its 0.1% critical value.
  u = np.sort((f - lo) / (hi - lo))
  ks = max(np.max(np.arange(1, n + 1) / n - u), np.max(u - np.arange(n) / n))
  assert ks < 1.95 / math.sqrt(n), (name, ks)


def test_jitter_order_is_a_random_permutation():
  # Contrast (factor c ~ U[0.5, 1.5]) and hue (shift d ~ U[-0.5, 0.5]) do not commute:
  # contrast blends with the mean luma, which a hue shift changes. Both scale each pixel's
  # chroma (max - min) by c and shift its hue by d whichever comes first, so c and d are
  # read back and the output matched against both orders. Each order has chance 1/2.
  n = 1000
  x = _images((n, 2, 2, 3), seed=6, lo=0.35, hi=0.65)
  out = np.asarray(V.supcon_augment(x, jax.random.key(12), jitter=(0.0, 0.5, 0.0, 0.5),
                                    **_JITTER_ONLY))
  chroma = lambda y: (y.max(-1) - y.min(-1)).sum(axis=(1, 2))
  c = (chroma(out) / chroma(x)).astype(np.float32)
  d = _hue_shift(x, out).astype(np.float32)
  assert c.min() >= 0.5 - 1e-4 and c.max() <= 1.5 + 1e-4 and np.abs(d).max() <= 0.5 + 1e-4
  contrast_first = np.asarray(V.adjust_hue(V.adjust_contrast(x, c), d))
  hue_first = np.asarray(V.adjust_contrast(V.adjust_hue(x, d), c))
  err_c = np.abs(out - contrast_first).max(axis=(1, 2, 3))
  err_h = np.abs(out - hue_first).max(axis=(1, 2, 3))
  assert np.all(np.minimum(err_c, err_h) < 1e-4)   # every output is one order or the other
  apart = np.abs(contrast_first - hue_first).max(axis=(1, 2, 3)) > 1e-3
  assert apart.sum() > n / 2
  frac = np.mean(err_h[apart] < err_c[apart])
  assert abs(frac - 0.5) < _binomial_tol(0.5, apart.sum()), frac


def test_same_key_same_output_different_keys_differ():
  x = _images((4, 8, 8, 3))
  a = np.asarray(V.supcon_augment(x, jax.random.key(5)))
  b = np.asarray(V.supcon_augment(x, jax.random.key(5)))
  c = np.asarray(V.supcon_augment(x, jax.random.key(6)))
  np.testing.assert_array_equal(a, b)
  assert all(np.abs(a[i] - c[i]).max() > 1e-3 for i in range(4))
  # Each image of a batch gets its own draw.
  same = np.repeat(x[:1], 4, axis=0)
  d = np.asarray(V.supcon_augment(same, jax.random.key(5)))
  assert np.abs(d[0] - d[1]).max() > 1e-3


def test_two_views_are_two_independent_draws():
  x = _images((4, 8, 8, 3))
  key = jax.random.key(8)
  views = np.asarray(data.two_views(x, key))
  assert views.shape == (4, 2, 8, 8, 3) and views.dtype == np.float32
  k1, k2 = jax.random.split(key)
  np.testing.assert_array_equal(views[:, 0], np.asarray(V.supcon_augment(x, k1)))
  np.testing.assert_array_equal(views[:, 1], np.asarray(V.supcon_augment(x, k2)))
  assert all(np.abs(views[i, 0] - views[i, 1]).max() > 1e-3 for i in range(4))
  # Options pass through.
  ident = np.asarray(data.two_views(x, key, **IDENTITY))
  np.testing.assert_allclose(ident, np.stack([x, x], 1), atol=1e-5, rtol=0)


def test_jit_matches_eager():
  x = _images((4, 8, 8, 3))
  key = jax.random.key(9)
  eager = np.asarray(V.two_views(x, key))
  jitted = np.asarray(jax.jit(V.two_views)(x, key))
  np.testing.assert_allclose(jitted, eager, atol=1e-6, rtol=0)
  # Options are bound statically before jit.
  fn = jax.jit(functools.partial(V.supcon_augment, **IDENTITY))
  np.testing.assert_allclose(np.asarray(fn(x, key)), x, atol=1e-5, rtol=0)
  hue = jax.jit(lambda y: V.adjust_hue(y, 0.2) + 0.0)(x)
  np.testing.assert_allclose(np.asarray(hue), np.asarray(V.adjust_hue(x, 0.2)), atol=1e-6)


@pytest.mark.parametrize("value", [0.0, 1.0])
def test_constant_images_give_finite_outputs_and_gradients(value):
  x = np.full((4, 8, 8, 3), value, np.float32)
  out = np.asarray(V.two_views(x, jax.random.key(10)))
  assert np.isfinite(out).all() and out.min() >= 0.0 and out.max() <= 1.0
  # Finite gradients (a random cotangent reaches every output pixel).
  small = jnp.asarray(x[:2, :3, :3])
  key = jax.random.key(11)
  weights = jnp.asarray(_images(small.shape, seed=12))
  fns = [lambda y: V.supcon_augment(y, key), lambda y: V.adjust_hue(y, 0.1),
         lambda y: V.adjust_contrast(y, 1.3), lambda y: V.adjust_saturation(y, 0.7),
         lambda y: V.resized_crop(y, np.array([[0.5, 0, 2, 2.5]] * 2, np.float32),
                                  (3, 3))]
  for fn in fns:
    grad = jax.grad(lambda y: jnp.sum(weights * fn(y)))(small)
    assert np.isfinite(np.asarray(grad)).all()
  # Grey (C = 1) images are part of the contract: hue and saturation skip them.
  grey = np.asarray(V.supcon_augment(x[..., :1], key))
  assert grey.shape == (4, 8, 8, 1) and np.isfinite(grey).all()


@pytest.mark.parametrize("args,kwargs,error,match", [
    ((np.zeros((8, 8, 3), np.float32),), {}, ValueError, r"rank 4.*images\[None\]"),
    ((np.zeros((2, 8, 8, 4), np.float32),), {}, ValueError, r"3 channels.*got 4.*alpha"),
    ((np.zeros((2, 8, 8, 3), np.uint8),), {}, TypeError, r"uint8.*/ 255"),
    ((np.zeros((2, 8, 8, 3), np.float64),), {}, TypeError, r"float64.*astype"),
    ((), dict(scale=(0.5, 0.2)), ValueError, r"scale=\(0.5, 0.2\).*0 < scale\[0\]"),
    ((), dict(scale=(0.2, 1.5)), ValueError, r"scale\[1\] <= 1"),
    ((), dict(ratio=(0.0, 1.0)), ValueError, r"ratio=\(0, 1\)"),
    ((), dict(scale=0.5), TypeError, r"scale=0.5.*pair"),
    ((), dict(flip_p=1.5), ValueError, r"flip_p=1.5.*\[0, 1\]"),
    ((), dict(jitter_p=-0.1), ValueError, r"jitter_p=-0.1"),
    ((), dict(grayscale_p=float("nan")), ValueError, r"grayscale_p=nan.*finite"),
    ((), dict(jitter=(0.4, 0.4, 0.4)), TypeError, r"four floats"),
    ((), dict(jitter=(0.4, -0.4, 0.4, 0.1)), ValueError, r"contrast -0.4.*>= 0"),
    ((), dict(jitter=(0.4, 0.4, 0.4, 0.6)), ValueError, r"hue 0.6.*\[0, 0.5\]"),
    ((), dict(flip_p="0.5"), TypeError, r"flip_p='0.5'.*Python float"),
])
def test_bad_input_raises_naming_the_value_and_fix(args, kwargs, error, match):
  images = args[0] if args else np.zeros((2, 8, 8, 3), np.float32)
  with pytest.raises(error, match=match):
    V.supcon_augment(images, jax.random.key(0), **kwargs)
  with pytest.raises(error, match=match):
    V.two_views(images, jax.random.key(0), **kwargs)


def test_bad_keys_options_and_core_arguments_raise():
  x = np.zeros((2, 8, 8, 3), np.float32)
  with pytest.raises(ValueError, match="needs a key"):
    V.supcon_augment(x, None)
  with pytest.raises(ValueError, match="single key"):
    V.supcon_augment(x, jax.random.split(jax.random.key(0), 2))
  with pytest.raises(TypeError, match="not a PRNG key"):
    V.supcon_augment(x, 3)
  with pytest.raises(TypeError, match=r"unknown options \['flip'\]"):
    V.two_views(x, jax.random.key(0), flip=0.5)
  with pytest.raises(TypeError, match=r"traced flip_p.*functools.partial"):
    jax.jit(lambda p: V.supcon_augment(x, jax.random.key(0), flip_p=p))(0.5)
  with pytest.raises(ValueError, match=r"boxes of shape \(4,\) for 2 images"):
    V.resized_crop(x, np.zeros(4, np.float32), (8, 8))
  with pytest.raises(ValueError, match="two positive integers"):
    V.resized_crop(x, np.zeros((2, 4), np.float32), (8, 0))
  with pytest.raises(ValueError, match=r"delta of shape \(3,\) for 2 images"):
    V.adjust_hue(x, np.zeros(3, np.float32))
  with pytest.raises(TypeError, match="order of dtype float32"):
    V.color_jitter(x, np.ones((2, 4), np.float32), np.zeros((2, 4), np.float32))
  with pytest.raises(ValueError, match="tries=0"):
    V.crop_boxes(jax.random.key(0), 2, 8, 8, tries=0)


def test_api_key_after_data_keyword_only_options_and_exports():
  for fn in (V.supcon_augment, V.two_views):
    params = list(inspect.signature(fn).parameters.values())
    assert [p.name for p in params[:2]] == ["images", "key"]
    assert all(p.kind in (p.KEYWORD_ONLY, p.VAR_KEYWORD) for p in params[2:])
  params = inspect.signature(V.supcon_augment).parameters
  assert {k: params[k].default for k in V.SUPCON_DEFAULTS} == V.SUPCON_DEFAULTS
  assert V.SUPCON_DEFAULTS["jitter"] == (0.4, 0.4, 0.4, 0.1)
  assert data.supcon_augment is V.supcon_augment and data.two_views is V.two_views
  assert {"supcon_augment", "two_views"} <= set(data.__all__)
