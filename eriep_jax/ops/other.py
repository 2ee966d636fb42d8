"""The 'other' Table-1 operations: equalize, cutout, sample_pairing.

cutout and sample_pairing are random. Each has a deterministic core
(`cutout_at`, `sample_pairing_with`) that takes the random choice as an
argument, a draw over the whole batch (`cutout_draw`, `sample_pairing_draw`),
and a thin wrapper that draws from `key` and applies. The split lets the soft
EPM draw once per batch and apply in chunks of it with the same result.
"""

import jax
import jax.numpy as jnp

from eriep_jax.ops._remat import statistic
from eriep_jax.ops._surrogate import (image_straight_through,
                                      magnitude_straight_through, to_levels)
from eriep_jax.ops._validate import check_images, check_key, check_magnitude

CUTOUT_SCALE = 0.5         # side = round(0.5 m min(H, W))
SAMPLE_PAIRING_SCALE = 0.4  # blend weight = 0.4 m
FILL = 0.5


def _equalize_channel(levels: jax.Array) -> jax.Array:
  """Pillow's equalize LUT applied to one channel's flat 8-bit levels, as float32 levels."""
  hist = jnp.bincount(levels, length=256)
  below = jnp.cumsum(hist) - hist                 # pixels strictly below level
  below_max = below[jnp.max(levels)]              # sum(histo) - histo[-1]
  step = below_max // 255
  # Pillow's integer LUT (step // 2 + below) // step, computed in float32: every
  # operand is a non-negative integer below 2^24, and a quotient that is not an
  # integer lies at least 1 / step below the next one, far more than float32's
  # rounding, so the floor is exact. XLA fuses this into the per-pixel lookup,
  # where an integer division per pixel costs about a third of the op on CPU.
  stepf = step.astype(jnp.float32)
  lut = jnp.minimum(jnp.floor((jnp.floor(stepf / 2.0) + below.astype(jnp.float32))
                              / jnp.maximum(stepf, 1.0)), 255.0)
  lut = jnp.where(step > 0, lut, jnp.arange(256, dtype=jnp.float32))
  return statistic(lut)[levels]


def equalize(images: jax.typing.ArrayLike,
             magnitude: jax.typing.ArrayLike = None,
             key: jax.Array | None = None) -> jax.Array:
  """Histogram equalization per image and channel, Pillow's algorithm.

  On the 8-bit levels v of a channel with histogram h, let S be the number of
  pixels below the highest present level and step = S // 255. If step is 0
  (for instance a constant channel) the channel is unchanged; otherwise
  v -> min((step // 2 + sum_{u < v} h[u]) // step, 255), exactly
  `PIL.ImageOps.equalize`. The histogram is a per-channel `bincount`
  (a scatter-add). The backward pass is straight-through to the images.

  Args:
    images: float32 images in [0, 1], shape (B, H, W, C); quantised to 8-bit.
    magnitude: ignored (Table 1: none).
    key: unused.

  Returns:
    The equalized images, multiples of 1/255.
  """
  del magnitude, key
  images = check_images(images)
  b, h, w, c = images.shape
  levels = to_levels(images).reshape(b, h * w, c).transpose(0, 2, 1)
  out = jax.vmap(jax.vmap(_equalize_channel))(levels)
  out = out.transpose(0, 2, 1).reshape(b, h, w, c) / 255.0
  return image_straight_through(out, images)


