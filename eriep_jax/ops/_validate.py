"""Input checks shared by every Table-1 operation.

The checks look only at shapes and dtypes, so they work while tracing under
`jax.jit`, `jax.grad` and `jax.vmap`; value ranges of traced arrays are never
inspected. `check_images` is the package's one image validator
(`eriep_jax.images.check_images`), re-exported here with its defaults, which
are the ops' contract: float32, (B, H, W, C), C in {1, 3}, non-empty.
"""

from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from eriep_jax import rng
from eriep_jax.images import check_images

__all__ = ["check_images", "check_magnitude", "check_key"]


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
