"""Colour Table-1 operations: solarize, posterize, invert, contrast, color,
brightness, sharpness, auto_contrast.

The enhance ops follow Pillow's `ImageEnhance`: blend a degenerate image D with
the input x as D + f (x - D), f = 1 + 0.9 m, then clip to [0, 1]. Pillow
computes D on 8-bit integers (a rounded luminance, a rounded mean); we keep D
continuous so that it is differentiable in the images. That and Pillow's
truncation of the blended value account for at most a couple of 8-bit levels,
which the Pillow tests bound.
"""

import jax
import jax.numpy as jnp

from eriep_jax.ops._remat import statistic
from eriep_jax.ops._surrogate import (image_straight_through,
                                      magnitude_straight_through, to_levels)
from eriep_jax.ops._validate import check_images, check_magnitude

ENHANCE_SCALE = 0.9
POSTERIZE_SCALE = 4.0   # bits removed = round(4 m)
SOLARIZE_SCALE = 1.0    # threshold = 1 - m
SHARPNESS_FACTOR = 1.9  # ImageEnhance.Sharpness factor, fixed (Table 1: none)
# ITU-R 601-2 luma, as Pillow's convert("L").
LUMA_WEIGHTS = (0.299, 0.587, 0.114)


def _luminance(images: jax.Array) -> jax.Array:
  """ITU-R 601 luminance, shape (B, H, W, 1); grey images are their own."""
  if images.shape[-1] == 1:
    return images
  r, g, b = LUMA_WEIGHTS
  # Explicit channel slices: a reduction over an axis of size 3 is slow on CPU.
  return r * images[..., 0:1] + g * images[..., 1:2] + b * images[..., 2:3]


def _mean_luminance(images: jax.Array) -> jax.Array:
  """The mean ITU-R 601 luminance of each image, shape (B, 1, 1, 1).

  One matrix-vector product of the flat images with the luma weights tiled
  over the pixels: a single contiguous reduction, several times cheaper on
  CPU, forward and backward, than the mean of the luminance image.
  """
  b, h, w, c = images.shape
  weights = (jnp.asarray(LUMA_WEIGHTS, images.dtype) if c == 3
             else jnp.ones((c,), images.dtype)) / (h * w)
  mean = images.reshape(b, h * w * c) @ jnp.tile(weights, h * w)
  mean = statistic(mean)   # kept by the soft EPM's checkpoint
  return mean[:, None, None, None]


def _blend(degenerate: jax.Array, images: jax.Array,
           factor: jax.Array) -> jax.Array:
  """Pillow's `Image.blend(degenerate, images, factor)`, clipped to [0, 1].

  `degenerate` has the shape of `images` or broadcasts to it ((B, H, W, 1)
  for a luminance, (B, 1, 1, 1) for a mean). For per-pixel degenerates the
  backward pass is written out (`_blend_bwd`): it gives what `jax.grad`
  gives for this expression, but sums the factor's gradient in one pass over
  each image instead of reducing a broadcast product, which is slow on CPU
  (color's magnitude gradient 2.8x faster). For a per-image mean, autodiff's
  own backward pass measured faster, so it is kept.
  """
  if degenerate.shape[1:] == (1, 1, 1):
    return jnp.clip(_blend_pre(degenerate, images, factor), 0.0, 1.0)
  return _blend_vjp(degenerate, images, factor)


def _blend_pre(degenerate, images, factor):
  f = factor[:, None, None, None]
  # This form is exact at factor 1 (m = 0 is the identity to the last bit).
  return f * images + (1.0 - f) * degenerate


@jax.custom_vjp
def _blend_vjp(degenerate, images, factor):
  return jnp.clip(_blend_pre(degenerate, images, factor), 0.0, 1.0)


def _blend_fwd(degenerate, images, factor):
  pre = _blend_pre(degenerate, images, factor)
  return jnp.clip(pre, 0.0, 1.0), (degenerate, images, factor, pre)


def _blend_bwd(residuals, ct):
  degenerate, images, factor, pre = residuals
  # jnp.clip's derivative: 1 inside (0, 1), 0 outside, 1/2 on either bound.
  slope = jnp.where((pre > 0.0) & (pre < 1.0), 1.0,
                    jnp.where((pre == 0.0) | (pre == 1.0), 0.5, 0.0))
  g = ct * slope
  b = g.shape[0]
  g_factor = jnp.sum((g * (images - degenerate)).reshape(b, -1), axis=1)
  g_images = factor[:, None, None, None] * g
  g_degenerate = (1.0 - factor[:, None, None, None]) * g
  if degenerate.shape != g.shape:   # (B, H, W, 1): the channels summed by slices
    g_degenerate = sum(g_degenerate[..., i:i + 1] for i in range(g.shape[-1]))
  return g_degenerate, g_images, g_factor


