"""The image contract of the whole package, and its one validator.

Contract: images are float32 batches of shape (B, H, W, C), channels last
(NHWC), with values in [0, 1]. The Table-1 ops (`eriep_jax.ops`), the EPM
policy, the Table-2 evaluation perturbations (`eriep_jax.evaluate.perturbations`)
and the classifiers (`eriep_jax.models`) all take this layout; integer (e.g.
uint8) images must be converted first, with ``images.astype(jnp.float32) / 255``.

`check_images` checks it. Callers differ in how strict they are, so the checks
are keyword options: the ops require float32 and 1 or 3 channels, the
perturbations accept any float dtype and channel count, the models require 3
channels and a minimum image size.

What is checked while tracing (under `jax.jit`, `jax.grad`, `jax.vmap`,
`jax.eval_shape`): everything that depends on the shape and the dtype only,
that is the dtype, the rank, the channel count, an empty batch and the image
size. These errors are raised once, at trace time, and cost nothing at run time.

What is not: the value range. It needs the values, which a tracer does not
have, so it is never inspected under a transformation, and on concrete arrays
only when asked for (``check_range=True``, which reads the array back to the
host). By default [0, 1] is documented, not checked.
"""

from typing import Any, Optional, Sequence

import jax
import jax.numpy as jnp
import numpy as np

__all__ = ["check_images"]


def _channel_fix(name: str, shape: tuple, channels: tuple) -> str:
  """The sentence that tells how to get an allowed channel count."""
  c = shape[-1]
  if shape[1] in channels:
    return f"transpose NCHW inputs with `{name}.transpose(0, 2, 3, 1)`"
  if c == 4 and 3 in channels:
    return f"drop an alpha channel with `{name}[..., :3]`"
  if c == 1 and 3 in channels:
    return f"repeat grey images to RGB with `jnp.repeat({name}, 3, axis=-1)`"
  return "use NHWC layout with the channels in the last axis"


def check_images(images: Any, *, name: str = "images", caller: Optional[str] = None,
                 float32_only: bool = True, channels: Optional[Sequence[int]] = (1, 3),
                 min_size: int = 1, allow_empty_batch: bool = False,
                 check_range: bool = False) -> jax.Array:
  """Checks the image contract and returns the images as a `jax.Array`.

  The defaults are the strict contract of the Table-1 ops. The checks run in
  this order, and the first failure raises: dtype, rank, channels, batch
  size, image size, value range.

  Args:
    images: the batch to check (a jax or numpy array, a tracer, or any
      array-like).
    name: how the argument is called in error messages, and in the code of
      the fixes they suggest (e.g. ``'x'`` gives ``x.astype(jnp.float32) / 255``).
    caller: who expects the images (an op, a model's class name); starts the
      error messages as ``'<caller> expects ...'``. None: ``'expected ...'``.
    float32_only: refuse every dtype but float32 (True, the ops' contract), or
      accept any float dtype (False; float64 becomes float32 unless jax runs
      with x64). Integer and boolean images are refused either way, integer
      ones with the fix ``images.astype(jnp.float32) / 255``.
    channels: the allowed sizes of the last axis, e.g. ``(1, 3)`` (grey or
      RGB, the default) or ``(3,)``; None allows any.
    min_size: the smallest allowed height and width (1 refuses empty images,
      0 allows them).
    allow_empty_batch: accept B = 0.
    check_range: also check that the values lie in [0, 1]. This is done on
      concrete arrays only, and is skipped while tracing.

  Returns:
    ``jnp.asarray(images)``, of shape (B, H, W, C); the values are unchanged.

  Raises:
    TypeError: ``images`` is not an array, or has a refused dtype.
    ValueError: the rank is not 4, the channel count is not allowed, the batch
      is empty, an image is smaller than ``min_size``, or (``check_range``)
      a value lies outside [0, 1].
  """
  lead = f"{caller} expects" if caller else "expected"
  kind = "float32" if float32_only else "float"
  if isinstance(images, (jax.Array, np.ndarray)):
    dtype = images.dtype
  else:
    try:
      dtype = np.asarray(images).dtype
    except Exception as e:  # pylint: disable=broad-except
      raise TypeError(
          f"{lead} {name} as an array of shape (B, H, W, C), got "
          f"{type(images).__name__}; pass a float32 jax or numpy array.") from e
  shape = tuple(np.shape(images))

  # dtype.
  if dtype == np.bool_:
    raise TypeError(
        f"{lead} {kind} {name} with values in [0, 1], got dtype bool; convert "
        f"with `{name}.astype(jnp.float32)`.")
  if jnp.issubdtype(dtype, jnp.integer):
    raise TypeError(
        f"{lead} {kind} {name} with values in [0, 1], got integer dtype {dtype}; "
        f"convert with `{name}.astype(jnp.float32) / 255`.")
  if dtype != jnp.float32 and (float32_only or not jnp.issubdtype(dtype, jnp.floating)):
    raise TypeError(
        f"{lead} {kind} {name} with values in [0, 1], got dtype {dtype}; convert "
        f"with `{name}.astype(jnp.float32)`.")

  # Rank.
  if len(shape) != 4:
    if len(shape) == 3:
      fix = f"add a batch axis with `{name}[None]`"
    else:
      fix = "reshape to (B, H, W, C)"
    raise ValueError(
        f"{lead} {name} of rank 4, shape (B, H, W, C), got shape {shape} "
        f"(rank {len(shape)}); {fix}.")

  # Channels.
  if channels is not None:
    channels = tuple(int(c) for c in channels)
    if shape[-1] not in channels:
      want = " or ".join(str(c) for c in channels)
      raise ValueError(
          f"{lead} {name} with {want} channels in the last axis (NHWC), got "
          f"{shape[-1]} channels (shape {shape}); "
          f"{_channel_fix(name, shape, channels)}.")

  # Batch and image size.
  if shape[0] == 0 and not allow_empty_batch:
    raise ValueError(
        f"{lead} a non-empty batch of {name}, got an empty dimension (shape "
        f"{shape}); pass at least one image.")
  h, w = shape[1], shape[2]
  if h < min_size or w < min_size:
    empty = "an empty dimension, " if 0 in (h, w) else ""
    raise ValueError(
        f"{lead} {name} of at least {min_size}x{min_size} pixels, got {empty}"
        f"{h}x{w} (shape {shape}); resize the inputs in the data pipeline.")

  images = jnp.asarray(images)

  # Values, on concrete arrays only.
  # Read on the host with numpy: a concrete array closed over by a jitted function is
  # still concrete while tracing, but jnp.min of it would be a tracer.
  if (check_range and images.size and not isinstance(images, jax.core.Tracer)
      and getattr(images, "is_fully_addressable", True)):
    host = np.asarray(images)
    lo, hi = float(np.min(host)), float(np.max(host))
    if not (lo >= 0.0 and hi <= 1.0):   # also catches NaN
      if lo >= 0.0 and hi <= 255.0:
        fix = f"if these are 0..255 values, divide by 255: `{name} / 255`"
      else:
        fix = f"rescale to [0, 1] or clip with `jnp.clip({name}, 0, 1)`"
      raise ValueError(
          f"{lead} {name} with values in [0, 1], got min {lo:g} and max {hi:g}; "
          f"{fix}.")
  return images
