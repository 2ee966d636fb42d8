"""ERIEP's stage-2 objective (Eq. 5-9) and the reference sync (Algorithm 1, lines 12-13).

Every loss takes logits, not models, so it fits any Flax loop (Linen or NNX)::

  logits_n = model.apply(vars_n, x_o)                 # N on clean images
  logits_r = model.apply(vars_r, x_p)                 # R on perturbed images
  loss, aux = eriep_loss(logits_n, logits_r, labels, alpha=0.5)
  ref_params = sync_reference(params, ref_params, step, sync_freq)

What Eq. (9) does to gradients: with a frozen reference R and an x_p that does
not depend on N, d L_final / d params_N = (1 + alpha * sign(L_N - L_R)) *
d L_N / d params_N. N is trained on clean images only, with a weight between
1 - alpha and 1 + alpha; the perturbed branch reaches only the policy, through
R and x_p. This module implements Eq. (9) as written; the variants live in the
trainer's config (``reference='live'``, ``method='augment'``).
"""

from typing import Any

import jax
import jax.numpy as jnp

__all__ = ["REDUCTIONS", "cross_entropy", "eriep_loss", "sync_reference"]

REDUCTIONS = ("example", "batch")


def cross_entropy(logits: jax.typing.ArrayLike,
                  labels: jax.typing.ArrayLike) -> jax.Array:
  """Per-example softmax cross-entropy, Eq. (6) and Eq. (8).

  Computed with ``log_softmax`` (a stable log-sum-exp), so the value and its
  gradient stay finite for any finite logits.

  Args:
    logits: float array of shape (batch, num_classes).
    labels: integer class indices of shape (batch,).

  Returns:
    float32 array of shape (batch,): -log softmax(logits)[label].

  Raises:
    ValueError: if the ranks or batch sizes do not match.
    TypeError: if labels are not integers.
  """
  logits = jnp.asarray(logits)
  labels = jnp.asarray(labels)
  if logits.ndim != 2:
    raise ValueError(f"logits must have shape (batch, num_classes), got shape {logits.shape}; "
                     "flatten extra axes first.")
  if labels.ndim != 1 or labels.shape[0] != logits.shape[0]:
    raise ValueError(f"labels must have shape ({logits.shape[0]},) to match logits {logits.shape}, "
                     f"got {labels.shape}; pass integer class indices, not one-hot vectors.")
  if not jnp.issubdtype(labels.dtype, jnp.integer):
    raise TypeError(f"labels must be integer class indices, got dtype {labels.dtype}; "
                    "cast them with labels.astype(jnp.int32).")
  log_probs = jax.nn.log_softmax(logits.astype(jnp.float32), axis=-1)
  return -jnp.take_along_axis(log_probs, labels[:, None], axis=-1)[:, 0]


