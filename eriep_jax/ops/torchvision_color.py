"""torchvision's colour functionals on float images, written once.

``torchvision.transforms.functional`` on float tensors: brightness, contrast,
saturation and hue adjustments and ``rgb_to_grayscale``, with torchvision's
luma weights `TORCHVISION_LUMA` (0.2989, 0.587, 0.114). These are not Table 1
ops (those follow Pillow, `eriep_jax.ops.color`, whose luma is Pillow's 0.299).
Two callers compose them: the evaluation's perturbations
(`eriep_jax.evaluate.perturbations`, ColorJitter of perturb-2) and SupContrast's
views (`eriep_jax.data.views`).

Every function works on one image (H, W, C) or a batch (..., H, W, C): a
per-image ``factor`` must broadcast against the image, e.g. shape (B, 1, 1, 1)
for a batch, or a scalar for one image. C is 1 or 3; grey images are their own
luma and skip saturation and hue, as in torchvision. Values are float, in
[0, 1]; nothing is rounded to 8 bits (torchvision's tensor path). The inputs are
not checked here: the public callers check them.
"""

import jax
import jax.numpy as jnp

__all__ = [
    "TORCHVISION_LUMA", "luma", "blend", "brightness", "contrast", "saturation",
    "hue", "grayscale", "rgb_to_hsv", "hsv_to_rgb",
]

# torchvision.transforms.functional.rgb_to_grayscale (ITU-R 601-2, as torchvision writes it).
TORCHVISION_LUMA = (0.2989, 0.587, 0.114)


def luma(images: jax.Array) -> jax.Array:
  """Per-pixel luma, shape (..., H, W, 1); a grey image is its own."""
  if images.shape[-1] == 1:
    return images
  # A contraction over the channels: the evaluation's perturbations have always computed
  # it so, and this form keeps their outputs bit for bit.
  weights = jnp.asarray(TORCHVISION_LUMA, images.dtype)
  return jnp.tensordot(images, weights, axes=([-1], [0]))[..., None]


def blend(images: jax.Array, other: jax.Array, factor: jax.Array) -> jax.Array:
  """torchvision's ``_blend``: clip(f x + (1 - f) other, 0, 1)."""
  return jnp.clip(factor * images + (1.0 - factor) * other, 0.0, 1.0)


def brightness(images: jax.Array, factor: jax.Array) -> jax.Array:
  """``adjust_brightness``: clip(f x, 0, 1) (a blend with black)."""
  return jnp.clip(factor * images, 0.0, 1.0)


def contrast(images: jax.Array, factor: jax.Array) -> jax.Array:
  """``adjust_contrast``: a blend with the image's mean luma (not rounded)."""
  mean = jnp.mean(luma(images), axis=(-3, -2, -1), keepdims=True)
  return blend(images, mean, factor)


def saturation(images: jax.Array, factor: jax.Array) -> jax.Array:
  """``adjust_saturation``: a blend with the per-pixel luma; grey images unchanged."""
  if images.shape[-1] == 1:
    return images
  return blend(images, luma(images), factor)


def rgb_to_hsv(images: jax.Array) -> tuple[jax.Array, jax.Array, jax.Array]:
  """torchvision's ``_rgb2hsv``: h in [0, 1) turns, s and v in [0, 1].

  The divisions are guarded, so gradients stay finite on grey and black pixels.
  """
  r, g, b = images[..., 0], images[..., 1], images[..., 2]
  maxc = jnp.maximum(jnp.maximum(r, g), b)
  minc = jnp.minimum(jnp.minimum(r, g), b)
  eqc = maxc == minc   # grey pixels (also black): hue and saturation 0
  cr = maxc - minc
  s = cr / jnp.where(eqc, 1.0, maxc)
  safe_cr = jnp.where(eqc, 1.0, cr)
  rc = (maxc - r) / safe_cr
  gc = (maxc - g) / safe_cr
  bc = (maxc - b) / safe_cr
  h = jnp.where(maxc == r, bc - gc,
                jnp.where(maxc == g, 2.0 + rc - bc, 4.0 + gc - rc))
  h = jnp.where(eqc, 0.0, h)
  h = jnp.mod(h / 6.0 + 1.0, 1.0)
  return h, s, maxc


def hsv_to_rgb(h: jax.Array, s: jax.Array, v: jax.Array) -> jax.Array:
  """torchvision's ``_hsv2rgb``, shape (..., 3)."""
  i = jnp.floor(h * 6.0)
  f = h * 6.0 - i
  sector = jnp.mod(i.astype(jnp.int32), 6)
  p = jnp.clip(v * (1.0 - s), 0.0, 1.0)
  q = jnp.clip(v * (1.0 - s * f), 0.0, 1.0)
  t = jnp.clip(v * (1.0 - s * (1.0 - f)), 0.0, 1.0)
  table = ((v, t, p), (q, v, p), (p, v, t), (p, q, v), (t, p, v), (v, p, q))
  channels = [jnp.select([sector == k for k in range(6)], [row[c] for row in table])
              for c in range(3)]
  return jnp.stack(channels, axis=-1)


def hue(images: jax.Array, delta: jax.Array) -> jax.Array:
  """``adjust_hue``: H <- (H + delta) mod 1 in HSV (delta in turns); grey images unchanged.

  ``delta`` broadcasts against the (..., H, W) hue plane: a scalar for one image,
  shape (B, 1, 1) for a batch.
  """
  if images.shape[-1] == 1:
    return images
  h, s, v = rgb_to_hsv(images)
  return hsv_to_rgb(jnp.mod(h + delta, 1.0), s, v)


def grayscale(images: jax.Array) -> jax.Array:
  """``rgb_to_grayscale``, replicated to the input's channels."""
  return jnp.broadcast_to(luma(images), images.shape)
