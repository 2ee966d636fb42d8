"""A PNG grid of what each sub-policy of the EPM does to a few images.

Matplotlib is imported inside `save_grid` only, so `import eriep_jax.policy`
never imports it.
"""

from __future__ import annotations

import os
from collections.abc import Sequence

import jax
import jax.numpy as jnp
import numpy as np

from eriep_jax import ops as ops_lib
from eriep_jax.policy.apply import dispatch, resolve_mode
from eriep_jax.policy.config import PolicyParams, check_key, check_positive_int
from eriep_jax.policy.discrete import Operation, Policy, discretize


def _subpolicy_label(sub: Sequence[Operation]) -> str:
  parts = []
  for op in sub:
    spec = ops_lib.get_op(op.op)
    mag = "" if spec.magnitude_type == "none" else f" m={op.magnitude:.2f}"
    parts.append(f"{op.op} p={op.probability:.2f}{mag}")
  return " > ".join(parts)


def save_grid(params_or_policy: PolicyParams | Policy, images: jax.typing.ArrayLike,
              path: str | os.PathLike, key: jax.Array, *, mode: str = "hard",
              max_images: int = 8, dpi: int = 100) -> str | os.PathLike:
  """Writes a PNG: the original images on top, each sub-policy's output below.

  Row l + 1 applies sub-policy l to every image (same key for every row, so
  rows differ only by their sub-policy). Rows are labelled with the
  discretised sub-policy (op, p, magnitude).

  Args:
    params_or_policy: `PolicyParams` or a discretised `Policy`.
    images: float32 images in [0, 1], shape (B, H, W, C); the first
      `max_images` are shown.
    path: output PNG path (str or os.PathLike).
    key: a JAX PRNG key.
    mode: 'hard' (default, what the discretised policy does) or 'soft'
      (PolicyParams only).
    max_images: number of columns.
    dpi: figure resolution.

  Returns:
    `path`.

  Raises:
    ValueError/TypeError: as `perturb`, or for max_images < 1.
  """
  # Matplotlib is only needed here; Figure + Agg canvas avoids pyplot's global state.
  from matplotlib.backends.backend_agg import FigureCanvasAgg
  from matplotlib.figure import Figure

  mode = resolve_mode(params_or_policy, mode)
  max_images = check_positive_int(max_images, "max_images")
  images = ops_lib.check_images(images, name="images", check_range=True)[:max_images]
  check_key(key)
  policy = (params_or_policy if isinstance(params_or_policy, Policy)
            else discretize(params_or_policy))
  batch, num_rows = images.shape[0], policy.num_subpolicies + 1
  rows = [np.asarray(images)]
  for l in range(policy.num_subpolicies):
    forced = jnp.full((batch,), l, jnp.int32)
    rows.append(np.asarray(dispatch(params_or_policy, images, key, mode, forced)))
  fig = Figure(figsize=(1.1 * batch, 1.3 * num_rows), dpi=dpi)
  FigureCanvasAgg(fig)
  axes = fig.subplots(num_rows, batch, squeeze=False)
  for r in range(num_rows):
    for c in range(batch):
      ax = axes[r, c]
      img = np.clip(rows[r][c], 0.0, 1.0)
      ax.imshow(img[..., 0] if img.shape[-1] == 1 else img, cmap="gray" if img.shape[-1] == 1
                else None, vmin=0.0, vmax=1.0, interpolation="nearest")
      ax.set_xticks([])
      ax.set_yticks([])
    label = "original" if r == 0 else f"S{r} ({mode}): {_subpolicy_label(policy[r - 1])}"
    axes[r, 0].set_title(label, loc="left", fontsize=7)
  fig.subplots_adjust(left=0.01, right=0.99, bottom=0.01, top=1.0 - 0.25 / num_rows,
                      wspace=0.05, hspace=0.3)
  fig.savefig(path)
  return path