def cutout_at(images: jax.typing.ArrayLike, magnitude: jax.typing.ArrayLike,
              centers: jax.typing.ArrayLike, *, fill: float = FILL) -> jax.Array:
  """Fills a square of side round(0.5 m min(H, W)) at given centres.

  The square covers rows cy - L//2 ... cy - L//2 + L - 1 (and the same for
  columns), clipped at the borders; for even L the centre pixel is the lower
  right of the four middle pixels. Forward exact; d out / d m is the
  straight-through estimator (= 1), d out / d x is 0 inside the square and 1
  outside.

  Args:
    images: float32 images in [0, 1], shape (B, H, W, C).
    magnitude: m in [0, 1] (Table 1: discrete), a scalar or shape (B,).
    centers: integer (row, column) centres, shape (B, 2).
    fill: the value of the cut-out pixels.

  Returns:
    The images with the squares filled.
  """
  images = check_images(images)
  b, h, w, _ = images.shape
  m = check_magnitude(magnitude, b)
  centers = jnp.asarray(centers)
  if centers.shape != (b, 2):
    raise ValueError(
        f"centers has shape {centers.shape}; pass one (row, column) per image, "
        f"shape ({b}, 2).")
  side = jnp.round(CUTOUT_SCALE * min(h, w) * jax.lax.stop_gradient(m))
  side = side.astype(jnp.int32)
  y0 = centers[:, 0] - side // 2
  x0 = centers[:, 1] - side // 2
  rows = jnp.arange(h)[None, :]
  cols = jnp.arange(w)[None, :]
  in_rows = (rows >= y0[:, None]) & (rows < (y0 + side)[:, None])   # (B, H)
  in_cols = (cols >= x0[:, None]) & (cols < (x0 + side)[:, None])   # (B, W)
  mask = in_rows[:, :, None, None] & in_cols[:, None, :, None]
  out = jnp.where(mask, jnp.asarray(fill, images.dtype), images)
  return magnitude_straight_through(out, m)


def cutout(images: jax.typing.ArrayLike, magnitude: jax.typing.ArrayLike,
           key: jax.Array | None = None) -> jax.Array:
  """Cutout at a uniformly random pixel per image (see `cutout_at`).

  Args:
    images: float32 images in [0, 1], shape (B, H, W, C).
    magnitude: m in [0, 1] (Table 1: discrete), a scalar or shape (B,).
    key: a PRNG key (required).

  Returns:
    The images with a square of side round(0.5 m min(H, W)) set to 0.5.

  Raises:
    ValueError: `key` is None.
  """
  images = check_images(images)
  return cutout_at(images, magnitude, cutout_draw(check_key(key, "cutout"), images))


def cutout_draw(key: jax.Array, images: jax.Array) -> jax.Array:
  """`cutout`'s random choice: a uniformly random (row, column) centre per image, (B, 2)."""
  b, h, w, _ = images.shape
  ky, kx = jax.random.split(key)
  return jnp.stack([jax.random.randint(ky, (b,), 0, h),
                    jax.random.randint(kx, (b,), 0, w)], axis=-1)


def sample_pairing_with(images: jax.typing.ArrayLike,
                        magnitude: jax.typing.ArrayLike,
                        partners: jax.typing.ArrayLike) -> jax.Array:
  """Blends each image with its partner: (1 - 0.4 m) x + 0.4 m y.

  Pillow's `Image.blend(x, y, 0.4 m)`. Differentiable in m and in both images.

  Args:
    images: float32 images in [0, 1], shape (B, H, W, C).
    magnitude: m in [0, 1], a scalar or shape (B,); 0 is the identity.
    partners: float32 images of the same shape as `images`.

  Returns:
    The blended images.
  """
  images = check_images(images)
  partners = check_images(partners, name="partners")
  if partners.shape != images.shape:
    raise ValueError(
        f"partners have shape {partners.shape}, images {images.shape}; pass "
        "partners of the same shape.")
  a = SAMPLE_PAIRING_SCALE * check_magnitude(magnitude, images.shape[0])
  a = a[:, None, None, None]
  return (1.0 - a) * images + a * partners


def sample_pairing(images: jax.typing.ArrayLike,
                   magnitude: jax.typing.ArrayLike,
                   key: jax.Array | None = None) -> jax.Array:
  """SamplePairing with a random permutation of the batch as partners.

  Args:
    images: float32 images in [0, 1], shape (B, H, W, C).
    magnitude: m in [0, 1], a scalar or shape (B,); 0 is the identity.
    key: a PRNG key (required).

  Returns:
    (1 - 0.4 m) x + 0.4 m x[perm].

  Raises:
    ValueError: `key` is None.
  """
  images = check_images(images)
  key = check_key(key, "sample_pairing")
  return sample_pairing_with(images, magnitude, sample_pairing_draw(key, images))


def sample_pairing_draw(key: jax.Array, images: jax.Array) -> jax.Array:
  """`sample_pairing`'s random choice: the partners x[perm], a random permutation of the batch."""
  return images[jax.random.permutation(key, images.shape[0])]
