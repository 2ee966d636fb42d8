"""The 17 image operations of Table 1, as pure, differentiable jax.numpy functions.

Contract (checked while tracing, on shapes and dtypes only):

* `images`: float32, shape (B, H, W, C), C in {1, 3}, values in [0, 1].
* `magnitude`: a scalar or shape (B,), normalised; 0 is the identity of every
  op that has a magnitude. Symmetric continuous ops (shear, translate, rotate,
  contrast, color, brightness) take m in [-1, 1]; choosing the sign at random
  is the policy's job. The others take m in [0, 1]. Ops whose magnitude type
  is 'none' ignore `magnitude`.
* Every op has the signature `op(images, magnitude, key=None) -> images`; only
  cutout and sample_pairing use `key` (and require it).

Semantics follow Pillow, the reference of the AutoAugment family (see each
op's docstring). Geometric ops sample bilinearly with Pillow's pixel-centre
convention and fill uncovered pixels with 0.5.

Gradients:

* continuous ops are differentiable in `magnitude` and `images`;
* solarize, posterize and cutout are exact forward; d out / d m is the
  straight-through estimator of Faster AutoAugment (d out / d m = 1 per pixel);
  posterize also passes d out / d x straight through (identity);
* auto_contrast and equalize pass d out / d x straight through (identity).

Usage:

    from eriep_jax import ops
    spec = ops.get_op("rotate")
    y = spec.fn(images, 0.5)                     # 15 degrees counter-clockwise
    y = ops.OPS["cutout"].fn(images, 1.0, key)   # random ops need a key
"""

import functools
from typing import Callable, Iterable, NamedTuple

from eriep_jax.ops._remat import STATISTIC
from eriep_jax.ops._validate import check_images, check_magnitude
from eriep_jax.ops.affine import (affine_transform, flip, rotate, shear_x,
                                  shear_y, translate_x, translate_y)
from eriep_jax.ops.color import (auto_contrast, brightness, color, contrast,
                                 invert, posterize, sharpness, solarize)
from eriep_jax.ops.other import (cutout, cutout_at, cutout_draw, equalize, sample_pairing,
                                 sample_pairing_draw, sample_pairing_with)


class OpSpec(NamedTuple):
  """One row of Table 1.

  Attributes:
    name: the op's name, as in Table 1.
    fn: `fn(images, magnitude, key=None) -> images`.
    magnitude_type: 'continuous' | 'discrete' | 'none', as in Table 1.
    category: 'affine' | 'color' | 'other', as in Table 1.
    scale: the constant that maps the normalised magnitude to the op's own
      parameter (0.3 shear factor, 0.45 of the side, 30 degrees, ...); 0.0 for
      ops without a magnitude.
    symmetric: True if m lies in [-1, 1], False if in [0, 1].
    needs_key: True for the random ops (cutout, sample_pairing).
    unit_fn: `fn` for magnitudes known to lie in [-1, 1] (the EPM's), where
      that allows a faster path (shear's shorter barrel shifter); None where
      `fn` is already that.
    draw: for the random ops, `draw(key, images)`: the random choice for the
      whole batch, an array whose axis 0 is the batch (cutout's centres,
      sample_pairing's partners); None for the others.
    apply_drawn: `apply_drawn(images, magnitude, drawn)`, the op given that
      choice, so that `fn(x, m, key) == apply_drawn(x, m, draw(key, x))`.
  """
  name: str
  fn: Callable
  magnitude_type: str
  category: str
  scale: float
  symmetric: bool
  needs_key: bool
  unit_fn: Callable | None = None
  draw: Callable | None = None
  apply_drawn: Callable | None = None


_TABLE = (
    # name, fn, magnitude type, category, scale, symmetric, needs key[, unit fn,
    # draw, apply_drawn]
    ("shear_x", shear_x, "continuous", "affine", 0.3, True, False,
     functools.partial(shear_x, unit_magnitude=True)),
    ("shear_y", shear_y, "continuous", "affine", 0.3, True, False,
     functools.partial(shear_y, unit_magnitude=True)),
    ("translate_x", translate_x, "continuous", "affine", 0.45, True, False),
    ("translate_y", translate_y, "continuous", "affine", 0.45, True, False),
    ("rotate", rotate, "continuous", "affine", 30.0, True, False),
    ("flip", flip, "none", "affine", 0.0, False, False),
    ("solarize", solarize, "discrete", "color", 1.0, False, False),
    ("posterize", posterize, "discrete", "color", 4.0, False, False),
    ("invert", invert, "none", "color", 0.0, False, False),
    ("contrast", contrast, "continuous", "color", 0.9, True, False),
    ("color", color, "continuous", "color", 0.9, True, False),
    ("brightness", brightness, "continuous", "color", 0.9, True, False),
    ("sharpness", sharpness, "none", "color", 0.0, False, False),
    ("auto_contrast", auto_contrast, "none", "color", 0.0, False, False),
    ("equalize", equalize, "none", "other", 0.0, False, False),
    ("cutout", cutout, "discrete", "other", 0.5, False, True, None, cutout_draw, cutout_at),
    ("sample_pairing", sample_pairing, "continuous", "other", 0.4, False, True, None,
     sample_pairing_draw, sample_pairing_with),
)

OPS: dict[str, OpSpec] = {row[0]: OpSpec(*row) for row in _TABLE}


def get_op(name: str) -> OpSpec:
  """Returns the registry entry of one op.

  Args:
    name: an op name from Table 1, e.g. 'rotate'.

  Returns:
    Its `OpSpec`.

  Raises:
    ValueError: the name is unknown (the message lists the valid names).
  """
  if not isinstance(name, str) or name not in OPS:
    raise ValueError(
        f"unknown op {name!r}; choose one of: {', '.join(OPS)}.")
  return OPS[name]


def get_ops(names: Iterable[str]) -> list[OpSpec]:
  """Returns the registry entries of a subset of ops, in the given order.

  Args:
    names: op names from Table 1 (a string is rejected: pass a list).

  Returns:
    A list of `OpSpec`.

  Raises:
    ValueError: the list is empty, contains a duplicate or an unknown name.
    TypeError: `names` is a single string.
  """
  if isinstance(names, str):
    raise TypeError(
        f"names is the string {names!r}; pass a list of op names, e.g. "
        f"[{names!r}].")
  names = list(names)
  if not names:
    raise ValueError(
        f"the op list is empty; pass at least one of: {', '.join(OPS)}.")
  duplicates = sorted({n for n in names if names.count(n) > 1})
  if duplicates:
    raise ValueError(
        f"op names {duplicates} are listed more than once; list each op once.")
  return [get_op(n) for n in names]


__all__ = [
    "OpSpec", "OPS", "get_op", "get_ops", "check_images", "check_magnitude",
    "affine_transform", "cutout_at", "cutout_draw", "sample_pairing_with",
    "sample_pairing_draw",
] + [row[0] for row in _TABLE]