_blend_vjp.defvjp(_blend_fwd, _blend_bwd)


def solarize(images: jax.typing.ArrayLike, magnitude: jax.typing.ArrayLike,
             key: jax.Array | None = None) -> jax.Array:
  """Inverts the pixels strictly above 1 - m, so m = 0 is the identity.

  Pillow's `ImageOps.solarize(threshold=t)` inverts levels >= t; on 8-bit
  inputs ours equals it with t the smallest level above 255 (1 - m). The
  forward pass is exact; d out / d m uses the straight-through estimator
  (d out / d m = 1), d out / d x is the exact +-1.

  Args:
    images: float32 images in [0, 1], shape (B, H, W, C).
    magnitude: m in [0, 1] (Table 1: discrete), a scalar or shape (B,).
    key: unused.

  Returns:
    The solarized images.
  """
  del key
  images = check_images(images)
  m = check_magnitude(magnitude, images.shape[0])
  threshold = jax.lax.stop_gradient(1.0 - SOLARIZE_SCALE * m)
  out = jnp.where(images > threshold[:, None, None, None], 1.0 - images, images)
  return magnitude_straight_through(out, m)


def posterize(images: jax.typing.ArrayLike, magnitude: jax.typing.ArrayLike,
              key: jax.Array | None = None) -> jax.Array:
  """Keeps the top 8 - round(4 m) bits of each 8-bit level.

  Equals Pillow's `ImageOps.posterize(bits=8 - round(4 m))` (round half to
  even); inputs are first quantised to 8-bit levels. Forward exact; the
  backward pass is straight-through in both the images (identity) and m
  (d out / d m = 1).

  Args:
    images: float32 images in [0, 1], shape (B, H, W, C).
    magnitude: m in [0, 1] (Table 1: discrete), a scalar or shape (B,).
    key: unused.

  Returns:
    The posterized images, multiples of 2^round(4 m) / 255 (unchanged where
    round(4 m) = 0).
  """
  del key
  images = check_images(images)
  m = check_magnitude(magnitude, images.shape[0])
  shift = jnp.clip(jnp.round(POSTERIZE_SCALE * jax.lax.stop_gradient(m)),
                   0, 8).astype(jnp.int32)[:, None, None, None]
  levels = to_levels(images)
  kept = jnp.left_shift(jnp.right_shift(levels, shift), shift)
  out = kept.astype(images.dtype) / 255.0
  # Removing no bits is the exact identity, also on inputs that are not 8-bit.
  out = jnp.where(shift == 0, images, out)
  return magnitude_straight_through(image_straight_through(out, images), m)


def invert(images: jax.typing.ArrayLike, magnitude: jax.typing.ArrayLike = None,
           key: jax.Array | None = None) -> jax.Array:
  """Returns 1 - x (Pillow's `ImageOps.invert`); ignores the magnitude.

  Args:
    images: float32 images in [0, 1], shape (B, H, W, C).
    magnitude: ignored (Table 1: none).
    key: unused.

  Returns:
    The inverted images.
  """
  del magnitude, key
  return 1.0 - check_images(images)


def contrast(images: jax.typing.ArrayLike, magnitude: jax.typing.ArrayLike,
             key: jax.Array | None = None) -> jax.Array:
  """Pillow's `ImageEnhance.Contrast` with the factor 1 + 0.9 m.

  Blends with the per-image mean of the ITU-R 601 luminance (Pillow rounds
  that mean to an 8-bit level; we do not), then clips to [0, 1].

  Args:
    images: float32 images in [0, 1], shape (B, H, W, C).
    magnitude: m in [-1, 1], a scalar or shape (B,); 0 is the identity.
    key: unused.

  Returns:
    The contrast-adjusted images.
  """
  del key
  images = check_images(images)
  m = check_magnitude(magnitude, images.shape[0])
  return _blend(_mean_luminance(images), images, 1.0 + ENHANCE_SCALE * m)


