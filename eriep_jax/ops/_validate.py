"""Input checks shared by every Table-1 operation.

The checks look only at shapes and dtypes, so they work while tracing under
`jax.jit`, `jax.grad` and `jax.vmap`; value ranges of traced arrays are never
inspected.
"""

from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from eriep_jax import rng


def check_images(images: Any, *, name: str = "images") -> jax.Array:
  """Checks the image contract and returns the images as a `jax.Array`.

  The contract is float32 images of shape (B, H, W, C) with C in {1, 3} and
  values in [0, 1] (the range is documented, not checked).

  Args:
    images: the batch to check (any array-like).
    name: how the argument is called in error messages.

  Returns:
    `images` as a float32 `jax.Array` of shape (B, H, W, C).

  Raises:
    TypeError: the dtype is not float32 (integer images say how to convert).
    ValueError: the rank is not 4, C is not 1 or 3, or a dimension is empty.
  """
  if isinstance(images, (jax.Array, np.ndarray)):
    dtype = images.dtype
  else:
    try:
      dtype = np.asarray(images).dtype
    except Exception as e:  # pylint: disable=broad-except
      raise TypeError(
          f"{name} must be an array of shape (B, H, W, C), got "
          f"{type(images).__name__}; pass a float32 jax or numpy array.") from e
  shape = tuple(np.shape(images))
  if dtype == np.bool_ or jnp.issubdtype(dtype, jnp.integer):
    raise TypeError(
        f"{name} have integer dtype {dtype}, but the ops expect float32 values "
        f"in [0, 1]; convert with `{name}.astype(jnp.float32) / 255`.")
  if dtype != jnp.float32:
    raise TypeError(
        f"{name} have dtype {dtype}, but the ops expect float32 values in "
        f"[0, 1]; convert with `{name}.astype(jnp.float32)`.")
  if len(shape) != 4:
    if len(shape) == 3:
      fix = f"add a batch axis with `{name}[None]`"
    else:
      fix = "reshape to (B, H, W, C)"
    raise ValueError(
        f"{name} have shape {shape} (rank {len(shape)}), but the ops expect "
        f"rank 4 (B, H, W, C); {fix}.")
  if shape[-1] not in (1, 3):
    raise ValueError(
        f"{name} have {shape[-1]} channels (shape {shape}), but the ops expect "
        "1 (grey) or 3 (RGB) channels in the last axis; drop an alpha channel "
        f"with `{name}[..., :3]` or use NHWC layout.")
  if 0 in shape:
    raise ValueError(
        f"{name} have an empty dimension (shape {shape}); pass at least one "
        "image of at least 1x1 pixels.")
  return jnp.asarray(images)


def check_magnitude(magnitude: Any, batch_size: int) -> jax.Array:
  """Checks a normalised magnitude and broadcasts it to one value per sample.

  Args:
    magnitude: a Python number, a scalar array or a float array of shape (B,).
    batch_size: B, the number of images the magnitude applies to.

  Returns:
    A float32 `jax.Array` of shape (B,).

  Raises:
    TypeError: the magnitude is None or an integer/boolean array.
    ValueError: the magnitude is neither a scalar nor of shape (B,).
  """
  if magnitude is None:
    raise TypeError(
        "magnitude is None; pass a float scalar or an array of shape "
        f"({batch_size},) with values in the op's range (0 is the identity).")
  if isinstance(magnitude, (bool, np.bool_)):
    raise TypeError(f"magnitude is the boolean {magnitude}; pass a float.")
  if isinstance(magnitude, (int, float, np.number)):
    magnitude = jnp.float32(magnitude)
  else:
    dtype = getattr(magnitude, "dtype", None)
    if dtype is None:
      magnitude = np.asarray(magnitude)
      dtype = magnitude.dtype
    if not jnp.issubdtype(dtype, jnp.floating):
      raise TypeError(
          f"magnitude has dtype {dtype}; pass a float array, e.g. "
          "`magnitude.astype(jnp.float32)`.")
  shape = tuple(np.shape(magnitude))
  if shape not in ((), (batch_size,)):
    raise ValueError(
        f"magnitude has shape {shape}, but the batch has {batch_size} images; "
        f"pass a scalar or an array of shape ({batch_size},).")
  magnitude = jnp.asarray(magnitude, jnp.float32)
  return jnp.broadcast_to(magnitude, (batch_size,))


def check_key(key: Any, op_name: str) -> jax.Array:
  """Checks that a random op received a PRNG key (``eriep_jax.rng.check_key``)."""
  return rng.check_key(key, op_name)
