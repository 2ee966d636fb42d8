"""Marks the ops' small, costly intermediates for `jax.checkpoint`.

The soft EPM recomputes each chunk of the batch in its backward pass
(`eriep_jax.policy.apply.perturb_soft`). Recomputing most of an op is cheaper
there than storing it, but a few ops reduce the whole image to a small
statistic first (equalize's lookup table, auto_contrast's range, contrast's
mean luminance), and those
reductions cost more to redo than to keep. `statistic` names such a value, and
`perturb_soft` saves exactly the values so named. Outside `jax.checkpoint` the
name does nothing.
"""

import jax
from jax.ad_checkpoint import checkpoint_name

STATISTIC = "eriep_op_statistic"


def statistic(x: jax.Array) -> jax.Array:
  """Returns `x`, named as a statistic to keep rather than recompute."""
  return checkpoint_name(x, STATISTIC)