def eriep_loss(logits_clean: jax.typing.ArrayLike,
               logits_ref: jax.typing.ArrayLike,
               labels: jax.typing.ArrayLike,
               *,
               alpha: float,
               reduction: str = "example",
               axis_name: Any = None) -> tuple[jax.Array, dict[str, jax.Array]]:
  """The ERIEP objective L_final = L_N + alpha * |L_N - L_R|, Eq. (9).

  L_N is the cross-entropy of N on clean images (Eq. 5-6) and L_R that of the
  reference R on perturbed images (Eq. 7-8). The loss does not stop gradients:
  a frozen reference is frozen by the caller (R's params are not
  differentiated), so the same function serves ``reference='live'``.

  Args:
    logits_clean: N(x_o), shape (batch, num_classes).
    logits_ref: R(x_p), shape (batch, num_classes).
    labels: integer labels, shape (batch,).
    alpha: weight of the gap term, >= 0. With alpha >= 1 the effective weight
      (1 - alpha) on N's gradient can turn negative (see module docstring).
    reduction: ``'example'`` (default; the literal reading of Eq. 6, 8 and 9,
      whose sums are per image): mean over i of |L_N,i - L_R,i|. ``'batch'``:
      |mean L_N - mean L_R|.
    axis_name: optional pmap/shard_map axis name. Only used by
      ``reduction='batch'``: the sign of the gap is then taken from the means
      over the whole global batch, so that the gradients averaged with
      ``lax.pmean`` equal those of the single-device loss on the global batch.
      The returned loss then equals the global loss after a ``pmean``.

  Returns:
    ``(loss, aux)``: the scalar L_final and a dict with scalars ``l_n`` (mean
    L_N), ``l_r`` (mean L_R), ``gap`` (the reduced |L_N - L_R| term) and
    ``frac_ln_gt_lr`` (fraction of examples with L_N,i > L_R,i).

  Raises:
    ValueError: for a negative alpha, an unknown reduction, or logits whose
      shapes differ.
  """
  if isinstance(alpha, (int, float)) and not alpha >= 0:
    raise ValueError(f"alpha must be >= 0, got {alpha}; Eq. (9) weights |L_N - L_R| by a "
                     "non-negative alpha (try 0.5).")
  if reduction not in REDUCTIONS:
    raise ValueError(f"unknown reduction {reduction!r}; use one of {REDUCTIONS}.")
  logits_clean = jnp.asarray(logits_clean)
  logits_ref = jnp.asarray(logits_ref)
  if logits_clean.shape != logits_ref.shape:
    raise ValueError(f"logits_clean {logits_clean.shape} and logits_ref {logits_ref.shape} must "
                     "have the same shape; run N and R on the same batch of images.")
  l_n = cross_entropy(logits_clean, labels)
  l_r = cross_entropy(logits_ref, labels)
  mean_n, mean_r = jnp.mean(l_n), jnp.mean(l_r)
  if reduction == "example":
    gap = jnp.mean(jnp.abs(l_n - l_r))
  elif axis_name is None:
    gap = jnp.abs(mean_n - mean_r)
  else:
    # |G_N - G_R| over the global batch, differentiated through the local
    # means: d|D|/dD = sign(D), and D's gradient is the pmean of local ones.
    local = mean_n - mean_r
    sign = jnp.sign(jax.lax.stop_gradient(jax.lax.pmean(local, axis_name)))
    gap = sign * local
  loss = mean_n + alpha * gap
  aux = {
      "l_n": mean_n,
      "l_r": mean_r,
      "gap": gap,
      "frac_ln_gt_lr": jnp.mean((l_n > l_r).astype(jnp.float32)),
  }
  return loss, aux


def sync_reference(params: Any, ref_params: Any, step: jax.typing.ArrayLike,
                   sync_freq: int) -> Any:
  """Algorithm 1, lines 12-13: R <- N when ``step % sync_freq == 0``.

  A select on device (``jnp.where`` per leaf), so it works under ``jit`` and
  ``pmap`` with a traced ``step`` and never moves data to the host.

  Args:
    params: N's pytree (params, or a dict with params and batch stats).
    ref_params: R's pytree, same structure as ``params``.
    step: the iteration count (number of completed updates), an int scalar.
    sync_freq: the synchronisation period, a Python int >= 1.

  Returns:
    ``params`` when ``step % sync_freq == 0``, else ``ref_params``.

  Raises:
    ValueError: if sync_freq < 1 or the pytree structures differ.
  """
  if isinstance(sync_freq, bool) or not isinstance(sync_freq, int) or sync_freq < 1:
    raise ValueError(f"sync_freq must be an int >= 1, got {sync_freq!r}; use 1 to sync R <- N "
                     "after every step.")
  if jax.tree.structure(params) != jax.tree.structure(ref_params):
    raise ValueError("params and ref_params must have the same pytree structure; initialise "
                     "R as a copy of N (e.g. ref_params = params).")
  do_sync = jnp.asarray(step) % sync_freq == 0
  return jax.tree.map(lambda p, r: jnp.where(do_sync, p, r), params, ref_params)
