"""Straight-through surrogates for the ops whose exact forward is piecewise constant."""

import jax
import jax.numpy as jnp


def magnitude_straight_through(out: jax.Array, magnitude: jax.Array) -> jax.Array:
  """Returns `out` unchanged, with d out / d magnitude = 1 for every pixel.

  This is the straight-through estimator of Faster AutoAugment: the forward
  pass is exact and the backward pass treats the op as `x + m` in `m`, so each
  sample's magnitude receives the sum of its output gradients.

  Args:
    out: the exact op output, shape (B, H, W, C).
    magnitude: per-sample magnitudes, shape (B,).

  Returns:
    `out`, with the surrogate gradient attached.
  """
  delta = magnitude - jax.lax.stop_gradient(magnitude)
  return out + delta[:, None, None, None]


def image_straight_through(out: jax.Array, images: jax.Array) -> jax.Array:
  """Returns `out` unchanged, with d out / d images = identity."""
  return images + jax.lax.stop_gradient(out - images)


def to_levels(images: jax.Array) -> jax.Array:
  """Quantises [0, 1] floats to 8-bit levels 0..255 (as int32), clipping first."""
  return jnp.round(jnp.clip(images, 0.0, 1.0) * 255.0).astype(jnp.int32)