def color(images: jax.typing.ArrayLike, magnitude: jax.typing.ArrayLike,
          key: jax.Array | None = None) -> jax.Array:
  """Pillow's `ImageEnhance.Color` (saturation) with the factor 1 + 0.9 m.

  Blends with the ITU-R 601 luminance image, then clips to [0, 1]. Grey
  (C = 1) images are unchanged.

  Args:
    images: float32 images in [0, 1], shape (B, H, W, C).
    magnitude: m in [-1, 1], a scalar or shape (B,); 0 is the identity.
    key: unused.

  Returns:
    The saturation-adjusted images.
  """
  del key
  images = check_images(images)
  m = check_magnitude(magnitude, images.shape[0])
  return _blend(_luminance(images), images, 1.0 + ENHANCE_SCALE * m)


def brightness(images: jax.typing.ArrayLike, magnitude: jax.typing.ArrayLike,
               key: jax.Array | None = None) -> jax.Array:
  """Pillow's `ImageEnhance.Brightness` with the factor 1 + 0.9 m.

  Blends with black, i.e. clip(f x, 0, 1).

  Args:
    images: float32 images in [0, 1], shape (B, H, W, C).
    magnitude: m in [-1, 1], a scalar or shape (B,); 0 is the identity.
    key: unused.

  Returns:
    The brightness-adjusted images.
  """
  del key
  images = check_images(images)
  m = check_magnitude(magnitude, images.shape[0])
  return _blend(jnp.zeros_like(images), images, 1.0 + ENHANCE_SCALE * m)


def sharpness(images: jax.typing.ArrayLike,
              magnitude: jax.typing.ArrayLike = None,
              key: jax.Array | None = None) -> jax.Array:
  """Pillow's `ImageEnhance.Sharpness` at the fixed factor 1.9.

  The degenerate image is Pillow's SMOOTH filter, the 3x3 kernel
  [[1, 1, 1], [1, 5, 1], [1, 1, 1]] / 13, applied to interior pixels; border
  pixels keep their value (as Pillow's filter does), so the border is
  unchanged. The result is clipped to [0, 1]. Table 1 gives sharpness no
  magnitude, so `magnitude` is ignored. Images smaller than 3x3 are returned
  unchanged.

  Args:
    images: float32 images in [0, 1], shape (B, H, W, C).
    magnitude: ignored (Table 1: none).
    key: unused.

  Returns:
    The sharpened images.
  """
  del magnitude, key
  images = check_images(images)
  b, h, w, _ = images.shape
  if h < 3 or w < 3:
    return images
  factor = jnp.full((b,), SHARPNESS_FACTOR, images.dtype)
  # The border's degenerate pixel is the pixel itself.
  out = _blend(images, images, factor)
  # The 3x3 box sum of the interior pixels is separable: 3 taps along W, then
  # 3 along H, read from the image itself (no padding), and only the interior
  # is blended and written back: on CPU this is about a third cheaper, forward
  # and backward, than smoothing a padded image and selecting the interior.
  rows = images[:, :, :-2] + images[:, :, 1:-1] + images[:, :, 2:]
  box = rows[:, :-2] + rows[:, 1:-1] + rows[:, 2:]
  inner = images[:, 1:-1, 1:-1]
  smooth = (box + 4.0 * inner) / 13.0
  return jax.lax.dynamic_update_slice(out, _blend(smooth, inner, factor), (0, 1, 1, 0))


def auto_contrast(images: jax.typing.ArrayLike,
                  magnitude: jax.typing.ArrayLike = None,
                  key: jax.Array | None = None) -> jax.Array:
  """Stretches each image's channel from [min, max] to [0, 1].

  Pillow's `ImageOps.autocontrast(cutoff=0)`; a constant channel is left
  unchanged. The backward pass is straight-through to the images (identity),
  because the gradient through min and max reaches only two pixels.

  Args:
    images: float32 images in [0, 1], shape (B, H, W, C).
    magnitude: ignored (Table 1: none).
    key: unused.

  Returns:
    The stretched images.
  """
  del magnitude, key
  images = check_images(images)
  lo = jnp.min(images, axis=(1, 2), keepdims=True)
  hi = jnp.max(images, axis=(1, 2), keepdims=True)
  lo, hi = statistic(lo), statistic(hi)   # kept by the soft EPM's checkpoint
  spread = hi - lo
  ok = spread > 0
  safe = jnp.where(ok, spread, 1.0)
  out = jnp.where(ok, (images - lo) / safe, images)
  return image_straight_through(out, images)
